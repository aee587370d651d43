"""The coreapp shell, simulated: ``multiconnect/coreapp.py`` and ``gateway_client.py`` as tasks.

The real :class:`OwnershipCore` decides; this shell runs its actions exactly as
``Coreapp.execute`` does (Confirm/Connect/Ping as spawned tasks, Close as a spawned close
unless the ``never-self-fence`` break is on), keeps one gateway connection in ``self.conn``,
and answers heartbeats and message requests like ``h_heartbeat``/``h_message``.
:class:`GwClient` mirrors ``GatewayConnection``: pongs matched in order, acks by id, the
connection ends once (``kicked``, ``timeout``, ``eof``, ``closed``) and then fails every
pending and later call. Each line it sends ends with its virtual send time — not part of the
protocol: the checker's note of when it was written (``SimGateway``, A3).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from .. import schema
from ..core.ownership import Action, Close, Confirm, Connect, Gateway, OwnershipCore, Ping
from ..db import DatabaseError
from ..gateway_client import GatewayError, GatewayRefused, GatewayTimeout
from ..settings import Settings
from .net import BASE_MIN, EOF, Conn
from .nodes import DbClient, Proc, SimHost
from .world import AWAIT, SLEEP, WAIT, Fut, SimTimeout, World

if TYPE_CHECKING:
    from .cluster import Cluster

SEND_TIMEOUT = 2.0
#: Timer on the answer to a connect: none, as ``GatewayConnection.open`` (issue 19). Only the
#: teeth test sets it (2.0 s: the pre-fix shell, which gave up and connected again).
ANSWER_TIMEOUT: float | None = None


class GwClient:
    """One registered connection to the gateway (``GatewayConnection``)."""

    def __init__(self, proc: CoreappProc, conn: Conn, epoch: int) -> None:
        self.proc = proc
        self.world: World = proc.world
        self.conn = conn
        self.epoch = epoch
        self.shard = -1
        self.conn_id = 0
        self.closed = False
        self.close_reason: str | None = None
        self.opening: Fut | None = None
        self.pings: deque[Fut] = deque()
        self.sends: dict[str, deque[Fut]] = {}
        self.on_closed: Any = None

    @classmethod
    def open(cls, proc: CoreappProc, shard: int, epoch: int,
             answer_timeout: float | None) -> Generator[Any, Any, GwClient]:
        """``GatewayConnection.open``: refused → ``GatewayRefused``; otherwise the connect is
        sent and its answer awaited (no timer unless ``answer_timeout``); EOF before it →
        ``GatewayError`` (the connect may still be queued at the gateway)."""
        w = proc.world
        cl = proc.cl
        holder: list[GwClient] = []
        conn = proc.net.open(cl.gw_links[proc.name], proc.host, cl.gateway,
                             lambda c, m: holder[0]._on_line(c, m), cl.gateway.on_message)
        if conn is None:
            fut = Fut()
            err = GatewayRefused("gateway: connection refused")
            w.at_node(w.now + 2 * BASE_MIN, proc.host, proc.host.inc, _fail, (w, fut, err))
            yield (AWAIT, fut, None)
        conn.abort_after = proc.own.dead_peer_after  # the socket options (Net: tcp model)
        self = cls(proc, conn, epoch)
        holder.append(self)
        self.shard = shard
        fut = self.opening = Fut()
        proc.net.send(conn, True, ("connect", shard, proc.name, epoch, w.now))
        try:
            reply = yield (AWAIT, fut, answer_timeout, cl.gateway_clear(proc.name))
        except SimTimeout:  # only with ANSWER_TIMEOUT set
            proc.net.close_client(conn)
            raise GatewayTimeout(f"gateway: no answer to connect in {answer_timeout:g} s"
                                 ) from None
        finally:
            self.opening = None
        if reply is EOF:
            raise GatewayError("gateway: closed before 'connected'")
        if reply[0] != "connected":
            proc.net.close_client(conn)
            raise GatewayError(f"gateway: unexpected reply {reply!r}")
        self.conn_id = reply[1]
        return self

    # -- requests ------------------------------------------------------------------------
    def _request(self, queue: deque[Fut], msg: tuple) -> Fut:
        if self.closed:
            raise GatewayError(f"gateway connection {self.conn_id} closed: {self.close_reason}")
        fut = Fut()
        queue.append(fut)
        self.proc.cl.check.coreapp_acts(self.proc, msg[0])
        self.proc.net.send(self.conn, True, msg + (self.world.now,))
        return fut

    def ping(self, timeout: float) -> Generator[Any, Any, None]:
        fut = self._request(self.pings, ("ping",))
        try:
            yield (AWAIT, fut, timeout, self.proc.cl.gateway_clear(self.proc.name))
        except SimTimeout:
            raise GatewayTimeout(f"gateway connection {self.conn_id}: ping: no answer") from None

    def send(self, msg_id: str, timeout: float) -> Generator[Any, Any, None]:
        queue = self.sends.setdefault(msg_id, deque())
        fut = self._request(queue, ("send", msg_id))
        try:
            yield (AWAIT, fut, timeout, self.proc.cl.gateway_clear(self.proc.name))
        except SimTimeout:
            raise GatewayTimeout(f"gateway connection {self.conn_id}: send {msg_id}: "
                                 "no answer") from None

    def close(self) -> None:
        self._finish("closed")

    # -- reader --------------------------------------------------------------------------
    def _on_line(self, conn: Conn, msg: Any) -> None:
        if self.opening is not None:
            fut, self.opening = self.opening, None
            self.world.resolve(fut, msg)
            return
        if self.closed:
            return
        if msg is EOF:
            self._finish("eof")
            return
        op = msg[0]
        if op == "pong":
            _resolve_first(self.world, self.pings)
        elif op == "ack":
            queue = self.sends.get(msg[1])
            if queue:
                _resolve_first(self.world, queue)
                if not queue:
                    del self.sends[msg[1]]
        elif op in ("kicked", "timeout"):
            self._finish(op)

    def _finish(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        w = self.world
        for queue in [self.pings, *self.sends.values()]:
            while queue:
                w.fail(queue.popleft(), GatewayError(f"closed: {reason}"))
        self.sends.clear()
        self.proc.net.close_client(self.conn)
        if self.on_closed is not None:
            self.on_closed(self)


def _resolve_first(w: World, queue: deque[Fut]) -> None:
    if queue:
        w.resolve(queue.popleft())


def _fail(arg: tuple[World, Fut, BaseException]) -> None:
    arg[0].fail(arg[1], arg[2])


class CoreappProc(Proc):
    def __init__(self, host: SimHost, cl: Cluster) -> None:
        super().__init__(host)
        self.cl = cl
        t = cl.cfg.timing
        self.gateway_ping_timeout = t.gateway_ping_timeout
        self.liveness_interval = t.liveness_interval
        self.settings = Settings(t.heartbeat_interval, t.unhealthy_interval)
        self.settings_version = 0
        self.own = self._new_core()
        link = cl.net.link(self.name, "db")
        self.db_own = DbClient(self, link, cl.db_server)
        self.db_misc = DbClient(self, link, cl.db_server)
        self.conn: GwClient | None = None
        self.wake_fut: Fut | None = None
        self.heartbeats: dict[str, float] = {}
        self.sent = 0
        self.never_fence = cl.cfg.breaks == "never-self-fence"
        self._after_step = cl.check.after_ownership_step  # bound once

    def _new_core(self) -> OwnershipCore:
        return OwnershipCore(
            self.name, ttl=self.settings.ownership_ttl,
            confirm_period=self.settings.confirm_period,
            ping_period=max(0.05, self.gateway_ping_timeout / 4),
            keepalive=self.gateway_ping_timeout)

    def _apply_settings(self, s: Settings) -> None:
        self.settings = s
        self.own.ttl = s.ownership_ttl
        self.own.confirm_period = s.confirm_period

    def start(self) -> None:
        self.spawn(self.run(), "run")

    def wake(self) -> None:
        """``self.wake.set()``: the ownership loop clears the event right before it waits,
        so setting it only matters to a loop that is waiting."""
        fut = self.wake_fut
        if fut is not None and not fut.done:
            self.world.resolve(fut)

    # ------------------------------------------------------------------ ownership
    def ownership_loop(self) -> Generator[Any, Any, None]:
        own, mono, execute = self.own, self.mono, self.execute
        soon = self.world._soon
        after_step = (self._after_step, (self,))  # world.soon(self._after_step, self)
        while True:
            now = mono()
            execute(own.tick(now))
            soon.append(after_step)
            wait = own.next_deadline(now) - mono()
            fut = self.wake_fut = Fut()
            yield (WAIT, fut, min(max(wait, 0.01), 1.0))  # woken or timed out

    def execute(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Confirm):
                self.spawn(self._confirm(a.ttl), "confirm")
            elif isinstance(a, Connect):
                self.spawn(self._connect(a), "connect")
            elif isinstance(a, Close):
                if self.never_fence and "shutdown" not in a.reason:
                    self.world.note(self.name, "TEST BREAK never-self-fence: ignoring %s",
                                    a.reason)
                    continue
                self.world.note(self.name, "closing gateway connection: %s", a.reason)
                self.world.soon(self._close)
            elif isinstance(a, Ping):
                self.spawn(self._ping(), "ping")
        if actions:
            self.wake()

    def _confirm(self, ttl: float) -> Generator[Any, Any, None]:
        sent = self.mono()
        try:
            row = yield from self.db_own.call("confirm_ownership", self.name, ttl)
        except DatabaseError:
            self.execute(self.own.confirm_failed(self.mono()))
            self.wake()
            return
        before = (self.own.shard, self.own.epoch)
        self.execute(self.own.confirmed(sent, self.mono(), row))
        self.wake()
        if (self.own.shard, self.own.epoch) != before:
            self.world.note(self.name, "shard map: now %s", "secondary" if self.own.shard is None
                            else f"primary for shard {self.own.shard} (epoch {self.own.epoch})")

    def _connect(self, a: Connect) -> Generator[Any, Any, None]:
        """One attempt (``connect_pending``), answered however late. A Close that arrives
        meanwhile is applied when it ends; until then the core stays CLOSING, so no second
        attempt starts while one may be queued at the gateway."""
        try:
            conn = yield from GwClient.open(self, a.shard, a.epoch, ANSWER_TIMEOUT)
        except GatewayError as e:
            self.execute(self.own.gateway_down(
                self.mono(), f"connect failed: {e}",
                gateway_ended=isinstance(e, GatewayRefused)))
            return
        self.conn = conn
        conn.on_closed = self._on_closed
        if self.own.gateway is Gateway.CLOSING:
            self.world.note(self.name, "closing the gateway connection opened meanwhile "
                            "(conn %d)", conn.conn_id)
            self._close()
            return
        self.world.note(self.name, "connected to gateway for shard %d (epoch %d, conn %d)",
                        a.shard, a.epoch, conn.conn_id)
        self.execute(self.own.gateway_up(self.mono(), a.epoch))

    def _on_closed(self, conn: GwClient) -> None:
        if self.conn is conn:
            self.conn = None
            self.world.note(self.name, "gateway connection closed: %s", conn.close_reason)
            self.execute(self.own.gateway_down(self.mono(), str(conn.close_reason)))

    def _close(self) -> None:
        conn = self.conn
        if conn is None:
            if self.own.connect_pending:
                return  # _connect closes what it opens and then reports the gateway down
            self.execute(self.own.gateway_down(self.mono(), "closed"))
            return
        conn.close()
        if self.conn is conn:  # on_closed did not fire
            self._on_closed(conn)

    def _ping(self) -> Generator[Any, Any, None]:
        conn = self.conn
        if conn is None:
            return
        self.own.wrote(self.mono())  # ping() writes before its first yield
        try:
            yield from conn.ping(max(0.2, self.gateway_ping_timeout / 2))
        except GatewayError:
            self._close()

    # ------------------------------------------------------------------ background
    def liveness_loop(self) -> Generator[Any, Any, None]:
        next_touch = self.mono()
        while True:
            try:
                if self.mono() >= next_touch:
                    yield from self.db_misc.call("touch_node", self.name)
                    next_touch = self.mono() + self.liveness_interval
                settings, version = yield from self.db_misc.call("read_settings")
                if version != self.settings_version:
                    self._apply_settings(settings)
                    self.settings_version = version
            except DatabaseError:
                next_touch = max(next_touch, self.mono() + min(
                    self.liveness_interval, self.settings.heartbeat_interval))
            yield (SLEEP, min(max(0.05, next_touch - self.mono()),
                              self.settings.heartbeat_interval))

    def run(self) -> Generator[Any, Any, None]:
        want = schema.LATEST
        while True:  # wait_for_schema
            try:
                version = yield from self.db_misc.call("schema_version")
            except DatabaseError:
                version = None
            if version == want:
                break
            yield (SLEEP, 0.5)
        while True:
            try:
                yield from self.db_misc.call("register_node", self.name, "coreapp")
                break
            except DatabaseError:
                yield (SLEEP, 0.5)
        self.world.note(self.name, "registered (secondary)")
        self.spawn(self.ownership_loop(), "ownership")
        self.spawn(self.liveness_loop(), "liveness")

    # ------------------------------------------------------------------ HTTP
    def on_http(self, handler: str, args: Any, ctx: tuple) -> None:
        if handler == "heartbeat":
            master, check = args
            self.heartbeats[master] = self.mono()
            if check and not self.own.confirming:
                self.own.next_confirm = self.mono()
                self.wake()
            self.reply(ctx, 200)
        elif handler == "message":
            self.spawn(self._message(args, ctx), "message")
        else:
            self.reply(ctx, 404)

    def _message(self, args: tuple, ctx: tuple) -> Generator[Any, Any, None]:
        msg_id, shard = args
        now = self.mono()
        if self.own.shard != shard:
            self.reply(ctx, (409, 1018))
            return
        conn = self.conn
        if conn is None or not self.own.may_send(shard, now):
            self.wake()
            self.reply(ctx, (503, 1011))
            return
        self.own.wrote(self.mono())  # send() writes before its first yield
        try:
            yield from conn.send(msg_id, SEND_TIMEOUT)
        except GatewayError:
            self.reply(ctx, (504, 1014))  # may have left: "unknown", never "not sent"
            return
        self.sent += 1
        self.reply(ctx, (200, 0))
