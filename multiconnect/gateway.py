"""Stand-in for the WhatsApp servers: an observer that records who is connected.

Model. Coreapps open a TCP connection, say ``connect`` for one (phone, shard), then ``ping``
and ``send`` over line-delimited JSON (docs/contracts.md, "Gateway stand-in protocol"). The
gateway enforces what the real servers do to a second instance of an account: a new
``connect`` for a (phone, shard) that already has an open connection kicks the old one, and
that moment is recorded as a ``conflict`` (the event that gets real accounts banned). It
never trusts epochs; it only records them. A connection with no traffic for
``ping_timeout`` seconds (monotonic clock) is told ``{"op":"timeout"}`` and dropped.

Event log. Append-only, ``seq`` from 0, unix ``time``; every event carries the connection's
``conn``, ``phone``, ``shard``, ``node`` and ``epoch``. Only connections that completed
``connect`` produce events. Each of them starts with exactly one ``connect`` and ends with
exactly one of:

- ``kick`` (a newer connect for the same shard; preceded by ``conflict``; adds ``by``,
  ``by_node``, ``by_epoch``),
- ``timeout`` (no traffic for ``ping_timeout`` s),
- ``disconnect`` (adds ``reason``: ``eof`` peer closed, ``reset`` peer reset, ``error: …``
  protocol violation, ``write-timeout`` peer stopped reading, ``shutdown`` gateway stopping).

HTTP: ``GET /events?since=N[&limit=L]`` → ``{"events": [...], "next": M}`` (at most L,
default and maximum 10000; ``next`` < ``since`` means the log restarted with the gateway),
``GET /connections`` → ``{"connections": [{conn, phone, shard, node, epoch, peer,
connected_at, idle}]}``, ``GET /health`` → ``{"status": "ok"}``.

Environment (``main``): ``GATEWAY_HOST`` (0.0.0.0), ``GATEWAY_PORT`` (5222),
``GATEWAY_HTTP_PORT`` (8080), ``GATEWAY_PING_TIMEOUT`` (10, seconds, float),
``GATEWAY_LOG_LEVEL`` (INFO).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import signal
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

log = logging.getLogger("multiconnect.gateway")

DEFAULT_PORT = 5222
DEFAULT_HTTP_PORT = 8080
DEFAULT_PING_TIMEOUT = 10.0
MAX_PING_TIMEOUT = 86400.0
EVENTS_LIMIT = 10000
LINE_LIMIT = 1 << 20
CLOSE_GRACE = 1.0

ENV_VARS = ("GATEWAY_HOST", "GATEWAY_PORT", "GATEWAY_HTTP_PORT", "GATEWAY_PING_TIMEOUT",
            "GATEWAY_LOG_LEVEL")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ConfigError(ValueError):
    """An invalid environment value; the message names the variable and what is allowed."""


@dataclass(frozen=True)
class GatewayConfig:
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    http_port: int = DEFAULT_HTTP_PORT
    ping_timeout: float = DEFAULT_PING_TIMEOUT
    log_level: str = "INFO"


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise ConfigError(f"{name}={raw!r}: must be an integer port 0-65535 (0 = any free port)")
    return value


def config_from_env(env: Mapping[str, str]) -> GatewayConfig:
    """Read ``GATEWAY_*`` variables; unknown ``GATEWAY_*`` names are errors (typos)."""
    for name in sorted(env):
        if name.startswith("GATEWAY_") and name not in ENV_VARS:
            raise ConfigError(f"{name}: unknown variable; allowed: {', '.join(ENV_VARS)}")
    host = env.get("GATEWAY_HOST", "0.0.0.0").strip()
    if not host:
        raise ConfigError("GATEWAY_HOST='': must be a bind address such as 0.0.0.0 or 127.0.0.1")
    raw = env.get("GATEWAY_PING_TIMEOUT")
    ping_timeout = DEFAULT_PING_TIMEOUT
    if raw is not None:
        try:
            ping_timeout = float(raw.strip())
        except ValueError:
            ping_timeout = math.nan
        if not (math.isfinite(ping_timeout) and 0 < ping_timeout <= MAX_PING_TIMEOUT):
            raise ConfigError(f"GATEWAY_PING_TIMEOUT={raw!r}: must be a number of seconds, "
                              f"> 0 and <= {MAX_PING_TIMEOUT:g}")
    level = env.get("GATEWAY_LOG_LEVEL", "INFO").strip().upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"GATEWAY_LOG_LEVEL={env['GATEWAY_LOG_LEVEL']!r}: "
                          f"must be one of {', '.join(LOG_LEVELS)}")
    return GatewayConfig(host=host, port=_port(env, "GATEWAY_PORT", DEFAULT_PORT),
                         http_port=_port(env, "GATEWAY_HTTP_PORT", DEFAULT_HTTP_PORT),
                         ping_timeout=ping_timeout, log_level=level)


class ProtocolError(Exception):
    """A line the gateway refuses; the connection gets ``{"op":"error"}`` and is closed."""


def _req_str(msg: dict[str, Any], key: str) -> str:
    value = msg.get(key)
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"{key!r} must be a non-empty string")
    return value


def _req_int(msg: dict[str, Any], key: str) -> int:
    value = msg.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ProtocolError(f"{key!r} must be an integer >= 0")
    return value


def _jsonable_number(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x


class _Conn:
    """One TCP connection; identity fields are set by ``connect``."""

    def __init__(self, conn_id: int, writer: asyncio.StreamWriter, now: float) -> None:
        self.id = conn_id
        self.writer = writer
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.phone: str | None = None
        self.shard: int | None = None
        self.node: str | None = None
        self.epoch: int | None = None
        self.connected_at = 0.0
        self.last_traffic = now
        self.ended = False
        self.task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self.phone is not None

    def fields(self) -> dict[str, Any]:
        return {"conn": self.id, "phone": self.phone, "shard": self.shard, "node": self.node,
                "epoch": self.epoch}

    def write(self, obj: dict[str, Any]) -> None:
        if not self.writer.is_closing():
            self.writer.write(json.dumps(obj, separators=(",", ":")).encode() + b"\n")


class GatewayServer:
    """The gateway, usable in-process: ``await start()``, ``port``, ``http_port``,
    ``events()``, ``connections()``, ``await stop()`` (also an async context manager)."""

    def __init__(self, config: GatewayConfig | None = None, *, host: str | None = None,
                 port: int | None = None, http_port: int | None = None,
                 ping_timeout: float | None = None) -> None:
        cfg = config or GatewayConfig(host="127.0.0.1", port=0, http_port=0)
        self.host = host if host is not None else cfg.host
        self._want_port = port if port is not None else cfg.port
        self._want_http_port = http_port if http_port is not None else cfg.http_port
        self.ping_timeout = float(ping_timeout if ping_timeout is not None else cfg.ping_timeout)
        if not (math.isfinite(self.ping_timeout) and self.ping_timeout > 0):
            raise ValueError("ping_timeout must be > 0")
        self._events: list[dict[str, Any]] = []
        self._delivered: set[str] = set()
        self._by_key: dict[tuple[str, int], _Conn] = {}
        self._conns: set[_Conn] = set()
        self._next_conn = 1
        self._tcp: asyncio.AbstractServer | None = None
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._http_port = 0
        self._stopping = False

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._port

    @property
    def http_port(self) -> int:
        return self._http_port

    async def start(self) -> None:
        self._tcp = await asyncio.start_server(self._on_client, self.host, self._want_port,
                                               limit=LINE_LIMIT)
        self._port = self._tcp.sockets[0].getsockname()[1]
        app = web.Application()
        app.router.add_get("/events", self._h_events)
        app.router.add_get("/connections", self._h_connections)
        app.router.add_get("/health", self._h_health)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self._want_http_port))
        except OSError:
            sock.close()
            await self.stop()
            raise
        self._http_port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        log.info("gateway listening tcp=%s:%d http=%s:%d ping_timeout=%g", self.host,
                 self._port, self.host, self._http_port, self.ping_timeout)

    async def stop(self) -> None:
        """Stop listening, close every connection (``disconnect`` reason ``shutdown``)."""
        self._stopping = True
        if self._tcp is not None:
            self._tcp.close()
        for conn in list(self._conns):
            self._end(conn, "disconnect", reason="shutdown")
            conn.writer.close()
        tasks = [c.task for c in list(self._conns) if c.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=CLOSE_GRACE)
            for t in pending:
                t.cancel()
            if pending:
                await asyncio.wait(pending, timeout=CLOSE_GRACE)
        if self._tcp is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp.wait_closed(), CLOSE_GRACE)
            self._tcp = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> GatewayServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- record --------------------------------------------------------------------------
    def events(self, since: int = 0) -> list[dict[str, Any]]:
        """Copies of the events with ``seq >= since``."""
        return [dict(e) for e in self._events[max(since, 0):]]

    def connections(self) -> list[dict[str, Any]]:
        """The open (connected) connections now, oldest first."""
        now = time.monotonic()  # the clock of asyncio's default loop.time()
        out = []
        for c in sorted(self._by_key.values(), key=lambda c: c.id):
            out.append({**c.fields(), "peer": c.peer, "connected_at": c.connected_at,
                        "idle": round(now - c.last_traffic, 6)})
        return out

    def _record(self, type_: str, conn: _Conn, **extra: Any) -> None:
        event = {"seq": len(self._events), "time": time.time(), "type": type_,
                 **conn.fields(), **extra}
        self._events.append(event)
        log.log(logging.DEBUG if type_ == "deliver" else logging.INFO, "event %s",
                json.dumps(event, separators=(",", ":")))

    def _end(self, conn: _Conn, type_: str, **extra: Any) -> None:
        """End a connection once: drop it from the registry, record its closing event."""
        if conn.ended:
            return
        conn.ended = True
        if conn.connected:
            key = (conn.phone, conn.shard)
            if self._by_key.get(key) is conn:  # type: ignore[arg-type]
                del self._by_key[key]  # type: ignore[arg-type]
            self._record(type_, conn, **extra)

    # -- connections ---------------------------------------------------------------------
    async def _on_client(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        conn = _Conn(self._next_conn, writer, loop.time())
        self._next_conn += 1
        conn.task = asyncio.current_task()
        self._conns.add(conn)
        if self._stopping:
            writer.close()
            self._conns.discard(conn)
            return
        try:
            await self._serve_conn(conn, reader, loop)
        except asyncio.CancelledError:
            self._end(conn, "disconnect", reason="shutdown")
        except Exception as exc:  # a bug here must not take the gateway down
            log.exception("connection %d failed", conn.id)
            self._end(conn, "disconnect", reason=f"error: internal {type(exc).__name__}")
        finally:
            self._end(conn, "disconnect", reason="eof")
            if not (self._stopping or writer.is_closing()):
                await self._linger(reader, writer)
            writer.close()
            self._conns.discard(conn)

    @staticmethod
    async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Half-close after our last message (kicked/timeout/error) and discard input until the
        peer closes (at most CLOSE_GRACE s): closing with unread input would send a reset
        that can destroy that last message before the peer reads it."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_GRACE):
                if writer.can_write_eof():
                    writer.write_eof()
                while await reader.read(65536):
                    pass

    async def _serve_conn(self, conn: _Conn, reader: asyncio.StreamReader,
                          loop: asyncio.AbstractEventLoop) -> None:
        while not conn.ended:
            remaining = conn.last_traffic + self.ping_timeout - loop.time()
            if remaining <= 0:
                conn.write({"op": "timeout"})
                self._end(conn, "timeout")
                return
            try:
                line = await asyncio.wait_for(reader.readline(), remaining)
            except TimeoutError:
                continue  # the loop re-checks the deadline against the monotonic clock
            except ValueError:  # longer than LINE_LIMIT
                self._fail(conn, f"line longer than {LINE_LIMIT} bytes")
                return
            except ConnectionError:
                self._end(conn, "disconnect", reason="reset")
                return
            if conn.ended:  # kicked (or stopped) while this line was arriving: ignore it
                return
            if not line.endswith(b"\n"):  # EOF, possibly after a partial line
                self._end(conn, "disconnect", reason="eof")
                return
            conn.last_traffic = loop.time()
            try:
                self._dispatch(conn, line)
            except ProtocolError as exc:
                self._fail(conn, str(exc))
                return
            try:
                await asyncio.wait_for(conn.writer.drain(), self.ping_timeout)
            except TimeoutError:
                self._end(conn, "disconnect", reason="write-timeout")
                return
            except ConnectionError:
                self._end(conn, "disconnect", reason="reset")
                return

    def _fail(self, conn: _Conn, error: str) -> None:
        conn.write({"op": "error", "error": error})
        self._end(conn, "disconnect", reason=f"error: {error}")

    def _dispatch(self, conn: _Conn, line: bytes) -> None:
        try:
            msg = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ProtocolError(f"malformed line: {exc}") from None
        if not isinstance(msg, dict) or not isinstance(msg.get("op"), str):
            raise ProtocolError("expected a JSON object with a string 'op'")
        op = msg["op"]
        if op == "connect":
            if conn.connected:
                raise ProtocolError("already connected")
            self._connect(conn, _req_str(msg, "phone"), _req_int(msg, "shard"),
                          _req_str(msg, "node"), _req_int(msg, "epoch"))
        elif op in ("ping", "send"):
            if not conn.connected:
                raise ProtocolError(f"{op!r} before 'connect'")
            if op == "ping":
                conn.write({"op": "pong"})
            else:
                msg_id, to = _req_str(msg, "id"), _req_str(msg, "to")
                if not isinstance(msg.get("body"), str):
                    raise ProtocolError("'body' must be a string")
                duplicate = msg_id in self._delivered
                self._delivered.add(msg_id)
                self._record("deliver", conn, id=msg_id, to=to, duplicate=duplicate)
                conn.write({"op": "ack", "id": msg_id})
        else:
            raise ProtocolError(f"unknown op {op!r}")

    def _connect(self, conn: _Conn, phone: str, shard: int, node: str, epoch: int) -> None:
        """Kick the current holder of (phone, shard), if any, then register ``conn``.

        Runs without awaiting, so the kick and the new connect are one atomic step."""
        old = self._by_key.get((phone, shard))
        if old is not None and not old.ended:
            by = {"by": conn.id, "by_node": node, "by_epoch": epoch}
            self._record("conflict", old, **by)
            self._end(old, "kick", **by)
            old.write({"op": "kicked", "by": conn.id})
            if old.writer.can_write_eof():  # its own task lingers, then closes
                old.writer.write_eof()
        conn.phone, conn.shard, conn.node, conn.epoch = phone, shard, node, epoch
        conn.connected_at = time.time()
        self._by_key[(phone, shard)] = conn
        self._record("connect", conn, peer=conn.peer)
        conn.write({"op": "connected", "conn": conn.id,
                    "ping_timeout": _jsonable_number(self.ping_timeout)})

    # -- HTTP ----------------------------------------------------------------------------
    async def _h_events(self, request: web.Request) -> web.Response:
        try:
            since = int(request.query.get("since", "0"))
            limit = int(request.query.get("limit", str(EVENTS_LIMIT)))
        except ValueError:
            since = limit = -1
        if since < 0 or not 1 <= limit <= EVENTS_LIMIT:
            return web.json_response(
                {"error": f"since must be an integer >= 0, limit an integer 1-{EVENTS_LIMIT}"},
                status=400)
        total = len(self._events)
        chunk = self._events[since:since + limit]
        # since > total means the log was reset (gateway restarted): next < since tells so.
        nxt = since + len(chunk) if since <= total else total
        return web.json_response({"events": chunk, "next": nxt})

    async def _h_connections(self, request: web.Request) -> web.Response:
        return web.json_response({"connections": self.connections()})

    async def _h_health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})


async def serve(config: GatewayConfig) -> None:
    """Run the gateway until SIGTERM or SIGINT, then close every connection."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = GatewayServer(config)
    await server.start()
    try:
        await stop.wait()
        log.info("gateway stopping")
    finally:
        await server.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def main(env: Mapping[str, str]) -> int:
    """Validate ``env`` (exit 2 with one line on stderr if invalid), then serve."""
    try:
        config = config_from_env(env)
    except ConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        asyncio.run(serve(config))
    except OSError as exc:  # e.g. port in use
        print(f"gateway: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0
