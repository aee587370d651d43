"""Gateway stand-in and its client, over real sockets on 127.0.0.1 (in-process server)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from multiconnect.gateway import GatewayServer, config_from_env, main
from multiconnect.gateway_client import (
    GatewayConnection,
    GatewayError,
    GatewayRefused,
    GatewayTimeout,
)

T = TypeVar("T")
HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[1]


def run(coro: Awaitable[T], timeout: float = 30.0) -> T:
    """Run one async test body, bounded in time."""
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


async def wait_until(what: str, cond: Callable[[], Any], timeout: float = 5.0) -> None:
    """Poll ``cond`` until true; fail naming ``what`` if the deadline passes."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def of_type(gw: GatewayServer, type_: str) -> list[dict[str, Any]]:
    return [e for e in gw.events() if e["type"] == type_]


async def open_conn(gw: GatewayServer, *, phone: str = "15550000001", shard: int = 0,
                    node: str = "coreapp-1", epoch: int = 1, **kw: Any) -> GatewayConnection:
    return await GatewayConnection.open(HOST, gw.port, phone=phone, shard=shard, node=node,
                                        epoch=epoch, timeout=5, **kw)


async def raw(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(HOST, port)


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   data: bytes | dict[str, Any]) -> dict[str, Any]:
    if isinstance(data, dict):
        data = json.dumps(data).encode() + b"\n"
    writer.write(data)
    await writer.drain()
    return json.loads(await reader.readline())


async def http_get(gw: GatewayServer, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.get(f"http://{HOST}:{gw.http_port}{path}") as r:
        return r.status, await r.json()


CONNECT = {"op": "connect", "phone": "15550000001", "shard": 0, "node": "coreapp-1", "epoch": 1}
BASE_KEYS = {"seq", "time", "type", "conn", "phone", "shard", "node", "epoch"}


# -- connect, send, ack ---------------------------------------------------------------------
def test_connect_send_ack_records_connect_and_deliver() -> None:
    async def body() -> None:
        async with GatewayServer(ping_timeout=7) as gw:
            c = await open_conn(gw, shard=3, node="coreapp-2", epoch=5)
            assert c.ping_timeout == 7.0 and c.conn_id > 0
            assert (c.phone, c.shard, c.node, c.epoch) == ("15550000001", 3, "coreapp-2", 5)
            await c.ping(2)
            await c.send("gBEG1", "16315551234", "hello", 2)
            connect, deliver = gw.events()
            assert set(connect) >= BASE_KEYS
            assert (connect["seq"], connect["type"], connect["conn"], connect["shard"],
                    connect["node"], connect["epoch"]) == (0, "connect", c.conn_id, 3,
                                                           "coreapp-2", 5)
            assert deliver["seq"] == 1 and deliver["type"] == "deliver"
            assert (deliver["id"], deliver["to"], deliver["duplicate"]) == (
                "gBEG1", "16315551234", False)
            assert (deliver["conn"], deliver["phone"], deliver["shard"], deliver["epoch"]) == (
                c.conn_id, "15550000001", 3, 5)
            assert connect["time"] <= deliver["time"]
            status, conns = await http_get(gw, "/connections")
            assert status == 200
            assert [(x["conn"], x["node"], x["shard"]) for x in conns["connections"]] == [
                (c.conn_id, "coreapp-2", 3)]
            assert await http_get(gw, "/health") == (200, {"status": "ok"})
            await c.close()
            assert c.closed and c.close_reason == "closed"
    run(body())


def test_concurrent_sends_all_acked_and_delivered() -> None:
    async def body() -> None:
        async with GatewayServer() as gw:
            c = await open_conn(gw)
            ids = [f"m{i}" for i in range(50)]
            await asyncio.gather(*(c.send(i, "to", "b", 5) for i in ids))
            assert sorted(e["id"] for e in of_type(gw, "deliver")) == sorted(ids)
            await c.close()
    run(body())


# -- client against a scripted fake server ---------------------------------------------------
class FakeGateway:
    """A server that answers ``connect`` and then runs ``script`` (one client at a time)."""

    def __init__(self, script: Callable[[asyncio.StreamReader, asyncio.StreamWriter],
                                        Awaitable[None]]) -> None:
        self.script = script
        self.done = asyncio.Event()
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def __aenter__(self) -> FakeGateway:
        self.server = await asyncio.start_server(self._handle, HOST, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await wait_until("the fake gateway's handler to finish", self.done.is_set)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readline()
            writer.write(b'{"op":"connected","conn":9,"ping_timeout":2.5}\n')
            await writer.drain()
            await self.script(reader, writer)
        finally:
            writer.close()
            self.done.set()


def test_client_matches_acks_by_id_not_by_order() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ids = [json.loads(await reader.readline())["id"] for _ in range(5)]
        for i in reversed(ids):
            writer.write(json.dumps({"op": "ack", "id": i}).encode() + b"\n")
            await writer.drain()
            await asyncio.sleep(0.02)
        await reader.read()  # until the client closes

    async def body() -> None:
        async with FakeGateway(script) as fake:
            c = await GatewayConnection.open(HOST, fake.port, phone="p", shard=0, node="n",
                                             epoch=1, timeout=5)
            assert (c.conn_id, c.ping_timeout) == (9, 2.5)
            finished: list[str] = []

            async def send(i: str) -> None:
                await c.send(i, "to", "b", 5)
                finished.append(i)

            await asyncio.gather(*(send(f"m{k}") for k in range(5)))
            assert finished == [f"m{k}" for k in reversed(range(5))]
            await c.close()
    run(body())


def test_closed_connection_fails_pending_and_later_sends() -> None:
    async def body() -> None:
        gate = asyncio.Event()

        async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readline()  # two sends that are never acked
            await reader.readline()
            await gate.wait()        # then the server closes the socket

        closed: list[str | None] = []
        async with FakeGateway(script) as fake:
            c = await GatewayConnection.open(
                HOST, fake.port, phone="p", shard=0, node="n", epoch=1, timeout=5,
                on_closed=lambda x: closed.append(x.close_reason))
            with pytest.raises(GatewayTimeout):
                await c.send("late", "to", "b", 0.2)
            pending = asyncio.create_task(c.send("pending", "to", "b", 30))
            await asyncio.sleep(0)
            gate.set()
            with pytest.raises(GatewayError, match="eof"):
                await pending
            assert c.closed and c.close_reason == "eof"
            with pytest.raises(GatewayError):
                await c.send("after", "to", "b", 30)
            with pytest.raises(GatewayError):
                await c.ping(30)
            await c.close()
            assert closed == ["eof"]
            late: list[GatewayConnection] = []
            c.on_closed = late.append  # set after the end: called at once, once
            assert late == [c] and closed == ["eof"]
    run(body())


def test_open_raises_on_refused_port_and_error_reply() -> None:
    """Both are definite: the gateway holds nothing of the attempt (``GatewayRefused``)."""
    async def body() -> None:
        s = socket.socket()
        s.bind((HOST, 0))
        free = s.getsockname()[1]
        s.close()
        with pytest.raises(GatewayRefused):
            await GatewayConnection.open(HOST, free, phone="p", shard=0, node="n", epoch=1,
                                         timeout=5)
        async with GatewayServer() as gw:
            with pytest.raises(GatewayRefused, match="refused"):
                await open_conn(gw, shard=-1)
            assert gw.events() == []
    run(body())


async def _answer_after(delay: float | None, answer: bytes,
                        seen: list[bytes]) -> asyncio.AbstractServer:
    """A server that reads the connect line, waits ``delay`` s (None: forever) and writes
    ``answer`` (b"": closes instead); ``seen`` gets what it read, then b"EOF" at the client's
    close."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readline())
        if delay is None:
            await reader.read()
            seen.append(b"EOF")
        else:
            await asyncio.sleep(delay)
            if answer:
                writer.write(answer)
                await writer.drain()
                await reader.read()
        writer.close()
    return await asyncio.start_server(handle, HOST, 0)


def test_open_waits_for_an_answer_past_its_timeout() -> None:
    """Issue 19: ``timeout`` bounds the TCP connection only; a connect that is out may be
    registered at any later time, so its answer is awaited however late it comes."""
    async def body() -> None:
        seen: list[bytes] = []
        server = await _answer_after(0.8, b'{"op":"connected","conn":3,"ping_timeout":2}\n',
                                     seen)
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        started = loop.time()
        c = await GatewayConnection.open(HOST, port, phone="p", shard=0, node="n", epoch=1,
                                         timeout=0.2)
        assert loop.time() - started >= 0.8 and c.conn_id == 3 and not c.closed
        assert json.loads(seen[0])["op"] == "connect"
        await c.close()
        server.close()
    run(body())


def test_an_unanswered_open_ends_only_by_the_gateway_or_its_caller() -> None:
    """An EOF before the answer is an end without an answer (``GatewayError``, not
    ``GatewayRefused``: a proxy may have ended it while the connect sits at the gateway); a
    never-answered connect waits until the caller cancels, which closes the socket."""
    async def body() -> None:
        seen: list[bytes] = []
        server = await _answer_after(0.1, b"", seen)
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(GatewayError, match="closed before") as err:
            await GatewayConnection.open(HOST, port, phone="p", shard=0, node="n", epoch=1,
                                         timeout=0.2)
        assert not isinstance(err.value, GatewayRefused)
        server.close()
        seen.clear()
        server = await _answer_after(None, b"", seen)
        port = server.sockets[0].getsockname()[1]
        attempt = asyncio.create_task(GatewayConnection.open(
            HOST, port, phone="p", shard=0, node="n", epoch=1, timeout=0.2))
        await asyncio.sleep(0.6)
        assert not attempt.done() and len(seen) == 1
        attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt
        await wait_until("the cancelled attempt's socket to close", lambda: b"EOF" in seen)
        server.close()
    run(body())


@pytest.mark.skipif(not hasattr(socket, "TCP_USER_TIMEOUT"), reason="Linux TCP options")
def test_open_asks_the_kernel_to_give_up_on_a_silent_peer() -> None:
    async def body() -> None:
        async with GatewayServer() as gw:
            c = await open_conn(gw, dead_after=4.0)
            sock = c._writer.get_extra_info("socket")
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 4000
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 2
            await c.close()
    run(body())


# -- conflicts -------------------------------------------------------------------------------
def test_second_connect_for_same_shard_kicks_first_and_records_conflict() -> None:
    async def body() -> None:
        async with GatewayServer() as gw:
            ended: list[GatewayConnection] = []
            old = await open_conn(gw, node="coreapp-1", epoch=1, on_closed=ended.append)
            new = await open_conn(gw, node="coreapp-2", epoch=2)
            await wait_until("the kicked client to notice", lambda: old.closed)
            assert old.close_reason == "kicked" and ended == [old]
            with pytest.raises(GatewayError):
                await old.send("x", "to", "b", 2)
            await new.send("y", "to", "b", 2)  # the new connection works
            types = [(e["type"], e["conn"]) for e in gw.events()]
            assert types == [("connect", old.conn_id), ("conflict", old.conn_id),
                             ("kick", old.conn_id), ("connect", new.conn_id),
                             ("deliver", new.conn_id)]
            conflict, kick = gw.events()[1:3]
            for e in (conflict, kick):
                assert (e["by"], e["by_node"], e["node"], e["epoch"]) == (
                    new.conn_id, "coreapp-2", "coreapp-1", 1)
            await asyncio.sleep(0.05)  # the kicked socket's EOF must not add a disconnect
            assert of_type(gw, "disconnect") == []
            _, conns = await http_get(gw, "/connections")
            assert [x["conn"] for x in conns["connections"]] == [new.conn_id]
            await new.close()
    run(body())


def test_kicked_peer_that_keeps_writing_still_reads_kicked_not_a_reset() -> None:
    async def body() -> None:
        async with GatewayServer() as gw:
            reader, writer = await raw(gw.port)
            assert (await exchange(reader, writer, CONNECT))["op"] == "connected"
            new = await open_conn(gw, node="coreapp-2")
            await wait_until("the kick", lambda: of_type(gw, "kick"))
            for _ in range(5):  # traffic that crosses the kick: the gateway must not reset
                writer.write(b'{"op":"ping"}\n')
                await writer.drain()
                await asyncio.sleep(0.02)
            lines = (await reader.read()).splitlines()
            assert [json.loads(x) for x in lines] == [{"op": "kicked", "by": new.conn_id}]
            writer.close()
            await new.close()
    run(body())


def test_reconnect_by_same_node_while_old_open_is_a_conflict() -> None:
    async def body() -> None:
        async with GatewayServer() as gw:
            old = await open_conn(gw, node="coreapp-1", epoch=4)
            new = await open_conn(gw, node="coreapp-1", epoch=4)
            await wait_until("the old connection to be kicked", lambda: old.closed)
            assert old.close_reason == "kicked"
            [conflict] = of_type(gw, "conflict")
            assert (conflict["conn"], conflict["by"], conflict["by_node"]) == (
                old.conn_id, new.conn_id, "coreapp-1")
            await new.close()
    run(body())


def test_different_shards_and_phones_do_not_conflict() -> None:
    async def body() -> None:
        async with GatewayServer() as gw:
            conns = [await open_conn(gw, shard=0), await open_conn(gw, shard=1, node="c2"),
                     await open_conn(gw, phone="15550000002", shard=0, node="c3")]
            for c in conns:
                await c.ping(2)
            assert not any(c.closed for c in conns)
            assert [e["type"] for e in gw.events()] == ["connect"] * 3
            assert len(gw.connections()) == 3
            for c in conns:
                await c.close()
    run(body())


def test_reconnect_after_clean_close_is_not_a_conflict() -> None:
    async def body() -> None:
        async with GatewayServer() as gw:
            first = await open_conn(gw)
            await first.close()
            await wait_until("the disconnect", lambda: of_type(gw, "disconnect"))
            second = await open_conn(gw)
            assert of_type(gw, "conflict") == [] and of_type(gw, "kick") == []
            await second.close()
    run(body())


# -- ping timeout ----------------------------------------------------------------------------
def test_silent_connection_is_dropped_with_timeout_event() -> None:
    async def body() -> None:
        async with GatewayServer(ping_timeout=0.3) as gw:
            c = await open_conn(gw)
            assert c.ping_timeout == 0.3
            await wait_until("the gateway to time the connection out", lambda: c.closed)
            assert c.close_reason == "timeout"
            [timeout] = of_type(gw, "timeout")
            assert timeout["conn"] == c.conn_id and timeout["node"] == "coreapp-1"
            assert [e["type"] for e in gw.events()] == ["connect", "timeout"]
            assert gw.connections() == []
    run(body())


def test_pinging_connection_outlives_the_timeout() -> None:
    async def body() -> None:
        async with GatewayServer(ping_timeout=0.6) as gw:
            c = await open_conn(gw)
            for _ in range(12):  # 1.2 s in all, a ping every 0.1 s
                await c.ping(2)
                await asyncio.sleep(0.1)
            assert not c.closed
            assert [e["type"] for e in gw.events()] == ["connect"]
            await c.close()
    run(body())


def test_silent_socket_without_connect_is_dropped_without_event() -> None:
    async def body() -> None:
        async with GatewayServer(ping_timeout=0.2) as gw:
            reader, writer = await raw(gw.port)
            assert json.loads(await reader.readline()) == {"op": "timeout"}
            assert await reader.read() == b""
            assert gw.events() == []
            writer.close()
    run(body())


# -- duplicates ------------------------------------------------------------------------------
def test_duplicate_delivery_is_flagged_across_connections() -> None:
    async def body() -> None:
        async with GatewayServer() as gw:
            a = await open_conn(gw, shard=0)
            b = await open_conn(gw, shard=1, node="coreapp-2")
            await a.send("m1", "to", "b", 2)
            await a.send("m2", "to", "b", 2)
            await a.send("m1", "to", "b", 2)
            await b.send("m2", "to", "b", 2)
            flags = [(e["id"], e["conn"], e["duplicate"]) for e in of_type(gw, "deliver")]
            assert flags == [("m1", a.conn_id, False), ("m2", a.conn_id, False),
                             ("m1", a.conn_id, True), ("m2", b.conn_id, True)]
            await a.close()
            await b.close()
    run(body())


# -- event log over HTTP ---------------------------------------------------------------------
def test_events_paging_with_since_and_limit() -> None:
    async def body() -> None:
        async with GatewayServer() as gw:
            c = await open_conn(gw)
            for i in range(24):
                await c.send(f"m{i}", "to", "b", 2)
            seen: list[dict[str, Any]] = []
            since = 0
            for _ in range(10):
                status, page = await http_get(gw, f"/events?since={since}&limit=10")
                assert status == 200 and len(page["events"]) <= 10
                if not page["events"]:
                    assert page["next"] == since
                    break
                assert page["next"] == since + len(page["events"])
                seen += page["events"]
                since = page["next"]
            assert [e["seq"] for e in seen] == list(range(25))
            assert seen == gw.events()
            _, tail = await http_get(gw, "/events?since=20")
            assert [e["seq"] for e in tail["events"]] == [20, 21, 22, 23, 24]
            assert tail["next"] == 25
            _, whole = await http_get(gw, "/events")
            assert len(whole["events"]) == 25
            _, beyond = await http_get(gw, "/events?since=100")
            assert beyond == {"events": [], "next": 25}
            for bad in ("since=-1", "since=x", "limit=0", "limit=10001"):
                status, err = await http_get(gw, f"/events?{bad}")
                assert status == 400 and "error" in err
            await c.close()
    run(body())


# -- disconnects -----------------------------------------------------------------------------
def test_disconnect_recorded_once_when_client_closes() -> None:
    async def body() -> None:
        async with GatewayServer() as gw:
            c = await open_conn(gw)
            await c.close()
            await c.close()
            await wait_until("a disconnect event", lambda: of_type(gw, "disconnect"))
            await asyncio.sleep(0.05)
            [d] = of_type(gw, "disconnect")
            assert d["conn"] == c.conn_id and d["reason"] == "eof"
            assert gw.connections() == []
    run(body())


def test_disconnect_recorded_once_when_client_resets() -> None:
    async def body() -> None:
        async with GatewayServer() as gw:
            reader, writer = await raw(gw.port)
            reply = await exchange(reader, writer, CONNECT)
            assert reply["op"] == "connected"
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            await wait_until("a disconnect event", lambda: of_type(gw, "disconnect"))
            await asyncio.sleep(0.05)
            [d] = of_type(gw, "disconnect")
            assert d["conn"] == reply["conn"] and d["reason"] in ("reset", "eof")
    run(body())


def test_stop_closes_connections_with_shutdown_disconnect() -> None:
    async def body() -> None:
        gw = GatewayServer()
        await gw.start()
        c = await open_conn(gw)
        await gw.stop()
        await wait_until("the client to see the close", lambda: c.closed)
        assert c.close_reason == "eof"
        [d] = of_type(gw, "disconnect")
        assert d["reason"] == "shutdown"
    run(body())


# -- malformed input -------------------------------------------------------------------------
@pytest.mark.parametrize("line", [
    b"not json\n",
    b"[1,2]\n",
    b'{"no":"op"}\n',
    b'{"op":"fly"}\n',
    b'{"op":"ping"}\n',
    b'{"op":"send","id":"m","to":"t","body":"b"}\n',
    b'{"op":"connect","phone":"p","shard":"0","node":"n","epoch":1}\n',
    b'{"op":"connect","phone":"p","shard":0,"node":"","epoch":1}\n',
    b'{"op":"connect","phone":"p","shard":0,"node":"n","epoch":true}\n',
    b"\xff\xfe\n",
])
def test_bad_line_before_connect_gets_error_and_close(line: bytes) -> None:
    async def body() -> None:
        async with GatewayServer() as gw:
            reader, writer = await raw(gw.port)
            reply = await exchange(reader, writer, line)
            assert reply["op"] == "error" and reply["error"]
            assert await reader.read() == b""
            assert gw.events() == []
            writer.close()
    run(body())


@pytest.mark.parametrize("line", [
    b"{oops\n",
    b'{"op":"connect","phone":"p","shard":1,"node":"n","epoch":1}\n',
    b'{"op":"send","id":"m","to":"t"}\n',
    b'{"op":"send","id":"","to":"t","body":"b"}\n',
])
def test_bad_line_after_connect_ends_with_error_disconnect(line: bytes) -> None:
    async def body() -> None:
        async with GatewayServer() as gw:
            reader, writer = await raw(gw.port)
            await exchange(reader, writer, CONNECT)
            reply = await exchange(reader, writer, line)
            assert reply["op"] == "error"
            assert await reader.read() == b""
            assert [e["type"] for e in gw.events()] == ["connect", "disconnect"]
            assert gw.events()[1]["reason"].startswith("error: ")
            assert gw.connections() == []
            writer.close()
    run(body())


# -- main and environment --------------------------------------------------------------------
@pytest.mark.parametrize("name,value", [
    ("GATEWAY_PORT", "abc"),
    ("GATEWAY_PORT", "70000"),
    ("GATEWAY_HTTP_PORT", "-1"),
    ("GATEWAY_PING_TIMEOUT", "0"),
    ("GATEWAY_PING_TIMEOUT", "-2"),
    ("GATEWAY_PING_TIMEOUT", "nan"),
    ("GATEWAY_PING_TIMEOUT", "ten"),
    ("GATEWAY_LOG_LEVEL", "LOUD"),
    ("GATEWAY_PING_TIMOUT", "5"),
])
def test_main_rejects_invalid_env(name: str, value: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main({name: value}) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and name in err


def test_config_from_env_defaults_and_values() -> None:
    default = config_from_env({"PATH": "/bin", "WA_NODE_NAME": "x"})
    assert (default.port, default.http_port, default.ping_timeout) == (5222, 8080, 10.0)
    cfg = config_from_env({"GATEWAY_PORT": "6000", "GATEWAY_HTTP_PORT": "6001",
                           "GATEWAY_PING_TIMEOUT": "0.25"})
    assert (cfg.port, cfg.http_port, cfg.ping_timeout) == (6000, 6001, 0.25)


@contextlib.contextmanager
def gateway_process(**env: str) -> Iterator[tuple[subprocess.Popen[str], int, int]]:
    """The gateway as its own process (``main``): yields it, its TCP and its HTTP port."""
    full = {**os.environ, "GATEWAY_HOST": HOST, "GATEWAY_PORT": "0", "GATEWAY_HTTP_PORT": "0",
            "PYTHONPATH": str(REPO), **env}
    proc = subprocess.Popen(
        [sys.executable, "-c",
         "import os, sys; from multiconnect.gateway import main; sys.exit(main(os.environ))"],
        env=full, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = ""
        for _ in range(50):  # bounded: the listening line comes first
            line = proc.stderr.readline()
            if "listening" in line or not line:
                break
        assert "listening" in line, line
        fields = dict(w.split("=", 1) for w in line.split() if "=" in w)
        yield (proc, int(fields["tcp"].rsplit(":", 1)[1]),
               int(fields["http"].rsplit(":", 1)[1]))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()


def test_main_serves_until_sigterm_and_closes_connections() -> None:
    with gateway_process() as (proc, port, _):
        async def body() -> None:
            c = await GatewayConnection.open(HOST, port, phone="p", shard=0, node="n",
                                             epoch=1, timeout=5)
            await c.ping(5)
            proc.send_signal(signal.SIGTERM)
            await wait_until("the gateway to close the connection", lambda: c.closed, 10)
            assert c.close_reason == "eof"
        run(body())
        assert proc.wait(timeout=10) == 0


def test_a_connect_to_a_paused_gateway_is_answered_when_it_resumes() -> None:
    """Issue 19 against the real stand-in: paused (SIGSTOP, as ``docker pause`` freezes it),
    its kernel still accepts and queues; the one attempt waits past its 0.3 s timeout and is
    registered on resume — one ``connect``, no ``conflict``."""
    with gateway_process(GATEWAY_PING_TIMEOUT="5") as (proc, port, http_port):
        async def body() -> None:
            proc.send_signal(signal.SIGSTOP)
            attempt = asyncio.create_task(GatewayConnection.open(
                HOST, port, phone="p", shard=0, node="n", epoch=1, timeout=0.3))
            await asyncio.sleep(1.0)
            assert not attempt.done()
            proc.send_signal(signal.SIGCONT)
            c = await asyncio.wait_for(attempt, 10)
            await c.ping(5)
            url = f"http://{HOST}:{http_port}/events"
            async with aiohttp.ClientSession() as s, s.get(url) as r:
                events = (await r.json())["events"]
            assert [e["type"] for e in events] == ["connect"]
            assert events[0]["conn"] == c.conn_id
            await c.close()
        run(body())


def test_a_paused_gateway_registers_connects_their_senders_gave_up() -> None:
    """What the simulator's paused gateway models (``SimGateway.resume_order``) and the
    pre-fix shell ran into: connects sent on separate connections while the gateway is
    paused are all handled on resume — each kicking the one before — although their senders
    gave up and closed them long before (every socket's line is read before its close)."""
    with gateway_process(GATEWAY_PING_TIMEOUT="5") as (proc, port, http_port):
        async def body() -> None:
            proc.send_signal(signal.SIGSTOP)
            for _ in range(3):  # the pre-fix shell: give up, connect again
                attempt = asyncio.create_task(GatewayConnection.open(
                    HOST, port, phone="p", shard=0, node="n", epoch=1, timeout=0.3))
                await asyncio.sleep(0.3)
                attempt.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await attempt
            proc.send_signal(signal.SIGCONT)
            url = f"http://{HOST}:{http_port}/events"

            async def types() -> list[str]:
                async with aiohttp.ClientSession() as s, s.get(url) as r:
                    return [e["type"] for e in (await r.json())["events"]]

            await asyncio.sleep(0.5)
            got = await types()
            assert got[:7] == ["connect", "conflict", "kick", "connect", "conflict", "kick",
                               "connect"], got
        run(body())
