"""Master failover: the lease moves, traffic does not notice; coreapps serve with no master."""

from __future__ import annotations

from functools import partial

import pytest
from helpers import hold, label, phase, settle, wait_history, warm_up

from harness import bounds
from harness.checkers import (
    availability,
    downtime,
    no_lost_acks,
    no_promotion,
    primary_masters,
    single_connected,
)
from harness.nemesis.kill import Kill
from harness.nemesis.stop import Stop
from harness.verdict import judge

pytestmark = pytest.mark.failover


def new_primary_master(history, old: str, since: float):
    for e in history.events():
        if e.f == "health" and e.type == "ok" and e.time >= since:
            prim = [n for n, r in e.value.get("nodes", {}).items()
                    if r.get("role") == "primary_master"]
            if prim and old not in prim:
                return e
    return None


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
            hold(2)
        with phase(f"heal: restart {old}"):
            nemesis.heal(f)
            settle(cluster, history)  # the end-state check needs the restarted master's answers
    takeover = round(seen.time - start, 3) if seen else None
    assert takeover is not None, (
        f"CHECK FAILED: no other primary master within {bound} after killing {old}")
    assert takeover <= float(bound), (
        f"CHECK FAILED: lease takeover took {takeover:.3f}s > bound {bound}")
    with phase("check"):
        judge(history.events(), [
            partial(downtime, bound=bounds.MARGIN),
            partial(no_promotion, shard=0),
            single_connected, no_lost_acks,
            partial(primary_masters, last=3),
        ], artifacts=mc_artifacts, secrets=cluster.secrets(), record=record_figures,
            title="kill primary master", extra_figures={"promotion": takeover,
                                                       "bound": float(bound)})


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
