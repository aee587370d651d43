"""Client-visible downtime of the message sender, per shard.

Model. Every ``send`` is placed at its **invoke** time (the moment the client asked; its
completion may come much later, e.g. a timeout). Per shard, operations are taken in invoke
order; a *downtime window* is a maximal run of operations that did not end ``ok`` (``fail``,
``info``, or never completed). It runs from the invoke time of the last ``ok`` before the run
to the invoke time of the first ``ok`` after it: the longest stretch in which nothing the
client started succeeded. A run with no ``ok`` before it starts at its first operation's
invoke; a run with no ``ok`` after it is *unrecovered* and ends at the end of the history.

A stalled client shows up as an outstanding operation that ends ``info`` at its timeout, so it
is counted; a pause in the workload itself (no operations at all) is not downtime.

With ``window=(a, b)`` the downtime windows are clipped to ``[a, b]`` (an outage that began
before ``a`` counts from ``a``) and the ok/fail/info counts cover operations invoked in
``[a, b]``. ``shards`` restricts the bound to those shards; the others can be held to
``others_bound`` (multiconnect: a fault on one shard's coreapp must not hurt the others).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.history import Event
from harness.judge.checkers.base import (
    Figure,
    Op,
    Result,
    bound_text,
    bound_value,
    checker,
    dur,
    pair_ops,
    prepare,
    s,
    shard_of,
    t,
)


@dataclass(frozen=True, slots=True)
class Outage:
    shard: int | str | None
    start: float
    end: float
    last_ok: Op | None
    first_bad: Op
    next_ok: Op | None
    bad_ops: int

    @property
    def duration(self) -> float:
        return dur(self.end - self.start)


def _describe(op: Op | None) -> str:
    if op is None:
        return "none"
    extra = ""
    if op.type != "ok":
        status, error = op.get("status"), op.get("error")
        bits = [str(x) for x in (status, error) if x not in (None, "")]
        extra = f" ({', '.join(bits)})" if bits else ""
    return f"{op.process} {op.type}{extra} invoked {t(op.invoke.time)}"


def outages(events: Sequence[Event]) -> tuple[dict[Any, list[Op]], list[Outage]]:
    """Send operations grouped by shard, and every downtime window (unclipped)."""
    prep = prepare(events)
    ops, _ = pair_ops(prep, "send")
    by_shard: dict[Any, list[Op]] = {}
    for op in ops:
        sh = shard_of(op.invoke.value.get("shard", op.get("shard")))
        by_shard.setdefault(sh, []).append(op)
    found: list[Outage] = []
    end = prep.end
    for sh, sops in by_shard.items():
        last_ok: Op | None = None
        first_bad: Op | None = None
        bad = 0
        for op in sops:
            if op.type == "ok":
                if first_bad is not None:
                    start = last_ok.invoke.time if last_ok else first_bad.invoke.time
                    found.append(Outage(sh, start, op.invoke.time, last_ok, first_bad, op, bad))
                    first_bad, bad = None, 0
                last_ok = op
            else:
                if first_bad is None:
                    first_bad = op
                bad += 1
        if first_bad is not None:
            start = last_ok.invoke.time if last_ok else first_bad.invoke.time
            found.append(Outage(sh, start, max(end, start), last_ok, first_bad, None, bad))
    return by_shard, found


@checker
def downtime(events: Sequence[Event], *, bound: Any = None,
             window: tuple[float, float] | None = None,
             shards: Iterable[int | str] | None = None, others_bound: Any = None,
             require_recovery: bool = True, name: str = "downtime") -> Result:
    """Longest client-visible send outage per shard; valid iff it is within ``bound``.

    Invalid also when a shard never recovered inside the window (``require_recovery``), when
    a shard outside ``shards`` exceeds ``others_bound``, or when there is no send to judge.
    """
    prep = prepare(events)
    by_shard, all_out = outages(prep)
    a, b = window if window is not None else (float("-inf"), float("inf"))
    lim, olim = bound_value(bound), bound_value(others_bound)

    clipped: list[tuple[Outage, float]] = []
    for o in all_out:
        lo, hi = max(o.start, a), min(o.end, b)
        if hi > lo or (hi == lo and o.start >= a and o.end <= b):
            clipped.append((o, dur(hi - lo)))

    seen = sorted(by_shard, key=_shard_order)
    selected = [shard_of(x) for x in shards] if shards is not None else list(seen)
    sel_set = set(selected)
    others = [x for x in seen if x not in sel_set]

    per_max: dict[Any, float] = {sh: 0.0 for sh in seen}
    per_total: dict[Any, float] = {sh: 0.0 for sh in seen}
    worst: dict[Any, tuple[Outage, float]] = {}
    for o, d in clipped:
        per_total[o.shard] = dur(per_total[o.shard] + d)
        if o.shard not in worst or d > worst[o.shard][1]:
            worst[o.shard] = (o, d)
            per_max[o.shard] = d

    counts = {"ok": 0, "fail": 0, "info": 0}
    for sh in selected:
        for op in by_shard.get(sh, ()):
            if a <= op.invoke.time <= b:
                counts[op.type] += 1
    n_ops = sum(counts.values())

    max_sel = max((per_max.get(sh, 0.0) for sh in selected), default=0.0)
    max_oth = max((per_max[sh] for sh in others), default=None)
    unrecovered = [o for o, _ in clipped if o.next_ok is None]
    worst_sel = max((worst[sh] for sh in selected if sh in worst), key=lambda w: w[1],
                    default=None)

    figures: dict[str, Figure] = {
        "max_downtime": max_sel,
        "total_downtime": dur(sum(per_total.get(sh, 0.0) for sh in selected)),
        "others_max_downtime": max_oth,
        "ok": counts["ok"], "fail": counts["fail"], "info": counts["info"],
        "availability": round(counts["ok"] / n_ops, 6) if n_ops else None,
        "outages": sum(1 for o, _ in clipped if o.shard in sel_set),
        "unrecovered": len(unrecovered),
        "bound": lim, "others_bound": olim,
        "window_start": window[0] if window else None,
        "window_end": window[1] if window else None,
    }
    for sh in seen:
        figures[f"shard_{sh}_max_downtime"] = per_max[sh]

    problems: list[str] = []
    if not selected:
        problems.append("no send operation in the history")
    missing = [sh for sh in selected if not any(
        a <= op.invoke.time <= b for op in by_shard.get(sh, ()))]
    if missing:
        problems.append(f"no send was invoked on shard(s) {', '.join(map(str, missing))} "
                        "inside the window, so their downtime cannot be judged")
    if lim is not None and max_sel > lim:
        problems.append(f"max downtime {s(max_sel)} exceeds the bound {bound_text(bound)}")
    if olim is not None and max_oth is not None and max_oth > olim:
        sh = max(others, key=lambda x: per_max[x])
        problems.append(f"shard {sh} (not under the fault) was down {s(max_oth)}, above "
                        f"{bound_text(others_bound)}: {_window_text(worst[sh][0])}")
    if require_recovery and unrecovered:
        u = unrecovered[0]
        problems.append(f"shard {u.shard} never recovered: no ok send after "
                        f"{t(u.first_bad.invoke.time)} up to the history's end {t(prep.end)}")

    if worst_sel is not None:
        o, d = worst_sel
        detail = f"Worst outage: shard {o.shard}, {s(d)}: {_window_text(o)}."
    else:
        detail = "No send failed on the judged shards."
    scope = f" within [{window[0]:.3f}, {window[1]:.3f}]" if window else ""
    per = ", ".join(f"{sh}: {s(per_max[sh])}" for sh in seen)
    summary = (f"Max downtime{scope} {s(max_sel)} over shard(s) "
               f"{', '.join(map(str, selected)) or 'none'}"
               + (f" (bound {bound_text(bound)})" if lim is not None else "")
               + f". {detail} Per-shard maxima: {per or 'none'}. Ops judged: "
               f"{counts['ok']} ok, {counts['fail']} fail, {counts['info']} info; downtime is "
               "measured between invoke times.")
    text = ("INVALID: " + "; ".join(problems) + ". " + summary) if problems else summary
    return Result(name, not problems, figures, text)


def _shard_order(x: Any) -> tuple[int, int, str]:
    return (0, x, "") if isinstance(x, int) else (1, 0, str(x))


def _window_text(o: Outage) -> str:
    return (f"last ok before: {_describe(o.last_ok)}; first failure: {_describe(o.first_bad)}; "
            f"{o.bad_ops} non-ok op(s); first ok after: {_describe(o.next_ok)}")
