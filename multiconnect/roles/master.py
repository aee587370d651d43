"""The master role: competes for the lease; the primary promotes coreapps.

Loops: ``lease_loop`` (acquire/renew), ``heartbeat_loop`` (every master → every coreapp each
heartbeat_interval), ``monitor_loop`` (publish this master's view and liveness; the primary
also maintains the schema, reads the shard map and promotes). HTTP: ``status``,
``settings_get``, ``settings_patch``, ``shards_post`` return ``(status, body)``. Decisions
are the cores' (:mod:`multiconnect.core`); the driver supplies the waits (see
:mod:`multiconnect.roles`).
"""

from __future__ import annotations

from typing import Any

from .. import api_errors as E
from .. import schema
from ..config import NodeConfig
from ..core.lease import LeaseCore, LeaseDecision
from ..core.monitor import (
    DatabaseContact,
    HeartbeatTracker,
    NodeLiveness,
    build_view,
    live_master_window,
    plan_promotions,
)
from ..core.ownership import FENCE_MARGIN
from ..db import DatabaseError, NodeRow, NotPrimary
from ..settings import Settings, SettingsError, apply_patch
from ..sharding import ALLOWED_SHARD_COUNTS
from .driver import ERROR, INFO, WARNING, Driver, Gen, Reply, envelope


class MasterRole(Driver):
    """One master's state and loops. The driver sets ``db_lease``, ``db_mon``, ``db_api``
    (its database connections, passed back to :meth:`db`) and provides :class:`Driver`'s
    methods and :meth:`heartbeat`."""

    def __init__(self, cfg: NodeConfig, now: float) -> None:
        self.cfg = cfg
        self.lease = LeaseCore(cfg.name, cfg.lease_ttl)
        self.tracker = HeartbeatTracker(started_at=now)
        self.db_contact = DatabaseContact()
        self.settings = Settings(cfg.heartbeat_interval, cfg.unhealthy_interval)
        self.settings_version = 0
        self.schema_target = cfg.schema_version or schema.LATEST
        self.schema_ready = False
        self.coreapps: dict[str, NodeRow] = {}
        self.inflight: dict[str, int] = {}
        self.was_primary = False
        self.db_lease: Any = None
        self.db_mon: Any = None
        self.db_api: Any = None

    # ------------------------------------------------------------------ driver
    def heartbeat(self, name: str, row: NodeRow, check: bool, timeout: float) -> Gen:
        """GET the coreapp's ``/v1/heartbeat``: its HTTP status, or None (no answer)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ hooks
    def on_lease_granted(self, decision: LeaseDecision, epoch: int) -> None:
        """The database granted the lease (ACQUIRE or RENEW)."""

    def on_acting_primary(self) -> None:
        """About to do the primary's duties under ``lease.epoch``."""

    def on_views_published(self, views: dict[str, bool]) -> None:
        """About to publish this master's view of every coreapp."""

    def is_primary(self) -> bool:
        return self.lease.is_primary(self.mono())

    # ------------------------------------------------------------------ lease
    def lease_loop(self) -> Gen:
        while True:
            try:
                yield from self.db(self.db_lease, "ensure_lease_table")
                break
            except DatabaseError as e:
                self.log(INFO, "waiting for the database: %s", e)
                yield from self.sleep(0.5)
        while True:
            now = self.mono()
            if self.lease.due(now):
                sent = now
                my_epoch = self.lease.begin(now)
                try:
                    decision, holder, epoch = yield from self.db(
                        self.db_lease, "lease_attempt", self.cfg.name, my_epoch,
                        self.cfg.lease_ttl)
                except DatabaseError as e:
                    self.lease.failed(self.mono())
                    self.log(WARNING, "lease attempt failed: %s", e)
                else:
                    now = self.mono()
                    if decision is LeaseDecision.BUSY:
                        self.lease.busy(now, holder)
                    else:
                        self.lease.granted(sent, now, epoch)
                        self.on_lease_granted(decision, epoch)
                        if decision is LeaseDecision.ACQUIRE:
                            self.log(INFO, "became primary master (epoch %d)", epoch)
            self._note_role_change()
            now = self.mono()
            wake = min(self.lease.next_attempt, self.lease.valid_until
                       if self.lease.is_primary(now) else self.lease.next_attempt)
            # nothing else moves these deadlines (_lose_lease notes the role change
            # itself), so the loop sleeps until the next one
            yield from self.sleep(max(wake - now, 0.02))

    def _lose_lease(self) -> None:
        """A fenced write found the lease gone, or the master stops: secondary at once."""
        self.lease.lost()
        self._note_role_change()

    def _note_role_change(self) -> None:
        primary = self.lease.is_primary(self.mono())
        if primary != self.was_primary:
            self.log(INFO, "role: %s", "primary_master" if primary else "secondary_master")
            self.was_primary = primary
            if not primary:
                self.schema_ready = False

    # ------------------------------------------------------------------ heartbeats
    def heartbeat_loop(self) -> Gen:
        """Every heartbeat_interval, one heartbeat to every coreapp. A slow answer is still
        an answer: each heartbeat may take up to unhealthy_interval, so several can be in
        flight (at most unhealthy/heartbeat + 1 per coreapp)."""
        while True:
            period = self.settings.heartbeat_interval
            cap = self.settings.unhealthy_interval // period + 1
            for name, row in list(self.coreapps.items()):
                if self.inflight.get(name, 0) < cap:
                    self.inflight[name] = self.inflight.get(name, 0) + 1
                    self.spawn(self._heartbeat(name, row), f"heartbeat {name}")
            yield from self.sleep(period)

    def _heartbeat(self, name: str, row: NodeRow, check: bool = False) -> Gen:
        """One heartbeat; ``check`` asks the coreapp to re-read the shard map at once."""
        sent = self.mono()
        try:
            status = yield from self.heartbeat(name, row, check,
                                               float(self.settings.unhealthy_interval))
            if status == 200:
                self.tracker.answered(name, sent)
        finally:
            if not check:
                self.inflight[name] = max(0, self.inflight.get(name, 1) - 1)

    # ------------------------------------------------------------------ monitor
    def monitor_loop(self) -> Gen:
        registered = False
        while True:
            period = max(0.25, self.settings.heartbeat_interval / 2)
            began = self.mono()
            try:
                if not registered:
                    version = yield from self.db(self.db_mon, "schema_version")
                    if version >= 1:
                        cfg = self.cfg
                        yield from self.db(self.db_mon, "register_node", cfg.name, "master",
                                           cfg.advertise_address, cfg.heartbeat_address,
                                           cfg.container_id)
                        registered = True
                if self.lease.is_primary(self.mono()):
                    self.on_acting_primary()
                    yield from self._primary_duties()
                if registered:
                    yield from self._observe_and_publish()
                self.db_contact.ok(began)
            except NotPrimary as e:
                self.log(WARNING, "fenced write refused: %s", e)
                self._lose_lease()
            except DatabaseError as e:
                self.db_contact.failed()
                self.log(WARNING, "monitor: database error: %s", e)
            except Exception:
                self.unexpected("monitor loop error")
            yield from self.sleep(period)

    def _observe_and_publish(self) -> Gen:
        nodes = yield from self.db(self.db_mon, "list_nodes")
        now = self.mono()
        self.coreapps = {n.name: n for n in nodes if n.role == "coreapp"}
        for name in self.coreapps:
            self.tracker.seen(name, now)
        self.tracker.forget_except(self.coreapps)
        u = self.settings.unhealthy_interval
        views = {name: self.tracker.unhealthy(name, now, u) for name in self.coreapps}
        self.on_views_published(views)
        yield from self.db(self.db_mon, "publish_views", self.cfg.name, views)
        settings, version = yield from self.db(self.db_mon, "read_settings")
        if version != self.settings_version:
            if self.settings_version:
                self.log(INFO, "settings version %d: %s", version, settings)
            self.settings, self.settings_version = settings, version

    def _primary_duties(self) -> Gen:
        epoch = self.lease.epoch
        assert epoch is not None
        if not self.schema_ready:
            version = yield from self.db(self.db_mon, "schema_version")
            if version > self.schema_target:
                self.log(ERROR, "database schema %d is newer than this master's %d: refusing "
                         "to downgrade; not acting as primary", version, self.schema_target)
                return
            if version < self.schema_target:
                self.log(INFO, "upgrading schema %d -> %d", version, self.schema_target)
            yield from self.db(self.db_mon, "upgrade_schema", self.cfg.name, epoch,
                               self.schema_target, self.settings, 1)
            self.schema_ready = True
        yield from self._promote_if_needed(epoch)

    def _promote_if_needed(self, epoch: int) -> Gen:
        cfg = self.cfg
        now = self.mono()
        h = self.settings.heartbeat_interval
        shards = yield from self.db(self.db_mon, "read_shard_map")
        nodes = yield from self.db(self.db_mon, "list_nodes")
        reports = yield from self.db(self.db_mon, "unhealthy_reports", cfg.name,
                                     live_master_window(h))
        view = build_view(
            shards={s.shard: s.hostname for s in shards},
            nodes=[NodeLiveness(n.name, n.role, n.age) for n in nodes], reports=reports,
            tracker=self.tracker, now=now, heartbeat_interval=h,
            unhealthy_interval=self.settings.unhealthy_interval,
            db_reachable_for=self.db_contact.reachable_for(now),
            stale_after=cfg.stale_after,
            break_promote_on_primary_miss=cfg.test_break == "promote-on-primary-miss")
        fence_extra = cfg.gateway_ping_timeout + FENCE_MARGIN
        for p in plan_promotions(view):
            if not self.lease.is_primary(self.mono()):
                return
            new_epoch = yield from self.db(self.db_mon, "promote", cfg.name, epoch, p.shard,
                                           p.old, p.new, fence_extra)
            self.log(INFO, "promoted %s for shard %d (epoch %d), replacing %s: %s",
                     p.new, p.shard, new_epoch, p.old, p.reason)
            for name in (p.new, p.old):
                row = self.coreapps.get(name or "")
                if row is not None:
                    self.spawn(self._heartbeat(row.name, row, check=True), "notify")

    def release(self) -> Gen:
        """On a graceful stop: no longer primary (status included), then give the lease up
        so a secondary takes over at its next attempt."""
        epoch = self.lease.epoch
        if epoch is None or not self.lease.is_primary(self.mono()):
            return
        self._lose_lease()
        try:
            if (yield from self.db(self.db_api, "release_lease", self.cfg.name, epoch)):
                self.log(INFO, "released the master lease (epoch %d)", epoch)
        except DatabaseError:
            pass

    # ------------------------------------------------------------------ HTTP
    def status(self) -> dict[str, Any]:
        now = self.mono()
        primary = self.lease.is_primary(now)
        return {
            "node": self.cfg.name,
            "role": "primary_master" if primary else "secondary_master",
            "gateway_status": "connected" if primary else "disconnected",
            "lease_epoch": self.lease.epoch,
            "lease_valid_for": round(self.lease.valid_until - now, 3) if primary else 0.0,
            "lease_holder": self.lease.holder_seen,
            "lease_attempt_for": round(now - self.lease.attempt_began, 3)
            if self.lease.in_flight else None,
            "settings": self.settings.to_api(),
            "wall_time": self.wall(),
        }

    def settings_get(self) -> Reply:
        return 200, {"settings": {"application": self.settings.to_api()}}

    def _fenced_write(self, fn: str, *args: Any) -> Gen:
        """A write only the primary may make (``fn(cur, me, epoch, *args)``): its result, or
        the refusal as ``(status, body)`` in an ``_Refused``."""
        epoch = self.lease.epoch
        if epoch is None or not self.lease.is_primary(self.mono()):
            raise _Refused(envelope(503, E.NOT_PRIMARY_MASTER, f"{self.cfg.name} is secondary",
                                    title="Not Primary Master"))
        try:
            return (yield from self.db(self.db_api, fn, self.cfg.name, epoch, *args))
        except NotPrimary as e:
            self._lose_lease()
            raise _Refused(envelope(503, E.NOT_PRIMARY_MASTER, str(e),
                                    title="Not Primary Master")) from None
        except DatabaseError as e:
            raise _Refused(envelope(503, E.DATABASE_ERROR, str(e),
                                    title="Database error occurred")) from None

    def settings_patch(self, body: Any) -> Gen:
        """PATCH /internal/settings with the parsed JSON ``body``."""
        try:
            new = apply_patch(self.settings, body)
        except SettingsError as e:
            return envelope(400, E.INVALID_PARAMETER, str(e))
        try:
            version = yield from self._fenced_write("write_settings", new)
        except _Refused as r:
            return r.reply
        self.settings, self.settings_version = new, version
        self.log(INFO, "settings changed (version %d): %s", version, new)
        return 200, {"meta": {"settings_version": version}}

    def shards_post(self, body: Any) -> Gen:
        """POST /internal/shards with the parsed JSON ``body`` ``{"shards": N}``."""
        try:
            shards = int(body["shards"])
        except (KeyError, TypeError, ValueError):
            return envelope(400, E.INVALID_PARAMETER, 'body must be {"shards": N}')
        if shards not in ALLOWED_SHARD_COUNTS:
            return envelope(400, E.INVALID_PARAMETER,
                            f"shards must be one of {ALLOWED_SHARD_COUNTS}")
        try:
            yield from self._fenced_write("set_shard_count", shards)
        except _Refused as r:
            return r.reply
        self.log(INFO, "shard count set to %d", shards)
        return 201, {"account": {"shards": shards}}


class _Refused(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(reply[1]["errors"][0]["details"])
        self.reply = reply
