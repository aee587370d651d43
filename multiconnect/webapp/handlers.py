"""The webapp's HTTP side: the routes and their handlers, the caches that keep it serving while
the database is away, and the forwarding rules.

Model.
- State lives in the database; the webapp keeps in memory only what lets it keep serving
  while the database is away: the shard map and node addresses (refreshed every 0.5 s and on
  demand), validated tokens (until their expiry), the last settings and node list read.
- ``POST /v1/messages``: ``shard = shard_of(to, len(shard map))``, owner = the map's hostname
  for that shard, forwarded to ``POST http://<owner>/internal/messages``. The coreapp answers
  200 only after the gateway acknowledged. Only answers that prove the message was **not**
  sent (connection refused, 409 not primary, 503 code 1011 not ready) are retried, once, and
  only if a fresh map names a different owner. A timeout, a dropped connection or any other
  answer leaves the outcome unknown: never retried (a retry could duplicate), reported as
  502/504 so the client knows it may have been sent.
- Master-only commands (settings PATCH, shard count) go to the lease holder's internal HTTP.
- Every /v1 route and /metrics need ``Authorization: Bearer <token>``, except login.
  ``GET /internal/ready`` is open (container readiness).

Errors use the envelope of :mod:`multiconnect.api_errors` (codes documented there). The
database is reached through :class:`~multiconnect.webapp.store.Store`, request bodies are
checked by :mod:`multiconnect.webapp.validation`, counters kept in
:class:`~multiconnect.webapp.metrics.Metrics`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import platform
import re
import secrets
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from .. import __version__
from .. import api_errors as E
from .. import db as dbq
from ..api_errors import ApiError
from ..clock import Clock, SystemClock
from ..config import NodeConfig
from ..db import DatabaseError, NodeRow, ShardRow
from ..media import (
    DEFAULT_MAX_SIZE,
    MediaError,
    MediaInvalid,
    MediaNotFound,
    MediaTooLarge,
    MediaUnavailable,
)
from ..roles import sender
from ..roles.sender import Attempt, Sender
from ..settings import Settings, SettingsError, apply_patch
from ..sharding import shard_of
from ..shell import awaiting, drive, sleep_or_stop, spawn
from .metrics import Metrics
from .store import Store
from .validation import parse_basic, read_json, validate_message, validate_shards_request

log = logging.getLogger("multiconnect.webapp")

TOKEN_TTL = 7 * 86400
MIN_PASSWORD = 8
PUBLIC_ROUTES = {("POST", "/v1/users/login"), ("GET", "/internal/ready")}
_MEDIA_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


@dataclass(frozen=True)
class WebappOptions:
    """Timeouts (s), periods (s) and limits of the webapp; the defaults are production's."""

    message_timeout: float = 2.0     # forward to a coreapp
    health_timeout: float = 0.5      # per node status query
    master_timeout: float = 3.0      # forward to the primary master
    refresh_interval: float = 0.5    # shard map refresh period
    refresh_deadline: float = 1.0    # on-demand refresh budget before using the cache
    touch_interval: float = 10.0     # nodes.last_seen refresh
    media_guard: float = 10.0        # backstop over the media store's own timeout
    max_body: int = DEFAULT_MAX_SIZE + 65536  # media store limit + room for headers
    token_cache_max: int = 10000


@dataclass
class WebappDeps:
    """Everything the webapp talks to, injectable for tests."""

    store: Store
    media_factory: Callable[[], Any]   # -> MediaStore (async put/get); may raise MediaError
    clock: Clock = field(default_factory=SystemClock)
    options: WebappOptions = field(default_factory=WebappOptions)


def new_message_id() -> str:
    return "gBEG" + base64.urlsafe_b64encode(os.urandom(18)).decode("ascii")


class Webapp(Sender):
    """The webapp's state and handlers (see the module docstring for the model)."""

    def __init__(self, cfg: NodeConfig, deps: WebappDeps) -> None:
        self.cfg = cfg
        self.store = deps.store
        self.clock = deps.clock
        self.opts = deps.options
        self.refresh_deadline = self.opts.refresh_deadline
        self._media_factory = deps.media_factory
        self._media: Any = None
        self.metrics = Metrics()
        self.ready = False
        self.session: aiohttp.ClientSession | None = None
        self.tasks: set[asyncio.Task] = set()
        # caches
        self.shard_rows: list[ShardRow] = []
        self.node_rows: dict[str, NodeRow] = {}
        self.map_loaded_at: float | None = None
        self._refreshing: asyncio.Task | None = None
        self._db_down = False
        self.tokens: dict[str, tuple[str, float]] = {}   # token -> (user, monotonic expiry)
        self.cached_settings: Settings | None = None

    # ------------------------------------------------------------------ application
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.middleware], client_max_size=self.opts.max_body)
        r = app.router
        r.add_post("/v1/users/login", self.h_login)
        r.add_get("/v1/health", self.h_health)
        r.add_post("/v1/messages", self.h_messages)
        r.add_post("/v1/media", self.h_media_upload)
        r.add_get("/v1/media/{id}", self.h_media_get)
        r.add_get("/v1/settings/application", self.h_settings_get)
        r.add_patch("/v1/settings/application", self.h_settings_patch)
        r.add_get("/v1/account/shards", self.h_shards_get)
        r.add_post("/v1/account/shards", self.h_shards_post)
        r.add_get("/metrics", self.h_metrics)
        r.add_get("/v1/stats/app", self.h_stats_app)
        r.add_get("/v1/stats/db", self.h_stats_db)
        r.add_get("/v1/support", self.h_support)
        r.add_get("/internal/ready", self.h_ready)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        # force_close: a fresh connection per forward, so a dropped connection always means
        # the peer saw our request (never a stale keep-alive closing under us)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True, limit=0))

    async def _on_cleanup(self, app: web.Application) -> None:
        tasks = list(self.tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.session is not None:
            await self.session.close()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        details = ""
        try:
            exc = request.match_info.http_exception
            if exc is not None:
                raise exc
            if (request.method, request.path) not in PUBLIC_ROUTES:
                request["user"] = await self.authenticate(request)
            resp = await handler(request)
        except ApiError as e:
            resp, details = e.response(), e.details
        except web.HTTPException as e:
            resp = E.from_http_exception(e)
            details = e.reason
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug: answer with the envelope, log the traceback
            log.exception("%s %s failed", request.method, request.path)
            resp = E.error_response(500, E.INTERNAL_ERROR, f"{type(e).__name__}: {e}")
            details = str(e)
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        self.metrics.request(route, request.method, resp.status)
        if resp.status >= 400 and request.path != "/internal/ready":
            log.warning("%s %s -> %d %s", request.method, request.path, resp.status,
                        details or getattr(resp, "reason", ""))
        return resp

    # ------------------------------------------------------------------ lifecycle
    async def bootstrap(self, stop: asyncio.Event) -> bool:
        """Wait for the schema, register in ``nodes``, load the shard map, start the loops.
        Returns False if stopped first."""
        last = ""
        while not stop.is_set():
            try:
                version = await self.store.schema_version()
                msg = f"schema version {version}, need >= 1"
                if version >= 1:
                    await self.store.register(self.cfg.name, self.cfg.advertise_address,
                                              self.cfg.container_id)
                    break
            except DatabaseError as e:
                msg = f"database unavailable ({e})"
            if msg != last:
                log.info("waiting: %s", msg)
                last = msg
            await sleep_or_stop(stop, 0.5)
        if stop.is_set():
            return False
        await self.refresh_topology(None)
        self.ready = True
        log.info("webapp %s ready (API port %d, %d shards)", self.cfg.name, self.cfg.api_port,
                 len(self.shard_rows))
        spawn(self.tasks, self.refresh_loop(stop), "shard-map")
        spawn(self.tasks, self.touch_loop(stop), "touch")
        return True

    async def refresh_loop(self, stop: asyncio.Event) -> None:
        while True:
            await sleep_or_stop(stop, self.opts.refresh_interval)
            if stop.is_set():
                return
            await self.refresh_topology(None)

    async def touch_loop(self, stop: asyncio.Event) -> None:
        while True:
            await sleep_or_stop(stop, self.opts.touch_interval)
            if stop.is_set():
                return
            try:
                await self.store.touch(self.cfg.name, self.cfg.advertise_address,
                                       self.cfg.container_id)
            except DatabaseError as e:
                log.warning("liveness write failed: %s", e)

    # ------------------------------------------------------------------ shard map cache
    def apply_topology(self, rows: list[ShardRow], nodes: list[NodeRow]) -> None:
        self.shard_rows = sorted(rows, key=lambda r: r.shard)
        self.node_rows = {n.name: n for n in nodes}
        self.map_loaded_at = self.clock.monotonic()

    async def _load_topology(self) -> None:
        try:
            rows, nodes = await self.store.topology()
        except DatabaseError as e:
            self.metrics.map_refresh_failures += 1
            if not self._db_down:
                log.warning("shard map refresh failed, routing with the cached map "
                            "(%d shards): %s", len(self.shard_rows), e)
            self._db_down = True
            raise
        if self._db_down:
            log.info("shard map refresh works again")
        self._db_down = False
        self.apply_topology(rows, nodes)

    async def refresh_topology(self, deadline: float | None) -> bool:
        """Re-read the shard map (one read in flight at a time, shared by all callers).
        Waits at most ``deadline`` s (None: until done); True if it succeeded in time."""
        task = self._refreshing
        if task is None or task.done():
            task = self._refreshing = asyncio.ensure_future(self._load_topology())
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
        try:
            await asyncio.wait_for(asyncio.shield(task), deadline)
        except (TimeoutError, DatabaseError):
            return False
        return True

    def owner_of(self, to: str) -> tuple[int, str | None]:
        """(shard, owner hostname or None) by the cached map."""
        rows = self.shard_rows
        if not rows:
            return 0, None
        shard = shard_of(to, len(rows))
        row = next((r for r in rows if r.shard == shard), None)
        return shard, row.hostname if row else None

    def address_of(self, name: str) -> str:
        node = self.node_rows.get(name)
        return self.cfg.route(name, node.address if node else f"{name}:{self.cfg.internal_port}")

    # ------------------------------------------------------------------ auth
    async def authenticate(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        if not header.lower().startswith("bearer ") or not header[7:].strip():
            raise ApiError(401, E.ACCESS_DENIED, "missing Authorization: Bearer <token> header",
                           {"WWW-Authenticate": "Bearer"})
        token = header[7:].strip()
        now = self.clock.monotonic()
        hit = self.tokens.get(token)
        if hit is not None:
            if now < hit[1]:
                return hit[0]
            del self.tokens[token]
            raise ApiError(401, E.ACCESS_DENIED, "token expired", {"WWW-Authenticate": "Bearer"})
        if len(token) > 128:
            raise ApiError(401, E.ACCESS_DENIED, "invalid token", {"WWW-Authenticate": "Bearer"})
        try:
            found = await self.store.token(token)
        except DatabaseError as e:
            raise ApiError(503, E.DATABASE_ERROR,
                           f"cannot validate the token, database unavailable: {e}") from None
        if found is None:
            raise ApiError(401, E.ACCESS_DENIED, "invalid or expired token",
                           {"WWW-Authenticate": "Bearer"})
        self.remember_token(token, found[0], found[1])
        return found[0]

    def remember_token(self, token: str, user: str, valid_for: float) -> None:
        now = self.clock.monotonic()
        if len(self.tokens) >= self.opts.token_cache_max:
            for t in [t for t, (_, exp) in self.tokens.items() if exp <= now]:
                del self.tokens[t]
            while len(self.tokens) >= self.opts.token_cache_max:
                del self.tokens[next(iter(self.tokens))]
        self.tokens[token] = (user, now + valid_for)

    async def h_login(self, request: web.Request) -> web.Response:
        user, password = parse_basic(request.headers.get("Authorization"))
        body = await read_json(request, optional=True)
        if not isinstance(body, dict):
            raise ApiError(400, E.INVALID_REQUEST, "body must be a JSON object")
        new_password = body.get("new_password")
        if new_password is not None and (not isinstance(new_password, str)
                                         or not MIN_PASSWORD <= len(new_password) <= 128):
            raise E.invalid("new_password", f"must be a string of {MIN_PASSWORD}-128 characters")
        try:
            row = await self.store.get_user(user)
            ok = row is not None and await asyncio.to_thread(dbq.check_password, password, row[0])
            if not ok or row is None:
                raise ApiError(401, E.ACCESS_DENIED, "invalid username or password",
                               {"WWW-Authenticate": 'Basic realm="whatsapp"'})
            if row[1] and new_password is None:
                raise ApiError(400, E.PASSWORD_CHANGE_REQUIRED,
                               f"the password of {user!r} must be changed on first login: send "
                               f'{{"new_password": "…"}} (at least {MIN_PASSWORD} characters)')
            if new_password is not None:
                if new_password == password:
                    raise E.invalid("new_password", "must differ from the current password")
                hashed = await asyncio.to_thread(dbq.hash_password, new_password)
                await self.store.set_password(user, hashed)
            token = secrets.token_urlsafe(32)
            expires = await self.store.issue_token(token, user, TOKEN_TTL)
        except DatabaseError as e:
            raise ApiError(503, E.DATABASE_ERROR, f"login needs the database: {e}") from None
        self.remember_token(token, user, TOKEN_TTL)
        return web.json_response({"users": [{
            "token": token, "expires_after": expires.strftime("%Y-%m-%d %H:%M:%S") + "+00:00"}]})

    # ------------------------------------------------------------------ health
    async def current_nodes(self) -> list[NodeRow]:
        try:
            nodes = await self.store.nodes(deadline=self.opts.refresh_deadline)
        except DatabaseError as e:
            if self.map_loaded_at is None:
                raise ApiError(503, E.DATABASE_ERROR, f"node list unavailable: {e}") from None
            return list(self.node_rows.values())
        self.node_rows = {n.name: n for n in nodes}
        return nodes

    async def node_health(self, node: NodeRow) -> tuple[str, dict[str, Any]]:
        key = f"{node.name}:{node.container_id}"
        url = f"http://{self.cfg.route(node.name, node.address)}/internal/status"
        assert self.session is not None
        try:
            async with self.session.get(url, timeout=aiohttp.ClientTimeout(
                    total=self.opts.health_timeout)) as resp:
                data = await resp.json(content_type=None)
                if resp.status != 200 or not isinstance(data, dict):
                    raise ValueError(f"HTTP {resp.status}")
                return key, {"gateway_status": data.get("gateway_status"),
                             "role": data.get("role")}
        except TimeoutError:
            why = f"no answer within {self.opts.health_timeout:g} s"
        except (aiohttp.ClientError, ValueError) as e:
            why = f"{type(e).__name__}: {e}"
        return key, E.error_body(E.INTERNAL_ERROR, f"{node.name} unreachable: {why}")

    async def h_health(self, request: web.Request) -> web.Response:
        nodes = [n for n in await self.current_nodes() if n.role in ("master", "coreapp")]
        results = await asyncio.gather(*(self.node_health(n) for n in nodes))
        return web.json_response({"health": dict(results)})

    # ------------------------------------------------------------------ messages
    # the shared rule (multiconnect.roles.sender.Sender): the driver's side
    def map_known(self) -> bool:
        return bool(self.shard_rows)

    def refresh(self, deadline: float) -> Generator[Any, Any, bool]:
        return awaiting(self.refresh_topology(deadline))

    def forward(self, owner: str, payload: dict[str, Any]) -> Generator[Any, Any, Attempt]:
        return awaiting(self._post_message(owner, payload))

    def on_retry(self, msg_id: str, owner: str, attempt: Attempt, new_owner: str) -> None:
        self.metrics.retries += 1
        log.info("message %s: %s failed (%s), retrying on %s", msg_id, owner,
                 attempt.details, new_owner)

    async def _call(self, method: str, url: str, body: Any, timeout: float) -> tuple[int, Any]:
        """One HTTP request to a node: ``(status, JSON body or None)``; aiohttp's errors (and
        ``TimeoutError``) propagate for the caller to classify."""
        assert self.session is not None
        async with self.session.request(method, url, json=body, timeout=aiohttp.ClientTimeout(
                total=timeout)) as resp:
            try:
                data = await resp.json(content_type=None)
            except ValueError:
                data = None
            return resp.status, data

    async def _post_message(self, owner: str, payload: dict[str, Any]) -> Attempt:
        url = f"http://{self.address_of(owner)}/internal/messages"
        timeout = self.opts.message_timeout
        try:
            status, data = await self._call("POST", url, payload, timeout)
        except aiohttp.ClientConnectorError as e:  # never connected: certainly not sent
            return sender.unreachable(owner, e)
        except TimeoutError:
            return sender.no_answer(owner, timeout)
        except aiohttp.ClientError as e:
            return sender.broken(owner, f"{type(e).__name__}: {e}")
        return sender.answered(owner, payload["shard"], status, data)

    async def send(self, to: str, text: str) -> tuple[str, Attempt, int]:
        """Route one message; returns (id, final attempt, shard)."""
        msg_id = new_message_id()
        started = self.clock.monotonic()
        attempt, shard, _ = await drive(self.route(msg_id, to, text))
        latency = self.clock.monotonic() - started if attempt.kind == "ok" else None
        self.metrics.sent(shard, "ok" if attempt.kind == "ok" else
                          "unknown" if attempt.kind == "unknown" else "not_sent", latency)
        return msg_id, attempt, shard

    async def h_messages(self, request: web.Request) -> web.Response:
        to, text = validate_message(await read_json(request))
        msg_id, attempt, _ = await self.send(to, text)
        if attempt.kind != "ok":
            raise ApiError(attempt.status, attempt.code, attempt.details)
        return web.json_response({"messages": [{"id": msg_id}]}, status=201)

    # ------------------------------------------------------------------ media
    async def media_call(self, op: str, *args: Any) -> Any:
        """Run one media store operation; its failures become envelopes (the store bounds
        each operation by ``WA_MEDIA_TIMEOUT``; ``media_guard`` s is a backstop)."""
        try:
            if self._media is None:
                self._media = self._media_factory()
            return await asyncio.wait_for(getattr(self._media, op)(*args),
                                          self.opts.media_guard)
        except MediaNotFound:
            raise ApiError(404, E.NOT_FOUND, f"no media {args[0]!r}") from None
        except MediaUnavailable as e:
            raise ApiError(503, E.SERVICE_NOT_READY, f"media store unavailable: {e}") from None
        except TimeoutError:
            raise ApiError(503, E.SERVICE_NOT_READY, "media store unavailable: no answer within "
                           f"{self.opts.media_guard:g} s") from None
        except MediaTooLarge as e:
            raise ApiError(413, E.INVALID_REQUEST, f"media: {e}") from None
        except MediaInvalid as e:
            raise E.invalid("media", str(e)) from None
        except MediaError as e:
            raise ApiError(500, E.INTERNAL_ERROR, f"media store error: {e}") from None

    async def h_media_upload(self, request: web.Request) -> web.Response:
        data = await request.read()
        if not data:
            raise ApiError(400, E.MISSING_PARAMETER, "media body is empty")
        ctype = request.headers.get("Content-Type", "application/octet-stream")
        media_id = await self.media_call("put", data, ctype)
        return web.json_response({"media": [{"id": media_id}]}, status=201)

    async def h_media_get(self, request: web.Request) -> web.Response:
        media_id = request.match_info["id"]
        if not _MEDIA_ID.match(media_id):
            raise ApiError(404, E.NOT_FOUND, f"no media {media_id!r}")
        data, ctype = await self.media_call("get", media_id)
        return web.Response(body=data, headers={"Content-Type": ctype})

    # ------------------------------------------------------------------ master-only commands
    async def current_settings(self) -> Settings:
        # with a cached copy, wait for the database only briefly
        deadline = None if self.cached_settings is None else self.opts.refresh_deadline
        try:
            self.cached_settings = await self.store.settings(deadline=deadline)
        except DatabaseError as e:
            if self.cached_settings is None:
                raise ApiError(503, E.DATABASE_ERROR, f"settings unavailable: {e}") from None
        return self.cached_settings

    async def to_primary_master(self, method: str, path: str,
                                body: dict[str, Any]) -> tuple[int, Any]:
        """Forward to the lease holder; returns its (status, JSON) or raises ApiError."""
        try:
            holder, epoch, live = await self.store.lease_holder()
        except DatabaseError as e:
            raise ApiError(503, E.DATABASE_ERROR, f"cannot find the primary master: {e}") \
                from None
        if holder is None or not live:
            raise ApiError(503, E.NOT_PRIMARY_MASTER,
                           "no live primary master" + (f" ({holder}'s lease expired)"
                                                       if holder else ""))
        with contextlib.suppress(ApiError):
            await self.current_nodes()
        url = f"http://{self.address_of(holder)}{path}"
        timeout = self.opts.master_timeout
        try:
            status, data = await self._call(method, url, body, timeout)
        except aiohttp.ClientConnectorError as e:
            raise ApiError(503, E.NOT_PRIMARY_MASTER,
                           f"primary master {holder} unreachable: {e}") from None
        except TimeoutError:
            raise ApiError(504, E.INTERNAL_ERROR, f"primary master {holder} did not answer "
                           f"within {timeout:g} s; the change may have been applied") from None
        except aiohttp.ClientError as e:
            raise ApiError(502, E.INTERNAL_ERROR, f"primary master {holder} failed: "
                           f"{type(e).__name__}: {e}; the change may have been applied") from None
        if status < 300:
            return status, data if isinstance(data, dict) else {}
        if E.is_envelope(data):
            first = data["errors"][0]
            raise ApiError(status, int(first["code"]),
                           f"{holder}: {first.get('details', '')}")
        raise ApiError(502, E.INTERNAL_ERROR, f"primary master {holder} answered HTTP {status}")

    async def h_settings_get(self, request: web.Request) -> web.Response:
        settings = await self.current_settings()
        return web.json_response({"settings": {"application": settings.to_api()}})

    async def h_settings_patch(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        if not isinstance(body, dict):
            raise ApiError(400, E.INVALID_REQUEST, "body must be a JSON object")
        try:
            base = await self.current_settings()
        except ApiError:
            base = Settings(self.cfg.heartbeat_interval, self.cfg.unhealthy_interval)
        try:
            apply_patch(base, body)
        except SettingsError as e:
            raise E.invalid(e.field, e.message) from None
        _, data = await self.to_primary_master("PATCH", "/internal/settings", body)
        with contextlib.suppress(ApiError):
            await self.current_settings()
        return web.json_response(data, status=200)

    async def h_shards_get(self, request: web.Request) -> web.Response:
        try:
            shards = await self.store.shard_count()
        except DatabaseError as e:
            if not self.shard_rows:
                raise ApiError(503, E.DATABASE_ERROR, f"shard count unavailable: {e}") from None
            shards = len(self.shard_rows)
        return web.json_response({"account": {"shards": shards}})

    async def h_shards_post(self, request: web.Request) -> web.Response:
        shards = validate_shards_request(await read_json(request))
        await self.to_primary_master("POST", "/internal/shards", {"shards": shards})
        await self.refresh_topology(self.opts.refresh_deadline)
        return web.json_response({"account": {"shards": shards}}, status=201)

    # ------------------------------------------------------------------ monitoring
    async def h_metrics(self, request: web.Request) -> web.Response:
        fmt = request.query.get("format", "json")
        if fmt == "prometheus":
            return web.Response(body=self.metrics.to_prometheus().encode(),
                                headers={"Content-Type": "text/plain; version=0.0.4; "
                                                         "charset=utf-8"})
        if fmt != "json":
            raise E.invalid("format", f"must be json or prometheus, got {fmt!r}")
        return web.json_response(self.app_stats())

    def app_stats(self) -> dict[str, Any]:
        age = (None if self.map_loaded_at is None
               else round(self.clock.monotonic() - self.map_loaded_at, 3))
        return {**self.metrics.to_json(), "node": self.cfg.name,
                "shard_map": {"shards": len(self.shard_rows), "age_seconds": age,
                              "owners": {str(r.shard): r.hostname for r in self.shard_rows}}}

    async def h_stats_app(self, request: web.Request) -> web.Response:
        return web.json_response({"app": self.app_stats()})

    async def h_stats_db(self, request: web.Request) -> web.Response:
        try:
            stats = await self.store.stats()
        except DatabaseError as e:
            raise ApiError(503, E.DATABASE_ERROR, str(e)) from None
        return web.json_response({"db": stats})

    async def h_support(self, request: web.Request) -> web.Response:
        import pymysql
        return web.json_response({"support": {
            "node": self.cfg.name, "container_id": self.cfg.container_id,
            "versions": {"webapp": __version__, "python": platform.python_version(),
                         "aiohttp": aiohttp.__version__, "pymysql": pymysql.__version__}}})

    async def h_ready(self, request: web.Request) -> web.Response:
        return web.json_response({"ready": self.ready}, status=200 if self.ready else 503)
