"""The coreapp role: secondary until the shard map gives it a shard; then it connects to the
gateway for that shard and serves message sends, self-fencing when it cannot confirm that it
still owns the shard (see :mod:`multiconnect.core.ownership` and docs/fencing.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from aiohttp import web

from . import db as dbq
from . import schema
from .clock import Clock, SystemClock
from .config import NodeConfig
from .core.ownership import Action, Close, Confirm, Connect, Gateway, OwnershipCore, Ping
from .db import Database, DatabaseError
from .gateway_client import GatewayConnection, GatewayError, GatewayRefused
from .settings import Settings
from .shell import call, install_stop, sleep_or_stop, spawn, start_site, wait_for_schema

log = logging.getLogger("multiconnect.coreapp")


def envelope(status: int, code: int, title: str, details: str) -> web.Response:
    return web.json_response(
        {"errors": [{"code": code, "title": title, "details": details}]}, status=status)


class Coreapp:
    def __init__(self, cfg: NodeConfig, clock: Clock | None = None) -> None:
        self.cfg = cfg
        self.clock = clock or SystemClock()
        self.settings = Settings(cfg.heartbeat_interval, cfg.unhealthy_interval)
        self.settings_version = 0
        self.own = self._new_core()
        self.db_own, self.db_misc = Database(cfg.db), Database(cfg.db)
        self.conn: GatewayConnection | None = None
        self.wake = asyncio.Event()
        self.stop = asyncio.Event()
        self.tasks: set[asyncio.Task] = set()
        self.heartbeats: dict[str, float] = {}
        self.sent = 0
        self.never_fence = cfg.test_break == "never-self-fence"
        self.break_next_ping = 0.0

    def _new_core(self) -> OwnershipCore:
        return OwnershipCore(
            self.cfg.name, ttl=self.settings.ownership_ttl,
            confirm_period=self.settings.confirm_period,
            ping_period=max(0.05, self.cfg.gateway_ping_timeout / 4),
            keepalive=self.cfg.gateway_ping_timeout)

    def _apply_settings(self, s: Settings) -> None:
        self.settings = s
        # a shorter TTL applies from the next confirmation on (never lengthens a past one)
        self.own.ttl = s.ownership_ttl
        self.own.confirm_period = s.confirm_period

    # ------------------------------------------------------------------ ownership
    async def ownership_loop(self) -> None:
        while not self.stop.is_set():
            now = self.clock.monotonic()
            self.execute(self.own.tick(now))
            if self.never_fence:
                self._break_keep_alive(now)
            wait = self.own.next_deadline(now) - self.clock.monotonic()
            self.wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wake.wait(), min(max(wait, 0.01), 1.0))

    def execute(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Confirm):
                spawn(self.tasks, self._confirm(a.ttl), "confirm")
            elif isinstance(a, Connect):
                spawn(self.tasks, self._connect(a), "connect")
            elif isinstance(a, Close):
                if self.never_fence and "shutdown" not in a.reason:
                    log.error("TEST BREAK never-self-fence: ignoring %s", a.reason)
                    continue
                log.info("closing gateway connection: %s", a.reason)
                spawn(self.tasks, self._close(), "close")
            elif isinstance(a, Ping):
                spawn(self.tasks, self._ping(), "ping")
        if actions:
            self.wake.set()

    def _break_keep_alive(self, now: float) -> None:
        """TEST BREAK never-self-fence: keep acting on a connection the core no longer
        vouches for — ping it so the gateway's keepalive never drops it (the core pings only
        while valid)."""
        if self.conn is not None and not self.own.valid(now) and now >= self.break_next_ping:
            self.break_next_ping = now + max(0.05, self.cfg.gateway_ping_timeout / 4)
            spawn(self.tasks, self._ping(), "ping (test break)")

    async def _confirm(self, ttl: float) -> None:
        sent = self.clock.monotonic()
        try:
            row = await call(self.db_own, dbq.confirm_ownership, self.cfg.name, ttl)
        except DatabaseError as e:
            log.warning("ownership confirmation failed: %s", e)
            self.execute(self.own.confirm_failed(self.clock.monotonic()))
            self.wake.set()
            return
        before = (self.own.shard, self.own.epoch)
        self.execute(self.own.confirmed(sent, self.clock.monotonic(), row))
        self.wake.set()  # the next confirmation is due h/2 from now: replan the loop
        if (self.own.shard, self.own.epoch) != before:
            log.info("shard map: now %s", "secondary" if self.own.shard is None else
                     f"primary for shard {self.own.shard} (epoch {self.own.epoch})")

    async def _connect(self, a: Connect) -> None:
        """One connect attempt (``OwnershipCore.connect_pending``): it waits for the gateway's
        answer however long that takes. A Close that arrives meanwhile is applied when the
        attempt ends (what opens is closed at once); until then the core stays CLOSING, so it
        never starts a second attempt while one may be queued at the gateway."""
        host, port = self.cfg.gateway_address.rsplit(":", 1)
        try:
            conn = await GatewayConnection.open(
                host, int(port), phone=self.cfg.phone_number, shard=a.shard,
                node=self.cfg.name, epoch=a.epoch, timeout=self.own.connect_timeout,
                dead_after=self.own.dead_peer_after)
        except (GatewayError, OSError) as e:
            log.warning("gateway connect failed: %s", e)
            # refused: the gateway holds nothing of this attempt; any other end may leave
            # the connect queued there (the core's ghost wait)
            self.execute(self.own.gateway_down(
                self.clock.monotonic(), f"connect failed: {e}",
                gateway_ended=isinstance(e, GatewayRefused)))
            return
        self.conn = conn
        conn.on_closed = lambda c=conn: self._on_closed(c)
        if self.own.gateway is Gateway.CLOSING:
            log.info("closing the gateway connection opened meanwhile (conn %s)", conn.conn_id)
            await self._close()
            return
        log.info("connected to gateway for shard %d (epoch %d, conn %s)", a.shard, a.epoch,
                 conn.conn_id)
        self.execute(self.own.gateway_up(self.clock.monotonic(), a.epoch))

    def _on_closed(self, conn: GatewayConnection) -> None:
        if self.conn is conn:
            self.conn = None
            log.info("gateway connection closed: %s", conn.close_reason)
            self.execute(self.own.gateway_down(self.clock.monotonic(),
                                               str(conn.close_reason)))

    async def _close(self) -> None:
        conn = self.conn
        if conn is None:
            if self.own.connect_pending:
                return  # _connect closes what it opens and then reports the gateway down
            self.execute(self.own.gateway_down(self.clock.monotonic(), "closed"))
            return
        with contextlib.suppress(Exception):
            await conn.close()
        if self.conn is conn:  # on_closed did not fire
            self._on_closed(conn)

    async def _ping(self) -> None:
        conn = self.conn
        if conn is None:
            return
        self.own.wrote(self.clock.monotonic())  # ping() writes before its first await
        try:
            await conn.ping(timeout=max(0.2, self.cfg.gateway_ping_timeout / 2))
        except (TimeoutError, GatewayError, OSError) as e:
            log.warning("gateway ping failed: %s", e)
            await self._close()

    # ------------------------------------------------------------------ background
    async def liveness_loop(self) -> None:
        """Liveness row every liveness_interval (60 s × scale, as documented); settings are
        re-read every heartbeat interval."""
        next_touch = self.clock.monotonic()
        while not self.stop.is_set():
            try:
                if self.clock.monotonic() >= next_touch:
                    await call(self.db_misc, dbq.touch_node, self.cfg.name)
                    next_touch = self.clock.monotonic() + self.cfg.liveness_interval
                settings, version = await call(self.db_misc, dbq.read_settings)
                if version != self.settings_version:
                    self._apply_settings(settings)
                    self.settings_version = version
            except DatabaseError as e:
                log.warning("liveness write failed: %s", e)
                # retry at the settings pace, not in a tight loop against a refusing database
                next_touch = max(next_touch, self.clock.monotonic()
                                 + min(self.cfg.liveness_interval,
                                       self.settings.heartbeat_interval))
            await sleep_or_stop(self.stop, min(max(0.05, next_touch - self.clock.monotonic()),
                                               self.settings.heartbeat_interval))

    # ------------------------------------------------------------------ HTTP
    def status(self) -> dict[str, Any]:
        now = self.clock.monotonic()
        return {
            "node": self.cfg.name,
            "role": "coreapp",
            "gateway_status": self.own.gateway_status(),
            "shard": self.own.shard,
            "epoch": self.own.epoch,
            "ownership_valid_for": round(max(0.0, self.own.valid_until - now), 3)
            if self.own.shard is not None else None,
            "confirm_attempt_for": round(now - self.own.confirm_began, 3)
            if self.own.confirming else None,
            "sent": self.sent,
            "wall_time": time.time(),
        }

    async def h_heartbeat(self, request: web.Request) -> web.Response:
        master = request.query.get("master", "?")
        self.heartbeats[master] = self.clock.monotonic()
        if request.query.get("check") == "1" and not self.own.confirming:
            # a master just changed the shard map: confirm now instead of at the next period
            self.own.next_confirm = self.clock.monotonic()
            self.wake.set()
        return web.json_response(self.status())

    async def h_status(self, request: web.Request) -> web.Response:
        return web.json_response(self.status())

    async def h_message(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            msg_id, to, text, shard = body["id"], body["to"], body["body"], int(body["shard"])
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
            return envelope(400, 1009, "Parameter value is not valid",
                            'body must be {"id","to","body","shard"}')
        now = self.clock.monotonic()
        if self.own.shard != shard:
            return envelope(409, 1018, "Not Primary Coreapp",
                            f"{self.cfg.name} is not primary for shard {shard}")
        conn = self.conn
        if conn is None or not self.own.may_send(shard, now):
            # paused, cut off or still fencing: re-check ownership before anything is sent
            self.wake.set()
            return envelope(503, 1011, "Service not ready",
                            f"{self.cfg.name}: ownership of shard {shard} not confirmed "
                            f"or gateway not connected ({self.own.gateway_status()})")
        self.own.wrote(self.clock.monotonic())  # send() writes before its first await
        try:
            await conn.send(msg_id, to, text, timeout=2.0)
        except (TimeoutError, GatewayError, OSError) as e:
            # the message may have left before the failure: "unknown", never "not sent"
            return envelope(504, 1014, "Internal error", f"gateway send failed: {e}")
        self.sent += 1
        return web.json_response({"id": msg_id, "shard": shard, "epoch": conn.epoch
                                  if hasattr(conn, "epoch") else self.own.epoch})

    # ------------------------------------------------------------------ run
    async def run(self) -> None:
        install_stop(self.stop)
        hb_app = web.Application()
        hb_app.router.add_get("/v1/heartbeat", self.h_heartbeat)
        api = web.Application()
        api.router.add_get("/internal/status", self.h_status)
        api.router.add_post("/internal/messages", self.h_message)
        runners = [await start_site(hb_app, self.cfg.heartbeat_port),
                   await start_site(api, self.cfg.internal_port)]
        want = self.cfg.schema_version or schema.LATEST
        if await wait_for_schema(self.db_misc, want, self.stop) < 0:
            return
        while not self.stop.is_set():
            try:
                await call(self.db_misc, dbq.register_node, self.cfg.name, "coreapp",
                           self.cfg.advertise_address, self.cfg.heartbeat_address,
                           self.cfg.container_id)
                break
            except DatabaseError as e:
                log.warning("registration failed: %s", e)
                await sleep_or_stop(self.stop, 0.5)
        log.info("coreapp %s up (secondary; heartbeat port %d)", self.cfg.name,
                 self.cfg.heartbeat_port)
        loops = [spawn(self.tasks, self.ownership_loop(), "ownership"),
                 spawn(self.tasks, self.liveness_loop(), "liveness")]
        try:
            await self.stop.wait()
        finally:
            log.info("stopping")
            for t in loops:
                t.cancel()
            if self.conn is not None:
                with contextlib.suppress(Exception):
                    await self.conn.close()
            for t in list(self.tasks):
                t.cancel()
            for r in runners:
                await r.cleanup()
            self.db_own.close()
            self.db_misc.close()


async def run(cfg: NodeConfig) -> None:
    await Coreapp(cfg).run()
