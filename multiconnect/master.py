"""The master in its container: :class:`multiconnect.roles.master.MasterRole` on asyncio.

This module only supplies the role's waits (database calls in a worker thread, heartbeats
over aiohttp, sleeps that end at a stop), its HTTP server, and the graceful stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
from aiohttp import web

from . import db as dbq
from . import shell
from .clock import Clock, SystemClock
from .config import NodeConfig
from .db import Database
from .roles.driver import Gen
from .roles.master import MasterRole

logger = logging.getLogger("multiconnect.master")


class Master(shell.AsyncioDriver, MasterRole):
    logger = logger

    def __init__(self, cfg: NodeConfig, clock: Clock | None = None) -> None:
        self.clock = clock or SystemClock()
        super().__init__(cfg, self.clock.monotonic())
        self.db_lease, self.db_mon, self.db_api = (Database(cfg.db) for _ in range(3))
        self.stop = asyncio.Event()
        self.tasks: set[asyncio.Task] = set()
        self.session: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------------ the role's waits
    def heartbeat(self, name: str, row: dbq.NodeRow, check: bool, timeout: float) -> Gen:
        return shell.awaiting(self._get_heartbeat(name, row, check, timeout))

    async def _get_heartbeat(self, name: str, row: dbq.NodeRow, check: bool,
                             timeout: float) -> int | None:
        assert self.session is not None
        addr = self.cfg.route(name, row.heartbeat_address, "heartbeat")
        params = {"master": self.cfg.name}
        if check:
            params["check"] = "1"
        try:
            async with self.session.get(f"http://{addr}/v1/heartbeat", params=params,
                                        timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                return r.status
        except (TimeoutError, aiohttp.ClientError, OSError):
            return None

    # ------------------------------------------------------------------ HTTP
    async def h_status(self, request: web.Request) -> web.Response:
        return web.json_response(self.status())

    async def h_settings_get(self, request: web.Request) -> web.Response:
        return shell.reply(self.settings_get())

    async def h_settings_patch(self, request: web.Request) -> web.Response:
        body, bad = await shell.read_json(request)
        return bad or shell.reply(await shell.drive(self.settings_patch(body)))

    async def h_shards(self, request: web.Request) -> web.Response:
        body, _ = await shell.read_json(request)
        return shell.reply(await shell.drive(self.shards_post(body)))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/internal/status", self.h_status)
        app.router.add_get("/internal/settings", self.h_settings_get)
        app.router.add_patch("/internal/settings", self.h_settings_patch)
        app.router.add_post("/internal/shards", self.h_shards)
        return app

    # ------------------------------------------------------------------ run
    async def run(self) -> None:
        shell.install_stop(self.stop)
        self.session = aiohttp.ClientSession()
        runner = await shell.start_site(self.app(), self.cfg.internal_port)
        logger.info("master %s up (internal port %d, lease ttl %gs)", self.cfg.name,
                 self.cfg.internal_port, self.cfg.lease_ttl)
        loops = [shell.spawn(self.tasks, shell.drive(g), n) for g, n in (
            (self.lease_loop(), "lease"), (self.heartbeat_loop(), "heartbeat"),
            (self.monitor_loop(), "monitor"))]
        try:
            await self.stop.wait()
        finally:
            logger.info("stopping")
            for t in list(self.tasks) + loops:
                t.cancel()
            await shell.drive(self.release())
            with contextlib.suppress(Exception):
                await asyncio.gather(*loops, return_exceptions=True)
            await runner.cleanup()
            await self.session.close()
            for d in (self.db_lease, self.db_mon, self.db_api):
                d.close()


async def run(cfg: NodeConfig) -> None:
    await Master(cfg).run()
