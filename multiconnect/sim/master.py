"""The master shell, simulated: the loops of ``multiconnect/master.py`` as generator tasks.

Every decision is made by the real cores (LeaseCore, HeartbeatTracker, build_view,
plan_promotions); this file only moves data between them, the simulated database and the
simulated heartbeat HTTP, line for line in the order ``master.py`` does it (``lease_loop``,
``heartbeat_loop``, ``monitor_loop`` with ``_primary_duties``, ``_promote_if_needed`` and
``_observe_and_publish``). Orchestration that had to be copied rather than called is listed
in docs/simulator.md.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from .. import schema
from ..core.lease import LeaseCore, LeaseDecision
from ..core.monitor import (
    DatabaseContact,
    HeartbeatTracker,
    NodeLiveness,
    build_view,
    live_master_window,
    plan_promotions,
)
from ..db import DatabaseError, NotPrimary
from ..settings import Settings
from .nodes import DbClient, HttpError, Proc, SimHost
from .world import SLEEP, SimTimeout

if TYPE_CHECKING:
    from .cluster import Cluster

FENCE_MARGIN = 0.5  # master.FENCE_MARGIN


class MasterProc(Proc):
    def __init__(self, host: SimHost, cl: Cluster) -> None:
        super().__init__(host)
        self.cl = cl
        cfg = cl.cfg
        now = self.mono()
        self.lease = LeaseCore(self.name, cfg.timing.lease_ttl)
        self.tracker = HeartbeatTracker(started_at=now)
        self.db_contact = DatabaseContact()
        self.settings = Settings(cfg.timing.heartbeat_interval, cfg.timing.unhealthy_interval)
        self.settings_version = 0
        self.schema_target = schema.LATEST
        self.schema_ready = False
        link = cl.net.link(self.name, "db")
        self.db_lease = DbClient(self, link, cl.db_server)
        self.db_mon = DbClient(self, link, cl.db_server)
        self.coreapps: dict[str, Any] = {}
        self.inflight: dict[str, int] = {}
        self.was_primary = False
        self.break_primary_miss = cfg.breaks == "promote-on-primary-miss"

    def start(self) -> None:
        self.spawn(self.lease_loop(), "lease")
        self.spawn(self.heartbeat_loop(), "heartbeat")
        self.spawn(self.monitor_loop(), "monitor")

    def is_primary(self) -> bool:
        return self.lease.is_primary(self.mono())

    # ------------------------------------------------------------------ lease
    def lease_loop(self) -> Generator[Any, Any, None]:
        while True:
            try:
                yield from self.db_lease.call("ensure_lease_table")
                break
            except DatabaseError:
                yield (SLEEP, 0.5)
        ttl = self.cl.cfg.timing.lease_ttl
        while True:
            now = self.mono()
            if self.lease.due(now):
                sent = now
                my_epoch = self.lease.begin(now)
                try:
                    decision, holder, epoch = yield from self.db_lease.call(
                        "lease_attempt", self.name, my_epoch, ttl)
                except DatabaseError:
                    self.lease.failed(self.mono())
                else:
                    now = self.mono()
                    if decision is LeaseDecision.BUSY:
                        self.lease.busy(now, holder)
                    else:
                        self.lease.granted(sent, now, epoch)
                        self.cl.check.lease_granted(self, decision, epoch)
            self._note_role_change()
            now = self.mono()
            wake = min(self.lease.next_attempt, self.lease.valid_until
                       if self.lease.is_primary(now) else self.lease.next_attempt)
            yield (SLEEP, min(max(wake - now, 0.02), 1.0))

    def _note_role_change(self) -> None:
        primary = self.lease.is_primary(self.mono())
        if primary != self.was_primary:
            self.world.note(self.name, "role: %s (lease epoch %s)",
                            "primary_master" if primary else "secondary_master",
                            self.lease.epoch)
            self.was_primary = primary
            if not primary:
                self.schema_ready = False

    # ------------------------------------------------------------------ heartbeats
    def heartbeat_loop(self) -> Generator[Any, Any, None]:
        while True:
            period = self.settings.heartbeat_interval
            cap = self.settings.unhealthy_interval // period + 1
            for name, row in list(self.coreapps.items()):
                if self.inflight.get(name, 0) < cap:
                    self.inflight[name] = self.inflight.get(name, 0) + 1
                    self.spawn(self._heartbeat(name, row), f"heartbeat {name}")
            yield (SLEEP, period)

    def _heartbeat(self, name: str, row: Any, check: bool = False) -> Generator[Any, Any, None]:
        sent = self.mono()
        target = self.cl.hosts[name]
        link = self.cl.net.link(self.name, name)
        try:
            status = yield from self.http(target, link, "heartbeat", (self.name, check),
                                          float(self.settings.unhealthy_interval))
            if status == 200:
                self.tracker.answered(name, sent)
        except (HttpError, SimTimeout):
            pass
        finally:
            if not check:
                self.inflight[name] = max(0, self.inflight.get(name, 1) - 1)

    # ------------------------------------------------------------------ monitor
    def monitor_loop(self) -> Generator[Any, Any, None]:
        registered = False
        while True:
            period = max(0.25, self.settings.heartbeat_interval / 2)
            began = self.mono()
            try:
                if not registered:
                    version = yield from self.db_mon.call("schema_version")
                    if version >= 1:
                        yield from self.db_mon.call("register_node", self.name, "master")
                        registered = True
                if self.lease.is_primary(self.mono()):
                    self.cl.check.acting_primary(self)
                    yield from self._primary_duties()
                if registered:
                    yield from self._observe_and_publish()
                self.db_contact.ok(began)
            except NotPrimary as e:
                self.world.note(self.name, "fenced write refused: %s", str(e))
                self.lease.lost()
            except DatabaseError:
                self.db_contact.failed()
            yield (SLEEP, period)

    def _observe_and_publish(self) -> Generator[Any, Any, None]:
        nodes = yield from self.db_mon.call("list_nodes")
        now = self.mono()
        self.coreapps = {n.name: n for n in nodes if n.role == "coreapp"}
        for name in self.coreapps:
            self.tracker.seen(name, now)
        self.tracker.forget_except(self.coreapps)
        u = self.settings.unhealthy_interval
        views = {name: self.tracker.unhealthy(name, now, u) for name in self.coreapps}
        self.cl.check.views_published(self, views)
        yield from self.db_mon.call("publish_views", self.name, views)
        settings, version = yield from self.db_mon.call("read_settings")
        if version != self.settings_version:
            self.settings, self.settings_version = settings, version

    def _primary_duties(self) -> Generator[Any, Any, None]:
        epoch = self.lease.epoch
        assert epoch is not None
        if not self.schema_ready:
            version = yield from self.db_mon.call("schema_version")
            if version > self.schema_target:
                return
            yield from self.db_mon.call("upgrade_schema", self.name, epoch, self.schema_target,
                                        self.settings, 1)
            self.schema_ready = True
        yield from self._promote_if_needed(epoch)

    def _promote_if_needed(self, epoch: int) -> Generator[Any, Any, None]:
        cfg = self.cl.cfg
        now = self.mono()
        h = self.settings.heartbeat_interval
        shards = yield from self.db_mon.call("read_shard_map")
        nodes = yield from self.db_mon.call("list_nodes")
        reports = yield from self.db_mon.call("unhealthy_reports", self.name,
                                              live_master_window(h))
        view = build_view(
            shards={s.shard: s.hostname for s in shards},
            nodes=[NodeLiveness(n.name, n.role, n.age) for n in nodes], reports=reports,
            tracker=self.tracker, now=now, heartbeat_interval=h,
            unhealthy_interval=self.settings.unhealthy_interval,
            db_reachable_for=self.db_contact.reachable_for(now),
            stale_after=cfg.timing.stale_after,
            break_promote_on_primary_miss=self.break_primary_miss)
        fence_extra = cfg.timing.gateway_ping_timeout + FENCE_MARGIN
        for p in plan_promotions(view):
            if not self.lease.is_primary(self.mono()):
                return
            new_epoch = yield from self.db_mon.call("promote", self.name, epoch, p.shard,
                                                    p.old, p.new, fence_extra)
            self.world.note(self.name, "promoted %s for shard %d (epoch %d), replacing %s: %s",
                            p.new, p.shard, new_epoch, p.old, p.reason)
            for name in (p.new, p.old):
                row = self.coreapps.get(name or "")
                if row is not None:
                    self.spawn(self._heartbeat(name, row, check=True), "notify")

    # ------------------------------------------------------------------ HTTP
    def on_http(self, handler: str, args: Any, ctx: tuple) -> None:
        self.reply(ctx, 404)
