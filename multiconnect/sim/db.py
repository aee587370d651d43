"""A Python model of exactly the transactions in :mod:`multiconnect.db`.

Model. The database clock is virtual time (``NOW(6)`` = ``world.now``); every call runs
atomically at the instant its request arrives (the row locks of the real transactions make
them serialisable, and nothing else runs in between here). Each method mirrors the SQL of the
function of the same name in ``multiconnect/db.py`` and returns the same types
(``NodeRow``, ``ShardRow``, ``OwnedRow``, ``(LeaseDecision, holder, epoch)``); ``NotPrimary``
is raised where the real fenced writes raise it. The fenced decisions (lease renew, acquire
and release, promotion, confirmation, settings write) are not rewritten here: the model
evaluates the very definitions the SQL is rendered from (:mod:`multiconnect.decisions`) on
its rows, and reports a refused lease attempt with :func:`multiconnect.core.lease.refused`,
as the SQL does. Reads (nodes, views, the shard map) are written here.
``tests/test_db_model_sql.py`` holds the model to the SQL (seeded row states through both,
the SQL on a real MariaDB).

Beyond the SQL, the model keeps ground truth for the invariant checker: how long each lease
epoch stayed valid and the last ``valid_until`` each ownership epoch reached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .. import decisions, schema
from ..core.lease import LeaseDecision, LeaseRow, refused
from ..core.ownership import OwnedRow
from ..db import NodeRow, NotPrimary, ShardRow
from ..settings import Settings
from ..sharding import shard_bounds


@dataclass
class LeaseState:
    """The ``master_lease`` row (attributes named as its columns)."""

    holder: str | None = None
    epoch: int = 0
    expires_at: float = -math.inf
    id: int = 1


@dataclass
class ShardState:
    """A ``shard_map`` row (the columns the decisions read and write)."""

    shard: int
    lower: int
    upper: int
    hostname: str | None
    epoch: int
    valid_until: float | None = None
    fence_until: float | None = None
    updated_at: float = 0.0
    confirm_token: str | None = None


@dataclass
class SettingsRow:
    name: str
    value: str = ""


class SimDatabase:
    """The tables (docs/contracts.md) and the transactions on them."""

    def __init__(self, world, shards: int, settings: Settings,
                 stale_after: float = math.inf) -> None:
        self.world = world
        self.stale_after = stale_after
        self.lease = LeaseState()
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

    @property
    def lease_holder(self) -> str | None:
        return self.lease.holder

    @property
    def lease_epoch(self) -> int:
        return self.lease.epoch

    def _held(self, me: str, epoch: int) -> bool:
        return decisions.LEASE_HELD.ev({"l": self.lease}, self.now,
                                       {"me": me, "epoch": epoch}) is True

    def _lock_lease(self, me: str, epoch: int) -> None:
        if not self._held(me, epoch):
            live = self.lease.expires_at > self.now
            raise NotPrimary(f"lease is held by {self.lease.holder} epoch {self.lease.epoch} "
                             f"(live={live})")

    def upgrade_schema(self, me: str, epoch: int, target: int, settings: Settings,
                       shards: int = 1) -> int:
        self._lock_lease(me, epoch)
        return schema.LATEST  # created at world start (bootstrap is not simulated)

    # -- lease ---------------------------------------------------------------------------
    def lease_attempt(self, me: str, my_epoch: int | None, ttl: float):
        now, lease = self.now, self.lease
        args = {"me": me, "epoch": my_epoch, "ttl": ttl}
        for d, stmt in ((LeaseDecision.RENEW, decisions.LEASE_RENEW),
                        (LeaseDecision.ACQUIRE, decisions.LEASE_ACQUIRE)):
            if (d is LeaseDecision.ACQUIRE or my_epoch is not None) and \
                    stmt.matches(lease, lease, now, **args):
                stmt.apply(lease, lease, now, **args)
                self.lease_valid[lease.epoch] = (me, lease.expires_at)
                return d, me, lease.epoch
        return refused(LeaseRow(lease.holder, lease.epoch, lease.expires_at > now), me,
                       my_epoch)

    def release_lease(self, me: str, epoch: int) -> bool:
        lease = self.lease
        if not decisions.LEASE_RELEASE.matches(lease, lease, self.now, me=me, epoch=epoch):
            return False
        decisions.LEASE_RELEASE.apply(lease, lease, self.now, me=me, epoch=epoch)
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
        cutoff = self.now - decisions.micros(fresh_within) / 1_000_000
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
        if any(r.hostname == new for r in self.shard_rows.values()):
            raise NotPrimary(f"{new} already owns a shard")
        new_epoch = max((r.epoch for r in self.shard_rows.values()), default=0) + 1
        now = self.now
        row = self.shard_rows.get(shard)
        args = {"me": me, "epoch": lease_epoch, "shard": shard, "old": old, "new": new,
                "new_epoch": new_epoch, "fence_extra": fence_extra}
        if row is None or not decisions.PROMOTE.matches(row, self.lease, now, **args):
            raise NotPrimary(f"promotion of {new} for shard {shard} refused: the lease is no "
                             f"longer ours (epoch {lease_epoch}) or the shard changed")
        decisions.PROMOTE.apply(row, self.lease, now, **args)
        self.promotions.append((now, shard, old, new, new_epoch, me))
        if self.on_promote is not None:
            self.on_promote(shard, old, new, new_epoch, me, lease_epoch)
        return new_epoch

    def confirm_ownership(self, me: str, ttl: float) -> OwnedRow | None:
        now, token = self.now, "sim"
        confirmed = []
        mine = [r for _, r in sorted(self.shard_rows.items()) if r.hostname == me]  # by_host
        for r in mine:
            if decisions.CONFIRM.matches(r, self.lease, now, me=me, ttl=ttl, token=token):
                decisions.CONFIRM.apply(r, self.lease, now, me=me, ttl=ttl, token=token)
                self.own_valid[(me, r.epoch)] = r.valid_until
                confirmed.append(r)
        if not mine:
            return None
        return OwnedRow(mine[0].shard, mine[0].epoch, fenced=mine[0] not in confirmed)

    # -- settings ----------------------------------------------------------------------------
    def read_settings(self) -> tuple[Settings, int]:
        return self.settings, self.settings_version

    def write_settings(self, me: str, lease_epoch: int, settings: Settings) -> int:
        if not decisions.WRITE_SETTINGS.matches(SettingsRow("application"), self.lease,
                                                self.now, me=me, epoch=lease_epoch,
                                                name="application", value=""):
            raise NotPrimary(f"settings write refused: the lease is no longer ours "
                             f"(epoch {lease_epoch})")
        self.settings = settings
        self.settings_version += 1
        self.widest_h = max(self.widest_h, settings.heartbeat_interval)
        self.widest_u = max(self.widest_u, settings.unhealthy_interval)
        return self.settings_version

    # -- helpers for the checker and the workload ----------------------------------------------
    def owner(self, shard: int) -> str | None:
        return self.shard_rows[shard].hostname
