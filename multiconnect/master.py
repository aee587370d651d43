"""The master role: competes for the lease; the primary promotes coreapps.

Loops (asyncio): ``lease`` (acquire/renew), ``heartbeat`` (every master → every coreapp each
heartbeat_interval), ``monitor`` (publish this master's view and liveness; the primary also
maintains the schema, reads the shard map and promotes). All decisions are made by the cores
in :mod:`multiconnect.core`; this module only moves data between them, the database and HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

import aiohttp
from aiohttp import web

from . import db as dbq
from . import schema
from .clock import Clock, SystemClock
from .config import NodeConfig
from .core.lease import LeaseCore, LeaseDecision
from .core.monitor import (
    DatabaseContact,
    HeartbeatTracker,
    NodeLiveness,
    build_view,
    live_master_window,
    plan_promotions,
)
from .db import Database, DatabaseError, NotPrimary
from .settings import Settings, SettingsError, apply_patch
from .shell import call, install_stop, sleep_or_stop, spawn, start_site

log = logging.getLogger("multiconnect.master")
FENCE_MARGIN = 0.5


def envelope(status: int, code: int, title: str, details: str) -> web.Response:
    return web.json_response(
        {"errors": [{"code": code, "title": title, "details": details}]}, status=status)


class Master:
    def __init__(self, cfg: NodeConfig, clock: Clock | None = None) -> None:
        self.cfg = cfg
        self.clock = clock or SystemClock()
        now = self.clock.monotonic()
        self.lease = LeaseCore(cfg.name, cfg.lease_ttl)
        self.tracker = HeartbeatTracker(started_at=now)
        self.db_contact = DatabaseContact()
        self.settings = Settings(cfg.heartbeat_interval, cfg.unhealthy_interval)
        self.settings_version = 0
        self.schema_target = cfg.schema_version or schema.LATEST
        self.schema_ready = False
        self.db_lease, self.db_mon, self.db_api = (Database(cfg.db) for _ in range(3))
        self.coreapps: dict[str, dbq.NodeRow] = {}
        self.inflight: dict[str, int] = {}
        self.stop = asyncio.Event()
        self.tasks: set[asyncio.Task] = set()
        self.session: aiohttp.ClientSession | None = None
        self.was_primary = False

    # ------------------------------------------------------------------ lease
    async def lease_loop(self) -> None:
        while not self.stop.is_set():
            try:
                await call(self.db_lease, dbq.ensure_lease_table)
                break
            except DatabaseError as e:
                log.info("waiting for the database: %s", e)
                await sleep_or_stop(self.stop, 0.5)
        while not self.stop.is_set():
            now = self.clock.monotonic()
            if self.lease.due(now):
                sent = now
                my_epoch = self.lease.begin(now)
                try:
                    decision, holder, epoch = await call(
                        self.db_lease, dbq.lease_attempt, self.cfg.name, my_epoch,
                        self.cfg.lease_ttl)
                except DatabaseError as e:
                    self.lease.failed(self.clock.monotonic())
                    log.warning("lease attempt failed: %s", e)
                else:
                    now = self.clock.monotonic()
                    if decision is LeaseDecision.BUSY:
                        self.lease.busy(now, holder)
                    else:
                        self.lease.granted(sent, now, epoch)
                        if decision is LeaseDecision.ACQUIRE:
                            log.info("became primary master (epoch %d)", epoch)
            self._note_role_change()
            now = self.clock.monotonic()
            wake = min(self.lease.next_attempt, self.lease.valid_until
                       if self.lease.is_primary(now) else self.lease.next_attempt)
            await sleep_or_stop(self.stop, min(max(wake - now, 0.02), 1.0))

    def _note_role_change(self) -> None:
        primary = self.lease.is_primary(self.clock.monotonic())
        if primary != self.was_primary:
            log.info("role: %s", "primary_master" if primary else "secondary_master")
            self.was_primary = primary
            if not primary:
                self.schema_ready = False

    # ------------------------------------------------------------------ heartbeats
    async def heartbeat_loop(self) -> None:
        """Every heartbeat_interval, one heartbeat to every coreapp. A slow answer is still an
        answer: each heartbeat may take up to unhealthy_interval, so several can be in flight
        (at most unhealthy/heartbeat + 1 per coreapp)."""
        while not self.stop.is_set():
            period = self.settings.heartbeat_interval
            cap = self.settings.unhealthy_interval // period + 1
            for name, row in list(self.coreapps.items()):
                if self.inflight.get(name, 0) < cap:
                    self.inflight[name] = self.inflight.get(name, 0) + 1
                    spawn(self.tasks, self._heartbeat(name, row), f"heartbeat {name}")
            await sleep_or_stop(self.stop, period)

    async def _heartbeat(self, name: str, row: dbq.NodeRow, check: bool = False) -> None:
        """One heartbeat; ``check`` asks the coreapp to re-read the shard map at once."""
        assert self.session is not None
        sent = self.clock.monotonic()
        addr = self.cfg.route(name, row.heartbeat_address, "heartbeat")
        timeout = aiohttp.ClientTimeout(total=float(self.settings.unhealthy_interval))
        params = {"master": self.cfg.name}
        if check:
            params["check"] = "1"
        try:
            async with self.session.get(f"http://{addr}/v1/heartbeat", params=params,
                                        timeout=timeout) as r:
                if r.status == 200:
                    self.tracker.answered(name, sent)
        except (TimeoutError, aiohttp.ClientError, OSError):
            pass
        finally:
            if not check:
                self.inflight[name] = max(0, self.inflight.get(name, 1) - 1)

    # ------------------------------------------------------------------ monitor
    async def monitor_loop(self) -> None:
        registered = False
        while not self.stop.is_set():
            period = max(0.25, self.settings.heartbeat_interval / 2)
            began = self.clock.monotonic()
            try:
                if not registered:
                    version = await call(self.db_mon, dbq.schema_version)
                    if version >= 1:
                        await call(self.db_mon, dbq.register_node, self.cfg.name, "master",
                                   self.cfg.advertise_address, self.cfg.heartbeat_address,
                                   self.cfg.container_id)
                        registered = True
                if self.lease.is_primary(self.clock.monotonic()):
                    await self._primary_duties()
                if registered:
                    await self._observe_and_publish()
                self.db_contact.ok(began)
            except NotPrimary as e:
                log.warning("fenced write refused: %s", e)
                self.lease.lost()
            except DatabaseError as e:
                self.db_contact.failed()
                log.warning("monitor: database error: %s", e)
            except Exception:
                log.exception("monitor loop error")
            await sleep_or_stop(self.stop, period)

    async def _observe_and_publish(self) -> None:
        nodes = await call(self.db_mon, dbq.list_nodes)
        now = self.clock.monotonic()
        self.coreapps = {n.name: n for n in nodes if n.role == "coreapp"}
        for name in self.coreapps:
            self.tracker.seen(name, now)
        self.tracker.forget_except(self.coreapps)
        views = {name: self.tracker.unhealthy(name, now, self.settings.unhealthy_interval)
                 for name in self.coreapps}
        await call(self.db_mon, dbq.publish_views, self.cfg.name, views)
        try:
            settings, version = await call(self.db_mon, dbq.read_settings)
        except (KeyError, TypeError):
            return
        if version != self.settings_version:
            if self.settings_version:
                log.info("settings version %d: %s", version, settings)
            self.settings, self.settings_version = settings, version
        self._masters = [n for n in nodes if n.role == "master"]

    async def _primary_duties(self) -> None:
        epoch = self.lease.epoch
        assert epoch is not None
        if not self.schema_ready:
            version = await call(self.db_mon, dbq.schema_version)
            if version > self.schema_target:
                log.error("database schema %d is newer than this master's %d: refusing to "
                          "downgrade; not acting as primary", version, self.schema_target)
                return
            if version < self.schema_target:
                log.info("upgrading schema %d -> %d", version, self.schema_target)
            await call(self.db_mon, dbq.upgrade_schema, self.cfg.name, epoch,
                       self.schema_target, self.settings, 1)
            self.schema_ready = True
        await self._promote_if_needed(epoch)

    async def _promote_if_needed(self, epoch: int) -> None:
        now = self.clock.monotonic()
        h = self.settings.heartbeat_interval
        shards = await call(self.db_mon, dbq.read_shard_map)
        nodes = await call(self.db_mon, dbq.list_nodes)
        reports = await call(self.db_mon, dbq.unhealthy_reports, self.cfg.name,
                             live_master_window(h))
        view = build_view(
            shards={s.shard: s.hostname for s in shards},
            nodes=[NodeLiveness(n.name, n.role, n.age) for n in nodes], reports=reports,
            tracker=self.tracker, now=now, heartbeat_interval=h,
            unhealthy_interval=self.settings.unhealthy_interval,
            db_reachable_for=self.db_contact.reachable_for(now),
            stale_after=self.cfg.stale_after,
            break_promote_on_primary_miss=self.cfg.test_break == "promote-on-primary-miss")
        fence_extra = self.cfg.gateway_ping_timeout + FENCE_MARGIN
        for p in plan_promotions(view):
            if not self.lease.is_primary(self.clock.monotonic()):
                return
            new_epoch = await call(self.db_mon, dbq.promote, self.cfg.name, epoch, p.shard,
                                   p.old, p.new, fence_extra)
            log.info("promoted %s for shard %d (epoch %d), replacing %s: %s",
                     p.new, p.shard, new_epoch, p.old, p.reason)
            for name in (p.new, p.old):
                row = self.coreapps.get(name or "")
                if row is not None:
                    spawn(self.tasks, self._heartbeat(name, row, check=True), "notify")

    # ------------------------------------------------------------------ HTTP
    def status(self) -> dict[str, Any]:
        now = self.clock.monotonic()
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
            "wall_time": time.time(),
        }

    async def h_status(self, request: web.Request) -> web.Response:
        return web.json_response(self.status())

    async def h_settings_get(self, request: web.Request) -> web.Response:
        return web.json_response({"settings": {"application": self.settings.to_api()}})

    async def h_settings_patch(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return envelope(400, 1000, "Generic error", "body is not valid JSON")
        try:
            new = apply_patch(self.settings, body)
        except SettingsError as e:
            return envelope(400, 1009, "Parameter value is not valid", str(e))
        epoch = self.lease.epoch
        if epoch is None or not self.lease.is_primary(self.clock.monotonic()):
            return envelope(503, 1017, "Not Primary Master", f"{self.cfg.name} is secondary")
        try:
            version = await call(self.db_api, dbq.write_settings, self.cfg.name, epoch, new)
        except NotPrimary as e:
            self.lease.lost()
            return envelope(503, 1017, "Not Primary Master", str(e))
        except DatabaseError as e:
            return envelope(503, 1023, "Database error occurred", str(e))
        self.settings, self.settings_version = new, version
        log.info("settings changed (version %d): %s", version, new)
        return web.json_response({"meta": {"settings_version": version}})

    async def h_shards(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            shards = int(body["shards"])
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
            return envelope(400, 1009, "Parameter value is not valid",
                            'body must be {"shards": N}')
        from .sharding import ALLOWED_SHARD_COUNTS
        if shards not in ALLOWED_SHARD_COUNTS:
            return envelope(400, 1009, "Parameter value is not valid",
                            f"shards must be one of {ALLOWED_SHARD_COUNTS}")
        epoch = self.lease.epoch
        if epoch is None or not self.lease.is_primary(self.clock.monotonic()):
            return envelope(503, 1017, "Not Primary Master", f"{self.cfg.name} is secondary")
        try:
            await call(self.db_api, dbq.set_shard_count, self.cfg.name, epoch, shards)
        except NotPrimary as e:
            self.lease.lost()
            return envelope(503, 1017, "Not Primary Master", str(e))
        except DatabaseError as e:
            return envelope(503, 1023, "Database error occurred", str(e))
        log.info("shard count set to %d", shards)
        return web.json_response({"account": {"shards": shards}}, status=201)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/internal/status", self.h_status)
        app.router.add_get("/internal/settings", self.h_settings_get)
        app.router.add_patch("/internal/settings", self.h_settings_patch)
        app.router.add_post("/internal/shards", self.h_shards)
        return app

    # ------------------------------------------------------------------ run
    async def run(self) -> None:
        install_stop(self.stop)
        self.session = aiohttp.ClientSession()
        runner = await start_site(self.app(), self.cfg.internal_port)
        log.info("master %s up (internal port %d, lease ttl %gs)", self.cfg.name,
                 self.cfg.internal_port, self.cfg.lease_ttl)
        loops = [spawn(self.tasks, c, n) for c, n in (
            (self.lease_loop(), "lease"), (self.heartbeat_loop(), "heartbeat"),
            (self.monitor_loop(), "monitor"))]
        try:
            await self.stop.wait()
        finally:
            log.info("stopping")
            for t in list(self.tasks) + loops:
                t.cancel()
            epoch = self.lease.epoch
            if epoch is not None and self.lease.is_primary(self.clock.monotonic()):
                self.lease.lost()  # no longer primary (status included) before giving it up
                with contextlib.suppress(DatabaseError):
                    if await call(self.db_api, dbq.release_lease, self.cfg.name, epoch):
                        log.info("released the master lease (epoch %d)", epoch)
            with contextlib.suppress(Exception):
                await asyncio.gather(*loops, return_exceptions=True)
            await runner.cleanup()
            await self.session.close()
            for d in (self.db_lease, self.db_mon, self.db_api):
                d.close()


async def run(cfg: NodeConfig) -> None:
    await Master(cfg).run()
