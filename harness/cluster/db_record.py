"""The database's own record of who changed the lease and the shard map, and when.

Model. An operator's tools, not the roles': each node logs in with its own database account
(named after the node), and triggers on ``master_lease`` and ``shard_map`` copy every row
change into ``mc_audit.changes`` with the database's clock (``NOW(6)``: the instant the
changing statement began, the same instant its own ``NOW(6)`` conditions were judged at), the
account (``USER()`` without the host part; every node reaches the database through
toxiproxy, so only the account tells them apart), the row before and after, and for a
shard-map change the lease row as the database held it at that instant. Nothing is read
from the nodes' own reports: a node that believes it may act when it may not shows up here.

The triggers are created by the harness (as root) once the roles have created their schema,
and read back by :class:`harness.run.observers.db_record.DbRecorder`;
``harness.judge.checkers.db_record`` judges the record. Row changes made before the triggers
exist (the first lease, the first promotions of bring-up) are not recorded.
"""

from __future__ import annotations

from typing import Any

import pymysql

#: The record's own database (outside the roles' schema, so no role ever reads or writes it).
AUDIT_DB = "mc_audit"

TABLE = f"""CREATE TABLE IF NOT EXISTS `{AUDIT_DB}`.changes (
    id BIGINT AUTO_INCREMENT PRIMARY KEY,
    at DATETIME(6) NOT NULL,
    account VARCHAR(160) NOT NULL,
    tbl VARCHAR(16) NOT NULL,
    shard INT NULL,
    old_holder VARCHAR(64) NULL, new_holder VARCHAR(64) NULL,
    old_epoch BIGINT NULL, new_epoch BIGINT NULL,
    old_until DATETIME(6) NULL, new_until DATETIME(6) NULL,
    old_fence DATETIME(6) NULL, new_fence DATETIME(6) NULL,
    lease_holder VARCHAR(64) NULL, lease_epoch BIGINT NULL, lease_until DATETIME(6) NULL
) ENGINE=InnoDB"""

_INSERT = (f"INSERT INTO `{AUDIT_DB}`.changes (at, account, tbl, shard, old_holder, new_holder, "
           "old_epoch, new_epoch, old_until, new_until, old_fence, new_fence, lease_holder, "
           "lease_epoch, lease_until) ")


def triggers(db: str) -> dict[str, tuple[str, str]]:
    """Trigger name -> (the table it watches, its CREATE statement), for the roles' database
    ``db``."""
    return {
        "mc_audit_lease": ("master_lease",
            f"CREATE TRIGGER IF NOT EXISTS `{db}`.mc_audit_lease AFTER UPDATE ON "
            f"`{db}`.master_lease FOR EACH ROW " + _INSERT +
            "VALUES (NOW(6), SUBSTRING_INDEX(USER(), '@', 1), 'lease', NULL, OLD.holder, "
            "NEW.holder, OLD.epoch, NEW.epoch, OLD.expires_at, NEW.expires_at, NULL, NULL, "
            "NULL, NULL, NULL)"),
        "mc_audit_shard": ("shard_map",
            f"CREATE TRIGGER IF NOT EXISTS `{db}`.mc_audit_shard AFTER UPDATE ON "
            f"`{db}`.shard_map FOR EACH ROW " + _INSERT +
            "SELECT NOW(6), SUBSTRING_INDEX(USER(), '@', 1), 'shard', NEW.shard, "
            "OLD.hostname, NEW.hostname, OLD.epoch, NEW.epoch, OLD.valid_until, "
            "NEW.valid_until, OLD.fence_until, NEW.fence_until, l.holder, l.epoch, "
            f"l.expires_at FROM `{db}`.master_lease l WHERE l.id = 1"),
    }


def create_accounts(conn: Any, db: str, names: list[str], password: str) -> None:
    """One account per node (``'<name>'@'%'``, all rights on ``db``), so the record can say
    which node made each change. Idempotent."""
    with conn.cursor() as cur:
        for name in names:
            cur.execute("CREATE USER IF NOT EXISTS %s@'%%' IDENTIFIED BY %s", (name, password))
            cur.execute("ALTER USER %s@'%%' IDENTIFIED BY %s", (name, password))
            cur.execute(f"GRANT ALL PRIVILEGES ON `{db}`.* TO %s@'%%'", (name,))


def install(conn: Any, db: str) -> list[str]:
    """Create the record's table and the triggers whose tables exist (idempotent); returns
    the names of the triggers now in place."""
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{AUDIT_DB}`")
        cur.execute(TABLE)
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                    (db,))
        present = {r[0] for r in cur.fetchall()}
        for table, stmt in triggers(db).values():
            if table in present:
                cur.execute(stmt)
        cur.execute("SELECT trigger_name FROM information_schema.triggers "
                    "WHERE trigger_schema = %s AND trigger_name LIKE 'mc\\_audit\\_%%'", (db,))
        return sorted(r[0] for r in cur.fetchall())


def end(conn: Any) -> int:
    """The record's cursor now: the id of its last change (0 if none or no record yet)."""
    with conn.cursor() as cur:
        try:
            cur.execute(f"SELECT COALESCE(MAX(id), 0) FROM `{AUDIT_DB}`.changes")
        except pymysql.err.ProgrammingError:  # no record (yet): nothing to skip
            return 0
        return int(cur.fetchone()[0])


def _ts(x: Any) -> float | None:
    return None if x is None else float(x)


def read(conn: Any, since: int, limit: int = 5000) -> list[dict[str, Any]]:
    """Changes with ``id > since`` in id order, times as unix seconds (the database's clock
    in a UTC session): ``{"id","at","account","table","shard","old","new","lease"}`` where
    ``old``/``new`` hold ``holder``, ``epoch``, ``until`` (a lease row: ``expires_at``) or
    ``host``, ``epoch``, ``valid_until``, ``fence_until`` (a shard row)."""
    with conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        cur.execute(
            "SELECT id, UNIX_TIMESTAMP(at), account, tbl, shard, old_holder, new_holder, "
            "old_epoch, new_epoch, UNIX_TIMESTAMP(old_until), UNIX_TIMESTAMP(new_until), "
            "UNIX_TIMESTAMP(old_fence), UNIX_TIMESTAMP(new_fence), lease_holder, lease_epoch, "
            f"UNIX_TIMESTAMP(lease_until) FROM `{AUDIT_DB}`.changes WHERE id > %s "
            "ORDER BY id LIMIT %s", (since, limit))
        rows = cur.fetchall()
    out = []
    for (rid, at, account, tbl, shard, oh, nh, oe, ne, ou, nu, of, nf, lh, le, lu) in rows:
        rec: dict[str, Any] = {"id": int(rid), "at": float(at), "account": account,
                               "table": tbl}
        if tbl == "lease":
            rec["old"] = {"holder": oh, "epoch": oe, "until": _ts(ou)}
            rec["new"] = {"holder": nh, "epoch": ne, "until": _ts(nu)}
        else:
            rec["shard"] = shard
            rec["old"] = {"host": oh, "epoch": oe, "valid_until": _ts(ou),
                          "fence_until": _ts(of)}
            rec["new"] = {"host": nh, "epoch": ne, "valid_until": _ts(nu),
                          "fence_until": _ts(nf)}
            rec["lease"] = {"holder": lh, "epoch": le, "until": _ts(lu)}
        out.append(rec)
    return out
