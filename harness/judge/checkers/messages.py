"""Message safety: no acknowledged message lost, no message delivered twice, no message
delivered after the API said it was certainly not sent.

Model. A ``send`` that ended ``ok`` carries the message ``id`` the API returned; the gateway
logs every message it accepted as ``gw-deliver`` with that ``id`` (and ``duplicate: true``
when it had already seen the id). Lost = acknowledged (ok) but never delivered, whenever the
delivery happened (the history's whole span counts).

Duplicates (at-least-once rule). An id is *duplicated* if it appears in more than one
``gw-deliver`` or any of its deliveries says ``duplicate: true``. With ``allow="none"`` every
duplicated id is a violation. With ``allow="indeterminate"`` a duplicated id is tolerated
unless the client got a clean, first-try acknowledgement for it: the id belongs to an ``ok``
send whose value does not say it was retried (``retried: true`` or ``attempts``/``attempt``
> 1). Ids with no ok send behind them (the send ended ``info``/``fail`` or never completed, so
the client could not know the outcome and a resend is legitimate) are tolerated.

Refusals (``docs/contracts.md``: 503 means the message was certainly not sent). A ``send`` that
ended ``fail`` with HTTP status 503 tells the client it may resend safely; so no ``gw-deliver``
after its invoke may carry its recipient ``to``. A refused send has no message id (the API
returns none), so deliveries are matched by recipient: every workload send goes to a recipient
of its own, and a recipient invoked more than once in the history is left out (ambiguous)
rather than guessed. (A reused cluster's gateway log may hold an earlier test's deliveries to
the same recipients, before this history's sends: those are not this send's message.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

from harness.history import Event
from harness.judge.checkers.base import (
    Figure,
    Op,
    Result,
    checker,
    first_few,
    pair_ops,
    prepare,
    t,
)


def _acked(prep: Any) -> tuple[dict[str, Op], int]:
    return prep.memo("acked", lambda: _acked_ids(prep))  # type: ignore[no-any-return]


def _acked_ids(prep: Any) -> tuple[dict[str, Op], int]:
    ops, _ = pair_ops(prep, "send")
    acked: dict[str, Op] = {}
    missing = 0
    for op in ops:
        if op.type != "ok":
            continue
        mid = op.complete.value.get("id") if op.complete is not None else None
        if mid is None:
            missing += 1
        else:
            acked.setdefault(str(mid), op)
    return acked, missing


@checker
def no_lost_acks(events: Sequence[Event], *, name: str = "no_lost_acks") -> Result:
    """Valid iff every id of an ok ``send`` appears in a ``gw-deliver`` event."""
    prep = prepare(events)
    acked, no_id = _acked(prep)
    delivered = {str(e.value["id"]) for e in prep.select("gw-deliver")
                 if e.value.get("id") is not None}
    lost = [(mid, op) for mid, op in acked.items() if mid not in delivered]
    figures: dict[str, Figure] = {
        "acked": len(acked), "delivered_ids": len(delivered), "lost": len(lost),
        "lost_ids": first_few([m for m, _ in lost]) or None, "ok_without_id": no_id,
    }
    note = (f" {no_id} ok send(s) carried no id and could not be checked." if no_id else "")
    if lost:
        details = "; ".join(
            f"{mid} (shard {op.get('shard')}, {op.process}, invoked {t(op.invoke.time)}, "
            f"acked {t(op.complete.time if op.complete else None)})" for mid, op in lost[:3])
        return Result(name, False, figures,
                      f"INVALID: {len(lost)} of {len(acked)} acknowledged message(s) never "
                      f"reached the gateway (no gw-deliver with their id); first: {details}."
                      + note)
    return Result(name, True, figures,
                  f"All {len(acked)} acknowledged message(s) were delivered to the gateway."
                  + note)


def _retried(op: Op) -> bool:
    if op.get("retried"):
        return True
    for k in ("attempts", "attempt"):
        v = op.get(k)
        if isinstance(v, int | float) and v > 1:
            return True
    return False


@checker
def no_duplicates(events: Sequence[Event], *, allow: Literal["none", "indeterminate"] = "none",
                  name: str = "no_duplicates") -> Result:
    """Valid iff no message id was delivered twice (see the module's at-least-once rule)."""
    if allow not in ("none", "indeterminate"):
        raise ValueError(f"allow must be 'none' or 'indeterminate', got {allow!r}")
    prep = prepare(events)
    first: dict[str, Event] = {}
    seen: dict[str, list[Event]] = {}  # every delivery of a duplicated id
    n = 0
    for e in prep.select("gw-deliver"):
        v = e.value
        mid = str(v.get("id"))
        n += 1
        if mid in first:
            seen.setdefault(mid, [first[mid]]).append(e)
        else:
            first[mid] = e
            if v.get("duplicate"):
                seen[mid] = [e]
    dups = list(seen)
    acked, _ = _acked(prep) if dups else ({}, 0)
    bad, tolerated = [], []
    for m in dups:
        op = acked.get(m)
        if allow == "indeterminate" and (op is None or _retried(op)):
            tolerated.append(m)
        else:
            bad.append(m)
    figures: dict[str, Figure] = {
        "deliveries": n, "distinct_ids": len(first),
        "duplicated_ids": len(dups), "tolerated": len(tolerated), "violations": len(bad),
        "duplicate_ids": first_few(bad or dups) or None, "allow": allow,
    }
    if bad:
        details = "; ".join(
            f"{m} delivered {len(seen[m])}x at "
            + ", ".join(f"{t(e.time)} by {e.value.get('node')} (seq {e.value.get('seq')}"
                        + (", duplicate" if e.value.get("duplicate") else "") + ")"
                        for e in seen[m][:4])
            + (f", acked to {acked[m].process} {t(acked[m].complete.time)}"  # type: ignore[union-attr]
               if m in acked else "")
            for m in bad[:3])
        return Result(name, False, figures,
                      f"INVALID: {len(bad)} message id(s) delivered more than once "
                      f"(allow={allow}); first: {details}.")
    extra = (f" {len(tolerated)} duplicated id(s) tolerated: their send never got a clean "
             "acknowledgement (at-least-once)." if tolerated else "")
    return Result(name, True, figures,
                  f"{len(first)} distinct id(s) in {n} deliveries; none "
                  f"delivered twice against the rule allow={allow}.{extra}")


@checker
def refused_not_delivered(events: Sequence[Event], *,
                          name: str = "refused_not_delivered") -> Result:
    """Valid iff no send answered 503 ("certainly not sent") was delivered to its recipient."""
    prep = prepare(events)
    ops, _ = pair_ops(prep, "send")
    invoked = Counter(str(op.invoke.value["to"]) for op in ops if "to" in op.invoke.value)
    refused = {str(op.get("to")): op for op in ops
               if op.type == "fail" and op.get("status") == 503 and op.get("to") is not None}
    ambiguous = [to for to in refused if invoked[to] > 1]
    for to in ambiguous:
        del refused[to]
    delivered: dict[str, Event] = {}
    for e in prep.select("gw-deliver"):
        to = e.value.get("to")
        op = refused.get(str(to)) if to is not None else None
        if op is not None and e.time >= op.invoke.time:
            delivered.setdefault(str(to), e)
    bad = sorted(delivered, key=lambda to: delivered[to].time)
    figures: dict[str, Figure] = {
        "refused": len(refused), "ambiguous": len(ambiguous), "delivered_anyway": len(bad),
        "recipients": first_few(bad) or None,
    }
    if bad:
        details = "; ".join(
            f"to {to}: {refused[to].process} invoked {t(refused[to].invoke.time)}, answered 503 "
            f"{t(refused[to].complete.time if refused[to].complete else None)}, delivered "
            f"{t(delivered[to].time)} by {delivered[to].value.get('node')} "
            f"(id {delivered[to].value.get('id')})" for to in bad[:3])
        return Result(name, False, figures,
                      f"INVALID: {len(bad)} of {len(refused)} send(s) answered 503 (certainly "
                      f"not sent) were delivered; first: {details}.")
    note = f" {len(ambiguous)} recipient(s) sent to more than once were left out." \
        if ambiguous else ""
    return Result(name, True, figures,
                  f"None of {len(refused)} send(s) answered 503 reached the gateway." + note)
