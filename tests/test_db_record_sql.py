"""The database's record (``harness.cluster.db_record``) against a real MariaDB server: per-node
accounts, the triggers, reading the record back, and ``db_record`` judging it — the roles'
own statements pass; a promotion past the lease, a unit slip in the fence and an expiry cut
to the second fail."""

from __future__ import annotations

import contextlib
import time

import pymysql
import pytest
from local_cluster import local_mariadb, mariadb_binaries

from harness.cluster import db_record as record
from harness.history import make
from harness.judge.checkers import db_record
from multiconnect import db as dbq
from multiconnect.config import DbConfig
from multiconnect.db import Database
from multiconnect.settings import Settings

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(mariadb_binaries() is None,
                       reason="needs Debian mariadb-server (scripts/setup.sh installs it)"),
]

NODES = ["master-1", "master-2", "coreapp-1", "coreapp-2"]
PASSWORD = "pw-record"
TTL, EXTRA = 5.0, 2.5
SETTINGS = {"lease_ttl": TTL, "lease_safety": 0.9, "fence_extra": EXTRA,
            "accounts": {n: n for n in NODES}, "masters": NODES[:2]}


@pytest.fixture(scope="module")
def server():
    with local_mariadb() as s:
        yield s


def root(server) -> pymysql.connections.Connection:
    return pymysql.connect(host="127.0.0.1", port=server.port, user="root", password="",
                           autocommit=True)


@pytest.fixture
def cluster_db(server, request):
    """A fresh schema made by master-1 through its own account, with the record installed;
    yields ``as_node(name) -> Database``."""
    name = "r_" + request.node.name[:40].replace("[", "_").replace("]", "_").replace("-", "_")
    opened: list[Database] = []
    with contextlib.closing(root(server)) as conn:
        record.create_accounts(conn, name, NODES, PASSWORD)
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS `{record.AUDIT_DB}`.changes")

    def as_node(node: str) -> Database:
        d = Database(DbConfig(host="127.0.0.1", port=server.port, user=node,
                              password=PASSWORD, name=name, timeout=1.0))
        opened.append(d)
        return d

    m1 = as_node("master-1")
    m1.run(dbq.ensure_lease_table)
    _, _, epoch = m1.run(lambda c: dbq.lease_attempt(c, "master-1", None, TTL))
    m1.run(lambda c: dbq.upgrade_schema(c, "master-1", epoch, 1, Settings(1, 3), 1))
    with contextlib.closing(root(server)) as conn:
        assert record.install(conn, name) == ["mc_audit_lease", "mc_audit_shard"]
        assert record.install(conn, name) == ["mc_audit_lease", "mc_audit_shard"]  # idempotent
    yield as_node, epoch, name
    for d in opened:
        d.close()
    with contextlib.closing(root(server)) as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE `{name}`")


def judged(server):
    with contextlib.closing(root(server)) as conn:
        rows = record.read(conn, 0)
    head = [(0.0, "db-record", "info", "db-record", SETTINGS)]
    events = make(head + [(r["at"] - rows[0]["at"] + 1.0, "db-record", "info",
                           "db-lease" if r["table"] == "lease" else "db-shard", r)
                          for r in rows])
    return rows, db_record(events)


def test_the_roles_own_statements_are_recorded_and_pass(server, cluster_db):
    as_node, epoch, _ = cluster_db
    m1, c1, c2 = as_node("master-1"), as_node("coreapp-1"), as_node("coreapp-2")
    m1.run(lambda c: dbq.lease_attempt(c, "master-1", epoch, TTL))
    m1.run(lambda c: dbq.promote(c, "master-1", epoch, 0, None, "coreapp-1", EXTRA))
    assert not c1.run(lambda c: dbq.confirm_ownership(c, "coreapp-1", 2.0)).fenced
    m1.run(lambda c: dbq.promote(c, "master-1", epoch, 0, "coreapp-1", "coreapp-2", EXTRA))
    assert c2.run(lambda c: dbq.confirm_ownership(c, "coreapp-2", 2.0)).fenced  # no change
    rows, r = judged(server)
    assert r.valid, r.explanation
    assert r.figures["promotions"] == 2 and r.figures["confirmations"] == 1
    assert r.figures["unjudged_changes"] == 0
    assert {row["account"] for row in rows} == {"master-1", "coreapp-1"}
    handover = [row for row in rows if row["table"] == "shard"][-1]
    assert handover["old"]["host"] == "coreapp-1" and handover["new"]["host"] == "coreapp-2"
    assert handover["lease"]["holder"] == "master-1" and handover["lease"]["epoch"] == epoch
    assert handover["new"]["fence_until"] == pytest.approx(
        handover["old"]["valid_until"] + EXTRA, abs=1e-6)


def test_a_promotion_that_skips_the_lease_fails(server, cluster_db):
    as_node, _, name = cluster_db
    m2 = as_node("master-2")
    # master-2 never held the lease: an unfenced UPDATE (the bug a broken fence would be)
    m2.run(lambda c: c.execute(f"UPDATE `{name}`.shard_map SET hostname = 'coreapp-2', "
                               "epoch = epoch + 1, fence_until = NOW(6) WHERE shard = 0"))
    _, r = judged(server)
    assert not r.valid
    assert "master-2 handed shard 0 from None to coreapp-2 while the lease was master-1's" in (
        r.explanation)


def test_a_fence_written_in_milliseconds_fails(server, cluster_db):
    as_node, epoch, _ = cluster_db
    m1, c1 = as_node("master-1"), as_node("coreapp-1")
    m1.run(lambda c: dbq.promote(c, "master-1", epoch, 0, None, "coreapp-1", EXTRA))
    c1.run(lambda c: dbq.confirm_ownership(c, "coreapp-1", 2.0))
    # the promotion's fence_extra converted with 1e3 instead of 1e6: 2.5 ms
    m1.run(lambda c: dbq.promote(c, "master-1", epoch, 0, "coreapp-1", "coreapp-2",
                                 EXTRA / 1000))
    _, r = judged(server)
    assert not r.valid and "promotion of shard 0 to coreapp-2 fenced until" in r.explanation


def test_a_lease_expiry_cut_to_the_second_fails(server, cluster_db):
    as_node, epoch, name = cluster_db
    m1 = as_node("master-1")
    with contextlib.closing(root(server)) as conn, conn.cursor() as cur:
        cur.execute(f"ALTER TABLE `{name}`.master_lease MODIFY expires_at DATETIME NOT NULL")
    cut = 0.0
    for _ in range(20):  # bounded: until one renewal lands more than 0.5 s into a second
        m1.run(lambda c: dbq.lease_attempt(c, "master-1", epoch, TTL))
        cut = max(cut, time.time() % 1.0)
        if cut > 0.6:
            break
        time.sleep(0.13)
    _, r = judged(server)
    assert not r.valid and "the holder trusts it for 4.5 s" in r.explanation
