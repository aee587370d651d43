"""Promotion candidates (``db-shard`` and the nemesis): no coreapp is promoted while it is down.

Model. Every promotion is a shard-map change to another host or epoch in the database's own
record (:mod:`harness.cluster.db_record`), at the database's time, naming the new owner. A coreapp
is *down* inside the window of a fault of a kind in :data:`DOWN` that targets it (killed, stopped,
frozen, or cut from every peer): it cannot answer a master's heartbeat. The primary master may
promote only a coreapp that answered one of its last two heartbeats, sent at most ``answer_window``
(2·h + 0.5 s) before the decision. So a promotion naming a coreapp that has been down for longer
than ``answer_window`` + ``margin`` (the nemesis's own step and the statement's time), and still is,
picked a node that had stopped answering: the shard stays down until that node is found unhealthy
and replaced again.

``answer_window`` comes from the record's first event (``db-record``) unless given. No
record in the history: nothing to judge (valid).
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.history import Event
from harness.judge.checkers.base import Figure, Result, checker, fault_windows, prepare
from harness.judge.checkers.db_record import record_settings, shard_change

#: Fault kinds during which a coreapp cannot answer a heartbeat.
DOWN = frozenset({"kill", "stop", "pause", "isolate"})
#: Seconds for the nemesis's own step and the promotion statement's time.
SLACK = 1.0


@checker
def promoted_live(events: Sequence[Event], *, answer_window: float | None = None,
                  margin: float = SLACK, name: str = "promoted_live") -> Result:
    """Valid iff no recorded promotion named a coreapp down for over ``answer_window`` +
    ``margin`` at that instant."""
    prepared = prepare(events)
    window = answer_window if answer_window is not None \
        else record_settings(prepared).get("answer_window")
    promotions = [e for e in prepared.select("db-shard")
                  if shard_change(e.value) == "promotion" and e.value["new"]["host"]]
    figures: dict[str, Figure] = {"promotions": len(promotions), "answer_window": window,
                                  "violations": 0}
    if not promotions:
        return Result(name, True, figures, "no promotion in the database's record.")
    if window is None:
        return Result(name, True, figures, "the record does not state the answer window: "
                                           "promotions not judged.")
    downs = [w for w in fault_windows(prepared) if w.kind in DOWN]
    problems = []
    for e in promotions:
        host = e.value["new"]["host"]
        for w in downs:
            down_for = e.time - w.start
            if host in w.targets and down_for > window + margin and e.time <= w.end(prepared.end):
                problems.append(f"shard {e.value['shard']} promoted to {host} at "
                                f"{e.time:.2f}s, {down_for:.2f}s into {w.kind} {w.id} of it "
                                f"(a candidate answered within {window:g}s)")
    figures["violations"] = len(problems)
    if problems:
        return Result(name, False, figures,
                      f"INVALID: {len(problems)} promotion(s) of a coreapp that was down: "
                      + "; ".join(problems[:3]))
    return Result(name, True, figures,
                  f"{len(promotions)} promotion(s), none of a coreapp down for over "
                  f"{window + margin:g}s.")
