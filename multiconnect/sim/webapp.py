"""The webapp as a message sender: ``Webapp.send`` of ``multiconnect/webapp.py``, simulated.

Model. Sends arrive at random (exponential gaps, ``send_rate`` per second). Each is routed by
the cached shard map with the real :func:`multiconnect.sharding.shard_of`, forwarded to the
owner's ``/internal/messages`` (2 s timeout) and retried once, on a fresh map naming another
owner, only if the answer proves it was not sent (refused, 409, 503 code 1011). The periodic
0.5 s map refresh is modelled lazily: a send first re-reads the map if the cache is older than
0.5 s (1 s budget, then the cached map is used) — same staleness bound, far fewer events. A
send is *acknowledged* only when the coreapp answered 200, i.e. after the gateway's ack came
back through it.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..db import DatabaseError
from ..sharding import shard_of
from .nodes import DbClient, HttpError, Proc, SimHost
from .world import SLEEP, SimTimeout

if TYPE_CHECKING:
    from .cluster import Cluster

MESSAGE_TIMEOUT = 2.0
REFRESH_INTERVAL = 0.5
REFRESH_DEADLINE = 1.0
RECIPIENTS = [f"1555{i:07d}" for i in range(256)]


class WebappProc(Proc):
    def __init__(self, host: SimHost, cl: Cluster) -> None:
        super().__init__(host)
        self.cl = cl
        self.db = DbClient(self, cl.net.link(self.name, "db"), cl.db_server,
                           timeout=REFRESH_DEADLINE)
        self.rows: list[tuple[int, str | None]] = []
        self.map_loaded_at = -1e18

    def start(self) -> None:
        self.spawn(self.workload(), "workload")

    def workload(self) -> Generator[Any, Any, None]:
        rng = self.world.rng
        rate = self.cl.cfg.send_rate
        while True:
            yield (SLEEP, rng.expovariate(rate))
            if self.cl.sending:
                self.spawn(self.send(self.cl.new_message_id(), rng.choice(RECIPIENTS)), "send")

    def refresh(self) -> Generator[Any, Any, None]:
        try:
            rows = yield from self.db.call("read_shard_map")
        except DatabaseError:
            return
        self.rows = [(r.shard, r.hostname) for r in rows]
        self.map_loaded_at = self.mono()

    def owner_of(self, to: str) -> tuple[int, str | None]:
        if not self.rows:
            return 0, None
        shard = shard_of(to, len(self.rows))
        return shard, dict(self.rows).get(shard)

    def forward(self, owner: str, msg_id: str, to: str, shard: int
                ) -> Generator[Any, Any, str]:
        host = self.cl.hosts[owner]
        link = self.cl.net.link(self.name, owner)
        sure = self.cl.gateway_clear(owner)  # the owner's own send must be quick too
        try:
            status, body = yield from self.http(
                host, link, "message", {"id": msg_id, "to": to, "body": "", "shard": shard},
                MESSAGE_TIMEOUT, sure)
        except HttpError as e:
            return "not_sent" if e.kind == "connect" else "unknown"
        except SimTimeout:
            return "unknown"
        if status == 200:
            return "ok"
        if status == 409 or (status == 503 and body["errors"][0]["code"] == 1011):
            return "not_sent"
        return "unknown"

    def send(self, msg_id: str, to: str) -> Generator[Any, Any, None]:
        if self.mono() - self.map_loaded_at >= REFRESH_INTERVAL:
            yield from self.refresh()
        shard, owner = self.owner_of(to)
        if owner is None:
            yield from self.refresh()
            shard, owner = self.owner_of(to)
        if owner is None:
            self.cl.check.send_done(msg_id, shard, "not_sent", None)
            return
        outcome = yield from self.forward(owner, msg_id, to, shard)
        if outcome == "not_sent":
            yield from self.refresh()
            new_shard, new_owner = self.owner_of(to)
            if new_owner is not None and (new_owner, new_shard) != (owner, shard):
                shard, owner = new_shard, new_owner
                outcome = yield from self.forward(owner, msg_id, to, shard)
        self.cl.check.send_done(msg_id, shard, outcome, owner)

    def on_http(self, handler: str, args: Any, ctx: tuple) -> None:
        self.reply(ctx, (404, {}))
