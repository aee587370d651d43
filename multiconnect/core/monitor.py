"""Failure detection and promotion planning for the primary master, sans-IO.

Two detectors, as documented for the real client:

* **Heartbeat-based** (needs ≥ 2 live masters): every master heartbeats every coreapp each
  ``heartbeat_interval``. A master considers a coreapp *unhealthy* when it has not answered
  that master for ``unhealthy_interval``. The primary master promotes only when the shard's
  primary coreapp is unhealthy in its own view **and** in at least one secondary master's
  fresh view (secondaries publish their views through the database). A miss seen by one side
  only never promotes.
* **Database-based** (always on; the only one with a single live master): coreapps write a
  liveness row every ``liveness_interval`` (60 s); a primary coreapp whose row is older than
  ``stale_after`` (120 s), judged by the database clock, is replaced. Staleness counts only
  while this master has been reaching the database (:class:`DatabaseContact`): after an
  outage every row is old, but nobody could write it — the owner is judged stale only once
  the master has seen the database for ``stale_after`` again.

Promotion picks a coreapp that owns no shard, is live in the database and answers this
master's heartbeats; each candidate is used once per plan, so no coreapp gets two shards.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


def answer_window(heartbeat_interval: float) -> float:
    """A coreapp counts as answering while its last answered heartbeat was sent at most
    2·h + 0.5 s ago (one of the last two)."""
    return 2 * heartbeat_interval + 0.5


@dataclass
class HeartbeatTracker:
    """This master's own view: when did each coreapp last answer us?"""

    started_at: float
    last_ok: dict[str, float] = field(default_factory=dict)
    first_seen: dict[str, float] = field(default_factory=dict)

    def seen(self, coreapp: str, now: float) -> None:
        self.first_seen.setdefault(coreapp, now)

    def answered(self, coreapp: str, sent_at: float) -> None:
        """A heartbeat sent at ``sent_at`` was answered (use the send time: conservative)."""
        self.first_seen.setdefault(coreapp, sent_at)
        self.last_ok[coreapp] = max(self.last_ok.get(coreapp, -math.inf), sent_at)

    def silent_for(self, coreapp: str, now: float) -> float:
        since = self.last_ok.get(coreapp, self.first_seen.get(coreapp, now))
        return now - since

    def unhealthy(self, coreapp: str, now: float, unhealthy_interval: float) -> bool:
        return self.silent_for(coreapp, now) >= unhealthy_interval

    def answering(self, coreapp: str, now: float, heartbeat_interval: float) -> bool:
        """Answered one of the last two heartbeats (a promotion candidate must)."""
        last = self.last_ok.get(coreapp)
        return last is not None and now - last <= answer_window(heartbeat_interval)

    def forget_except(self, names: Iterable[str]) -> None:
        keep = set(names)
        for d in (self.last_ok, self.first_seen):
            for k in list(d):
                if k not in keep:
                    del d[k]


@dataclass(frozen=True)
class CoreappState:
    name: str
    liveness_age: float          # database seconds since its last liveness write
    unhealthy_here: bool         # in the primary master's own heartbeat view
    answering_here: bool
    unhealthy_elsewhere: int     # fresh secondary-master views calling it unhealthy


@dataclass(frozen=True)
class ClusterView:
    shards: Mapping[int, str | None]     # shard -> owning coreapp
    coreapps: Mapping[str, CoreappState]
    live_masters: int
    stale_after: float
    db_reachable_for: float = math.inf   # this master's uninterrupted database contact (s)


@dataclass
class DatabaseContact:
    """How long this master has reached the database without an error: ``ok(now)`` after
    each successful round of monitor queries, ``failed()`` on any database error."""

    since: float | None = None

    def ok(self, now: float) -> None:
        if self.since is None:
            self.since = now

    def failed(self) -> None:
        self.since = None

    def reachable_for(self, now: float) -> float:
        return 0.0 if self.since is None else max(0.0, now - self.since)


@dataclass(frozen=True)
class Promotion:
    shard: int
    old: str | None
    new: str
    reason: str


def failure_reason(owner: str | None, view: ClusterView) -> str | None:
    """Why the shard's owner must be replaced, or None if it must not."""
    if owner is None:
        return "no primary coreapp"
    st = view.coreapps.get(owner)
    if st is None:
        return f"{owner} is not a registered coreapp"
    if min(st.liveness_age, view.db_reachable_for) > view.stale_after:
        return (f"database liveness of {owner} is {st.liveness_age:.1f}s old "
                f"(> {view.stale_after:g}s)")
    if view.live_masters >= 2 and st.unhealthy_here and st.unhealthy_elsewhere >= 1:
        return (f"{owner} missed heartbeats from the primary master and "
                f"{st.unhealthy_elsewhere} secondary master(s)")
    return None


def plan_promotions(view: ClusterView) -> list[Promotion]:
    owners = {o for o in view.shards.values() if o is not None}
    candidates = sorted(
        (c for c in view.coreapps.values()
         if c.name not in owners
         and c.liveness_age <= view.stale_after
         and c.answering_here
         and not c.unhealthy_here),
        key=lambda c: c.name,
    )
    plan: list[Promotion] = []
    for shard in sorted(view.shards):
        owner = view.shards[shard]
        reason = failure_reason(owner, view)
        if reason is None or not candidates:
            continue
        new = candidates.pop(0)
        plan.append(Promotion(shard, owner, new.name, reason))
    return plan


@dataclass(frozen=True)
class NodeLiveness:
    """A ``nodes`` row as the monitor needs it: name, role, database-clock age."""

    name: str
    role: str
    age: float


def live_master_window(heartbeat_interval: float) -> float:
    """Masters refresh their row every h/2; one counts as live within 3·h + 1 s."""
    return 3 * heartbeat_interval + 1.0


def build_view(*, shards: Mapping[int, str | None], nodes: Iterable[NodeLiveness],
               reports: Mapping[str, int], tracker: HeartbeatTracker, now: float,
               heartbeat_interval: float, unhealthy_interval: float, stale_after: float,
               db_reachable_for: float = math.inf,
               break_promote_on_primary_miss: bool = False) -> ClusterView:
    """Assemble the primary master's view from what it read and what it saw itself.

    ``reports``: coreapp -> number of *other* masters whose fresh view calls it unhealthy.
    ``break_promote_on_primary_miss`` deliberately breaks the two-witness rule (mutation
    tests only).
    """
    window = live_master_window(heartbeat_interval)
    nodes = list(nodes)
    live_masters = sum(1 for n in nodes if n.role == "master" and n.age <= window)
    states: dict[str, CoreappState] = {}
    for n in nodes:
        if n.role != "coreapp":
            continue
        here = tracker.unhealthy(n.name, now, unhealthy_interval)
        elsewhere = reports.get(n.name, 0)
        if break_promote_on_primary_miss and here:
            elsewhere = max(elsewhere, 1)
        states[n.name] = CoreappState(n.name, n.age, here,
                                      tracker.answering(n.name, now, heartbeat_interval),
                                      elsewhere)
    return ClusterView(dict(shards), states, live_masters, stale_after, db_reachable_for)
