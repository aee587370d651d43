"""Timing presets of a cluster: the settings every bound is computed from.

``ci``: heartbeat 1 s, unhealthy 3 s, database monitoring scaled to 3 s / 6 s, lease 5 s,
gateway keepalive 2 s — for a 2-core CI machine. ``documented``: the real client's defaults
(5 s / 30 s, 60 s / 120 s), lease 10 s, keepalive 10 s. Shared by the Docker harness
(``harness.spec``) and the simulator (``multiconnect.sim``), so both judge the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from .settings import ownership_ttl

#: Seconds added to every protocol worst case (``harness.judge.bounds.MARGIN``, the simulator's
#: bounds): request latency — the harness's 1 s client timeout (a request answered later
#: counts as an outage of that length) plus one scheduling tick of the sender.
BOUND_MARGIN = 1.5

#: The documented database monitoring (seconds), before ``WA_DB_MONITOR_SCALE``.
LIVENESS_INTERVAL = 60.0
STALE_AFTER = 120.0


@dataclass(frozen=True)
class Timing:
    heartbeat_interval: int = 1
    unhealthy_interval: int = 3
    db_monitor_scale: float = 0.05
    lease_ttl: float = 5.0
    gateway_ping_timeout: float = 2.0

    @property
    def liveness_interval(self) -> float:
        return LIVENESS_INTERVAL * self.db_monitor_scale

    @property
    def stale_after(self) -> float:
        return STALE_AFTER * self.db_monitor_scale

    @property
    def ownership_ttl(self) -> float:
        return ownership_ttl(self.heartbeat_interval)


TIMINGS = {
    "ci": Timing(),
    "documented": Timing(heartbeat_interval=5, unhealthy_interval=30, db_monitor_scale=1.0,
                         lease_ttl=10.0, gateway_ping_timeout=10.0),
}
