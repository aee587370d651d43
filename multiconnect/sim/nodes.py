"""Simulated node processes and their IO: database connections and HTTP calls.

Model. A :class:`SimHost` is one node: ``boot()`` starts a fresh incarnation — a new
:class:`Proc` with fresh state whose loops run as tasks — and ``crash()`` ends it (its tasks
die, the kernel closes its sockets); the world's ``pause``/``resume`` freeze it.
:class:`DbClient` behaves as :class:`multiconnect.db.Database`: one connection used by one
caller at a time, closed and re-opened after any error; ``DatabaseError`` on refusal, reset
or timeout (``WA_DB_TIMEOUT``, 2 s); ``NotPrimary`` passed through. A request that reaches
the database after its client gave up is discarded (the client closed the connection; the
transaction never commits). HTTP calls (heartbeats, webapp → coreapp) are one request and one
reply each, on their own connection; a request to a dead process is answered by a reset (the
proxy accepted, its upstream is gone), a paused one answers when it resumes.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from ..config import DbConfig, NodeConfig
from ..db import DatabaseError, NotPrimary
from .db import SimDatabase
from .net import BASE_MIN, EOF, Conn, Link, Net
from .simconfig import SimConfig
from .world import AWAIT, Endpoint, Fut, SimTimeout, World

DB_TIMEOUT = 2.0


class HttpError(Exception):
    """``connect``: never reached the server (certainly not handled); ``reset``: the
    connection ended after the request was sent (outcome unknown)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class DbServer(Endpoint):
    """The database process: executes requests on arrival, replies on the same connection."""

    def __init__(self, world: World, net: Net, model: SimDatabase) -> None:
        super().__init__(world, "db")
        self.net = net
        self.model = model
        self.slow: dict[int, float] = {}   # fault id -> max extra reply delay
        self.executed = 0
        self.record_calls = False   # tests: when each (fn, first argument) executed
        self.calls: dict[tuple[str, str], list[float]] = {}

    def on_request(self, conn: Conn, msg: Any) -> None:
        if msg is EOF:
            return
        fn, args, fut, deadline = msg
        w = self.world
        if w.now > deadline:
            return  # the client gave up and closed; the transaction would roll back
        self.executed += 1
        if self.record_calls:
            self.calls.setdefault((fn, args[0] if args else ""), []).append(w.now)
        try:
            reply = ("ok", getattr(self.model, fn)(*args), fut)
        except NotPrimary as e:
            reply = ("err", e, fut)
        if self.slow:
            extra = max(self.slow.values()) * w.rng.random()
            w.at_node(w.now + extra, self, self.inc, self._send_late, (conn, reply))
        else:
            self.net.send(conn, False, reply)

    def _send_late(self, arg: tuple[Conn, tuple]) -> None:
        self.net.send(arg[0], False, arg[1])


class DbClient:
    """One ``Database`` object of a node (its own connection)."""

    __slots__ = ("node", "net", "link", "server", "conn", "fut", "timeout")

    def __init__(self, proc: Proc, link: Link, server: DbServer,
                 timeout: float = DB_TIMEOUT) -> None:
        self.node = proc.host
        self.net = proc.net
        self.link = link
        self.server = server
        self.conn: Conn | None = None
        self.fut: Fut | None = None
        self.timeout = timeout

    def _on_reply(self, conn: Conn, msg: Any) -> None:
        fut = self.fut if msg is EOF else msg[2]
        if fut is None or fut.done:
            return
        w = self.node.world
        if msg is EOF:
            w.fail(fut, DatabaseError("OperationalError: connection lost"))
        elif msg[0] == "ok":
            w.resolve(fut, msg[1])
        else:
            w.fail(fut, msg[1])

    def close(self) -> None:
        if self.conn is not None:
            self.net.close_client(self.conn)
            self.conn = None

    def call(self, fn: str, *args: Any) -> Generator[Any, Any, Any]:
        """``await call(db, dbq.<fn>, *args)``: returns the result or raises."""
        node = self.node
        w = node.world
        conn = self.conn
        if conn is None or not conn.c_open or conn.broken:
            conn = self.net.open(self.link, node, self.server, self._on_reply,
                                 self.server.on_request)
            if conn is None:
                fut = Fut()
                w.at_node(w.now + 2 * BASE_MIN, node, node.inc, _refused, (w, fut))
                yield (AWAIT, fut, None)
            self.conn = conn
        fut = self.fut = Fut()
        deadline = w.now + self.timeout / node.rate
        self.net.send(conn, True, (fn, args, fut, deadline))
        server = self.server
        sure = not (self.link.faulty or server.paused or server.slow)
        try:
            return (yield (AWAIT, fut, self.timeout, sure))
        except SimTimeout:
            self.close()
            raise DatabaseError(f"timeout: {fn} got no answer in {self.timeout:g} s") from None
        except DatabaseError:
            self.close()
            raise
        finally:
            self.fut = None


def _refused(arg: tuple[World, Fut]) -> None:
    arg[0].fail(arg[1], DatabaseError("OperationalError: connection refused"))


class SimHost(Endpoint):
    """A node's host: clock, incarnation, pause state; runs one process at a time.

    ``make_proc(host)`` builds a fresh process (all role state lives in the process object,
    so a dead incarnation's leftover generators can only touch their own, dead state).
    """

    def __init__(self, world: World, net: Net, name: str, role: str, drift: float,
                 make_proc: Callable[[SimHost], Proc]) -> None:
        super().__init__(world, name, drift)
        self.net = net
        self.role = role
        self.make_proc = make_proc
        self.proc: Proc | None = None
        self.alive = False
        self.boots = 0

    def boot(self) -> None:
        self.inc += 1
        self.boots += 1
        self.alive = True
        self.paused = False
        self.backlog = []
        self.world.note(self.name, "start (boot %d)", self.boots)
        self.proc = self.make_proc(self)
        self.proc.start()

    def crash(self) -> None:
        if not self.alive:
            return
        self.alive = False
        self.inc += 1
        self.paused = False
        self.backlog = []
        self.proc = None
        self.net.node_died(self)
        self.world.note(self.name, "crash")


def node_config(cfg: SimConfig, role: str, name: str) -> NodeConfig:
    """The configuration a container of this simulated node would get (its addresses are
    its name)."""
    t = cfg.timing
    return NodeConfig(role, name, DbConfig(), advertise_address=name, heartbeat_address=name,
                      gateway_ping_timeout=t.gateway_ping_timeout,
                      db_monitor_scale=t.db_monitor_scale, lease_ttl=t.lease_ttl,
                      heartbeat_interval=t.heartbeat_interval,
                      unhealthy_interval=t.unhealthy_interval, test_break=cfg.breaks)


class Proc:
    """One incarnation of a role process on ``host``; the part of a role's driver
    (:mod:`multiconnect.roles`) every role shares: clock, log, tasks, HTTP."""

    def __init__(self, host: SimHost) -> None:
        self.host = host
        self.world = host.world
        self.net = host.net
        self.name = host.name
        self.mono = host.mono  # the host's monotonic clock (Driver.mono), bound once

    def start(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def spawn(self, gen: Generator[Any, Any, Any], name: str = "") -> None:
        self.world.spawn(self.host, gen, name)

    def wall(self) -> float:
        return self.host.wall()

    def log(self, level: int, fmt: str, *args: Any) -> None:
        """The role's log is the trace (formatted only when printed). An exception is kept
        as its text: kept whole, its traceback would keep the frames of the failed call alive
        (under PyPy that alone made every schedule 2.5× slower)."""
        self.world.note(self.name, fmt, *(str(a) if isinstance(a, BaseException) else a
                                          for a in args))

    def unexpected(self, what: str) -> None:
        raise  # noqa: PLE0704 - called inside ``except``: the simulator stops at a bug

    # -- HTTP --------------------------------------------------------------------------------
    def http(self, server: SimHost, link: Link, handler: str, args: Any, timeout: float,
             sure: bool = True) -> Generator[Any, Any, Any]:
        """One HTTP request; returns the handler's reply or raises HttpError/SimTimeout.
        ``sure``: the caller's part of "the answer will come" (see world.REPLY)."""
        w = self.world
        host = self.host
        fut = Fut()
        sure = sure and not link.faulty and server.alive and not server.paused
        if link.cut:
            w.at_node(w.now + 2 * BASE_MIN, host, host.inc, _http_fail, (w, fut, "connect"))
        else:
            d = self.net.delay(link, True)
            if d is not None:
                w.at(w.now + d, _http_arrive, (server, handler, args,
                                               (fut, host, host.inc, link)))
        return (yield (AWAIT, fut, timeout, sure))

    def reply(self, ctx: tuple, value: Any) -> None:
        """Send an HTTP reply back to the caller described by ``ctx``."""
        fut, client, cinc, link = ctx
        d = self.net.delay(link, False)
        if d is not None:
            w = self.world
            w.at_node(w.now + d, client, cinc, _http_reply, (w, fut, value))

    def on_http(self, handler: str, args: Any, ctx: tuple) -> None:  # pragma: no cover
        raise NotImplementedError

    def answer(self, handler: Generator[Any, Any, Any], ctx: tuple) -> None:
        """Run a role's HTTP method (a generator returning ``(status, body)``) as a task and
        reply with what it returns."""
        self.spawn(_answer(self, handler, ctx), "http")


def _answer(proc: Proc, handler: Generator[Any, Any, Any], ctx: tuple
            ) -> Generator[Any, Any, None]:
    proc.reply(ctx, (yield from handler))


def _http_fail(arg: tuple[World, Fut, str]) -> None:
    arg[0].fail(arg[1], HttpError(arg[2]))


def _http_reply(arg: tuple[World, Fut, Any]) -> None:
    arg[0].resolve(arg[1], arg[2])


def _http_arrive(arg: tuple) -> None:
    server, handler, args, ctx = arg
    w = server.world
    if not server.alive or server.proc is None:
        # the proxy accepted, the upstream is gone: the client sees the connection close
        fut, client, cinc, link = ctx
        if server.net.delay(link, False) is not None:
            w.at_node(w.now + BASE_MIN, client, cinc, _http_fail, (w, fut, "reset"))
        return
    if server.paused:
        server.backlog.append((_http_handle, (server, handler, args, ctx)))
        return
    server.proc.on_http(handler, args, ctx)


def _http_handle(arg: tuple) -> None:
    server, handler, args, ctx = arg
    if server.proc is not None:
        server.proc.on_http(handler, args, ctx)
