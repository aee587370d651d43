"""Media durability and fail-fast behaviour.

Model. ``upload``/``download`` operations (processes ``media-K``) carry ``{"id", "size",
"sha256", "via"}``. Rules:

1. every ``ok`` upload must later be downloaded ``ok`` (a download invoked after the upload
   completed) with the same ``sha256`` (``require_download``);
2. an ``ok`` download of an uploaded id with another ``sha256`` is corruption;
3. a download of an *existing* id (invoked after its upload completed ``ok``) that ended
   ``fail``/``info`` is a violation unless the operation overlaps a fault window (any nemesis
   fault, extended by ``grace`` seconds after its heal) or a declared outage;
4. inside a declared outage window (``outages``: fault ids or kinds, or explicit
   ``(start, end)`` pairs) every failed upload or download must fail fast — end ``fail`` (not
   ``info``, which means no answer before the client's timeout), within ``fail_fast`` seconds
   of its invoke — and carry the API's error envelope ``{"errors": [{"code", …}]}``.

An operation overlaps a window if it was invoked before the window's end and completed (or
the history ended) after its start.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from harness.history import Event
from harness.judge.checkers.base import (
    Figure,
    Op,
    Result,
    bound_text,
    bound_value,
    checker,
    fault_windows,
    first_few,
    has_error_envelope,
    pair_ops,
    prepare,
    s,
    t,
)

Window = tuple[float, float, str]


def _overlaps(op: Op, windows: list[Window], end: float) -> Window | None:
    done = op.complete.time if op.complete is not None else end
    for w in windows:
        if op.invoke.time <= w[1] and done >= w[0]:
            return w
    return None


def _outage_windows(prep: Any, outages: Iterable[Any]) -> list[Window]:
    faults = fault_windows(prep)
    out: list[Window] = []
    for o in outages:
        if isinstance(o, str):
            out.extend((w.start, w.end(prep.end), f"{w.id} ({w.kind})")
                       for w in faults if o in (w.id, w.kind))
        else:
            a, b = o
            out.append((float(a), float(b), f"[{float(a):.3f}, {float(b):.3f}]"))
    return out


def _op_text(op: Op) -> str:
    lat = op.latency
    bits = [str(x)[:80] for x in (op.get("status"), op.get("error")) if x not in (None, "")]
    return (f"{op.f} {op.get('id')} by {op.process} invoked {t(op.invoke.time)}, {op.type}"
            + (f" after {s(lat)}" if lat is not None else " (never completed)")
            + (f" ({', '.join(bits)})" if bits else ""))


@checker
def media(events: Sequence[Event], *, outages: Iterable[Any] = (), fail_fast: Any = None,
          grace: float = 0.0, excuse_faults: bool = True, require_download: bool = True,
          name: str = "media") -> Result:
    """Uploaded media stays readable and intact; declared outages fail fast and cleanly."""
    prep = prepare(events)
    ops, _ = pair_ops(prep, "upload", "download")
    lim = bound_value(fail_fast)
    out_w = _outage_windows(prep, outages)
    excuse = [(a, b + grace, lbl) for a, b, lbl in out_w]
    if excuse_faults:
        excuse += [(w.start, w.end(prep.end) + grace, f"{w.id} ({w.kind})")
                   for w in fault_windows(prep)]

    uploads: dict[str, Op] = {}
    for op in ops:
        if op.f == "upload" and op.type == "ok" and op.get("id") is not None:
            uploads.setdefault(str(op.get("id")), op)

    verified: set[str] = set()
    corrupt: list[Op] = []
    unexcused: list[Op] = []
    excused = 0
    outage_fail: list[Op] = []
    slow: list[Op] = []
    bare: list[Op] = []
    for op in ops:
        if op.type != "ok":
            w = _overlaps(op, out_w, prep.end)
            if w is not None:
                outage_fail.append(op)
                if op.type != "fail" or (lim is not None and (op.latency or 0.0) > lim):
                    slow.append(op)
                elif not has_error_envelope(op.complete.value if op.complete else {}):
                    bare.append(op)
        if op.f != "download":
            continue
        mid = op.get("id")
        up = uploads.get(str(mid)) if mid is not None else None
        if up is None or up.complete is None or op.invoke.time < up.complete.time:
            continue  # not an existing id at the time of the download
        if op.type == "ok":
            if op.get("sha256") == up.get("sha256"):
                verified.add(str(mid))
            else:
                corrupt.append(op)
        elif _overlaps(op, excuse, prep.end) is not None:
            excused += 1
        else:
            unexcused.append(op)

    unverified = [m for m in uploads if m not in verified] if require_download else []
    lat = max((op.latency for op in outage_fail if op.latency is not None), default=None)
    figures: dict[str, Figure] = {
        "uploads_ok": len(uploads), "verified": len(verified), "unverified": len(unverified),
        "corrupt": len(corrupt), "failed_downloads": len(unexcused) + excused,
        "excused_failures": excused, "unexcused_failures": len(unexcused),
        "outage_failures": len(outage_fail), "latency": lat, "fail_fast": lim,
        "slow_failures": len(slow), "bare_failures": len(bare),
        "unverified_ids": first_few(unverified) or None,
    }
    problems = []
    if corrupt:
        op = corrupt[0]
        up = uploads[str(op.get("id"))]
        problems.append(f"{len(corrupt)} download(s) returned other bytes; first: "
                        f"{_op_text(op)} sha256 {op.get('sha256')} != uploaded "
                        f"{up.get('sha256')} ({t(up.invoke.time)})")
    if unexcused:
        problems.append(f"{len(unexcused)} download(s) of existing media failed outside any "
                        f"fault window; first: {_op_text(unexcused[0])}")
    if slow:
        problems.append(f"{len(slow)} failure(s) during a declared outage were not fast"
                        + (f" (bound {bound_text(fail_fast)})" if lim is not None else "")
                        + f"; first: {_op_text(slow[0])}")
    if bare:
        problems.append(f"{len(bare)} failure(s) during a declared outage had no error "
                        f"envelope; first: {_op_text(bare[0])}")
    if unverified:
        up = uploads[unverified[0]]
        problems.append(f"{len(unverified)} uploaded id(s) never read back intact; first: "
                        f"{unverified[0]} uploaded by {up.process} {t(up.invoke.time)}")
    summary = (f"{len(uploads)} upload(s) ok, {len(verified)} read back intact; "
               f"{excused} download failure(s) inside fault windows excused; "
               f"{len(outage_fail)} failure(s) in declared outages"
               + (f", slowest {s(lat)}" if lat is not None else "") + ".")
    if problems:
        return Result(name, False, figures, "INVALID: " + "; ".join(problems) + ". " + summary)
    return Result(name, True, figures, summary)
