"""``db_record``: the database's own record of lease and shard-map changes, judged change by
change (hand-written records that must pass and must fail)."""

from __future__ import annotations

import pytest

from harness.history import make
from harness.judge.checkers import db_record
from harness.verdict import ALWAYS

T, SAFETY, EXTRA = 5.0, 0.9, 2.5
SETTINGS = {"lease_ttl": T, "lease_safety": SAFETY, "fence_extra": EXTRA,
            "accounts": {n: n for n in ("master-1", "master-2", "coreapp-1", "coreapp-2")},
            "masters": ["master-1", "master-2"]}
_ids = iter(range(1, 1_000_000))


def lease(at: float, account: str, old: tuple, new: tuple) -> tuple:
    """A lease change; ``old``/``new`` are ``(holder, epoch, until)``."""
    keys = ("holder", "epoch", "until")
    return (at, "db-record", "info", "db-lease",
            {"id": next(_ids), "at": at, "account": account, "table": "lease",
             "old": dict(zip(keys, old, strict=True)), "new": dict(zip(keys, new, strict=True))})


def shard(at: float, account: str, old: tuple, new: tuple,
          held: tuple = ("master-1", 1, 1e9), s: int = 0) -> tuple:
    """A shard-map change; ``old``/``new`` are ``(host, epoch, valid_until, fence_until)``,
    ``held`` the lease row ``(holder, epoch, until)`` at that instant."""
    keys = ("host", "epoch", "valid_until", "fence_until")
    return (at, "db-record", "info", "db-shard",
            {"id": next(_ids), "at": at, "account": account, "table": "shard", "shard": s,
             "old": dict(zip(keys, old, strict=True)), "new": dict(zip(keys, new, strict=True)),
             "lease": dict(zip(("holder", "epoch", "until"), held, strict=True))})


def judge(*rows: tuple, settings: dict | None = None):
    head = [(0.0, "db-record", "info", "db-record", settings or SETTINGS)]
    return db_record(make(head + list(rows)))


def healthy() -> list[tuple]:
    """master-1 renews; coreapp-1 confirms, dies; master-1 promotes coreapp-2 with the fence
    after coreapp-1's validity; coreapp-2 confirms after the fence; master-1 stops and
    master-2 takes the lease once it has expired."""
    return [
        lease(1.0, "master-1", ("master-1", 1, 2.5), ("master-1", 1, 6.0)),
        shard(1.2, "coreapp-1", ("coreapp-1", 2, 2.7, None), ("coreapp-1", 2, 3.2, None)),
        lease(2.7, "master-1", ("master-1", 1, 6.0), ("master-1", 1, 7.7)),
        shard(4.0, "master-1", ("coreapp-1", 2, 3.2, None), ("coreapp-2", 3, None, 5.7),
              held=("master-1", 1, 7.7)),
        shard(5.8, "coreapp-2", ("coreapp-2", 3, None, 5.7), ("coreapp-2", 3, 7.8, 5.7)),
        lease(6.0, "master-1", ("master-1", 1, 7.7), (None, 1, 6.0)),
        lease(6.5, "master-2", (None, 1, 6.0), ("master-2", 2, 11.5)),
        # a restarted master takes its own live row over under a new epoch
        lease(7.0, "master-2", ("master-2", 2, 11.5), ("master-2", 3, 12.0)),
    ]


def test_a_healthy_record_passes():
    r = judge(*healthy())
    assert r.valid, r.explanation
    assert r.figures["promotions"] == 1 and r.figures["confirmations"] == 2
    assert r.figures["lease_changes"] == 5 and r.figures["violations"] == 0


def test_no_record_passes_and_db_record_is_always_judged():
    assert db_record(make([(1.0, "sender-0", "invoke", "send", {})])).valid
    assert db_record in ALWAYS


def test_lease_taken_while_another_holds_it_fails():
    r = judge(lease(1.0, "master-1", ("master-1", 1, 2.5), ("master-1", 1, 6.0)),
              lease(5.0, "master-2", ("master-1", 1, 6.0), ("master-2", 2, 10.0)))
    assert not r.valid
    assert "master-2 took the lease (epoch 2) while master-1 held epoch 1" in r.explanation


def test_lease_taken_without_a_new_epoch_fails():
    r = judge(lease(7.0, "master-2", ("master-1", 1, 6.0), ("master-2", 1, 12.0)))
    assert not r.valid and "without a new epoch (1 -> 1)" in r.explanation


def test_expired_lease_renewed_fails():
    r = judge(lease(6.5, "master-1", ("master-1", 1, 6.0), ("master-1", 1, 11.5)))
    assert not r.valid and "renewed epoch 1 after it expired" in r.explanation


def test_lease_written_shorter_than_the_holder_trusts_fails():
    # an expiry cut to the whole second: 4.3 s instead of T = 5 s after the renewal
    r = judge(lease(1.7, "master-1", ("master-1", 1, 2.5), ("master-1", 1, 6.0)))
    assert not r.valid
    assert "expire 4.300000 s after the change; the holder trusts it for 4.5 s" in r.explanation
    assert judge(lease(1.7, "master-1", ("master-1", 1, 2.5), ("master-1", 1, 6.2))).valid


def test_lease_written_for_another_node_fails():
    r = judge(lease(6.5, "master-2", (None, 1, 6.0), ("master-1", 2, 11.5)))
    assert not r.valid and "account of master-2 wrote master-1 into the lease" in r.explanation
    r = judge(lease(3.0, "master-2", ("master-1", 1, 6.0), (None, 1, 3.0)))
    assert not r.valid and "master-2 released the lease held by master-1" in r.explanation


def test_promotion_by_a_master_without_the_live_lease_fails():
    r = judge(shard(4.0, "master-2", ("coreapp-1", 2, None, None), ("coreapp-2", 3, None, 4.0),
                    held=("master-1", 1, 7.7)))
    assert not r.valid and "master-2 handed shard 0 from coreapp-1 to coreapp-2" in r.explanation
    expired = judge(shard(8.0, "master-1", ("coreapp-1", 2, None, None),
                          ("coreapp-2", 3, None, 8.0), held=("master-1", 1, 7.7)))
    assert not expired.valid and "expiring -0.300000 s" in expired.explanation


def test_promotion_by_a_coreapp_fails():
    r = judge(shard(4.0, "coreapp-2", ("coreapp-1", 2, None, None), ("coreapp-2", 3, None, 4.0)))
    assert not r.valid and "coreapp-2 (not a master) handed shard 0" in r.explanation


def test_fence_shorter_than_the_keepalive_fails():
    # fence_until = valid_until + 2.5 ms (a unit slip) while valid_until + 2.5 s was due
    r = judge(shard(4.0, "master-1", ("coreapp-1", 2, 3.2, None),
                    ("coreapp-2", 3, None, 4.0), held=("master-1", 1, 7.7)))
    assert not r.valid and "1.700000 s short" in r.explanation
    # an old validity long past: the fence is now, and that is enough
    assert judge(shard(9.0, "master-1", ("coreapp-1", 2, 3.2, None),
                       ("coreapp-2", 3, None, 9.0), held=("master-1", 1, 11.0))).valid


def test_confirmation_before_the_fence_fails():
    r = judge(shard(5.0, "coreapp-2", ("coreapp-2", 3, None, 5.7), ("coreapp-2", 3, 7.0, 5.7)))
    assert not r.valid and "confirmed shard 0 (epoch 3) 0.700000 s before its fence" in (
        r.explanation)


def test_confirmation_of_another_nodes_row_fails():
    r = judge(shard(5.0, "coreapp-1", ("coreapp-2", 3, 6.0, None), ("coreapp-2", 3, 7.0, None)))
    assert not r.valid and "coreapp-1 extended the ownership of shard 0 held by coreapp-2" in (
        r.explanation)


def test_changes_by_other_accounts_are_counted_not_judged():
    r = judge(shard(4.0, "root", ("coreapp-1", 2, 3.2, None), ("coreapp-2", 3, None, 4.0),
                    held=(None, 1, 0.0)))
    assert r.valid, r.explanation
    assert r.figures["unjudged_changes"] == 1


@pytest.mark.parametrize("override", [{"lease_ttl": 6.0}, {"fence_extra": 3.0}])
def test_arguments_override_the_recorded_settings(override):
    rows = [make([(0.0, "db-record", "info", "db-record", SETTINGS)])[0]]
    rows += make(healthy())
    assert db_record(rows).valid
    assert not db_record(rows, **override).valid
