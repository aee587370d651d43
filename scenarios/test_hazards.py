"""Hazards the documented list leaves out, that a careful release engineer would still test.

- the primary coreapp loses only the database: it can no longer confirm its ownership, so it
  must drop its gateway connection on its own before a master replaces it (DB liveness);
- the primary master and the primary coreapp die together: the survivor takes the lease and
  then, alone, replaces the coreapp by database liveness;
- the primary coreapp's link to the WhatsApp servers is blackholed (packets vanish, no FIN):
  its pings fail, it reconnects after the heal without a second connection at the gateway and
  without a promotion (the masters still see it healthy).
"""

from __future__ import annotations

from functools import partial

import pytest
from helpers import faulted, hold, label, new_connect, phase, settle, wait_history, warm_up

from harness import bounds
from harness.checkers import (
    downtime,
    no_lost_acks,
    no_promotion,
    primary_masters,
    promotion,
    recovery,
    single_connected,
)
from harness.nemesis.blackhole import Blackhole
from harness.nemesis.cut import Cut
from harness.nemesis.kill import Kill
from harness.verdict import judge

pytestmark = pytest.mark.failover


def _closed_by(history, node: str, since: float):
    """The first gateway close of ``node``'s connection after ``since`` (any reason)."""
    for e in history.events():
        if (e.f in ("gw-disconnect", "gw-kick", "gw-timeout") and e.time >= since
                and e.value.get("node") == node):
            return e
    return None


def test_primary_coreapp_cut_from_database_self_fences_and_is_replaced(
        cluster, history, nemesis, workload, mc_artifacts, record_figures):
    """Only the primary coreapp's database link is cut: it cannot confirm its ownership, so it
    closes its own gateway connection when its validity ends; its liveness row turns stale
    and a master promotes a standby within stale_after + liveness_interval + margin; never
    two connections at the gateway."""
    label("failover", "hazards", "primary coreapp cut from the database only")
    t = cluster.spec.timing
    bound = bounds.db_failover(t.liveness_interval, t.stale_after)
    with workload.running():
        warm_up(history)
        pc = cluster.primary_coreapp(0)
        with faulted(cluster, history, nemesis, Cut(f"{pc}->db"),
                     f"fault: cut {pc}->db") as start:
            wait_history(history, lambda h: new_connect(h, 0, pc, start), float(bound) + 5,
                         "a new primary at the gateway")
            closed = _closed_by(history, pc, start)
            hold(2)
    assert closed is not None, f"CHECK FAILED: {pc} never dropped its gateway connection"
    judge(history.events(), [
        partial(promotion, shard=0, bound=bound),
        partial(downtime, bound=bound),
        single_connected, no_lost_acks, partial(primary_masters, last=3),
    ], artifacts=mc_artifacts, secrets=cluster.secrets(), record=record_figures,
        title="primary coreapp cut from the database",
        extra_figures={"self_fenced_after": round(closed.time - start, 3)})


def test_primary_master_and_primary_coreapp_killed_together(
        cluster, history, nemesis, workload, mc_artifacts, record_figures):
    """Both primaries SIGKILLed at once (one host lost): the secondary master takes the lease,
    then — the only master left — replaces the dead coreapp by database liveness within
    max(T + T/3, stale_after) + liveness_interval + margin."""
    label("failover", "hazards", "primary master and primary coreapp killed together")
    t = cluster.spec.timing
    bound = bounds.master_and_coreapp_failover(t.lease_ttl, t.liveness_interval, t.stale_after)
    with workload.running():
        warm_up(history)
        pc, pm = cluster.primary_coreapp(0), cluster.primary_master()
        kill_master, kill_coreapp = Kill(pm), Kill(pc)
        with phase(f"fault: kill {pm} and {pc}"):
            nemesis.start(kill_coreapp)
            nemesis.start(kill_master)
            start = history.now()
            wait_history(history, lambda h: new_connect(h, 0, pc, start), float(bound) + 5,
                         "a new primary at the gateway")
            hold(3)
        with phase("heal: restart both"):
            nemesis.heal(kill_master)
            nemesis.heal(kill_coreapp)
            settle(cluster, history)
    judge(history.events(), [
        partial(promotion, shard=0, bound=bound, fault=kill_coreapp.id),
        partial(downtime, bound=bound),
        single_connected, no_lost_acks, partial(primary_masters, last=3),
    ], artifacts=mc_artifacts, secrets=cluster.secrets(), record=record_figures,
        title="primary master and primary coreapp killed together")


def test_gateway_link_blackhole_reconnects_without_a_second_connection(
        cluster, history, nemesis, workload, mc_artifacts, record_figures):
    """The primary coreapp's link to the gateway is blackholed for 3·K (no FIN reaches
    either end): its pings fail and it stops sending; the masters still see it healthy, so
    no promotion; after the heal it delivers again within K + 0.5 + h/2 + connect timeout +
    margin, and the gateway never holds two connections for the shard."""
    label("failover", "hazards", "gateway link blackholed")
    t = cluster.spec.timing
    bound = bounds.gateway_reconnect(t.heartbeat_interval, t.gateway_ping_timeout)
    with workload.running():
        warm_up(history)
        pc = cluster.primary_coreapp(0)
        f = Blackhole(f"{pc}->gateway")
        with faulted(cluster, history, nemesis, f,
                     f"fault: blackhole {pc}->gateway for {3 * t.gateway_ping_timeout:g}s"):
            hold(3 * t.gateway_ping_timeout)
    judge(history.events(), [
        partial(no_promotion, shard=0),
        partial(recovery, bound=bound, fault=f.id),
        single_connected, no_lost_acks, partial(primary_masters, last=3),
    ], artifacts=mc_artifacts, secrets=cluster.secrets(), record=record_figures,
        title="gateway link blackholed")
