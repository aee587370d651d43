"""Clock skew: wall clocks jump and drift; nothing that matters may depend on them."""

from __future__ import annotations

from functools import partial

import pytest
from helpers import hold, label, phase, warm_up

from harness import bounds
from harness.checkers import (
    downtime,
    no_lost_acks,
    no_promotion,
    primary_masters,
    single_connected,
)
from harness.nemesis.clock_skew import ClockSkew
from harness.verdict import judge

pytestmark = pytest.mark.failover


#: Backward jumps only: the heal puts the clock back, a forward jump of the same 300 s, and the
#: test watches as long after it. (A clock that stays ahead cannot expire anything early: a
#: forward jump's only harm, a lease stretched past its holder's death, needs a kill too.)
@pytest.mark.parametrize("target,offset,mode", [
    ("primary-master", -300, "jump"),
    ("primary-coreapp:0", -300, "jump"),
    ("primary-coreapp:0", +120, "drift"),
])
def test_clock_skew_changes_nothing(target, offset, mode, cluster, history, nemesis, workload,
                                    mc_artifacts, record_figures):
    """A node's wall clock jumps back by minutes and forward again at the heal (or drifts):
    leases and ownership are judged on the database clock and local monotonic clocks, so
    there is no spurious promotion, never two primary masters, no gateway overlap, no
    downtime."""
    label("failover", "clock", f"{mode} {offset:+d}s on {target}")
    t = cluster.spec.timing
    with workload.running():
        warm_up(history)
        f = ClockSkew(target, offset=offset, mode=mode, over=2 * t.unhealthy_interval)
        # held past the heartbeat failover bound (a spurious promotion would show by then);
        # a drift is held until it is complete and one unhealthy_interval more
        watch = float(bounds.heartbeat_failover(t.heartbeat_interval, t.unhealthy_interval,
                                                t.gateway_ping_timeout))
        with phase(f"fault: clock {mode} {offset:+d}s on {target}"):
            nemesis.start(f)
            hold(3 * t.unhealthy_interval if mode == "drift" else watch)
        with phase("heal: clock back"):
            nemesis.heal(f)
            hold(watch)
    judge(history.events(), [
        partial(no_promotion, shard=0), partial(downtime, bound=bounds.MARGIN),
        single_connected, no_lost_acks, partial(primary_masters, last=3),
    ], artifacts=mc_artifacts, secrets=cluster.secrets(), record=record_figures,
        title=f"clock {mode} {offset:+d}s on {target}")
