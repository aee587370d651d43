"""Invariants, checked as the simulation runs (the first violation stops the run).

Safety (every step that could break them):
- ``conflict``: the gateway saw a second connect for a shard while one was open (any kick) —
  unless it lies outside the model: a line of either connection was handled more than the
  fence margin after it was written (a stalled gateway, fencing.md A3) and the two are of
  different nodes, or the older is an attempt its node lost to a crash or to the network
  (not one it gave up). Those are counted in ``breaches`` and noted; the run goes on.
- ``lease-validity``: a master's local lease deadline (mapped to virtual time through its own
  clock) outlasts the database lease it was granted — fencing.md's A1 for masters.
- ``two-primaries`` / ``epoch-shared``: two masters believe they are primary at one instant,
  or two masters act as primary under one lease epoch.
- ``acts-invalid``: a coreapp pings or sends while its own core says it is not valid.
- ``acts-after-deadline``: a coreapp pings or sends after the ``valid_until`` the database
  holds for that ownership epoch (fencing.md rule 1: the local deadline ends first, given A1);
  the latest ping/send relative to ``valid_until`` is reported either way.
- ``no-self-fence``: after an ownership-loop step the coreapp still holds a gateway
  connection although its deadline passed or the row is gone (fencing.md rule 2).
- ``spurious-promotion``: the primary replaced a coreapp that was live in the database
  without any *other* master's own tracker having called it unhealthy within the freshness
  window (the documented two-witness rule).
- ``acked-lost``: a send was acknowledged but the gateway never delivered it.
- ``duplicate``: the gateway delivered one message id twice (the webapp retries only a send
  that was certainly not sent; docs/promises.md D2).
Liveness and bounds (``recovery``, ``failover-bound``) are judged by the runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core.monitor import live_master_window
from ..core.ownership import FENCE_MARGIN
from .nodes import DB_TIMEOUT
from .protocols import ClusterView

if TYPE_CHECKING:
    from .coreapp import CoreappProc
    from .gateway import GwConn
    from .master import MasterProc

EPS = 1e-9


@dataclass(frozen=True)
class Violation:
    time: float
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} at t={self.time:.6f}: {self.detail}"


class Checker:
    def __init__(self, cl: ClusterView) -> None:
        self.cl = cl
        self.world = cl.world
        self.violation: Violation | None = None
        self.acting: dict[int, str] = {}
        self.last_unhealthy: dict[tuple[str, str], float] = {}
        self.max_overshoot = float("-inf")
        self.outcomes = {"ok": 0, "not_sent": 0, "unknown": 0}
        self.conflicts = 0
        self.breaches: dict[str, int] = {}  # assumption -> events outside the model
        self.ignore: set[str] = set()   # kinds recorded in the trace but not stopping the run

    def fail(self, kind: str, detail: str) -> None:
        if kind in self.ignore:
            self.world.note("CHECKER", "(ignored) %s: %s", kind, detail)
            return
        if self.violation is None:
            self.violation = Violation(self.world.now, kind, detail)
            self.world.note("CHECKER", "VIOLATION %s: %s", kind, detail)
            self.world.stopped = True

    # -- masters ---------------------------------------------------------------------------
    def _primaries(self) -> list[str]:
        return [h.name for h in self.cl.masters
                if h.alive and h.proc is not None and h.proc.is_primary()]

    def lease_granted(self, m: MasterProc, decision: object, epoch: int) -> None:
        holder, expires = self.cl.db.lease_valid.get(epoch, (None, float("-inf")))
        if holder != m.name:
            self.fail("epoch-shared", f"{m.name} granted lease epoch {epoch} held by {holder}")
            return
        local_end = m.host.virtual_at(m.lease.valid_until)
        if local_end > expires + EPS:
            self.fail("lease-validity",
                      f"{m.name} may act as primary until t={local_end:.6f} (its clock rate "
                      f"{m.host.rate:.4f}) but the database lease epoch {epoch} expires at "
                      f"t={expires:.6f}")
            return
        self._unique_primary()

    def _unique_primary(self) -> None:
        primaries = self._primaries()
        if len(primaries) > 1:
            self.fail("two-primaries", f"masters {', '.join(primaries)} all believe they are "
                      "primary now")

    def acting_primary(self, m: MasterProc) -> None:
        epoch = m.lease.epoch
        assert epoch is not None
        first = self.acting.setdefault(epoch, m.name)
        if first != m.name:
            self.fail("epoch-shared", f"{m.name} acts as primary under lease epoch {epoch}, "
                      f"which {first} acted under")
            return
        self._unique_primary()

    def views_published(self, m: MasterProc, views: dict[str, bool]) -> None:
        now = self.world.now
        for name, unhealthy in views.items():
            if unhealthy:
                self.last_unhealthy[(m.name, name)] = now

    def on_promote(self, shard: int, old: str | None, new: str, epoch: int, me: str,
                   lease_epoch: int) -> None:
        cl = self.cl
        self.world.note("db", "promotion shard %d: %s -> %s (epoch %d) by %s (lease epoch %d)",
                        shard, old, new, epoch, me, lease_epoch)
        cl.promoted(shard, old, new)
        if old is None or old not in cl.db.nodes:
            return
        t = cl.cfg.timing
        age = self.world.now - cl.db.nodes[old][1]
        h = max(t.heartbeat_interval, cl.db.widest_h)  # settings faults may have raised it
        window = live_master_window(h) + 3 * DB_TIMEOUT + 1.0
        cutoff = self.world.now - window
        if age > t.stale_after or cl.db.stale_seen.get(old, -1e18) >= cutoff:
            return  # the database detector may replace it (its row was stale lately)
        witnesses = [m for (m, c), at in sorted(self.last_unhealthy.items())
                     if c == old and m != me and at >= cutoff]
        if not witnesses:
            self.fail("spurious-promotion",
                      f"{me} replaced {old} on shard {shard} (database liveness {age:.1f}s "
                      f"old, fresh) although no other master called {old} unhealthy in the "
                      f"last {window:g}s")

    # -- coreapps --------------------------------------------------------------------------
    def coreapp_acts(self, c: CoreappProc, op: str) -> None:
        if not c.own.valid(c.mono()):
            self.fail("acts-invalid", f"{c.name} sends {op} while its ownership is not valid")
            return
        conn = c.conn
        epoch = conn.epoch if conn is not None else c.own.epoch
        until = self.cl.db.own_valid.get((c.name, epoch))
        if until is None:
            self.fail("acts-after-deadline", f"{c.name} sends {op} for epoch {epoch}, which "
                      "the database never confirmed")
            return
        over = self.world.now - until
        if over > self.max_overshoot:
            self.max_overshoot = over
        if over > 0.0:
            self.fail("acts-after-deadline",
                      f"{c.name} sends {op} (epoch {epoch}) {over:.3f}s after the database's "
                      f"valid_until (clock rate {c.host.rate:.4f})")

    def after_ownership_step(self, c: CoreappProc) -> None:
        if c.host.proc is not c or not c.host.alive:
            return
        conn = c.conn
        if conn is not None and not conn.closed and not c.own.valid(c.mono()):
            self.fail("no-self-fence",
                      f"{c.name} still holds gateway conn {conn.conn_id} (epoch {conn.epoch}) "
                      f"after its ownership lapsed (core gateway state "
                      f"{c.own.gateway.value})")

    # -- gateway and workload --------------------------------------------------------------
    def on_conflict(self, old: GwConn, new: GwConn) -> None:
        self.conflicts += 1
        same = old.node == new.node
        detail = (f"shard {old.shard}: {new.node} (conn {new.id}, epoch {new.epoch}) "
                  f"connected while {old.node} (conn {old.id}, epoch {old.epoch}) was "
                  f"connected ({'same node' if same else 'two nodes'})")
        lag = max(old.lag, new.lag)
        lost = old.conn.c_end in ("crash", "eof")  # not given up by its node
        if lag > FENCE_MARGIN and (not same or lost):
            self.breaches["A3"] = self.breaches.get("A3", 0) + 1
            self.world.note("CHECKER", "outside the model (A3): %s; a line handled %.3fs after "
                            "it was written%s", detail, lag,
                            f", conn {old.id} lost by {old.node} ({old.conn.c_end})"
                            if same else "")
            return
        self.fail("conflict", detail)

    def on_deliver(self, c: GwConn, msg_id: str, first: int | None) -> None:
        if first is not None:
            self.fail("duplicate", f"message {msg_id} delivered on conn {c.id} ({c.node}) "
                      f"after conn {first} had delivered it")

    def send_done(self, msg_id: str, shard: int, outcome: str, owner: str | None) -> None:
        self.outcomes[outcome] += 1
        if outcome == "ok" and msg_id not in self.cl.gateway.delivered:
            self.fail("acked-lost", f"message {msg_id} (shard {shard}, via {owner}) was "
                      "acknowledged but never delivered")
