"""Master failover: the lease moves, traffic does not notice; coreapps serve with no master."""

from __future__ import annotations

from functools import partial

import pytest
from helpers import attempt_in_flight, hold, label, phase, settle, wait_history, warm_up

from harness.failover import (
    MARGIN,
    PRIMARY_MASTER,
    Failover,
    Run,
    lease_bound,
    run_failover,
    takeover_within_bound,
)
from harness.judge import bounds
from harness.judge.checkers import (
    availability,
    no_lost_acks,
    no_promotion,
    primary_masters,
    single_connected,
)
from harness.nemesis.kill import Kill
from harness.nemesis.latency import Latency
from harness.nemesis.pause import Pause
from harness.nemesis.stop import Stop
from harness.verdict import judge

pytestmark = pytest.mark.failover

#: What a master failover is judged by (besides harness.verdict.ALWAYS and the takeover time,
#: ``takeover_within_bound``): traffic did not notice — no downtime beyond the margin, no
#: coreapp promotion, one connection per shard, no lost ack — and one primary master at the
#: end.
CHECKS = (
    ("downtime", {"bound": MARGIN}),
    ("no_promotion", {"shard": 0}),
    "single_connected",
    "no_lost_acks",
    ("primary_masters", {"last": 3}),
)


def test_kill_primary_master_secondary_takes_the_lease(cluster, history, nemesis, workload,
                                                       mc_artifacts, record_figures):
    """The primary master is SIGKILLed: a secondary takes the lease within T + T/3 + margin;
    message traffic is unaffected beyond the margin (coreapps do not need masters to serve);
    exactly one primary master afterwards."""
    label("failover", "master failover", "primary master killed")
    run_failover(Failover(
        title="kill primary master", fault=Kill, target=PRIMARY_MASTER, bound=lease_bound,
        hold=1, checks=CHECKS, verify=takeover_within_bound("killing"),
    ), cluster, history, nemesis, workload, mc_artifacts, record_figures)


def test_primary_master_frozen_mid_renewal_steps_down(cluster, history, nemesis, workload,
                                                      mc_artifacts, record_figures):
    """The primary master is frozen (docker pause) while a lease renewal is in flight — its
    database answers are slowed by 600 ms so that one is, and the freeze waits for its own
    status to say so — until a secondary has taken the lease, which must happen within
    T + T/3 + margin of the freeze. When it resumes it reads the renewal's late grant: its
    validity counts from when it *sent* the renewal, long past, so it must not act as primary
    again (``exclusive_claims``, group ``lease``) and exactly one primary master remains."""
    label("failover", "master failover", "primary master frozen with a renewal in flight")
    t = cluster.spec.timing
    slow_ms = 600
    slow: list[Latency] = []

    def renewal_in_flight(run: Run) -> None:
        old = run.target
        slow.append(Latency(f"{old}->db", latency=slow_ms))
        with phase(f"fault: {slow_ms} ms on every database answer to {old}; wait until a "
                   "lease renewal is in flight"):
            nemesis.start(slow[0])
            wait_history(history, lambda h: attempt_in_flight(cluster, old, "lease_attempt_for"),
                         2 * t.lease_ttl, f"a lease renewal in flight on {old}")

    def resumed_then_slow_link_healed(run: Run) -> None:
        hold(t.lease_ttl / 3 + 1)  # past its next attempt, whose answer is slowed
        nemesis.heal(slow[0])

    run_failover(Failover(
        title="primary master frozen mid-renewal", fault=Pause, target=PRIMARY_MASTER,
        bound=lease_bound, hold=0.5, checks=CHECKS, aim=renewal_in_flight,
        after_heal=resumed_then_slow_link_healed, verify=takeover_within_bound("freezing"),
    ), cluster, history, nemesis, workload, mc_artifacts, record_figures)


def test_all_masters_down_api_keeps_serving(cluster, history, nemesis, workload,
                                            mc_artifacts, record_figures):
    """Every master stopped: webapps route by the shard map and coreapps keep their shards
    (ownership is confirmed in the database, not by masters): ≥ 99 % of sends succeed over
    the window; when the masters return they elect exactly one primary."""
    label("failover", "master failover", "all masters down", "blocker")
    with workload.running():
        with phase("workload: warm up"):
            warm_up(history)
        faults = [Stop(m) for m in cluster.spec.node_names("master")]
        with phase("fault: stop every master"):
            for f in faults:
                nemesis.start(f)
            start = history.now()
            hold(3 * cluster.spec.timing.unhealthy_interval)
            end = history.now()
        with phase("heal: start the masters again"):
            for f in faults:
                nemesis.heal(f)
            settle(cluster, history,
                   float(bounds.lease_takeover(cluster.spec.timing.lease_ttl)) + 10)
    with phase("check"):
        judge(history.events(), [
            partial(availability, min_fraction=0.99, window=(start, end)),
            partial(no_promotion, shard=0),
            single_connected, no_lost_acks,
            partial(primary_masters, last=3),
        ], artifacts=mc_artifacts, secrets=cluster.secrets(), record=record_figures,
            title="all masters down")
