"""The master, simulated: :class:`multiconnect.roles.master.MasterRole` on the world's tasks.

This module only supplies the role's waits (the simulated database and heartbeat HTTP,
virtual sleeps) and hooks the invariant checker into the role's ``on_*`` points.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from ..core.lease import LeaseDecision
from ..db import NodeRow
from ..roles.master import MasterRole
from .nodes import DbClient, HttpError, Proc, SimHost, node_config
from .protocols import ClusterView
from .world import SLEEP, SimTimeout

Gen = Generator[Any, Any, Any]


class MasterProc(Proc, MasterRole):
    def __init__(self, host: SimHost, cl: ClusterView) -> None:
        Proc.__init__(self, host)
        MasterRole.__init__(self, node_config(cl.cfg, "master", self.name), self.mono())
        self.cl = cl
        link = cl.net.link(self.name, "db")
        self.db_lease = DbClient(self, link, cl.db_server)
        self.db_mon = DbClient(self, link, cl.db_server)
        self.db_api = DbClient(self, link, cl.db_server)

    def start(self) -> None:
        self.spawn(self.lease_loop(), "lease")
        self.spawn(self.heartbeat_loop(), "heartbeat")
        self.spawn(self.monitor_loop(), "monitor")

    # ------------------------------------------------------------------ the role's waits
    def sleep(self, seconds: float) -> Gen:
        yield (SLEEP, seconds)

    def db(self, conn: DbClient, fn: str, *args: Any) -> Gen:
        return conn.call(fn, *args)

    def heartbeat(self, name: str, row: NodeRow, check: bool, timeout: float) -> Gen:
        try:
            status, _ = yield from self.http(self.cl.hosts[name],
                                             self.cl.net.link(self.name, name), "heartbeat",
                                             (self.name, check), timeout)
        except (HttpError, SimTimeout):
            return None
        return status

    # ------------------------------------------------------------------ checker hooks
    def on_lease_granted(self, decision: LeaseDecision, epoch: int) -> None:
        self.cl.check.lease_granted(self, decision, epoch)

    def on_acting_primary(self) -> None:
        self.cl.check.acting_primary(self)

    def on_views_published(self, views: dict[str, bool]) -> None:
        self.cl.check.views_published(self, views)

    # ------------------------------------------------------------------ HTTP
    def on_http(self, handler: str, args: Any, ctx: tuple) -> None:
        if handler == "settings_patch":
            self.answer(self.settings_patch(args), ctx)
        else:
            self.reply(ctx, (404, {}))
