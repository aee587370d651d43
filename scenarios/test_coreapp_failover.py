"""Coreapp failover: the documented heartbeat-based and database-based promotions."""

from __future__ import annotations

from functools import partial

import pytest

from harness import bounds
from harness.checkers import downtime, no_lost_acks, primary_masters, promotion, single_connected
from harness.nemesis.kill import Kill
from harness.verdict import judge
from helpers import new_connect, phase, wait_history, warm_up

pytestmark = pytest.mark.failover


def _label(story: str, severity: str = "critical") -> None:
    from harness.report import label_scenario
    label_scenario("failover", "coreapp failover", story, severity)


def test_kill_primary_coreapp_heartbeat_failover(cluster, history, nemesis, workload,
                                                 mc_artifacts, record_figures):
    """Primary coreapp SIGKILLed with 2 masters alive: a secondary is promoted within
    unhealthy_interval + heartbeat_interval + margin; clients see no longer downtime; one
    connected coreapp per shard throughout; no acknowledged message lost."""
    _label("primary coreapp killed, heartbeat failover")
    t = cluster.spec.timing
    bound = bounds.heartbeat_failover(t.heartbeat_interval, t.unhealthy_interval,
                                      t.gateway_ping_timeout)
    with workload.running():
        with phase("workload: warm up"):
            warm_up(history)
        old = cluster.primary_coreapp(0)
        with phase(f"fault: kill {old} (primary coreapp of shard 0)"):
            fault = nemesis.start(Kill(old))
            start = history.now()
            wait_history(history, lambda h: new_connect(h, 0, old, start),
                         float(bound) + 5, "a new primary coreapp at the gateway")
        with phase("observe recovery"):
            wait_history(history, lambda h: sum(
                1 for e in h.events() if e.f == "send" and e.type == "ok"
                and e.time > start + float(bound)) >= 20, 15, "traffic after failover")
        with phase(f"heal: restart {old}"):
            nemesis.heal(fault)
    with phase("check"):
        judge(history.events(), [
            partial(promotion, shard=0, bound=bound),
            partial(downtime, bound=bound),
            single_connected,
            no_lost_acks,
            partial(primary_masters, last=3),
        ], artifacts=mc_artifacts, secrets=cluster.secrets(), record=record_figures,
            title="kill primary coreapp (heartbeat failover)")
