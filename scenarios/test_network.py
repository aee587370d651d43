"""Partitions and slow links between masters and coreapps: promote when (and only when) the
documented rule says so, and never overlap at the gateway."""

from __future__ import annotations

import math
from functools import partial

import pytest
from helpers import (
    faulted,
    hold,
    label,
    new_connect,
    phase,
    unknown_but_delivered,
    wait_history,
    warm_up,
)

from harness.failover import BOUND, SHARD, Failover, partition_bound, run_failover
from harness.judge import bounds
from harness.judge.checkers import (
    downtime,
    no_lost_acks,
    no_promotion,
    primary_masters,
    promotion,
    single_connected,
)
from harness.nemesis.cut import Cut
from harness.nemesis.latency import Latency
from harness.run.workload import Workload
from harness.verdict import judge

pytestmark = pytest.mark.failover

# the webapp's forward timeout (multiconnect/webapp/handlers.py WebappOptions.message_timeout)
MESSAGE_TIMEOUT = 2.0


def _links_from_masters(cluster, coreapp: str, masters=None) -> tuple[str, ...]:
    masters = masters or cluster.spec.node_names("master")
    return tuple(f"{m}->{coreapp}" for m in masters)


@pytest.mark.parametrize("which", ["primary", "secondary"])
def test_cut_from_one_master_only_no_promotion(which, cluster, history, nemesis, workload,
                                               mc_artifacts, record_figures):
    """The primary coreapp stops answering one master (the primary, or a secondary) while the
    other still reaches it: a miss seen by one master is not a failure — no promotion, no
    downtime. A wrong promotion would come about u + h after the cut; the cut lasts 2u."""
    label("failover", "network", f"primary coreapp cut from the {which} master only")
    t = cluster.spec.timing
    held = 2 * t.unhealthy_interval
    with workload.running():
        warm_up(history)
        pc, pm = cluster.primary_coreapp(0), cluster.primary_master()
        master = pm if which == "primary" else next(
            m for m in cluster.spec.node_names("master") if m != pm)
        with faulted(cluster, history, nemesis, Cut(f"{master}->{pc}"),
                     f"fault: cut {master}->{pc} ({which} master) for {held}s"):
            hold(held)
    judge(history.events(), [
        partial(no_promotion, shard=0),
        partial(downtime, bound=bounds.MARGIN),
        single_connected, no_lost_acks, partial(primary_masters, last=3),
    ], artifacts=mc_artifacts, secrets=cluster.secrets(), record=record_figures,
        title=f"cut from the {which} master only")


def test_answers_lost_across_a_promotion_stay_unknown(cluster, history, nemesis, mc_artifacts,
                                                      record_figures):
    """The primary coreapp is cut from every master but still reaches the database and the
    gateway: it is promoted away; it keeps confirming its ownership until the shard map
    changes, then closes its own connection, and the new primary connects only after the
    fence — never both at once. Meanwhile webapp-1 gets the old owner's answers only after
    its forward timeout: those messages may have been sent, so the client must hear 502/504,
    never 503 ("certainly not sent"), and no message may reach the gateway twice — even when
    the re-read shard map names a new owner by the time the answer is given up on. Clients
    wait long enough (8 s) to see the webapp's verdict. (Downtime here runs from the fault,
    not from the promotion, so it is not judged: the latency tests time a partition
    failover's downtime.)"""
    label("failover", "network", "cut from all masters; answers lost while the shard changes "
          "owner")
    t = cluster.spec.timing
    bound = bounds.partition_failover(t.heartbeat_interval, t.unhealthy_interval,
                                      t.gateway_ping_timeout)
    late_ms = int(1000 * (MESSAGE_TIMEOUT + 1))
    with Workload(cluster, history, timeout=8.0).running():
        warm_up(history)
        pc = cluster.primary_coreapp(0)
        with faulted(cluster, history, nemesis, Latency(f"webapp-1->{pc}", latency=late_ms),
                     f"fault: answers from {pc} to webapp-1 delayed {late_ms} ms"), \
                faulted(cluster, history, nemesis, Cut(_links_from_masters(cluster, pc)),
                        f"fault: cut every master from {pc}") as start:
            wait_history(history, lambda h: new_connect(h, 0, pc, start), float(bound) + 5,
                         "a new primary at the gateway")
            hold(1)  # a retry is given up on by M + 2 s + refresh: before the new connect
    lost = unknown_but_delivered(history.events())
    assert lost, ("scenario did not provoke its case: no send whose answer was lost was "
                  "delivered (check the latency fault on the webapp link)")
    judge(history.events(), [
        partial(promotion, shard=0, bound=bound), single_connected, no_lost_acks,
        partial(primary_masters, last=3),
    ], artifacts=mc_artifacts, secrets=cluster.secrets(), record=record_figures,
        title="cut from all masters, answers lost", extra_figures={"unknown_delivered": lost})


def test_latency_below_unhealthy_interval_no_promotion(cluster, history, nemesis, workload,
                                                       mc_artifacts, record_figures):
    """Heartbeat answers delayed by less than unhealthy_interval − heartbeat_interval are
    late, not missing: no promotion."""
    label("failover", "network", "latency on master↔coreapp links below unhealthy_interval")
    t = cluster.spec.timing
    delay_ms = int((t.unhealthy_interval - t.heartbeat_interval) * 1000 * 0.6)
    with workload.running():
        warm_up(history)
        pc = cluster.primary_coreapp(0)
        with faulted(cluster, history, nemesis,
                     Latency(_links_from_masters(cluster, pc), latency=delay_ms),
                     f"fault: {delay_ms} ms latency on every master->{pc} link"):
            hold(3 * t.unhealthy_interval)
    judge(history.events(), [
        partial(no_promotion, shard=0), partial(downtime, bound=bounds.MARGIN),
        single_connected, no_lost_acks,
    ], artifacts=mc_artifacts, secrets=cluster.secrets(), record=record_figures,
        title=f"latency {delay_ms} ms < unhealthy_interval", extra_figures={
            "latency_ms": delay_ms})


def test_latency_above_unhealthy_interval_promotes(cluster, history, nemesis, workload,
                                                   mc_artifacts, record_figures):
    """Heartbeat answers delayed beyond unhealthy_interval count as missing: promotion, with
    the fence protecting against overlap (the old primary is alive and connected)."""
    label("failover", "network", "latency on master↔coreapp links above unhealthy_interval")
    t = cluster.spec.timing
    delay_ms = int((t.unhealthy_interval + t.heartbeat_interval) * 1000)
    run_failover(Failover(
        title=f"latency {delay_ms} ms > unhealthy_interval",
        fault=lambda pc: Latency(_links_from_masters(cluster, pc), latency=delay_ms),
        bound=partition_bound, hold=2, figures={"latency_ms": delay_ms}, checks=(
            ("promotion", {"shard": SHARD, "bound": BOUND}),
            ("downtime", {"bound": BOUND}),
            "single_connected",
            "no_lost_acks",
        ),
    ), cluster, history, nemesis, workload, mc_artifacts, record_figures)


def test_flapping_links_no_promotion_churn(cluster, history, nemesis, workload, mc_artifacts,
                                           record_figures):
    """The primary coreapp's heartbeat links are cut and healed repeatedly, each cut shorter
    than unhealthy_interval − heartbeat_interval: never a promotion."""
    label("failover", "network", "flapping master↔coreapp links")
    t = cluster.spec.timing
    cut_for = max(0.5, (t.unhealthy_interval - t.heartbeat_interval) * 0.5)
    # enough cuts that together they outlast unhealthy_interval by a quarter (at least 4)
    cycles = max(4, math.ceil(1.25 * t.unhealthy_interval / cut_for))
    with workload.running():
        warm_up(history)
        pc = cluster.primary_coreapp(0)
        links = _links_from_masters(cluster, pc)
        with phase(f"fault: {cycles} × (cut {cut_for:g}s, heal {2 * t.heartbeat_interval}s)"):
            for _ in range(cycles):
                f = Cut(links)
                nemesis.start(f)
                try:
                    hold(cut_for)
                finally:
                    nemesis.heal(f)
                hold(2 * t.heartbeat_interval)
    judge(history.events(), [
        partial(no_promotion, shard=0), partial(downtime, bound=bounds.MARGIN),
        single_connected, no_lost_acks,
    ], artifacts=mc_artifacts, secrets=cluster.secrets(), record=record_figures,
        title="flapping links")
