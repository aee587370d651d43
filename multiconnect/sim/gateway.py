"""The gateway stand-in (``multiconnect/gateway.py``) on simulated connections.

Rules, as in the real stand-in: a ``connect`` for a shard that already has an open connection
kicks the older one and records a ``conflict``; any message counts as traffic and a
connection silent for ``ping_timeout`` (its own monotonic clock = virtual time) is told
``timeout`` and dropped; ``ping`` → ``pong``; ``send`` → ``deliver`` event then ``ack``;
messages on a connection that already ended are ignored; EOF ends it (``disconnect``).
Epochs are recorded, never trusted. Every line ends with its send time (``GwClient``); a
connection's ``lag`` is how long after it was written its latest line was handled (transit
plus any stall: fencing.md A3 bounds it by the margin).

Paused (``docker pause``: the kernel still accepts connections and buffers what they carry,
nothing is handled), it resumes as the asyncio stand-in does (``resume_order``): first the
keepalive deadlines that passed meanwhile (the timer cancels the pending read, so lines still
buffered do not count as traffic), then what the connections it was already serving buffered
(lines, then their close), then the connections accepted meanwhile, read in one batch: every
one's lines before any one's close (a socket's data and its EOF come in separate reads). So
connects queued on separate connections are all handled — each kicking the one before —
even if their senders closed them long ago (docs/simulator.md, finding 8).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .net import EOF, Conn, Net
from .world import Endpoint, World


class GwConn:
    __slots__ = ("id", "conn", "node", "shard", "epoch", "last_traffic", "lag", "ended",
                 "connected")

    def __init__(self, cid: int, conn: Conn) -> None:
        self.id = cid
        self.conn = conn
        self.node = ""
        self.shard = -1
        self.epoch = -1
        self.last_traffic = 0.0
        self.lag = 0.0
        self.ended = False
        self.connected = False


class SimGateway(Endpoint):
    def __init__(self, world: World, net: Net, ping_timeout: float) -> None:
        super().__init__(world, "gateway")
        self.net = net
        self.ping_timeout = ping_timeout
        self.by_shard: dict[int, GwConn] = {}
        self.delivered: dict[str, int] = {}   # message id -> conn id of first delivery
        self.events: list[tuple] = []          # (time, type, conn, shard, node, epoch, extra)
        self._next = 1
        self.on_conflict: Callable[[GwConn, GwConn], None] | None = None
        self.on_connect: Callable[[GwConn], None] | None = None
        self.on_deliver: Callable[[GwConn, str, int | None], None] | None = None

    # -- record ----------------------------------------------------------------------------
    def _record(self, type_: str, c: GwConn, extra: str = "") -> None:
        self.events.append((self.world.now, type_, c.id, c.shard, c.node, c.epoch, extra))
        if type_ != "deliver":
            self.world.note("gateway", "%s conn %d shard %d node %s epoch %d%s",
                            type_, c.id, c.shard, c.node, c.epoch, extra)

    def _end(self, c: GwConn, type_: str, extra: str = "") -> None:
        if c.ended:
            return
        c.ended = True
        if c.connected:
            if self.by_shard.get(c.shard) is c:
                del self.by_shard[c.shard]
            self._record(type_, c, extra)

    def resume_order(self, backlog: list[tuple[Callable[[Any], None], Any]]
                     ) -> list[tuple[Callable[[Any], None], Any]]:
        timers, served, fresh, closes = [], [], [], []
        for ev in backlog:
            fn, arg = ev
            if fn == self._keepalive:
                timers.append(ev)
            elif arg[0].state is not None:
                served.append(ev)
            else:
                (closes if arg[1] is EOF else fresh).append(ev)
        return timers + served + fresh + closes

    # -- connections -----------------------------------------------------------------------
    def on_message(self, conn: Conn, msg: Any) -> None:
        """Data (or EOF) from a coreapp on ``conn``."""
        c: GwConn | None = conn.state
        if c is None:
            c = conn.state = GwConn(self._next, conn)
            self._next += 1
            c.last_traffic = self.world.now
        if msg is EOF:
            self._end(c, "disconnect", " reason eof")
            return
        if c.ended:
            return
        c.last_traffic = self.world.now
        c.lag = c.last_traffic - msg[-1]
        op = msg[0]
        if op == "connect":
            self._connect(c, msg[1], msg[2], msg[3])
        elif op == "ping":
            self.net.send(conn, False, ("pong",))
        elif op == "send":
            msg_id = msg[1]
            first = self.delivered.get(msg_id)
            if first is None:
                self.delivered[msg_id] = c.id
            self._record("deliver", c, f" id {msg_id}{' duplicate' if first else ''}")
            if self.on_deliver is not None:
                self.on_deliver(c, msg_id, first)
            self.net.send(conn, False, ("ack", msg_id))

    def _connect(self, c: GwConn, shard: int, node: str, epoch: int) -> None:
        old = self.by_shard.get(shard)
        c.node, c.shard, c.epoch = node, shard, epoch
        if old is not None and not old.ended:
            by = f" by conn {c.id} node {node} epoch {epoch}"
            self._record("conflict", old, by)
            self._end(old, "kick", by)
            self.net.send(old.conn, False, ("kicked", c.id))
            self.net.close_server(old.conn)
            if self.on_conflict is not None:
                self.on_conflict(old, c)
        c.connected = True
        self.by_shard[shard] = c
        self._record("connect", c)
        self.net.send(c.conn, False, ("connected", c.id, self.ping_timeout))
        self.world.at_node(c.last_traffic + self.ping_timeout, self, self.inc, self._keepalive, c)
        if self.on_connect is not None:
            self.on_connect(c)

    def _keepalive(self, c: GwConn) -> None:
        if c.ended:
            return
        due = c.last_traffic + self.ping_timeout
        if self.world.now >= due:
            self.net.send(c.conn, False, ("timeout",))
            self._end(c, "timeout")
            self.net.close_server(c.conn)
        else:
            self.world.at_node(due, self, self.inc, self._keepalive, c)
