"""Clock skew: wall clocks jump and drift; nothing that matters may depend on them."""

from __future__ import annotations

from functools import partial

import pytest
from helpers import hold, label, phase, warm_up

from harness.judge import bounds
from harness.judge.checkers import (
    downtime,
    no_lost_acks,
    no_promotion,
    primary_masters,
    single_connected,
)
from harness.nemesis.clock_skew import ClockSkew
from harness.verdict import judge

pytestmark = pytest.mark.failover

#: Each case: the skews applied together, ``(node, offset in s)``, and the mode. The jumps go
#: back (the heal puts each clock forward again by as much, watched as long): the primary
#: master's and the primary coreapp's at once, by different amounts so that their clocks
#: disagree with each other as well as with the database. (A clock that stays ahead expires
#: nothing early: a forward jump's only harm, a lease stretched past its holder's death,
#: needs a kill too.) The drift runs the primary coreapp's clock fast.
CASES = {
    "jump-back": ((("primary-master", -300), ("primary-coreapp:0", -200)), "jump"),
    "drift-ahead": ((("primary-coreapp:0", +120),), "drift"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_clock_skew_changes_nothing(case, cluster, history, nemesis, workload, mc_artifacts,
                                    record_figures):
    """Wall clocks jump back by minutes and forward again at the heal (or drift): leases and
    ownership are judged on the database clock and local monotonic clocks, so there is no
    spurious promotion, never two primary masters, no gateway overlap, no downtime."""
    skews, mode = CASES[case]
    what = ", ".join(f"{offset:+d}s on {target}" for target, offset in skews)
    label("failover", "clock", f"{mode} {what}")
    t = cluster.spec.timing
    with workload.running():
        warm_up(history)
        faults = [ClockSkew(target, offset=offset, mode=mode, over=2 * t.unhealthy_interval)
                  for target, offset in skews]
        # held past the heartbeat failover bound (a spurious promotion would show by then);
        # a drift is held until it is complete and one unhealthy_interval more
        watch = float(bounds.heartbeat_failover(t.heartbeat_interval, t.unhealthy_interval,
                                                t.gateway_ping_timeout))
        with phase(f"fault: clock {mode} {what}"):
            for f in faults:
                nemesis.start(f)
            hold(3 * t.unhealthy_interval if mode == "drift" else watch)
        with phase("heal: clocks back"):
            for f in faults:
                nemesis.heal(f)
            hold(watch)
    judge(history.events(), [
        partial(no_promotion, shard=0), partial(downtime, bound=bounds.MARGIN),
        single_connected, no_lost_acks, partial(primary_masters, last=3),
    ], artifacts=mc_artifacts, secrets=cluster.secrets(), record=record_figures,
        title=f"clock {mode} {what}")
