"""Never two primary masters; exactly one once the cluster is quiet.

Model. Each ``health`` ok snapshot lists the nodes with their ``role``. Two nodes with role
``primary_master`` in ONE snapshot is a violation: each node answers for itself about its own
state at that moment, so the two claims were both live within the snapshot's span. Caveat:
snapshots are not atomic — the two answers come from slightly different instants, so a
legitimate hand-over whose old primary answered just before stepping down and whose new
primary answered just after could in principle show up here too. The reference masters step
down (local validity 0.9·T) before the lease can be taken over (T), so this should not happen;
if it does, the explanation shows the snapshot so a human can judge. Entries that are errors
(unreachable nodes) are not counted.

At the end (the last ``last`` snapshots, taken after quiescence by the scenario) every
snapshot must show exactly one primary master, the same node in all of them.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.history import Event
from harness.judge.checkers.base import Figure, Result, checker, health_snapshots, prepare, t

PRIMARY = "primary_master"


@checker
def primary_masters(events: Sequence[Event], *, last: int = 3,
                    name: str = "primary_masters") -> Result:
    """Valid iff no snapshot has two primary masters and each of the last ``last`` conclusive
    snapshots (every known master answered) has exactly one, the same one (``last=0`` skips
    the end check)."""
    if last < 0:
        raise ValueError("last must be >= 0")
    snaps = health_snapshots(prepare(events))
    primaries = [(ev, sorted(n for n, v in nodes.items() if v.get("role") == PRIMARY))
                 for ev, nodes in snaps]
    multi = [(ev, ps) for ev, ps in primaries if len(ps) > 1]
    # a snapshot in which a known master did not answer says nothing about how many
    # primaries there are: the end check uses only conclusive snapshots
    masters = {n for _, nodes in snaps for n, v in nodes.items()
               if v.get("role") in (PRIMARY, "secondary_master")}
    conclusive = [(ev, ps) for (ev, ps), (_, nodes) in zip(primaries, snaps, strict=True)
                  if not any(n in masters and "role" not in v for n, v in nodes.items())]
    tail = conclusive[-last:] if last else []
    final_names = sorted({p for _, ps in tail for p in ps})
    figures: dict[str, Figure] = {
        "snapshots": len(snaps),
        "multi_primary_snapshots": len(multi),
        "max_primaries": max((len(ps) for _, ps in primaries), default=0),
        "no_primary_snapshots": sum(1 for _, ps in primaries if not ps),
        "final_primary": ",".join(final_names) or None,
        "final_snapshots": len(tail),
    }
    problems = []
    if multi:
        ev, ps = multi[0]
        problems.append(f"{len(multi)} snapshot(s) showed more than one primary master; first "
                        f"{t(ev.time)}: {', '.join(ps)}")
    if last:
        if len(tail) < last:
            problems.append(f"only {len(tail)} health snapshot(s), {last} needed for the end "
                            "check")
        bad = [(ev, ps) for ev, ps in tail if len(ps) != 1]
        if bad:
            ev, ps = bad[0]
            problems.append(f"after quiescence the snapshot {t(ev.time)} showed "
                            f"{len(ps)} primary master(s) ({', '.join(ps) or 'none'})")
        elif len(final_names) > 1:
            problems.append(f"the primary changed within the last {len(tail)} snapshot(s): "
                            + ", ".join(f"{ps[0]} {t(ev.time)}" for ev, ps in tail))
    span = (f" from {t(tail[0][0].time)} to {t(tail[-1][0].time)}" if tail else "")
    summary = (f"{len(snaps)} health snapshot(s); max {figures['max_primaries']} primary "
               f"master(s) in one; last {len(tail)}{span}: "
               f"{figures['final_primary'] or 'none'}.")
    if problems:
        return Result(name, False, figures, "INVALID: " + "; ".join(problems) + ". " + summary)
    return Result(name, True, figures, summary)
