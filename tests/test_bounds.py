"""The bound formulas, from the timing model in docs/contracts.md."""

from __future__ import annotations

import pytest

from harness.judge import bounds
from harness.judge.bounds import (
    Bound,
    db_failover,
    gateway_stall_recovery,
    heartbeat_failover,
    lease_takeover,
    partition_failover,
)


def test_heartbeat_failover_defaults_is_unhealthy_plus_heartbeat_plus_margin():
    b = heartbeat_failover(5, 30, 10)
    assert b.value == 36.5  # 30 + 5 + 1.5; the fence (2*5 + 10 + 0.5 = 20.5) ends earlier
    assert b.formula.startswith("u + h + margin")


def test_heartbeat_failover_fence_dominates_when_unhealthy_is_short():
    b = heartbeat_failover(2, 4, 10, margin=0.5)
    assert b.value == 2 * 2 + 10 + 0.5 + 0.5  # 15.0 > u + h + margin = 6.5
    assert "F + K + 0.5" in b.formula


def test_partition_failover_adds_the_fence_wait():
    b = partition_failover(5, 30, 10)
    assert b.value == 30 + 5 + 10 + 10 + 0.5 + 1.5
    assert b.value > heartbeat_failover(5, 30, 10).value


def test_db_failover_and_lease_takeover():
    assert db_failover(60, 120).value == 181.5
    assert db_failover(3, 6, margin=0).value == 9.0  # WA_DB_MONITOR_SCALE=0.05
    assert lease_takeover(10).value == pytest.approx(10 + 10 / 3 + 1.5)
    assert lease_takeover(9, margin=0).value == 12.0


def test_gateway_stall_recovery_is_the_ghost_wait_plus_a_tick():
    """The owner's ghost wait on its own clock ((K + 0.5)/0.9, OwnershipCore), one ownership
    tick, the margin; not the stall's length (its one connect is answered on resume)."""
    from multiconnect.core.ownership import OwnershipCore

    core = OwnershipCore("c", ttl=2.0, confirm_period=0.5, ping_period=0.5, keepalive=2.0)
    ghost = (core.keepalive + core.ghost_margin) / core.rate_safety
    b = gateway_stall_recovery(1, 2)
    assert b.value == pytest.approx(ghost + 0.5 + 1.5)  # ci: ≈ 4.78 s
    assert gateway_stall_recovery(5, 10, margin=0).value == pytest.approx(10.5 / 0.9 + 2.5)
    assert "(K + 0.5)/0.9 + h/2 + margin" in b.formula


def test_margin_is_one_module_constant_read_at_call_time(monkeypatch):
    assert bounds.MARGIN == 1.5
    monkeypatch.setattr(bounds, "MARGIN", 2.5)
    assert lease_takeover(9).value == 14.5
    assert heartbeat_failover(5, 30, 10).value == 37.5
    assert lease_takeover(9, margin=0.0).value == 12.0  # an explicit margin wins


def test_bound_prints_its_formula_and_converts_to_float():
    b = lease_takeover(9, margin=0)
    assert isinstance(b, Bound)
    assert float(b) == 12.0
    assert "T + T/3 + margin = 9 + 9/3 + 0" in str(b)


@pytest.mark.parametrize("args", [(-1, 30, 10), (5, float("nan"), 10), (5, 30, "10")])
def test_invalid_settings_are_rejected(args):
    with pytest.raises(ValueError):
        heartbeat_failover(*args)
    with pytest.raises(ValueError, match="margin"):
        lease_takeover(10, margin=-1)
