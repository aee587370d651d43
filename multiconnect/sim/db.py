"""A Python model of exactly the transactions in :mod:`multiconnect.db`.

Model. The database clock is virtual time (``NOW(6)`` = ``world.now``); every call runs
atomically at the instant its request arrives (the row locks of the real transactions make
them serialisable, and nothing else runs in between here). Each method mirrors the SQL of the
function of the same name in ``multiconnect/db.py`` and returns the same types
(``NodeRow``, ``ShardRow``, ``OwnedRow``, ``(LeaseDecision, holder, epoch)``); ``NotPrimary``
is raised where the real fenced writes raise it. The lease decision itself is the real
:func:`multiconnect.core.lease.decide`. ``tests/test_db_model_sql.py`` holds the model to
the SQL (seeded row states through both, the SQL on a real MariaDB).

Beyond the SQL, the model keeps ground truth for the invariant checker: how long each lease
epoch stayed valid and the last ``valid_until`` each ownership epoch reached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .. import schema
from ..core.lease import LeaseDecision, LeaseRow, decide
from ..core.ownership import OwnedRow
from ..db import NodeRow, NotPrimary, ShardRow
from ..settings import Settings
from ..sharding import shard_bounds


@dataclass
class ShardState:
    shard: int
    lower: int
    upper: int
    hostname: str | None
    epoch: int
    valid_until: float | None = None
    fence_until: float | None = None
    updated_at: float = 0.0


def _micros(seconds: float) -> float:
    """``INTERVAL int(x * 1e6) MICROSECOND`` as the real queries compute it."""
    return int(seconds * 1_000_000) / 1_000_000


class SimDatabase:
    """The tables (docs/contracts.md) and the transactions on them."""

    def __init__(self, world, shards: int, settings: Settings,
                 stale_after: float = math.inf) -> None:
        self.world = world
        self.stale_after = stale_after
        self.lease_holder: str | None = None
        self.lease_epoch = 0
        self.lease_expires = -math.inf
        self.shard_rows: dict[int, ShardState] = {}
        for s in range(shards):
            lo, hi = shard_bounds(s, shards)
            self.shard_rows[s] = ShardState(s, lo, hi, None, 1)
        self.nodes: dict[str, list] = {}            # name -> [role, last_seen, started_at]
        self.views: dict[tuple[str, str], tuple[bool, float]] = {}
        self.settings = settings
        self.settings_version = 1
        # the largest settings ever written (the checker's and the bounds' windows)
        self.widest_h = settings.heartbeat_interval
        self.widest_u = settings.unhealthy_interval
        # ground truth for the checker
        self.lease_valid: dict[int, tuple[str, float]] = {}      # epoch -> (holder, expires)
        self.own_valid: dict[tuple[str, int], float] = {}        # (host, epoch) -> valid_until
        self.stale_seen: dict[str, float] = {}   # name -> last time its row was seen stale
        self.promotions: list[tuple[float, int, str | None, str, int, str]] = []
        self.on_promote = None

    @property
    def now(self) -> float:
        return self.world.now

    # -- schema --------------------------------------------------------------------------
    def ensure_lease_table(self) -> None:
        return None

    def schema_version(self) -> int:
        return schema.LATEST

    def _lock_lease(self, me: str, epoch: int) -> None:
        live = self.lease_expires > self.now
        if self.lease_holder != me or self.lease_epoch != epoch or not live:
            raise NotPrimary(f"lease is held by {self.lease_holder} epoch {self.lease_epoch} "
                             f"(live={live})")

    def upgrade_schema(self, me: str, epoch: int, target: int, settings: Settings,
                       shards: int = 1) -> int:
        self._lock_lease(me, epoch)
        return schema.LATEST  # created at world start (bootstrap is not simulated)

    # -- lease ---------------------------------------------------------------------------
    def lease_attempt(self, me: str, my_epoch: int | None, ttl: float):
        row = LeaseRow(self.lease_holder, self.lease_epoch, self.lease_expires > self.now)
        d = decide(row, me, my_epoch)
        if d is LeaseDecision.BUSY:
            return d, self.lease_holder, row.epoch
        self.lease_expires = self.now + _micros(ttl)
        if d is LeaseDecision.ACQUIRE:
            self.lease_holder = me
            self.lease_epoch += 1
        self.lease_valid[self.lease_epoch] = (me, self.lease_expires)
        return d, me, self.lease_epoch

    def release_lease(self, me: str, epoch: int) -> bool:
        if self.lease_holder != me or self.lease_epoch != epoch:
            return False
        self.lease_holder, self.lease_expires = None, self.now
        return True

    # -- nodes ---------------------------------------------------------------------------
    def register_node(self, name: str, role: str, address: str = "", heartbeat_address: str = "",
                      container_id: str = "") -> None:
        old = self.nodes.get(name)
        if old is not None and self.now - old[1] > self.stale_after:
            self.stale_seen[name] = self.now
        self.nodes[name] = [role, self.now, self.now]

    def touch_node(self, name: str) -> None:
        row = self.nodes.get(name)
        if row is not None:
            if self.now - row[1] > self.stale_after:
                self.stale_seen[name] = self.now
            row[1] = self.now

    def list_nodes(self) -> list[NodeRow]:
        now = self.now
        return [NodeRow(name, r[0], name, name, "", now - r[1])
                for name, r in sorted(self.nodes.items())]

    def publish_views(self, master: str, views: dict[str, bool]) -> None:
        for coreapp, unhealthy in views.items():
            self.views[(master, coreapp)] = (bool(unhealthy), self.now)
        self.touch_node(master)

    def unhealthy_reports(self, me: str, fresh_within: float) -> dict[str, int]:
        cutoff = self.now - _micros(fresh_within)
        out: dict[str, int] = {}
        for (master, coreapp), (unhealthy, updated) in sorted(self.views.items()):
            if master != me and unhealthy and updated > cutoff:
                out[coreapp] = out.get(coreapp, 0) + 1
        return out

    # -- shard map -------------------------------------------------------------------------
    def read_shard_map(self) -> list[ShardRow]:
        now = self.now
        return [ShardRow(r.shard, r.lower, r.upper, r.hostname, r.epoch,
                         r.fence_until is not None and r.fence_until > now)
                for _, r in sorted(self.shard_rows.items())]

    def promote(self, me: str, lease_epoch: int, shard: int, old: str | None, new: str,
                fence_extra: float) -> int:
        self._lock_lease(me, lease_epoch)
        row = self.shard_rows.get(shard)
        if row is None or row.hostname != old:
            raise NotPrimary(f"shard {shard} changed under us (now {row and row.hostname})")
        if any(r.hostname == new for r in self.shard_rows.values()):
            raise NotPrimary(f"{new} already owns a shard")
        new_epoch = max(r.epoch for r in self.shard_rows.values()) + 1
        now = self.now
        if row.valid_until is None:
            row.fence_until = now
        else:
            row.fence_until = max(now, row.valid_until + _micros(fence_extra))
        row.hostname, row.epoch, row.valid_until, row.updated_at = new, new_epoch, None, now
        self.promotions.append((now, shard, old, new, new_epoch, me))
        if self.on_promote is not None:
            self.on_promote(shard, old, new, new_epoch, me, lease_epoch)
        return new_epoch

    def confirm_ownership(self, me: str, ttl: float) -> OwnedRow | None:
        rows = [r for _, r in sorted(self.shard_rows.items()) if r.hostname == me]
        if not rows:
            return None
        r = rows[0]
        fenced = r.fence_until is not None and r.fence_until > self.now
        if not fenced:
            r.valid_until = self.now + _micros(ttl)
            self.own_valid[(me, r.epoch)] = r.valid_until
        return OwnedRow(r.shard, r.epoch, fenced)

    # -- settings ----------------------------------------------------------------------------
    def read_settings(self) -> tuple[Settings, int]:
        return self.settings, self.settings_version

    def write_settings(self, me: str, lease_epoch: int, settings: Settings) -> int:
        try:
            self._lock_lease(me, lease_epoch)
        except NotPrimary:
            raise NotPrimary(f"settings write refused: the lease is no longer ours "
                             f"(epoch {lease_epoch})") from None
        self.settings = settings
        self.settings_version += 1
        self.widest_h = max(self.widest_h, settings.heartbeat_interval)
        self.widest_u = max(self.widest_u, settings.unhealthy_interval)
        return self.settings_version

    # -- helpers for the checker and the workload ----------------------------------------------
    def owner(self, shard: int) -> str | None:
        return self.shard_rows[shard].hostname
