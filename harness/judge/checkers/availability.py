"""Availability over a window, and recovery after a fault is healed.

``availability``: of the message sends *invoked* inside the window, the fraction that ended
``ok`` (``fail`` and ``info`` — unknown outcome — count against it). Valid iff the fraction is
at least ``min_fraction``. Used for "coreapps keep serving with every master down".

``recovery``: for each shard, the time from the fault's heal to the first ``ok`` send invoked
after the heal. Valid iff every shard recovered within ``bound``. Used for outages that stop
the whole cluster (database outage), where "downtime" is expected to last as long as the
fault and the promise is about how fast service returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.history import Event
from harness.judge.checkers.base import (
    Result,
    bound_text,
    bound_value,
    checker,
    dur,
    find_fault,
    pair_ops,
    prepare,
    s,
    shard_of,
    t,
)


@checker
def availability(events: Sequence[Event], *, min_fraction: float,
                 window: tuple[float, float] | None = None,
                 name: str = "availability") -> Result:
    prep = prepare(events)
    ops, _ = pair_ops(prep, "send")
    lo, hi = window if window is not None else (float("-inf"), float("inf"))
    judged = [op for op in ops if lo <= op.invoke.time <= hi]
    counts = {"ok": 0, "fail": 0, "info": 0}
    for op in judged:
        counts[op.type] = counts.get(op.type, 0) + 1
    total = len(judged)
    frac = counts["ok"] / total if total else None
    figures: dict[str, Any] = {"availability": frac, "ops": total, **counts,
                               "min_availability": min_fraction}
    where = "the whole history" if window is None else f"[{t(lo)}, {t(hi)}]"
    if total == 0:
        return Result(name, False, figures, f"INVALID: no sends invoked in {where}.")
    valid = frac >= min_fraction
    verdict = "ok" if valid else "INVALID"
    return Result(name, valid, figures,
                  f"{verdict}: {counts['ok']} of {total} sends in {where} succeeded "
                  f"({frac:.2%}; required {min_fraction:.2%}); {counts['fail']} failed, "
                  f"{counts['info']} unknown.")


@checker
def recovery(events: Sequence[Event], *, bound: Any, fault: str | None = None,
             shards: Sequence[int] | None = None, name: str = "recovery") -> Result:
    prep = prepare(events)
    fw = find_fault(prep, fault)
    lim = bound_value(bound)
    if fw is None or fw.heal is None:
        return Result(name, False, {"recovery": None, "bound": lim},
                      "INVALID: no healed fault in the history to measure recovery from.")
    ops, _ = pair_ops(prep, "send")
    wanted = None if shards is None else {int(x) for x in shards}
    seen: set[int] = set()
    first_ok: dict[int, float] = {}
    for op in ops:
        sh = shard_of(op.get("shard"))
        if not isinstance(sh, int) or (wanted is not None and sh not in wanted):
            continue
        seen.add(sh)
        if op.type == "ok" and op.invoke.time >= fw.heal and sh not in first_ok:
            first_ok[sh] = dur(op.invoke.time - fw.heal)
    expected = sorted(wanted if wanted is not None else seen)
    missing = [sh for sh in expected if sh not in first_ok]
    worst = max(first_ok.values()) if first_ok else None
    figures: dict[str, Any] = {"recovery": worst, "bound": lim, "fault": fw.id,
                               "heal": fw.heal, **{f"recovery_shard_{k}": v
                                                   for k, v in sorted(first_ok.items())}}
    if not expected:
        return Result(name, False, figures, "INVALID: no sends in the history.")
    if missing:
        return Result(name, False, figures,
                      f"INVALID: shard(s) {missing} had no successful send after the heal of "
                      f"{fw.id} ({fw.kind}) at {t(fw.heal)}.")
    valid = lim is None or worst <= lim
    return Result(name, valid, figures,
                  f"{'ok' if valid else 'INVALID'}: after {fw.id} ({fw.kind} "
                  f"{','.join(fw.targets)}) healed at {t(fw.heal)}, the slowest shard served "
                  f"again after {s(worst)} (bound {bound_text(bound)}).")
