"""Client side of the gateway stand-in protocol, for the coreapp shell (asyncio).

Model. One ``GatewayConnection`` is one registered instance of a (phone, shard) at the
gateway. It never pings by itself: the coreapp pings only while it owns its shard, so a
coreapp that loses ownership (or is paused) goes silent and the gateway drops it after
``ping_timeout`` seconds. A reader task matches replies: pongs in order to pings, acks by
message id to sends (several sends may be in flight). The connection ends once, for one
``close_reason``: ``"kicked"``, ``"timeout"``, ``"eof"``, ``"error: …"`` or ``"closed"``
(our own ``close()``); then every pending and later call fails with ``GatewayError`` and
``on_closed(conn)`` is called once. ``open`` has no timer on the answer to its connect (a
connect that is out may be registered at any later time; see ``open`` and
:mod:`multiconnect.core.ownership`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger("multiconnect.gateway_client")

LINE_LIMIT = 1 << 20
CLOSE_GRACE = 1.0


class GatewayError(Exception):
    """The gateway refused, closed, or did not answer."""


class GatewayTimeout(GatewayError):
    """No answer in time: the outcome of the request is unknown."""


class GatewayRefused(GatewayError):
    """A connect the gateway certainly holds nothing of: the connection was refused or not
    established in time (nothing was written), or the gateway answered it with an error."""


OnClosed = Callable[["GatewayConnection"], Any]


def _encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


class GatewayConnection:
    """An open, registered connection; build it with ``await GatewayConnection.open(...)``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 conn_id: int, ping_timeout: float, phone: str = "", shard: int = 0,
                 node: str = "", epoch: int = 0, on_closed: OnClosed | None = None) -> None:
        self._reader = reader
        self._writer = writer
        self.conn_id = conn_id
        self.ping_timeout = ping_timeout
        self.phone, self.shard, self.node, self.epoch = phone, shard, node, epoch
        self.closed = False
        self.close_reason: str | None = None
        self._on_closed: OnClosed | None = None
        self._notified: OnClosed | None = None  # the callback already called
        self.on_closed = on_closed
        self.last_write = asyncio.get_running_loop().time()  # monotonic: last line sent
        self._pings: deque[asyncio.Future[None]] = deque()
        self._sends: dict[str, deque[asyncio.Future[None]]] = {}
        self._task = asyncio.create_task(self._read_loop())

    @classmethod
    async def open(cls, host: str, port: int, *, phone: str, shard: int, node: str,
                   epoch: int, timeout: float, dead_after: float | None = None,
                   on_closed: OnClosed | None = None) -> GatewayConnection:
        """Connect and register, waiting for the gateway's answer as long as it takes.

        ``timeout`` bounds the TCP connection only: nothing is written before it, so giving
        up is safe. Once the connect line is out the gateway may register it at any later
        time (a paused gateway queues it), so its answer has no timer; the caller ends the
        wait by cancelling (the socket is closed). Raises ``GatewayRefused`` if the gateway
        certainly holds nothing of the attempt (refused, no connection in ``timeout``, an
        ``error`` or ``timeout`` answer), ``GatewayError`` if it ended without an answer
        (EOF, reset, the kernel giving up after ``dead_after``: the connect may still be
        queued there) or with a reply we cannot use."""
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host, port, limit=LINE_LIMIT)
        except TimeoutError:
            raise GatewayRefused(f"gateway {host}:{port}: no connection in {timeout:g} s "
                                 "(nothing sent)") from None
        except OSError as exc:
            raise GatewayRefused(f"gateway {host}:{port}: {exc!r}") from exc
        sock = writer.get_extra_info("socket")
        if dead_after is not None and sock is not None:
            give_up_on_a_silent_peer(sock, dead_after)
        try:
            writer.write(_encode({"op": "connect", "phone": phone, "shard": shard,
                                  "node": node, "epoch": epoch}))
            await writer.drain()
            line = await reader.readline()
        except (OSError, ValueError) as exc:
            writer.close()
            raise GatewayError(f"gateway {host}:{port}: {exc!r}") from exc
        except asyncio.CancelledError:
            writer.close()
            raise
        try:
            reply = json.loads(line)
        except ValueError:
            reply = None
        if not isinstance(reply, dict) or reply.get("op") != "connected":
            writer.close()
            if not line:
                raise GatewayError(f"gateway {host}:{port}: closed before 'connected'")
            if isinstance(reply, dict) and reply.get("op") == "error":
                raise GatewayRefused(f"gateway {host}:{port} refused: {reply.get('error')}")
            if isinstance(reply, dict) and reply.get("op") == "timeout":
                raise GatewayRefused(f"gateway {host}:{port}: dropped the connection before "
                                     "its connect arrived")
            raise GatewayError(f"gateway {host}:{port}: unexpected reply {line[:200]!r}")
        try:
            conn_id, ping_timeout = int(reply["conn"]), float(reply["ping_timeout"])
        except (KeyError, TypeError, ValueError):
            writer.close()
            raise GatewayError(f"gateway {host}:{port}: bad 'connected' {line[:200]!r}") from None
        return cls(reader, writer, conn_id=conn_id, ping_timeout=ping_timeout, phone=phone,
                   shard=shard, node=node, epoch=epoch, on_closed=on_closed)

    @property
    def on_closed(self) -> OnClosed | None:
        """Called once with this connection when it ends; one set after the end runs now."""
        return self._on_closed

    @on_closed.setter
    def on_closed(self, callback: OnClosed | None) -> None:
        self._on_closed = callback
        if self.closed:
            self._notify()

    # -- requests ------------------------------------------------------------------------
    async def ping(self, timeout: float) -> None:
        """Send a ping and wait for its pong."""
        fut = self._request(self._pings, {"op": "ping"})
        await self._wait(fut, timeout, "ping")

    async def send(self, msg_id: str, to: str, body: str, timeout: float) -> None:
        """Send one message; returns once the gateway acked this ``msg_id``."""
        queue = self._sends.setdefault(msg_id, deque())
        fut = self._request(queue, {"op": "send", "id": msg_id, "to": to, "body": body})
        await self._wait(fut, timeout, f"send {msg_id}")

    async def close(self) -> None:
        """Close the connection (reason ``"closed"`` unless it already ended)."""
        self._finish("closed")
        if self._task is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(self._task), CLOSE_GRACE)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), CLOSE_GRACE)

    def _request(self, queue: deque[asyncio.Future[None]],
                 msg: dict[str, Any]) -> asyncio.Future[None]:
        if self.closed:
            raise GatewayError(f"gateway connection {self.conn_id} closed: {self.close_reason}")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(fut)
        self._writer.write(_encode(msg))
        self.last_write = asyncio.get_running_loop().time()
        return fut

    async def _wait(self, fut: asyncio.Future[None], timeout: float, what: str) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self._writer.drain()
                await asyncio.shield(fut)
        except TimeoutError:
            raise GatewayTimeout(f"gateway connection {self.conn_id}: {what}: no answer in "
                                 f"{timeout:g} s") from None
        except ConnectionError as exc:
            self._finish(f"error: {exc!r}")
            raise GatewayError(f"gateway connection {self.conn_id}: {what}: {exc!r}") from exc
        # A timed-out future stays queued: its late reply is consumed in order and dropped.

    # -- reader --------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        reason = "eof"
        try:
            while True:
                line = await self._reader.readline()
                if not line.endswith(b"\n"):
                    break
                ended = self._on_line(line)
                if ended is not None:
                    reason = ended
                    break
        except asyncio.CancelledError:
            reason = "closed"
        except (OSError, ValueError) as exc:
            reason = f"error: {exc!r}"
        self._finish(reason)

    def _on_line(self, line: bytes) -> str | None:
        """Handle one reply; return a close reason if the connection ends with it."""
        try:
            msg = json.loads(line)
        except ValueError:
            return f"error: malformed reply {line[:200]!r}"
        op = msg.get("op") if isinstance(msg, dict) else None
        if op == "pong":
            _resolve(self._pings)
        elif op == "ack":
            queue = self._sends.get(str(msg.get("id")))
            if queue:
                _resolve(queue)
                if not queue:
                    del self._sends[str(msg.get("id"))]
        elif op == "kicked":
            log.warning("gateway connection %d kicked by %s", self.conn_id, msg.get("by"))
            return "kicked"
        elif op == "timeout":
            return "timeout"
        elif op == "error":
            return f"error: {msg.get('error')}"
        else:
            return f"error: unexpected reply {line[:200]!r}"
        return None

    def _finish(self, reason: str) -> None:
        """End once: fail everything pending, close the socket, call ``on_closed``."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        for queue in [self._pings, *self._sends.values()]:
            while queue:
                fut = queue.popleft()
                if not fut.done():
                    fut.set_exception(
                        GatewayError(f"gateway connection {self.conn_id} closed: {reason}"))
                    fut.exception()  # mark retrieved: a timed-out waiter may be gone
        self._sends.clear()
        self._writer.close()
        if self._task is not asyncio.current_task():
            self._task.cancel()
        self._notify()

    def _notify(self) -> None:
        callback = self._on_closed
        if callback is None or callback is self._notified:
            return
        self._notified = callback
        try:
            result = callback(self)
            if asyncio.iscoroutine(result):
                asyncio.ensure_future(result)
        except Exception:
            log.exception("on_closed callback failed")


def give_up_on_a_silent_peer(sock: Any, seconds: float) -> None:
    """Ask the kernel to abort the connection when its peer acknowledges nothing for about
    ``seconds``: sent data unacknowledged (``TCP_USER_TIMEOUT``), or keepalive probes of an
    idle connection unanswered (idle ``seconds/2``, then 3 probes ``seconds/6`` apart). The
    kernel of a paused peer still acknowledges, so a stalled gateway is waited for; a dead
    host or a path that drops everything ends the wait (Linux options, skipped elsewhere)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPIDLE", max(1, round(seconds / 2))),
                        ("TCP_KEEPINTVL", max(1, round(seconds / 6))), ("TCP_KEEPCNT", 3),
                        ("TCP_USER_TIMEOUT", max(1, round(seconds * 1000)))):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def _resolve(queue: deque[asyncio.Future[None]]) -> None:
    if queue:
        fut = queue.popleft()
        if not fut.done():
            fut.set_result(None)

