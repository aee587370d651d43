"""Cluster reuse: the next test of the same topology gets the last passing test's cluster.

Model. A pool holds at most one idle cluster. ``acquire(spec)`` hands it out only if its
topology equals ``spec`` *and* it passes the reuse gate (:meth:`Cluster.check_reusable`: every
container running and unpaused, links reset, every node answering health with one primary
master and one connected coreapp per shard, the application settings as at bring-up, a
message to every shard delivered); otherwise the idle cluster is removed and a new one
started. ``release(cluster, reusable)`` keeps the cluster only when its test passed and every
fault was healed; anything else is removed at once. ``close()`` removes what is left.

A reused cluster starts each test's gateway recording at the oldest connection still open
(:func:`gateway_cursor`), so the safety checkers see every connection that is open during the
test, and collects failure logs only from the test's own start.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

_ENDS = ("disconnect", "kick", "timeout")


def gateway_cursor(events: Iterable[Mapping[str, Any]], end: int) -> int:
    """Where a new test's gateway recording starts: the ``seq`` of the oldest ``connect``
    whose connection has not ended (``disconnect``, ``kick`` or ``timeout``), else ``end``
    (the log's length: nothing before it matters)."""
    open_at: dict[Any, int] = {}
    for ev in events:
        kind, conn = ev.get("type"), ev.get("conn")
        if kind == "connect":
            open_at[conn] = int(ev["seq"])
        elif kind in _ENDS:
            open_at.pop(conn, None)
    return min(open_at.values(), default=end)


class ClusterPool:
    """At most one idle cluster, kept for the next test of the same topology."""

    def __init__(self, factory: Callable[[Any], Any], *, enabled: bool = True,
                 progress: Callable[[str], None] = print) -> None:
        self.factory = factory
        self.enabled = enabled
        self.progress = progress
        self.idle: Any | None = None
        self.reused = 0
        self.started = 0

    def acquire(self, spec: Any) -> Any:
        """A ready cluster of topology ``spec``: the idle one if it passes the gate, else a
        new one (started by ``factory(spec)``)."""
        idle, self.idle = self.idle, None
        if idle is not None:
            if idle.spec.to_dict() == spec.to_dict():
                t0 = time.monotonic()
                reason = _gate(idle)
                if reason is None:
                    self.reused += 1
                    idle.uses += 1
                    self.progress(f"[cluster] {idle.run_id}: reused for test {idle.uses} "
                                  f"(gate passed in {time.monotonic() - t0:.1f}s)")
                    return idle
                self.progress(f"[cluster] {idle.run_id}: not reused: {reason}")
            idle.stop()
        self.started += 1
        return self.factory(spec)

    def release(self, cluster: Any, reusable: bool) -> None:
        """Keep ``cluster`` for the next test if reuse is on and it is ``reusable``."""
        if self.enabled and reusable and getattr(cluster, "reusable", True) \
                and getattr(cluster, "started", False):
            if self.idle is not None and self.idle is not cluster:
                self.idle.stop()
            self.idle = cluster
        else:
            cluster.stop()

    def close(self) -> None:
        idle, self.idle = self.idle, None
        if idle is not None:
            idle.stop()


def _gate(cluster: Any) -> str | None:
    try:
        return cluster.check_reusable()
    except Exception as e:  # noqa: BLE001 - any failure means: start a fresh cluster
        return f"{type(e).__name__}: {e}"
