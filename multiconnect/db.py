"""Database access (pymysql, blocking; shells call it through ``asyncio.to_thread``).

Every statement that compares times uses the database clock (``NOW(6)`` in a UTC session).

No multi-statement transactions: every decision that must be atomic is ONE autocommit
statement whose WHERE clause carries the condition (the lease renewal names holder and epoch;
a promotion joins the lease row and checks holder, epoch and expiry in the same UPDATE; the
fenced statements are defined in :mod:`multiconnect.decisions`, which the simulator's model
evaluates too). A
node paused or cut off in the middle of a transaction would otherwise keep its row locks for
as long as it is frozen, and everybody else's lease renewals and promotions would queue
behind it (the Docker pause scenario found exactly that). Sessions also set a short
``innodb_lock_wait_timeout`` so a statement that does wait fails fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pymysql
import pymysql.cursors
from pymysql.constants import CLIENT

from . import decisions, schema
from .config import DbConfig
from .core.lease import LeaseDecision, LeaseRow, refused
from .core.ownership import OwnedRow
from .settings import Settings
from .sharding import shard_bounds

T = TypeVar("T")


class DatabaseError(RuntimeError):
    """The database could not be reached or the statement failed."""


class NotPrimary(RuntimeError):
    """A fenced write found that the caller no longer holds the master lease."""


@dataclass(frozen=True)
class NodeRow:
    name: str
    role: str
    address: str
    heartbeat_address: str
    container_id: str
    age: float  # database seconds since last_seen


@dataclass(frozen=True)
class ShardRow:
    shard: int
    lower_bound: int
    upper_bound: int
    hostname: str | None
    epoch: int
    fenced: bool


class Database:
    """One connection, used by one caller at a time; reconnects after any error."""

    def __init__(self, cfg: DbConfig) -> None:
        self.cfg = cfg
        self._conn: pymysql.connections.Connection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> pymysql.connections.Connection:
        c = self.cfg
        conn = pymysql.connect(
            host=c.host, port=c.port, user=c.user, password=c.password, database=None,
            connect_timeout=max(1, int(round(c.timeout))), read_timeout=c.timeout,
            write_timeout=c.timeout, autocommit=True, client_flag=CLIENT.FOUND_ROWS,
            cursorclass=pymysql.cursors.Cursor, charset="utf8mb4",
        )
        with conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            cur.execute("SET SESSION innodb_lock_wait_timeout = %s",
                        (max(1, int(round(c.timeout))),))
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{c.name}`")
            cur.execute(f"USE `{c.name}`")
        return conn

    def run(self, fn: Callable[[pymysql.cursors.Cursor], T], *, transaction: bool = False) -> T:
        with self._lock:
            try:
                if self._conn is None:
                    self._conn = self._connect()
                conn = self._conn
                if transaction:
                    conn.begin()
                try:
                    with conn.cursor() as cur:
                        result = fn(cur)
                    if transaction:
                        conn.commit()
                    return result
                except BaseException:
                    if transaction:
                        with contextlib.suppress(Exception):
                            conn.rollback()
                    raise
            except (NotPrimary, ValueError):
                raise
            except Exception as e:  # pymysql errors, socket errors, timeouts
                self.close_unlocked()
                raise DatabaseError(f"{type(e).__name__}: {e}") from e

    def close_unlocked(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self.close_unlocked()


# ---------------------------------------------------------------------------- schema
def ensure_lease_table(cur) -> None:
    for stmt in schema.LEASE_DDL:
        cur.execute(stmt)


def schema_version(cur) -> int:
    cur.execute("SELECT COUNT(*) FROM information_schema.tables "
                "WHERE table_schema = DATABASE() AND table_name = 'schema_version'")
    if cur.fetchone()[0] == 0:
        return 0
    cur.execute("SELECT version FROM schema_version WHERE id = 1")
    row = cur.fetchone()
    return int(row[0]) if row else 0


def _check_lease(cur, me: str, epoch: int) -> None:
    """Raise NotPrimary unless ``me`` holds the live lease under ``epoch`` (a plain read: for
    idempotent administrative writes; promotions fence inside their own statement)."""
    params: list[Any] = []
    held = decisions.LEASE_HELD.sql({"me": me, "epoch": epoch}, params)
    cur.execute(f"SELECT COUNT(*) FROM master_lease l WHERE {held}", params)
    if cur.fetchone()[0] == 0:
        holder, ep, live = lease_holder(cur)
        raise NotPrimary(f"lease is held by {holder} epoch {ep} (live={live})")


def upgrade_schema(cur, me: str, epoch: int, target: int, settings: Settings,
                   shards: int = 1) -> int:
    """Create or upgrade the schema (fenced DDL; MySQL commits DDL implicitly, so the fence
    is checked right before). Returns the version now in place."""
    _check_lease(cur, me, epoch)
    current = schema_version(cur)
    if current >= target:
        return current
    for stmt in schema.migrations_between(current, target):
        cur.execute(stmt)
    cur.execute("INSERT INTO schema_version (id, version) VALUES (1, %s) "
                "ON DUPLICATE KEY UPDATE version = %s", (target, target))
    if current == 0:
        cur.execute("INSERT IGNORE INTO settings (name, value) VALUES ('application', %s)",
                    (json.dumps(settings.to_json()),))
        cur.execute("INSERT IGNORE INTO settings (name, value) VALUES ('settings_version', '1')")
        cur.execute("INSERT IGNORE INTO settings (name, value) VALUES ('shards', %s)",
                    (str(shards),))
        cur.execute("INSERT IGNORE INTO users (username, password_hash, must_change) "
                    "VALUES ('admin', %s, 1)", (hash_password("secret"),))
        _write_shard_rows(cur, shards)
    return target


def _write_shard_rows(cur, shards: int) -> None:
    cur.execute("SELECT COALESCE(MAX(epoch), 0) FROM shard_map")
    base = int(cur.fetchone()[0])
    for s in range(shards):
        lo, hi = shard_bounds(s, shards)
        cur.execute(
            "INSERT INTO shard_map (shard, lower_bound, upper_bound, hostname, epoch, "
            "updated_at) VALUES (%s, %s, %s, NULL, %s, NOW(6)) ON DUPLICATE KEY UPDATE "
            "lower_bound = VALUES(lower_bound), upper_bound = VALUES(upper_bound), "
            "updated_at = NOW(6)", (s, lo, hi, base + 1))
    cur.execute("DELETE FROM shard_map WHERE shard >= %s", (shards,))


# ---------------------------------------------------------------------------- lease
def lease_attempt(cur, me: str, my_epoch: int | None, ttl: float) -> tuple[LeaseDecision,
                                                                         str | None, int]:
    """Acquire or renew; returns (decision, holder, epoch) after it.

    Each branch of :func:`multiconnect.core.lease.decide` is one conditional statement, so
    the row is never locked across a round trip: RENEW only if the row still names us under
    our epoch and is live; ACQUIRE only if it expired or is ours under another epoch (the new
    epoch comes back through ``LAST_INSERT_ID``; a released lease expired at its release, a
    live row without a holder is busy until it expires, as ``decide`` says); otherwise BUSY.
    """
    if my_epoch is not None:
        cur.execute(*decisions.LEASE_RENEW.sql(me=me, epoch=my_epoch, ttl=ttl))
        if cur.rowcount == 1:
            return LeaseDecision.RENEW, me, my_epoch
    cur.execute(*decisions.LEASE_ACQUIRE.sql(me=me, epoch=my_epoch, ttl=ttl))
    if cur.rowcount == 1:
        cur.execute("SELECT LAST_INSERT_ID()")
        return LeaseDecision.ACQUIRE, me, int(cur.fetchone()[0])
    holder, epoch, live = lease_holder(cur)
    return refused(LeaseRow(holder, epoch, live), me, my_epoch)


def release_lease(cur, me: str, epoch: int) -> bool:
    """On a graceful stop: give the lease up so a secondary takes over at its next attempt."""
    cur.execute(*decisions.LEASE_RELEASE.sql(me=me, epoch=epoch))
    return cur.rowcount == 1


def lease_holder(cur) -> tuple[str | None, int, bool]:
    cur.execute("SELECT holder, epoch, expires_at > NOW(6) FROM master_lease WHERE id = 1")
    row = cur.fetchone()
    if row is None:
        return None, 0, False
    return row[0], int(row[1]), bool(row[2])


# ---------------------------------------------------------------------------- nodes
def register_node(cur, name: str, role: str, address: str, heartbeat_address: str,
                  container_id: str) -> None:
    cur.execute(
        "INSERT INTO nodes (name, role, address, heartbeat_address, container_id, last_seen, "
        "started_at) VALUES (%s, %s, %s, %s, %s, NOW(6), NOW(6)) ON DUPLICATE KEY UPDATE "
        "role = VALUES(role), address = VALUES(address), "
        "heartbeat_address = VALUES(heartbeat_address), container_id = VALUES(container_id), "
        "last_seen = NOW(6), started_at = NOW(6)",
        (name, role, address, heartbeat_address, container_id))


def touch_node(cur, name: str) -> None:
    cur.execute("UPDATE nodes SET last_seen = NOW(6) WHERE name = %s", (name,))


def list_nodes(cur) -> list[NodeRow]:
    cur.execute("SELECT name, role, address, heartbeat_address, container_id, "
                "TIMESTAMPDIFF(MICROSECOND, last_seen, NOW(6)) / 1e6 FROM nodes ORDER BY name")
    return [NodeRow(r[0], r[1], r[2], r[3], r[4], float(r[5])) for r in cur.fetchall()]


def publish_views(cur, master: str, views: dict[str, bool]) -> None:
    for coreapp, unhealthy in views.items():
        cur.execute("INSERT INTO heartbeat_views (master, coreapp, unhealthy, updated_at) "
                    "VALUES (%s, %s, %s, NOW(6)) ON DUPLICATE KEY UPDATE "
                    "unhealthy = VALUES(unhealthy), updated_at = NOW(6)",
                    (master, coreapp, unhealthy))
    touch_node(cur, master)


def unhealthy_reports(cur, me: str, fresh_within: float) -> dict[str, int]:
    """coreapp -> number of other masters whose fresh view calls it unhealthy."""
    cur.execute("SELECT coreapp, COUNT(*) FROM heartbeat_views WHERE master <> %s AND unhealthy "
                "AND updated_at > NOW(6) - INTERVAL %s MICROSECOND GROUP BY coreapp",
                (me, int(fresh_within * 1e6)))
    return {r[0]: int(r[1]) for r in cur.fetchall()}


# ---------------------------------------------------------------------------- shard map
def read_shard_map(cur) -> list[ShardRow]:
    cur.execute("SELECT shard, lower_bound, upper_bound, hostname, epoch, "
                "COALESCE(fence_until > NOW(6), 0) FROM shard_map ORDER BY shard")
    return [ShardRow(int(r[0]), int(r[1]), int(r[2]), r[3], int(r[4]), bool(r[5]))
            for r in cur.fetchall()]


def promote(cur, me: str, lease_epoch: int, shard: int, old: str | None, new: str,
            fence_extra: float) -> int:
    """Fenced promotion: hand ``shard`` from ``old`` to ``new`` with a new epoch, in ONE
    statement that also checks that ``me`` still holds the live lease under ``lease_epoch``.

    ``fence_until`` = old ``valid_until`` + ``fence_extra`` (gateway keepalive + margin): the
    new owner may not connect before the old one has certainly lost its connection.
    Returns the new epoch. Only the lease holder promotes, one promotion at a time, so the
    epoch and "new owns no shard" read just before cannot be raced by another promoter.
    """
    cur.execute("SELECT COUNT(*) FROM shard_map WHERE hostname = %s", (new,))
    if cur.fetchone()[0]:
        raise NotPrimary(f"{new} already owns a shard")
    cur.execute("SELECT COALESCE(MAX(epoch), 0) + 1 FROM shard_map")
    new_epoch = int(cur.fetchone()[0])
    cur.execute(*decisions.PROMOTE.sql(me=me, epoch=lease_epoch, shard=shard, old=old, new=new,
                                       new_epoch=new_epoch, fence_extra=fence_extra))
    if cur.rowcount != 1:
        raise NotPrimary(f"promotion of {new} for shard {shard} refused: the lease is no "
                         f"longer ours (epoch {lease_epoch}) or the shard changed")
    return new_epoch


def confirm_ownership(cur, me: str, ttl: float) -> OwnedRow | None:
    """A coreapp's confirmation: one UPDATE extends ``valid_until`` of the row naming us (if
    not fenced) and stamps it with a fresh token; the read that follows trusts the row as
    confirmed only if it carries that token — so a row handed to us between the two
    statements (``valid_until`` still NULL) is reported as not yet confirmed, never as valid.
    """
    token = os.urandom(8).hex()
    cur.execute(*decisions.CONFIRM.sql(me=me, ttl=ttl, token=token))
    cur.execute("SELECT shard, epoch, confirm_token FROM shard_map WHERE hostname = %s", (me,))
    rows = cur.fetchall()
    if not rows:
        return None
    shard, epoch, got = int(rows[0][0]), int(rows[0][1]), rows[0][2]
    return OwnedRow(shard, epoch, fenced=got != token)


def set_shard_count(cur, me: str, lease_epoch: int, shards: int) -> None:
    _check_lease(cur, me, lease_epoch)
    _write_shard_rows(cur, shards)
    cur.execute("UPDATE settings SET value = %s WHERE name = 'shards'", (str(shards),))


def shard_count(cur) -> int:
    cur.execute("SELECT value FROM settings WHERE name = 'shards'")
    row = cur.fetchone()
    return int(row[0]) if row else 1


# ---------------------------------------------------------------------------- settings
def read_settings(cur) -> tuple[Settings, int]:
    cur.execute("SELECT name, value FROM settings WHERE name IN "
                "('application', 'settings_version')")
    rows = dict(cur.fetchall())
    return Settings.from_json(json.loads(rows["application"])), int(rows["settings_version"])


def write_settings(cur, me: str, lease_epoch: int, settings: Settings) -> int:
    cur.execute(*decisions.WRITE_SETTINGS.sql(me=me, epoch=lease_epoch, name="application",
                                              value=json.dumps(settings.to_json())))
    if cur.rowcount != 1:
        raise NotPrimary(f"settings write refused: the lease is no longer ours "
                         f"(epoch {lease_epoch})")
    cur.execute("UPDATE settings SET value = CAST(value AS UNSIGNED) + 1 "
                "WHERE name = 'settings_version'")
    cur.execute("SELECT value FROM settings WHERE name = 'settings_version'")
    return int(cur.fetchone()[0])


# ---------------------------------------------------------------------------- users
def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 20000)
    return f"pbkdf2${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        _, salt_hex, _ = stored.split("$")
    except ValueError:
        return False
    return hash_password(password, bytes.fromhex(salt_hex)) == stored


def stats(cur) -> dict[str, Any]:
    cur.execute("SELECT table_name, table_rows FROM information_schema.tables "
                "WHERE table_schema = DATABASE()")
    tables = {r[0]: int(r[1] or 0) for r in cur.fetchall()}
    cur.execute("SELECT VERSION()")
    version = cur.fetchone()[0]
    return {"server_version": version, "tables": tables, "schema_version": schema_version(cur)}
