"""The webapp as a message sender, simulated: :class:`multiconnect.roles.sender.Sender` (the
rule ``Webapp.send`` runs) on the world's tasks.

Model. Sends arrive at random (exponential gaps, ``send_rate`` per second). The shard map is
cached and re-read every ``REFRESH_INTERVAL`` (as ``Webapp.refresh_loop``), lazily: a send
first re-reads it if the cache is older than that (1 s budget, then the cached map is used)
— same staleness bound, far fewer events. The forward is one simulated HTTP request (2 s
timeout) whose answer the shared rule classifies. A send is *acknowledged* only when the
coreapp answered 200, i.e. after the gateway's ack came back through it.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from ..db import DatabaseError
from ..roles import sender
from ..roles.sender import Sender
from ..sharding import shard_of
from .nodes import DbClient, HttpError, Proc, SimHost
from .protocols import ClusterView
from .world import SLEEP, SimTimeout

MESSAGE_TIMEOUT = 2.0
MASTER_TIMEOUT = 3.0     # WebappOptions.master_timeout
SETTINGS_RETRY = 1.0
REFRESH_INTERVAL = 0.5
REFRESH_DEADLINE = 1.0
RECIPIENTS = [f"1555{i:07d}" for i in range(256)]
Gen = Generator[Any, Any, Any]


class WebappProc(Proc, Sender):
    refresh_deadline = REFRESH_DEADLINE

    def __init__(self, host: SimHost, cl: ClusterView) -> None:
        super().__init__(host)
        self.cl = cl
        self.db = DbClient(self, cl.net.link(self.name, "db"), cl.db_server,
                           timeout=REFRESH_DEADLINE)
        self.rows: dict[int, str | None] = {}
        self.map_loaded_at = -1e18
        self.settings_wanted: dict | None = None

    def start(self) -> None:
        self.spawn(self.workload(), "workload")

    def workload(self) -> Gen:
        rng = self.world.rng
        rate = self.cl.cfg.send_rate
        while True:
            yield (SLEEP, rng.expovariate(rate))
            if self.cl.sending:
                self.spawn(self.send(self.cl.new_message_id(), rng.choice(RECIPIENTS)), "send")

    def send(self, msg_id: str, to: str) -> Gen:
        if self.mono() - self.map_loaded_at >= REFRESH_INTERVAL:
            yield from self.refresh(REFRESH_DEADLINE)
        attempt, shard, owner = yield from self.route(msg_id, to, "")
        outcome = "ok" if attempt.kind == "ok" else (
            "unknown" if attempt.kind == "unknown" else "not_sent")
        self.cl.check.send_done(msg_id, shard, outcome, owner)

    def request_settings(self, body: dict) -> None:
        """Forward an operator's settings PATCH to the masters until one (the primary) takes
        it; a newer request supersedes this one."""
        self.settings_wanted = body
        self.spawn(self._patch_settings(body), "settings")

    def _patch_settings(self, body: dict) -> Gen:
        while self.settings_wanted is body:
            for m in self.cl.masters:
                try:
                    status, answer = yield from self.http(
                        m, self.cl.net.link(self.name, m.name), "settings_patch", body,
                        MASTER_TIMEOUT, False)
                except (HttpError, SimTimeout):
                    continue
                if status == 200:
                    self.world.note(self.name, "settings %s taken by %s (version %s)", body,
                                    m.name, answer["meta"]["settings_version"])
                    if self.settings_wanted is body:
                        self.settings_wanted = None
                    return
            yield (SLEEP, SETTINGS_RETRY)

    # ------------------------------------------------------------------ the rule's waits
    def owner_of(self, to: str) -> tuple[int, str | None]:
        if not self.rows:
            return 0, None
        shard = shard_of(to, len(self.rows))
        return shard, self.rows.get(shard)

    def map_known(self) -> bool:
        return bool(self.rows)

    def refresh(self, deadline: float) -> Gen:
        try:
            rows = yield from self.db.call("read_shard_map")
        except DatabaseError:
            return False
        self.rows = {r.shard: r.hostname for r in rows}
        self.map_loaded_at = self.mono()
        return True

    def forward(self, owner: str, payload: dict[str, Any]) -> Gen:
        host = self.cl.hosts[owner]
        link = self.cl.net.link(self.name, owner)
        sure = self.cl.gateway_clear(owner)  # the owner's own send must be quick too
        try:
            status, body = yield from self.http(host, link, "message", payload,
                                                MESSAGE_TIMEOUT, sure)
        except HttpError as e:
            return (sender.unreachable(owner, e.kind) if e.kind == "connect"
                    else sender.broken(owner, e.kind))
        except SimTimeout:
            return sender.no_answer(owner, MESSAGE_TIMEOUT)
        return sender.answered(owner, payload["shard"], status, body)

    def on_http(self, handler: str, args: Any, ctx: tuple) -> None:
        self.reply(ctx, (404, {}))

