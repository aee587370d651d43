"""The coreapp in its container: :class:`multiconnect.roles.coreapp.CoreappRole` on asyncio.

This module only supplies the role's waits (database calls in a worker thread, the gateway
client of :mod:`multiconnect.gateway_client`, an event that wakes the ownership loop), its
two HTTP servers (heartbeat port, internal API), and the graceful stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web

from . import shell
from .clock import Clock, SystemClock
from .config import NodeConfig
from .core.ownership import Connect
from .db import Database
from .gateway_client import GatewayConnection
from .roles.coreapp import CoreappRole
from .roles.driver import Gen

logger = logging.getLogger("multiconnect.coreapp")


class Coreapp(shell.AsyncioDriver, CoreappRole):
    logger = logger

    def __init__(self, cfg: NodeConfig, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        super().__init__(cfg)
        self.db_own, self.db_misc = Database(cfg.db), Database(cfg.db)
        self.woken = asyncio.Event()
        self.stop = asyncio.Event()
        self.tasks: set[asyncio.Task] = set()

    # ------------------------------------------------------------------ the role's waits
    def wake(self) -> None:
        self.woken.set()

    def wait_wake(self, seconds: float) -> Gen:
        self.woken.clear()
        return shell.awaiting(shell.sleep_or_stop(self.woken, seconds))

    def gw_open(self, a: Connect) -> Gen:
        host, port = self.cfg.gateway_address.rsplit(":", 1)
        return shell.awaiting(GatewayConnection.open(
            host, int(port), phone=self.cfg.phone_number, shard=a.shard, node=self.cfg.name,
            epoch=a.epoch, timeout=self.own.connect_timeout, dead_after=self.own.dead_peer_after))

    def gw_ping(self, conn: GatewayConnection, timeout: float) -> Gen:
        return shell.awaiting(conn.ping(timeout=timeout))

    def gw_send(self, conn: GatewayConnection, msg_id: str, to: str, text: str,
                timeout: float) -> Gen:
        return shell.awaiting(conn.send(msg_id, to, text, timeout=timeout))

    def gw_close(self, conn: GatewayConnection) -> Gen:
        return shell.awaiting(_close_quietly(conn))

    # ------------------------------------------------------------------ HTTP
    async def h_heartbeat(self, request: web.Request) -> web.Response:
        return shell.reply(self.heartbeat_received(request.query.get("master", "?"),
                                                   request.query.get("check") == "1"))

    async def h_status(self, request: web.Request) -> web.Response:
        return web.json_response(self.status())

    async def h_message(self, request: web.Request) -> web.Response:
        body, _ = await shell.read_json(request)
        return shell.reply(await shell.drive(self.message(body)))

    # ------------------------------------------------------------------ run
    async def run(self) -> None:
        shell.install_stop(self.stop)
        hb_app = web.Application()
        hb_app.router.add_get("/v1/heartbeat", self.h_heartbeat)
        api = web.Application()
        api.router.add_get("/internal/status", self.h_status)
        api.router.add_post("/internal/messages", self.h_message)
        runners = [await shell.start_site(hb_app, self.cfg.heartbeat_port),
                   await shell.start_site(api, self.cfg.internal_port)]
        self.spawn(self.start(), "start")
        try:
            await self.stop.wait()
        finally:
            logger.info("stopping")
            for t in list(self.tasks):
                t.cancel()
            if self.conn is not None:
                await _close_quietly(self.conn)
            for r in runners:
                await r.cleanup()
            self.db_own.close()
            self.db_misc.close()


async def _close_quietly(conn: GatewayConnection) -> None:
    with contextlib.suppress(Exception):
        await conn.close()


async def run(cfg: NodeConfig) -> None:
    await Coreapp(cfg).run()
