"""The webapp's database access: what it needs (:class:`Store`) and its MySQL implementation.

Model. Every call is async and raises :class:`~multiconnect.db.DatabaseError` on failure.
:class:`MysqlStore` runs the blocking pymysql calls on a small pool of connections in a
dedicated thread pool, each call bounded in time; background loops (shard map refresh,
liveness) use a connection of their own, so requests never wait behind them.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Protocol, TypeVar

from .. import db as dbq
from ..config import DbConfig
from ..db import Database, DatabaseError, NodeRow, ShardRow
from ..settings import Settings

T = TypeVar("T")


class Store(Protocol):
    """What the webapp needs from the database (async; raises DatabaseError)."""

    async def schema_version(self) -> int: ...
    async def register(self, name: str, address: str, container_id: str) -> None: ...
    async def touch(self, name: str, address: str, container_id: str) -> None: ...
    async def topology(self) -> tuple[list[ShardRow], list[NodeRow]]: ...
    async def nodes(self, deadline: float | None = None) -> list[NodeRow]: ...
    async def lease_holder(self) -> tuple[str | None, int, bool]: ...
    async def settings(self, deadline: float | None = None) -> Settings: ...
    async def shard_count(self) -> int: ...
    async def stats(self) -> dict[str, Any]: ...
    async def get_user(self, username: str) -> tuple[str, bool] | None: ...
    async def set_password(self, username: str, password_hash: str) -> None: ...
    async def issue_token(self, token: str, username: str, ttl: int) -> datetime: ...
    async def token(self, token: str) -> tuple[str, float] | None: ...


def q_topology(cur: Any) -> tuple[list[ShardRow], list[NodeRow]]:
    return dbq.read_shard_map(cur), dbq.list_nodes(cur)


def q_touch(cur: Any, name: str, address: str, container_id: str) -> None:
    """Refresh our liveness row; re-register if the row vanished (database recreated)."""
    dbq.touch_node(cur, name)
    if cur.rowcount == 0:
        dbq.register_node(cur, name, "webapp", address, address, container_id)


def q_get_user(cur: Any, username: str) -> tuple[str, bool] | None:
    cur.execute("SELECT password_hash, must_change FROM users WHERE username = %s", (username,))
    row = cur.fetchone()
    return (row[0], bool(row[1])) if row else None


def q_set_password(cur: Any, username: str, password_hash: str) -> None:
    cur.execute("UPDATE users SET password_hash = %s, must_change = 0 WHERE username = %s",
                (password_hash, username))


def q_issue_token(cur: Any, token: str, username: str, ttl: int) -> datetime:
    """Store a token expiring ``ttl`` s from now (database clock); returns the expiry (UTC)."""
    cur.execute("DELETE FROM tokens WHERE expires_at < NOW(6) LIMIT 1000")
    cur.execute("INSERT INTO tokens (token, username, expires_at) "
                "VALUES (%s, %s, NOW(6) + INTERVAL %s SECOND)", (token, username, int(ttl)))
    cur.execute("SELECT expires_at FROM tokens WHERE token = %s", (token,))
    return cur.fetchone()[0]


def q_token(cur: Any, token: str) -> tuple[str, float] | None:
    """(username, seconds of validity left) for a live token, else None."""
    cur.execute("SELECT username, TIMESTAMPDIFF(MICROSECOND, NOW(6), expires_at) / 1e6 "
                "FROM tokens WHERE token = %s", (token,))
    row = cur.fetchone()
    if row is None or float(row[1]) <= 0:
        return None
    return row[0], float(row[1])


def _apply(fn: Callable[..., T], args: tuple, cur: Any) -> T:
    return fn(cur, *args)


class MysqlStore:
    """Store on MySQL: ``pool_size`` connections for requests plus one for background loops.

    Each call takes a free connection, runs in a dedicated thread pool (so a hung database
    cannot starve other blocking work), and gives up after ``deadline`` seconds; the
    connection returns to the pool only when its thread is done with it.
    """

    def __init__(self, cfg: DbConfig, pool_size: int = 4,
                 connect: Callable[[DbConfig], Any] = Database) -> None:
        self.deadline = 2 * cfg.timeout + 1.0
        self._executor = ThreadPoolExecutor(max_workers=pool_size + 2,
                                            thread_name_prefix="webapp-db")
        self._all = [connect(cfg) for _ in range(pool_size + 1)]
        self._pool: asyncio.Queue[Database] = asyncio.Queue()
        for db in self._all[:-1]:
            self._pool.put_nowait(db)
        self._background: asyncio.Queue[Database] = asyncio.Queue()
        self._background.put_nowait(self._all[-1])

    async def call(self, fn: Callable[..., T], *args: Any, background: bool = False,
                   transaction: bool = False, deadline: float | None = None) -> T:
        pool = self._background if background else self._pool
        limit = self.deadline if deadline is None else deadline

        async def go() -> T:
            db = await pool.get()
            loop = asyncio.get_running_loop()
            fut = loop.run_in_executor(self._executor, functools.partial(
                db.run, functools.partial(_apply, fn, args), transaction=transaction))

            def done(f: asyncio.Future) -> None:
                pool.put_nowait(db)
                if not f.cancelled():
                    f.exception()  # retrieved: a late failure after a timeout is expected

            fut.add_done_callback(done)
            return await asyncio.shield(fut)

        try:
            return await asyncio.wait_for(go(), limit)
        except TimeoutError:
            raise DatabaseError(f"no answer within {limit:g} s") from None

    async def schema_version(self) -> int:
        return await self.call(dbq.schema_version, background=True)

    async def register(self, name: str, address: str, container_id: str) -> None:
        await self.call(dbq.register_node, name, "webapp", address, address, container_id,
                        background=True)

    async def touch(self, name: str, address: str, container_id: str) -> None:
        await self.call(q_touch, name, address, container_id, background=True)

    async def topology(self) -> tuple[list[ShardRow], list[NodeRow]]:
        return await self.call(q_topology, background=True)

    async def nodes(self, deadline: float | None = None) -> list[NodeRow]:
        return await self.call(dbq.list_nodes, deadline=deadline)

    async def lease_holder(self) -> tuple[str | None, int, bool]:
        return await self.call(dbq.lease_holder)

    async def settings(self, deadline: float | None = None) -> Settings:
        return (await self.call(dbq.read_settings, deadline=deadline))[0]

    async def shard_count(self) -> int:
        return await self.call(dbq.shard_count)

    async def stats(self) -> dict[str, Any]:
        return await self.call(dbq.stats)

    async def get_user(self, username: str) -> tuple[str, bool] | None:
        return await self.call(q_get_user, username)

    async def set_password(self, username: str, password_hash: str) -> None:
        await self.call(q_set_password, username, password_hash)

    async def issue_token(self, token: str, username: str, ttl: int) -> datetime:
        return await self.call(q_issue_token, token, username, ttl)

    async def token(self, token: str) -> tuple[str, float] | None:
        return await self.call(q_token, token)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        for db in self._all:
            db.close_unlocked()
