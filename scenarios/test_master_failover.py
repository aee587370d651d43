"""Master failover: the lease moves, traffic does not notice; coreapps serve with no master."""

from __future__ import annotations

from functools import partial

import pytest
from helpers import (
    attempt_in_flight,
    faulted,
    hold,
    label,
    phase,
    settle,
    wait_history,
    warm_up,
)

from harness import bounds
from harness.api import health_nodes
from harness.checkers import (
    availability,
    downtime,
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


def new_primary_master(history, old: str, since: float):
    for e in history.events():
        if e.f == "health" and e.type == "ok" and e.time >= since:
            prim = [n for n, r in (health_nodes(e.value) or {}).items()
                    if r.get("role") == "primary_master"]
            if prim and old not in prim:
                return e
    return None


def _judge_takeover(cluster, history, seen, start: float, bound, fault: str, mc_artifacts,
                    record_figures, title: str) -> None:
    """The lease moved within ``bound`` of ``start`` (``seen``: the first health snapshot
    naming another primary), and traffic did not notice: no downtime beyond the margin, no
    coreapp promotion, one connection per shard, no lost ack, one primary master at the end."""
    takeover = round(seen.time - start, 3) if seen else None
    assert takeover is not None, (
        f"CHECK FAILED: no other primary master within {bound} after {fault}")
    assert takeover <= float(bound), (
        f"CHECK FAILED: lease takeover took {takeover:.3f}s > bound {bound}")
    with phase("check"):
        judge(history.events(), [
            partial(downtime, bound=bounds.MARGIN),
            partial(no_promotion, shard=0),
            single_connected, no_lost_acks,
            partial(primary_masters, last=3),
        ], artifacts=mc_artifacts, secrets=cluster.secrets(), record=record_figures,
            title=title, extra_figures={"promotion": takeover, "bound": float(bound)})


def test_kill_primary_master_secondary_takes_the_lease(cluster, history, nemesis, workload,
                                                       mc_artifacts, record_figures):
    """The primary master is SIGKILLed: a secondary takes the lease within T + T/3 + margin;
    message traffic is unaffected beyond the margin (coreapps do not need masters to serve);
    exactly one primary master afterwards."""
    label("failover", "master failover", "primary master killed")
    t = cluster.spec.timing
    bound = bounds.lease_takeover(t.lease_ttl)
    with workload.running():
        with phase("workload: warm up"):
            warm_up(history)
        old = cluster.primary_master()
        f = Kill(old)
        with phase(f"fault: kill {old} (primary master)"):
            nemesis.start(f)
            start = history.now()
            seen = wait_history(history, lambda h: new_primary_master(h, old, start),
                                float(bound) + 5, "another primary master")
        with phase("traffic with the new primary master"):
            hold(1)
        with phase(f"heal: restart {old}"):
            nemesis.heal(f)
            settle(cluster, history)  # the end-state check needs the restarted master's answers
    _judge_takeover(cluster, history, seen, start, bound, f"killing {old}", mc_artifacts,
                    record_figures, "kill primary master")


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
    bound = bounds.lease_takeover(t.lease_ttl)
    slow_ms = 600
    with workload.running():
        with phase("workload: warm up"):
            warm_up(history)
        old = cluster.primary_master()
        with faulted(cluster, history, nemesis, Latency(f"{old}->db", latency=slow_ms),
                     f"fault: {slow_ms} ms on every database answer to {old}"):
            in_flight = wait_history(
                history, lambda h: attempt_in_flight(cluster, old, "lease_attempt_for"),
                2 * t.lease_ttl, f"a lease renewal in flight on {old}")
            f = Pause(old)
            with phase(f"fault: freeze {old} (renewal in flight: {in_flight})"):
                nemesis.start(f)
                start = history.now()
                seen = wait_history(history, lambda h: new_primary_master(h, old, start),
                                    float(bound) + 5, "another primary master")
                hold(0.5)
            with phase(f"heal: resume {old}; it must step down"):
                nemesis.heal(f)
                hold(t.lease_ttl / 3 + 1)  # past its next attempt, whose answer is slowed
    _judge_takeover(cluster, history, seen, start, bound, f"freezing {old}", mc_artifacts,
                    record_figures, "primary master frozen mid-renewal")


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
