"""multiconnect.decisions: one definition, two renderings — SQL text and Python evaluation
with SQL's NULL semantics (pure; the differential test runs both on MariaDB)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from multiconnect import decisions as d
from multiconnect.decisions import NOW, And, Arg, Col, Const, Eq, IsNull, Not, NullSafeEq, Or


@dataclass
class Row:
    holder: str | None = None
    epoch: int | None = 0
    expires_at: float | None = 0.0
    id: int = 1
    shard: int = 0
    hostname: str | None = None
    valid_until: float | None = None
    fence_until: float | None = None
    confirm_token: str | None = None
    updated_at: float = 0.0


def ev(expr, row=None, **args):
    return expr.ev({"": row or Row()}, 100.0, args)


@pytest.mark.parametrize("expr,expected", [
    (And(Arg("n"), Arg("f")), False), (And(Arg("n"), Arg("t")), None),
    (And(Arg("t"), Arg("t")), True), (Or(Arg("n"), Arg("t")), True),
    (Or(Arg("n"), Arg("f")), None), (Or(Arg("f"), Arg("f")), False),
    (Not(Arg("n")), None), (Not(Arg("f")), True),
    (Eq(Arg("n"), Arg("n")), None), (NullSafeEq(Arg("n"), Arg("n")), True),
    (NullSafeEq(Arg("n"), Arg("t")), False), (IsNull(Arg("n")), True), (IsNull(Arg("f")), False),
])
def test_three_valued_logic_as_in_sql(expr, expected):
    assert ev(expr, n=None, t=True, f=False) is expected


def test_renew_renders_the_statement_the_database_runs():
    sql, params = d.LEASE_RENEW.sql(me="master-1", epoch=4, ttl=5.0)
    assert sql == ("UPDATE master_lease SET expires_at = NOW(6) + INTERVAL %s MICROSECOND "
                   "WHERE ((id = 1) AND (holder = %s) AND (epoch = %s) AND "
                   "(expires_at > NOW(6)))")
    assert params == [5_000_000, "master-1", 4]


def test_promote_joins_the_lease_and_keeps_the_parameter_order():
    sql, params = d.PROMOTE.sql(me="m", epoch=3, shard=1, old=None, new="c2", new_epoch=9,
                                fence_extra=2.5)
    assert sql.startswith("UPDATE shard_map s JOIN master_lease l ON ((l.id = 1) AND "
                          "(l.holder = %s) AND (l.epoch = %s) AND (l.expires_at > NOW(6))) SET ")
    assert "s.fence_until = GREATEST(NOW(6), COALESCE(s.valid_until + INTERVAL %s MICROSECOND" \
        in sql and sql.endswith("WHERE ((s.shard = %s) AND (s.hostname <=> %s))")
    assert params == ["m", 3, "c2", 9, 2_500_000, 1, None]


def test_a_live_row_without_a_holder_is_not_acquired():
    """core.lease.decide: busy until it expires (finding 9 of docs/simulator.md)."""
    free_but_live = Row(holder=None, epoch=2, expires_at=101.0)
    assert not d.LEASE_ACQUIRE.matches(free_but_live, free_but_live, 100.0, me="m", epoch=None,
                                       ttl=5.0)
    expired = Row(holder="other", epoch=2, expires_at=100.0)  # expires_at <= NOW
    assert d.LEASE_ACQUIRE.matches(expired, expired, 100.0, me="m", epoch=None, ttl=5.0)
    d.LEASE_ACQUIRE.apply(expired, expired, 100.0, me="m", epoch=None, ttl=5.0)
    assert (expired.holder, expired.epoch, expired.expires_at) == ("m", 3, 105.0)


def test_promote_fences_from_the_old_validity_before_clearing_it():
    """SET applies left to right: fence_until reads valid_until before it becomes NULL."""
    lease = Row(holder="m", epoch=3, expires_at=110.0)
    row = Row(shard=0, hostname="c1", epoch=5, valid_until=104.0)
    args = dict(me="m", epoch=3, shard=0, old="c1", new="c2", new_epoch=6, fence_extra=2.5)
    assert d.PROMOTE.matches(row, lease, 100.0, **args)
    d.PROMOTE.apply(row, lease, 100.0, **args)
    assert (row.hostname, row.epoch, row.valid_until, row.fence_until) == ("c2", 6, None, 106.5)
    assert not d.PROMOTE.matches(row, Row(holder="m", epoch=3, expires_at=99.0), 100.0,
                                 **{**args, "old": "c2"})  # the lease expired: refused


def test_a_fenced_row_is_not_confirmed():
    row = Row(hostname="c2", fence_until=100.5)
    assert not d.CONFIRM.matches(row, Row(), 100.0, me="c2", ttl=2.0, token="t")
    assert d.CONFIRM.matches(row, Row(), 100.5, me="c2", ttl=2.0, token="t")
    assert not d.CONFIRM.matches(Row(hostname="c1"), Row(), 100.0, me="c2", ttl=2.0, token="t")


def test_null_comparisons_never_match():
    assert ev(Eq(Col("holder"), Const(None))) is None
    assert not d.Decision("t", Eq(Col("holder"), Arg("me")), ()).matches(
        Row(), Row(), 0.0, me=None)
    assert ev(d.Gt(NOW, Col("expires_at")), Row(expires_at=None)) is None
