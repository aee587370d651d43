"""The database layer against a real MariaDB server: every fenced decision is one statement,
judged by the database clock."""

from __future__ import annotations

import time

import pytest
from local_cluster import local_mariadb, mariadb_binaries

from multiconnect import db as dbq
from multiconnect.config import DbConfig
from multiconnect.core.lease import LeaseDecision
from multiconnect.db import Database, DatabaseError, NotPrimary
from multiconnect.settings import Settings

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(mariadb_binaries() is None,
                       reason="needs Debian mariadb-server (scripts/setup.sh installs it)"),
]


@pytest.fixture(scope="module")
def server():
    with local_mariadb() as s:
        yield s


@pytest.fixture
def db(server, request):
    name = "t_" + request.node.name[:40].replace("[", "_").replace("]", "_").replace("-", "_")
    d = Database(DbConfig(host="127.0.0.1", port=server.port, user="root", password="",
                          name=name, timeout=1.0))
    d.run(dbq.ensure_lease_table)
    yield d
    d.run(lambda cur: cur.execute(f"DROP DATABASE `{name}`"))
    d.close()


def primary(db: Database, me: str = "master-1", ttl: float = 5.0) -> int:
    decision, holder, epoch = db.run(lambda c: dbq.lease_attempt(c, me, None, ttl))
    assert decision is LeaseDecision.ACQUIRE and holder == me
    return epoch


def test_lease_acquire_renew_busy_and_takeover_after_expiry(db):
    e1 = primary(db, "master-1", ttl=0.5)
    d, h, e = db.run(lambda c: dbq.lease_attempt(c, "master-1", e1, 0.5))
    assert (d, h, e) == (LeaseDecision.RENEW, "master-1", e1)
    d, h, e = db.run(lambda c: dbq.lease_attempt(c, "master-2", None, 0.5))
    assert (d, h) == (LeaseDecision.BUSY, "master-1")
    time.sleep(0.6)  # let the database clock pass expires_at
    d, h, e2 = db.run(lambda c: dbq.lease_attempt(c, "master-2", None, 0.5))
    assert (d, h) == (LeaseDecision.ACQUIRE, "master-2") and e2 == e1 + 1
    # the deposed master cannot renew under its old epoch
    d, h, _ = db.run(lambda c: dbq.lease_attempt(c, "master-1", e1, 0.5))
    assert d is LeaseDecision.BUSY and h == "master-2"


def test_same_name_with_a_stale_epoch_gets_a_new_epoch(db):
    e1 = primary(db, "master-1")
    d, _, e2 = db.run(lambda c: dbq.lease_attempt(c, "master-1", None, 5.0))
    assert d is LeaseDecision.ACQUIRE and e2 == e1 + 1


def test_release_lets_another_master_in_at_once(db):
    e1 = primary(db, "master-1")
    assert db.run(lambda c: dbq.release_lease(c, "master-1", e1))
    d, h, _ = db.run(lambda c: dbq.lease_attempt(c, "master-2", None, 5.0))
    assert (d, h) == (LeaseDecision.ACQUIRE, "master-2")


def schema(db: Database, epoch: int, me: str = "master-1") -> None:
    db.run(lambda c: dbq.upgrade_schema(c, me, epoch, 1, Settings(1, 3), 1))


def test_promotion_is_fenced_by_the_lease(db):
    e = primary(db)
    schema(db, e)
    ep = db.run(lambda c: dbq.promote(c, "master-1", e, 0, None, "coreapp-1", 1.0))
    assert db.run(dbq.read_shard_map)[0].hostname == "coreapp-1"
    with pytest.raises(NotPrimary):  # wrong lease epoch
        db.run(lambda c: dbq.promote(c, "master-1", e + 7, 0, "coreapp-1", "coreapp-2", 1.0))
    with pytest.raises(NotPrimary):  # not the holder
        db.run(lambda c: dbq.promote(c, "master-2", e, 0, "coreapp-1", "coreapp-2", 1.0))
    with pytest.raises(NotPrimary):  # stale view of the shard's owner
        db.run(lambda c: dbq.promote(c, "master-1", e, 0, "coreapp-9", "coreapp-2", 1.0))
    with pytest.raises(NotPrimary):  # one coreapp never owns two shards
        db.run(lambda c: dbq.promote(c, "master-1", e, 0, "coreapp-1", "coreapp-1", 1.0))
    assert db.run(dbq.read_shard_map)[0].epoch == ep


def test_confirmation_token_and_fence(db):
    e = primary(db)
    schema(db, e)
    assert db.run(lambda c: dbq.confirm_ownership(c, "coreapp-1", 2.0)) is None
    db.run(lambda c: dbq.promote(c, "master-1", e, 0, None, "coreapp-1", 1.0))
    row = db.run(lambda c: dbq.confirm_ownership(c, "coreapp-1", 2.0))
    assert row is not None and row.shard == 0 and not row.fenced
    # hand the shard over while coreapp-1's confirmation is fresh: the fence is its
    # valid_until (≈ now + 2 s) + 1 s, so coreapp-2 is fenced for ~3 s
    db.run(lambda c: dbq.promote(c, "master-1", e, 0, "coreapp-1", "coreapp-2", 1.0))
    assert db.run(lambda c: dbq.confirm_ownership(c, "coreapp-1", 2.0)) is None
    row2 = db.run(lambda c: dbq.confirm_ownership(c, "coreapp-2", 2.0))
    assert row2 is not None and row2.fenced


def test_settings_write_is_fenced(db):
    e = primary(db)
    schema(db, e)
    v = db.run(lambda c: dbq.write_settings(c, "master-1", e, Settings(2, 6)))
    assert db.run(dbq.read_settings) == (Settings(2, 6), v)
    with pytest.raises(NotPrimary):
        db.run(lambda c: dbq.write_settings(c, "master-2", e, Settings(3, 9)))


def test_a_frozen_transaction_elsewhere_makes_statements_fail_fast_not_hang(db, server):
    """A client that froze inside a transaction holding the lease row (what a paused node
    would do with a multi-statement transaction) must not stall a renewal beyond the
    session's lock wait timeout."""
    e = primary(db)
    frozen = server.connect(db.cfg.name)
    frozen.autocommit(False)
    cur = frozen.cursor()
    cur.execute("SELECT * FROM master_lease WHERE id = 1 FOR UPDATE")
    t = time.monotonic()
    with pytest.raises(DatabaseError):
        db.run(lambda c: dbq.lease_attempt(c, "master-1", e, 5.0))
    assert time.monotonic() - t < 3.0
    frozen.rollback()
    frozen.close()
