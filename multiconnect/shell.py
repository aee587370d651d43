"""Shared plumbing for the role shells: logging, database calls off the event loop, HTTP
servers, waiting for the schema, graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import signal
import ssl
import time
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

from aiohttp import web

from . import api_errors as E
from . import db as dbq
from .config import NodeConfig
from .db import Database

T = TypeVar("T")
log = logging.getLogger("multiconnect")


def setup_logging(cfg: NodeConfig) -> None:
    logging.basicConfig(
        level=cfg.log_level,
        format=f"%(asctime)s {cfg.name} %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


async def call(db: Database, fn: Callable[..., T], *args: Any, transaction: bool = False) -> T:
    """Run one query function (``fn(cur, *args)``) in a worker thread."""
    return await asyncio.to_thread(db.run, functools.partial(_apply, fn, args),
                                   transaction=transaction)


def awaiting(aw: Awaitable[T]) -> Generator[Awaitable[T], Any, T]:
    """One wait of a role generator (:mod:`multiconnect.roles`): yields ``aw`` to
    :func:`drive`, which awaits it and sends back its result (or throws its exception)."""
    return (yield aw)


async def drive(gen: Generator[Awaitable[Any], Any, T]) -> T:
    """Run a role generator on asyncio. A cancellation is thrown into the generator like any
    exception, so its ``finally`` clauses run."""
    value: Any = None
    exc: BaseException | None = None
    while True:
        try:
            aw = gen.send(value) if exc is None else gen.throw(exc)
        except StopIteration as done:
            return done.value
        try:
            value, exc = await aw, None
        except BaseException as e:  # noqa: BLE001 - handed to the generator
            value, exc = None, e


class AsyncioDriver:
    """The containers' side of :class:`multiconnect.roles.driver.Driver` (mixed in before the
    role): the node's ``clock``, ``stop`` event, ``tasks`` set and ``logger`` are set by the
    shell; database calls run in a worker thread, sleeps end early at a stop."""

    clock: Any
    stop: asyncio.Event
    tasks: set[asyncio.Task]
    logger: logging.Logger

    def mono(self) -> float:
        return self.clock.monotonic()

    def wall(self) -> float:
        return time.time()

    def log(self, level: int, fmt: str, *args: Any) -> None:
        self.logger.log(level, fmt, *args)

    def unexpected(self, what: str) -> None:
        self.logger.exception(what)

    def spawn(self, gen: Generator[Any, Any, Any], name: str) -> None:
        spawn(self.tasks, drive(gen), name)

    def sleep(self, seconds: float) -> Generator[Any, Any, Any]:
        return awaiting(sleep_or_stop(self.stop, seconds))

    def db(self, conn: Database, fn: str, *args: Any) -> Generator[Any, Any, Any]:
        return awaiting(call(conn, getattr(dbq, fn), *args))


def reply(answer: tuple[int, Any]) -> web.Response:
    """A role's ``(status, body)`` as a JSON response."""
    return web.json_response(answer[1], status=answer[0])


async def read_json(request: web.Request) -> tuple[Any, web.Response | None]:
    """The request's JSON body, or the error response for a body that is not JSON."""
    try:
        return await request.json(), None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None, E.error_response(400, E.GENERIC_ERROR, "body is not valid JSON")


def _apply(fn: Callable[..., T], args: tuple, cur: Any) -> T:
    return fn(cur, *args)


async def start_site(app: web.Application, port: int, cfg: NodeConfig | None = None,
                     tls: bool = False) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    ctx = None
    if tls and cfg is not None and cfg.tls_cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
    site = web.TCPSite(runner, "0.0.0.0", port, ssl_context=ctx, reuse_address=True)
    await site.start()
    return runner


def install_stop(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), max(0.0, seconds))


def spawn(tasks: set[asyncio.Task], coro: Awaitable[Any], name: str = "") -> asyncio.Task:
    """Start a background task, keep a reference, log if it dies."""
    task = asyncio.ensure_future(coro)
    tasks.add(task)

    def done(t: asyncio.Task) -> None:
        tasks.discard(t)
        if not t.cancelled() and t.exception() is not None:
            log.error("task %s failed: %r", name or t, t.exception())

    task.add_done_callback(done)
    return task
