"""Webapp: validation, envelopes, auth, routing and retry rules, settings, metrics.

The database is an in-memory ``FakeStore``; coreapps and masters are small aiohttp servers on
127.0.0.1 whose answers each test chooses. The real-database cluster test lives elsewhere.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import socket
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from multiconnect import api_errors as E
from multiconnect.clock import FakeClock, SystemClock
from multiconnect.config import DbConfig, NodeConfig
from multiconnect.db import DatabaseError, NodeRow, ShardRow, hash_password
from multiconnect.media import MediaUnavailable, open_media_store
from multiconnect.settings import Settings, apply_patch
from multiconnect.sharding import recipients_for_shard, shard_bounds
from multiconnect.webapp import (
    Metrics,
    MysqlStore,
    Webapp,
    WebappDeps,
    WebappOptions,
    validate_message,
)

T = TypeVar("T")
HOST = "127.0.0.1"
TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def run(coro: Awaitable[T], timeout: float = 30.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


def closed_port() -> int:
    """A loopback port with nothing listening (connections are refused)."""
    s = socket.socket()
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def the_error(body: dict[str, Any]) -> dict[str, Any]:
    """The single error of an envelope (asserts the shape)."""
    assert set(body) == {"errors"}, body
    assert len(body["errors"]) == 1, body
    err = body["errors"][0]
    assert set(err) == {"code", "title", "details"}, err
    assert err["title"] == E.TITLES[err["code"]]
    return err


# ------------------------------------------------------------------------------ fakes
class FakeStore:
    """In-memory stand-in for the database (the Store protocol). ``down`` fails every call."""

    def __init__(self) -> None:
        self.down = False
        self.schema = 1
        self.shards: list[ShardRow] = []
        self.nodes_: list[NodeRow] = []
        self.users: dict[str, tuple[str, bool]] = {"admin": (hash_password("secret"), True)}
        self.tokens: dict[str, tuple[str, float]] = {TOKEN: ("admin", 3600.0)}
        self.lease = ("master-1", 1, True)
        self.settings_ = Settings()
        self.shard_count_ = 1
        self.registered: list[tuple[str, str, str]] = []
        self.calls: Counter[str] = Counter()

    def _use(self, what: str) -> None:
        self.calls[what] += 1
        if self.down:
            raise DatabaseError("fake: database down")

    def set_map(self, owners: list[str | None], epoch: int = 1) -> None:
        n = len(owners)
        self.shards = [ShardRow(s, *shard_bounds(s, n), owners[s], epoch, False)
                       for s in range(n)]
        self.shard_count_ = n

    def add_node(self, name: str, role: str, address: str) -> None:
        self.nodes_ = [n for n in self.nodes_ if n.name != name]
        self.nodes_.append(NodeRow(name, role, address, address, f"c-{name}", 0.1))

    async def schema_version(self) -> int:
        self._use("schema_version")
        return self.schema

    async def register(self, name: str, address: str, container_id: str) -> None:
        self._use("register")
        self.registered.append((name, address, container_id))

    async def touch(self, name: str, address: str, container_id: str) -> None:
        self._use("touch")

    async def topology(self) -> tuple[list[ShardRow], list[NodeRow]]:
        self._use("topology")
        return list(self.shards), list(self.nodes_)

    async def nodes(self, deadline: float | None = None) -> list[NodeRow]:
        self._use("nodes")
        return list(self.nodes_)

    async def lease_holder(self) -> tuple[str | None, int, bool]:
        self._use("lease_holder")
        return self.lease

    async def settings(self, deadline: float | None = None) -> Settings:
        self._use("settings")
        return self.settings_

    async def shard_count(self) -> int:
        self._use("shard_count")
        return self.shard_count_

    async def stats(self) -> dict[str, Any]:
        self._use("stats")
        return {"server_version": "fake", "tables": {}, "schema_version": self.schema}

    async def get_user(self, username: str) -> tuple[str, bool] | None:
        self._use("get_user")
        return self.users.get(username)

    async def set_password(self, username: str, password_hash: str) -> None:
        self._use("set_password")
        self.users[username] = (password_hash, False)

    async def issue_token(self, token: str, username: str, ttl: int) -> datetime:
        self._use("issue_token")
        self.tokens[token] = (username, float(ttl))
        return datetime(2030, 1, 1, 12, 0, 0, 123456) + timedelta(seconds=ttl)

    async def token(self, token: str) -> tuple[str, float] | None:
        self._use("token")
        return self.tokens.get(token)


class FakeNode:
    """A coreapp or master on 127.0.0.1; ``behaviour`` picks its answer to forwards."""

    def __init__(self, name: str, role: str = "coreapp") -> None:
        self.name = name
        self.role = role
        self.behaviour = "ok"
        self.received: list[dict[str, Any]] = []
        self.release = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    async def h_message(self, request: web.Request) -> web.Response:
        self.received.append(await request.json())
        b = self.behaviour
        if b == "hang":
            await self.release.wait()
        if b == "409":
            return web.json_response(E.error_body(1018, f"{self.name} not primary"), status=409)
        if b == "503":
            return web.json_response(E.error_body(1011, "not confirmed"), status=503)
        if b == "503-gateway":
            return web.json_response(E.error_body(1014, "gateway send failed"), status=503)
        if b == "500":
            return web.json_response({}, status=500)
        return web.json_response({"id": self.received[-1]["id"]})

    async def h_status(self, request: web.Request) -> web.Response:
        role = "primary_master" if self.role == "master" else "coreapp"
        return web.json_response({"node": self.name, "role": role,
                                  "gateway_status": "connected", "shard": 0})

    async def h_master(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.received.append({"path": request.path, "method": request.method, "body": body})
        if self.behaviour == "secondary":
            return web.json_response(E.error_body(1017, "master-1 is secondary"), status=503)
        if request.path == "/internal/shards":
            return web.json_response({"account": {"shards": body["shards"]}}, status=201)
        return web.json_response({"meta": {"settings_version": 2}})

    async def start(self) -> FakeNode:
        app = web.Application()
        app.router.add_post("/internal/messages", self.h_message)
        app.router.add_get("/internal/status", self.h_status)
        app.router.add_patch("/internal/settings", self.h_master)
        app.router.add_post("/internal/shards", self.h_master)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, HOST, 0)
        await site.start()
        self.port = self.runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        self.release.set()
        if self.runner is not None:
            await self.runner.cleanup()


class FakeMedia:
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def put(self, data: bytes, content_type: str) -> str:
        raise self.error

    async def get(self, media_id: str) -> tuple[bytes, str]:
        raise self.error


def make_cfg(routes: dict[str, str] | None = None) -> NodeConfig:
    return NodeConfig(role="webapp", name="webapp-1", db=DbConfig(),
                      advertise_address="webapp-1:6250", heartbeat_address="webapp-1:6253",
                      routes=routes or {}, container_id="cafe0001")


@contextlib.asynccontextmanager
async def serve(store: FakeStore, *, media: Any = None, clock: Any = None,
                routes: dict[str, str] | None = None, load_map: bool = True,
                max_body: int = 1 << 20) -> AsyncIterator[tuple[Webapp, TestClient]]:
    opts = WebappOptions(message_timeout=0.3, health_timeout=0.3, master_timeout=0.5,
                         refresh_deadline=0.5, max_body=max_body)
    webapp = Webapp(make_cfg(routes), WebappDeps(store=store, media_factory=lambda: media,
                                                 clock=clock or SystemClock(), options=opts))
    async with TestClient(TestServer(webapp.app())) as client:
        if load_map:
            assert await webapp.refresh_topology(None)
        yield webapp, client


@contextlib.asynccontextmanager
async def nodes(*specs: tuple[str, str]) -> AsyncIterator[list[FakeNode]]:
    started = [await FakeNode(name, role).start() for name, role in specs]
    try:
        yield started
    finally:
        for n in started:
            await n.stop()


def two_shard_cluster(store: FakeStore, c1: FakeNode, c2: FakeNode) -> None:
    store.add_node(c1.name, "coreapp", c1.address)
    store.add_node(c2.name, "coreapp", c2.address)
    store.set_map([c1.name, c2.name])


async def send(client: TestClient, to: str, body: str = "hi") -> tuple[int, dict[str, Any]]:
    resp = await client.post("/v1/messages", headers=AUTH, json={
        "recipient_type": "individual", "to": to, "type": "text", "text": {"body": body}})
    return resp.status, await resp.json()


SHARD0, SHARD1 = recipients_for_shard(0, 2, 1)[0], recipients_for_shard(1, 2, 1)[0]


# ------------------------------------------------------------------------------ envelopes
def test_unknown_route_method_and_bad_json_use_the_envelope() -> None:
    async def body() -> None:
        async with serve(FakeStore()) as (_, client):
            r = await client.get("/v1/nothing-here", headers=AUTH)
            assert r.status == 404
            assert the_error(await r.json())["code"] == E.NOT_FOUND
            r = await client.get("/v1/messages", headers=AUTH)
            assert r.status == 405
            err = the_error(await r.json())
            assert err["code"] == E.INVALID_REQUEST and "POST" in err["details"]
            r = await client.post("/v1/messages", headers=AUTH, data=b"{not json")
            assert r.status == 400
            assert the_error(await r.json())["code"] == E.INVALID_REQUEST
    run(body())


@pytest.mark.parametrize("payload, status, code, field", [
    ([], 400, E.INVALID_REQUEST, "object"),
    ({"type": "text", "text": {"body": "x"}}, 400, E.MISSING_PARAMETER, "to"),
    ({"to": "12ab34567", "text": {"body": "x"}}, 400, E.INVALID_PARAMETER, "to"),
    ({"to": 15551234567, "text": {"body": "x"}}, 400, E.INVALID_PARAMETER, "to"),
    ({"to": "15551234567", "recipient_type": "group", "text": {"body": "x"}}, 400,
     E.INVALID_RECIPIENT_TYPE, "recipient_type"),
    ({"to": "15551234567", "type": "image", "text": {"body": "x"}}, 400,
     E.INVALID_PARAMETER, "type"),
    ({"to": "15551234567", "type": "text"}, 400, E.MISSING_PARAMETER, "text"),
    ({"to": "15551234567", "text": "hello"}, 400, E.INVALID_PARAMETER, "text"),
    ({"to": "15551234567", "text": {}}, 400, E.MISSING_PARAMETER, "text.body"),
    ({"to": "15551234567", "text": {"body": ""}}, 400, E.INVALID_PARAMETER, "text.body"),
    ({"to": "15551234567", "text": {"body": "x" * 4097}}, 400, E.MESSAGE_TOO_LONG,
     "text.body"),
])
def test_message_validation_names_the_bad_field(payload: Any, status: int, code: int,
                                                field: str) -> None:
    async def body() -> None:
        store = FakeStore()
        store.set_map(["coreapp-1"])
        async with serve(store) as (_, client):
            r = await client.post("/v1/messages", headers=AUTH, json=payload)
            assert r.status == status
            err = the_error(await r.json())
            assert err["code"] == code
            assert field in err["details"]
    run(body())


def test_validate_message_accepts_the_documented_shape() -> None:
    assert validate_message({"recipient_type": "individual", "to": "15551234567",
                             "type": "text", "text": {"body": "hello"}}) == ("15551234567",
                                                                             "hello")


# ------------------------------------------------------------------------------ auth
def test_missing_or_invalid_token_is_401() -> None:
    async def body() -> None:
        async with serve(FakeStore()) as (_, client):
            for headers in ({}, {"Authorization": "Bearer nope"},
                            {"Authorization": "Basic YWRtaW46c2VjcmV0"}):
                for path in ("/v1/health", "/metrics", "/v1/stats/app"):
                    r = await client.get(path, headers=headers)
                    assert r.status == 401, (path, headers)
                    assert the_error(await r.json())["code"] == E.ACCESS_DENIED
            r = await client.get("/v1/stats/app", headers=AUTH)
            assert r.status == 200
    run(body())


def test_first_login_requires_a_password_change() -> None:
    async def body() -> None:
        store = FakeStore()
        async with serve(store) as (_, client):
            r = await client.post("/v1/users/login")
            assert r.status == 401
            r = await client.post("/v1/users/login", headers=basic("admin", "wrong"))
            assert r.status == 401
            assert the_error(await r.json())["code"] == E.ACCESS_DENIED
            r = await client.post("/v1/users/login", headers=basic("admin", "secret"))
            assert r.status == 400
            assert the_error(await r.json())["code"] == E.PASSWORD_CHANGE_REQUIRED
            r = await client.post("/v1/users/login", headers=basic("admin", "secret"),
                                  json={"new_password": "short"})
            assert r.status == 400
            err = the_error(await r.json())
            assert err["code"] == E.INVALID_PARAMETER and "new_password" in err["details"]
            assert "issue_token" not in store.calls

            r = await client.post("/v1/users/login", headers=basic("admin", "secret"),
                                  json={"new_password": "correct horse"})
            assert r.status == 200
            users = (await r.json())["users"]
            assert len(users) == 1
            token = users[0]["token"]
            assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+00:00", users[0]["expires_after"])
            assert users[0]["expires_after"] == "2030-01-08 12:00:00+00:00"  # fake db + 7 days
            r = await client.get("/v1/stats/app", headers={"Authorization": f"Bearer {token}"})
            assert r.status == 200
            # the old password is gone, the new one logs in without a change
            r = await client.post("/v1/users/login", headers=basic("admin", "secret"))
            assert r.status == 401
            r = await client.post("/v1/users/login", headers=basic("admin", "correct horse"))
            assert r.status == 200
    run(body())


def test_cached_token_survives_a_database_outage_until_it_expires() -> None:
    async def body() -> None:
        store, clock = FakeStore(), FakeClock()
        store.tokens[TOKEN] = ("admin", 100.0)
        async with serve(store, clock=clock) as (_, client):
            assert (await client.get("/v1/stats/app", headers=AUTH)).status == 200
            store.down = True
            r = await client.get("/v1/stats/app", headers=AUTH)
            assert r.status == 200
            # an unknown token cannot be checked while the database is down: not a 401
            r = await client.get("/v1/stats/app", headers={"Authorization": "Bearer other"})
            assert r.status == 503
            assert the_error(await r.json())["code"] == E.DATABASE_ERROR
            clock.advance(101.0)
            r = await client.get("/v1/stats/app", headers=AUTH)
            assert r.status == 401
    run(body())


# ------------------------------------------------------------------------------ routing
def test_message_goes_to_the_owner_of_its_shard() -> None:
    async def body() -> None:
        store = FakeStore()
        async with nodes(("coreapp-1", "coreapp"), ("coreapp-2", "coreapp")) as (c1, c2):
            two_shard_cluster(store, c1, c2)
            async with serve(store) as (_, client):
                status, data = await send(client, SHARD1, "to shard one")
                assert status == 201
                assert c1.received == []
                assert len(c2.received) == 1
                fwd = c2.received[0]
                assert fwd == {"id": data["messages"][0]["id"], "to": SHARD1,
                               "body": "to shard one", "shard": 1}
                assert fwd["id"].startswith("gBEG")
                status, _ = await send(client, SHARD0)
                assert status == 201 and len(c1.received) == 1
    run(body())


def test_route_override_from_config_is_used() -> None:
    async def body() -> None:
        store = FakeStore()
        async with nodes(("coreapp-1", "coreapp")) as (c1,):
            store.add_node("coreapp-1", "coreapp", "unresolvable.invalid:6250")
            store.set_map(["coreapp-1"])
            async with serve(store, routes={"coreapp-1": c1.address}) as (_, client):
                status, _ = await send(client, SHARD0)
                assert status == 201 and len(c1.received) == 1
    run(body())


@pytest.mark.parametrize("failure", ["refused", "409", "503"])
def test_not_sent_answer_is_retried_once_on_the_new_owner(failure: str) -> None:
    async def body() -> None:
        store = FakeStore()
        async with nodes(("coreapp-1", "coreapp"), ("coreapp-3", "coreapp")) as (c1, c3):
            store.add_node("coreapp-1", "coreapp",
                           f"{HOST}:{closed_port()}" if failure == "refused" else c1.address)
            store.add_node("coreapp-3", "coreapp", c3.address)
            c1.behaviour = failure
            store.set_map(["coreapp-1"])
            async with serve(store) as (webapp, client):
                store.set_map(["coreapp-3"], epoch=2)   # promotion the webapp has not seen
                status, data = await send(client, SHARD0)
                assert status == 201, data
                assert len(c3.received) == 1
                assert c3.received[0]["id"] == data["messages"][0]["id"]
                assert len(c1.received) == (0 if failure == "refused" else 1)
                assert webapp.metrics.retries == 1
    run(body())


@pytest.mark.parametrize("failure, code", [("refused", E.SERVICE_NOT_READY),
                                           ("409", E.NOT_PRIMARY_COREAPP),
                                           ("503", E.SERVICE_NOT_READY)])
def test_not_sent_without_a_new_owner_is_503_without_retry(failure: str, code: int) -> None:
    async def body() -> None:
        store = FakeStore()
        async with nodes(("coreapp-1", "coreapp")) as (c1,):
            store.add_node("coreapp-1", "coreapp",
                           f"{HOST}:{closed_port()}" if failure == "refused" else c1.address)
            c1.behaviour = failure
            store.set_map(["coreapp-1"])
            async with serve(store) as (webapp, client):
                status, data = await send(client, SHARD0)
                assert status == 503
                assert the_error(data)["code"] == code
                assert len(c1.received) == (0 if failure == "refused" else 1)
                assert webapp.metrics.retries == 0
    run(body())


def test_retry_happens_at_most_once() -> None:
    async def body() -> None:
        store = FakeStore()
        async with nodes(*((f"coreapp-{i}", "coreapp") for i in (1, 2, 3))) as cs:
            for c in cs:
                store.add_node(c.name, "coreapp", c.address)
                c.behaviour = "409"
            store.set_map(["coreapp-1"])
            async with serve(store) as (webapp, client):
                store.set_map(["coreapp-2"], epoch=2)
                original = store.topology

                async def moving() -> Any:  # every re-read finds yet another owner
                    result = await original()
                    store.set_map(["coreapp-3"], epoch=3)
                    return result
                store.topology = moving  # type: ignore[method-assign]
                status, data = await send(client, SHARD0)
                assert status == 503
                assert the_error(data)["code"] == E.NOT_PRIMARY_COREAPP
                assert [len(c.received) for c in cs] == [1, 1, 0]
                assert webapp.metrics.retries == 1
    run(body())


@pytest.mark.parametrize("behaviour, status", [("hang", 504), ("503-gateway", 502),
                                               ("500", 502)])
def test_unknown_outcome_is_never_retried(behaviour: str, status: int) -> None:
    async def body() -> None:
        store = FakeStore()
        async with nodes(("coreapp-1", "coreapp"), ("coreapp-3", "coreapp")) as (c1, c3):
            store.add_node("coreapp-1", "coreapp", c1.address)
            store.add_node("coreapp-3", "coreapp", c3.address)
            c1.behaviour = behaviour
            store.set_map(["coreapp-1"])
            async with serve(store) as (webapp, client):
                store.set_map(["coreapp-3"], epoch=2)
                got, data = await send(client, SHARD0)
                assert got == status
                err = the_error(data)
                assert err["code"] == E.INTERNAL_ERROR and "may have been sent" in err["details"]
                assert len(c1.received) == 1
                assert c3.received == []
                assert webapp.metrics.retries == 0
                assert webapp.metrics.shard_sends == {(0, "unknown"): 1}
    run(body())


def test_no_owner_for_the_shard_is_503_service_not_ready() -> None:
    async def body() -> None:
        store = FakeStore()
        async with nodes(("coreapp-1", "coreapp")) as (c1,):
            store.add_node("coreapp-1", "coreapp", c1.address)
            store.set_map(["coreapp-1", None])
            async with serve(store) as (_, client):
                status, data = await send(client, SHARD1)
                assert status == 503
                err = the_error(data)
                assert err["code"] == E.SERVICE_NOT_READY and "shard 1" in err["details"]
                assert c1.received == []
    run(body())


def test_cached_shard_map_keeps_routing_while_the_database_is_down() -> None:
    async def body() -> None:
        store = FakeStore()
        async with nodes(("coreapp-1", "coreapp"), ("coreapp-2", "coreapp")) as (c1, c2):
            two_shard_cluster(store, c1, c2)
            async with serve(store) as (webapp, client):
                assert (await send(client, SHARD1))[0] == 201   # token now cached
                store.down = True
                assert not await webapp.refresh_topology(None)
                status, _ = await send(client, SHARD1)
                assert status == 201 and len(c2.received) == 2
                status, _ = await send(client, SHARD0)
                assert status == 201 and len(c1.received) == 1
    run(body())


# ------------------------------------------------------------------------------ health
def test_health_has_one_entry_per_master_and_coreapp() -> None:
    async def body() -> None:
        store = FakeStore()
        async with nodes(("master-1", "master"), ("coreapp-1", "coreapp")) as (m1, c1):
            store.add_node("master-1", "master", m1.address)
            store.add_node("coreapp-1", "coreapp", c1.address)
            store.add_node("coreapp-2", "coreapp", f"{HOST}:{closed_port()}")
            store.add_node("webapp-1", "webapp", "webapp-1:6250")
            store.set_map(["coreapp-1"])
            async with serve(store) as (_, client):
                r = await client.get("/v1/health", headers=AUTH)
                assert r.status == 200
                health = (await r.json())["health"]
                assert set(health) == {"master-1:c-master-1", "coreapp-1:c-coreapp-1",
                                       "coreapp-2:c-coreapp-2"}
                assert health["master-1:c-master-1"] == {"gateway_status": "connected",
                                                         "role": "primary_master"}
                assert health["coreapp-1:c-coreapp-1"] == {"gateway_status": "connected",
                                                           "role": "coreapp"}
                err = the_error(health["coreapp-2:c-coreapp-2"])
                assert err["code"] == E.INTERNAL_ERROR
                assert err["details"].startswith("coreapp-2 unreachable")
    run(body())


# ------------------------------------------------------------------------------ settings, shards
def test_settings_get_and_patch_forwarded_to_the_primary_master() -> None:
    async def body() -> None:
        store = FakeStore()
        async with nodes(("master-1", "master")) as (m1,):
            store.add_node("master-1", "master", m1.address)
            store.set_map(["coreapp-1"])
            async with serve(store) as (_, client):
                r = await client.get("/v1/settings/application", headers=AUTH)
                assert r.status == 200
                assert (await r.json()) == {"settings": {"application": Settings().to_api()}}
                patch = {"heartbeat_interval": 2, "unhealthy_interval": 10}
                r = await client.patch("/v1/settings/application", headers=AUTH, json=patch)
                assert r.status == 200
                assert m1.received == [{"path": "/internal/settings", "method": "PATCH",
                                        "body": patch}]
    run(body())


@pytest.mark.parametrize("patch, field", [
    ({"heartbeat_interval": 0}, "heartbeat_interval"),
    ({"heartbeat_interval": "5"}, "heartbeat_interval"),
    ({"unhealthy_interval": 9}, "unhealthy_interval"),     # < 2 × heartbeat (5)
    ({"webhooks": {"url": "ftp://x"}}, "webhooks.url"),
    ({"bogus": 1}, "bogus"),
    ({}, "body"),
])
def test_bad_settings_are_rejected_before_forwarding(patch: dict[str, Any], field: str) -> None:
    async def body() -> None:
        store = FakeStore()
        async with nodes(("master-1", "master")) as (m1,):
            store.add_node("master-1", "master", m1.address)
            async with serve(store) as (_, client):
                r = await client.patch("/v1/settings/application", headers=AUTH, json=patch)
                assert r.status == 400
                err = the_error(await r.json())
                assert err["code"] == E.INVALID_PARAMETER
                assert err["details"].startswith(f"{field}:")
                assert m1.received == []
                assert "lease_holder" not in store.calls
    run(body())


def test_settings_patch_without_a_live_primary_master_is_503() -> None:
    async def body() -> None:
        store = FakeStore()
        store.lease = ("master-1", 4, False)
        async with serve(store) as (_, client):
            r = await client.patch("/v1/settings/application", headers=AUTH,
                                   json={"heartbeat_interval": 3})
            assert r.status == 503
            assert the_error(await r.json())["code"] == E.NOT_PRIMARY_MASTER
        # a master that answers "secondary" is relayed as such
        store.lease = ("master-1", 4, True)
        async with nodes(("master-1", "master")) as (m1,):
            m1.behaviour = "secondary"
            store.add_node("master-1", "master", m1.address)
            async with serve(store) as (_, client):
                r = await client.patch("/v1/settings/application", headers=AUTH,
                                       json={"heartbeat_interval": 3})
                assert r.status == 503
                assert the_error(await r.json())["code"] == E.NOT_PRIMARY_MASTER
    run(body())


def test_apply_patch_agrees_with_the_webapp_on_a_good_patch() -> None:
    assert apply_patch(Settings(), {"heartbeat_interval": 2}).heartbeat_interval == 2


@pytest.mark.parametrize("payload, field", [
    ({"phone_number": "5550000001", "shards": 2}, "cc"),
    ({"cc": "1", "phone_number": "5550000001", "shards": 3}, "shards"),
    ({"cc": "1", "phone_number": "5550000001", "shards": True}, "shards"),
    ({"cc": "1x", "phone_number": "5550000001", "shards": 2}, "cc"),
    ({"cc": "1", "phone_number": "555-0001", "shards": 2}, "phone_number"),
    ({"cc": "1", "phone_number": "5550000001", "shards": 2, "pin": 1234}, "pin"),
])
def test_shards_request_validation(payload: dict[str, Any], field: str) -> None:
    async def body() -> None:
        store = FakeStore()
        async with nodes(("master-1", "master")) as (m1,):
            store.add_node("master-1", "master", m1.address)
            async with serve(store) as (_, client):
                r = await client.post("/v1/account/shards", headers=AUTH, json=payload)
                assert r.status == 400
                assert field in the_error(await r.json())["details"]
                assert m1.received == []
    run(body())


def test_shards_set_and_get() -> None:
    async def body() -> None:
        store = FakeStore()
        async with nodes(("master-1", "master")) as (m1,):
            store.add_node("master-1", "master", m1.address)
            async with serve(store) as (_, client):
                r = await client.post("/v1/account/shards", headers=AUTH, json={
                    "cc": "1", "phone_number": "5550000001", "shards": 4, "pin": "123456"})
                assert r.status == 201
                assert m1.received == [{"path": "/internal/shards", "method": "POST",
                                        "body": {"shards": 4}}]
                store.shard_count_ = 4
                r = await client.get("/v1/account/shards", headers=AUTH)
                assert (await r.json()) == {"account": {"shards": 4}}
    run(body())


# ------------------------------------------------------------------------------ media
def test_media_upload_and_download(tmp_path: Any) -> None:
    async def body() -> None:
        media = open_media_store(str(tmp_path), 2.0)
        async with serve(FakeStore(), media=media) as (_, client):
            r = await client.post("/v1/media", headers={**AUTH, "Content-Type": "image/png"},
                                  data=b"")
            assert r.status == 400
            assert the_error(await r.json())["code"] == E.MISSING_PARAMETER
            blob = bytes(range(256)) * 40
            r = await client.post("/v1/media", headers={**AUTH, "Content-Type": "image/png"},
                                  data=blob)
            assert r.status == 201
            media_id = (await r.json())["media"][0]["id"]
            r = await client.get(f"/v1/media/{media_id}", headers=AUTH)
            assert r.status == 200
            assert r.headers["Content-Type"] == "image/png"
            assert await r.read() == blob
            r = await client.get("/v1/media/0123456789abcdef", headers=AUTH)
            assert r.status == 404
            assert the_error(await r.json())["code"] == E.NOT_FOUND
    run(body())


def test_body_over_the_limit_is_413_envelope(tmp_path: Any) -> None:
    async def body() -> None:
        media = open_media_store(str(tmp_path), 2.0)
        async with serve(FakeStore(), media=media, max_body=1000) as (_, client):
            r = await client.post("/v1/media", headers={**AUTH, "Content-Type": "text/plain"},
                                  data=b"x" * 1001)
            assert r.status == 413
            assert the_error(await r.json())["code"] == E.INVALID_REQUEST
            assert list(tmp_path.iterdir()) == []
    run(body())


def test_media_store_unavailable_is_503() -> None:
    async def body() -> None:
        media = FakeMedia(MediaUnavailable("nfs: no answer within 0.1 s"))
        async with serve(FakeStore(), media=media) as (_, client):
            r = await client.post("/v1/media", headers={**AUTH, "Content-Type": "text/plain"},
                                  data=b"abc")
            assert r.status == 503
            assert the_error(await r.json())["code"] == E.SERVICE_NOT_READY
            r = await client.get("/v1/media/0123456789abcdef", headers=AUTH)
            assert r.status == 503
    run(body())


# ------------------------------------------------------------------------------ metrics, misc
def test_metrics_json_and_prometheus() -> None:
    async def body() -> None:
        store = FakeStore()
        async with nodes(("coreapp-1", "coreapp")) as (c1,):
            store.add_node("coreapp-1", "coreapp", c1.address)
            store.set_map(["coreapp-1"])
            async with serve(store) as (_, client):
                assert (await send(client, SHARD0))[0] == 201
                assert (await client.get("/v1/nope", headers=AUTH)).status == 404
                r = await client.get("/metrics", headers=AUTH, params={"format": "prometheus"})
                assert r.status == 200
                assert r.headers["Content-Type"].startswith("text/plain")
                text = await r.text()
                assert ('webapp_requests_total{route="/v1/messages",method="POST",status="201"} 1'
                        in text.splitlines())
                assert ('webapp_requests_total{route="unmatched",method="GET",status="404"} 1'
                        in text.splitlines())
                assert "webapp_message_send_seconds_count 1" in text.splitlines()
                assert 'webapp_shard_sends_total{shard="0",outcome="ok"} 1' in text.splitlines()
                assert "# TYPE webapp_message_send_seconds summary" in text.splitlines()
                for line in text.splitlines():  # every sample line: name{labels} number
                    if not line.startswith("#"):
                        assert re.fullmatch(r'[a-z_]+(\{[^}]*\})? -?[0-9.e+-]+', line), line
                r = await client.get("/metrics", headers=AUTH)
                data = await r.json()
                assert data["message_send_seconds"]["count"] == 1
                assert data["routing_retries"] == 0
                assert {"route": "/v1/messages", "method": "POST", "status": 201,
                        "count": 1} in data["requests"]
                r = await client.get("/metrics", headers=AUTH, params={"format": "xml"})
                assert r.status == 400
    run(body())


def test_metrics_quantiles_follow_the_samples() -> None:
    m = Metrics()
    for i in range(1, 101):
        m.sent(0, "ok", i / 100)
    q = m.quantiles()
    assert q["0.5"] == pytest.approx(0.51) and q["0.99"] == pytest.approx(1.0)
    assert m.to_json()["message_send_seconds"]["count"] == 100


def test_support_and_db_stats() -> None:
    async def body() -> None:
        store = FakeStore()
        async with serve(store) as (_, client):
            r = await client.get("/v1/support", headers=AUTH)
            assert "webapp" in (await r.json())["support"]["versions"]
            r = await client.get("/v1/stats/db", headers=AUTH)
            assert (await r.json())["db"]["schema_version"] == 1
            store.down = True
            r = await client.get("/v1/stats/db", headers=AUTH)
            assert r.status == 503
            assert the_error(await r.json())["code"] == E.DATABASE_ERROR
    run(body())


def test_ready_only_after_registration() -> None:
    async def body() -> None:
        store = FakeStore()
        store.schema = 0
        async with serve(store, load_map=False) as (webapp, client):
            r = await client.get("/internal/ready")
            assert r.status == 503 and (await r.json()) == {"ready": False}
            stop = asyncio.Event()
            boot = asyncio.ensure_future(webapp.bootstrap(stop))
            while store.calls["schema_version"] < 1:
                await asyncio.sleep(0.01)
            assert store.registered == []           # schema 0: still waiting
            store.schema = 1
            assert await boot
            assert store.registered == [("webapp-1", "webapp-1:6250", "cafe0001")]
            r = await client.get("/internal/ready")
            assert r.status == 200 and (await r.json()) == {"ready": True}
            stop.set()
    run(body())


# ------------------------------------------------------------------------------ the pool
class BlockingDb:
    """A Database stand-in whose calls block until released (a hung database)."""

    def __init__(self, cfg: DbConfig) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.active = 0

    def run(self, fn: Any, *, transaction: bool = False) -> Any:
        self.active += 1
        try:
            self.gate.wait(10)
            return fn(None)
        finally:
            self.active -= 1

    def close_unlocked(self) -> None:
        pass


def test_store_call_times_out_and_never_shares_a_busy_connection() -> None:
    async def body() -> None:
        store = MysqlStore(DbConfig(), pool_size=1, connect=BlockingDb)
        db = store._all[0]
        try:
            assert await store.call(lambda cur, x: x + 1, 41) == 42
            db.gate.clear()
            with pytest.raises(DatabaseError, match="no answer within"):
                await store.call(lambda cur: 1, deadline=0.1)
            # the only connection is still busy in its thread: the next call must wait for
            # it, not run concurrently on it
            second = asyncio.ensure_future(store.call(lambda cur: db.active, deadline=5))
            await asyncio.sleep(0)
            assert not second.done()
            db.gate.set()
            assert await second == 1               # ran alone on the connection
        finally:
            db.gate.set()
            store.close()
    run(body())
