"""The coreapp, simulated: :class:`multiconnect.roles.coreapp.CoreappRole` on the world's tasks.

This module supplies the role's waits (the simulated database, virtual sleeps, a future that
wakes the ownership loop) and its gateway client, and hooks the invariant checker in.
:class:`GwClient` is the simulated network's ``GatewayConnection``: pongs matched in order,
acks by id, the connection ends once (``kicked``, ``timeout``, ``eof``, ``closed``) and then
fails every pending and later call. Each line it sends ends with its virtual send time — not
part of the protocol: the checker's note of when it was written (``SimGateway``, A3).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from typing import Any

from ..core.ownership import Connect
from ..gateway_client import GatewayError, GatewayRefused, GatewayTimeout
from ..roles.coreapp import CoreappRole
from .net import BASE_MIN, EOF, Conn
from .nodes import DbClient, Proc, SimHost, node_config
from .protocols import ClusterView
from .world import AWAIT, SLEEP, WAIT, Fut, SimTimeout, World

Gen = Generator[Any, Any, Any]
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

    def send(self, msg_id: str, to: str, text: str, timeout: float) -> Generator[Any, Any, None]:
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


class CoreappProc(Proc, CoreappRole):
    def __init__(self, host: SimHost, cl: ClusterView) -> None:
        Proc.__init__(self, host)
        CoreappRole.__init__(self, node_config(cl.cfg, "coreapp", self.name))
        self.cl = cl
        link = cl.net.link(self.name, "db")
        self.db_own = DbClient(self, link, cl.db_server)
        self.db_misc = DbClient(self, link, cl.db_server)
        self.wake_fut: Fut | None = None
        # the checker's look after each ownership step, queued once per step (bound once)
        self._after_step = (cl.check.after_ownership_step, (self,))

    def start(self) -> None:
        self.spawn(CoreappRole.start(self), "start")

    # ------------------------------------------------------------------ the role's waits
    def sleep(self, seconds: float) -> Gen:
        yield (SLEEP, seconds)

    def db(self, conn: DbClient, fn: str, *args: Any) -> Gen:
        return conn.call(fn, *args)

    def wake(self) -> None:
        fut = self.wake_fut
        if fut is not None and not fut.done:
            self.world.resolve(fut)

    def wait_wake(self, seconds: float) -> Gen:
        fut = self.wake_fut = Fut()
        yield (WAIT, fut, seconds)

    def gw_open(self, a: Connect) -> Gen:
        return GwClient.open(self, a.shard, a.epoch, ANSWER_TIMEOUT)

    def gw_ping(self, conn: GwClient, timeout: float) -> Gen:
        return conn.ping(timeout)

    def gw_send(self, conn: GwClient, msg_id: str, to: str, text: str, timeout: float) -> Gen:
        return conn.send(msg_id, to, text, timeout)

    def gw_close(self, conn: GwClient) -> Gen:
        conn.close()
        return
        yield

    # ------------------------------------------------------------------ checker hook
    def on_ownership_step(self) -> None:
        self.world._soon.append(self._after_step)  # after the current event

    # ------------------------------------------------------------------ HTTP
    def on_http(self, handler: str, args: Any, ctx: tuple) -> None:
        if handler == "heartbeat":
            self.reply(ctx, self.heartbeat_received(*args))
        elif handler == "message":
            self.answer(self.message(args), ctx)
        else:
            self.reply(ctx, (404, {}))
