"""Hazards the documented list leaves out, that a careful release engineer would still test.

- the primary coreapp loses only the database: it can no longer confirm its ownership, so it
  must drop its gateway connection on its own before a master replaces it (DB liveness);
- the primary master and the primary coreapp die together: the survivor takes the lease and
  then, alone, replaces the coreapp by database liveness;
- the primary coreapp's link to the WhatsApp servers loses the gateway's answers, then resets
  its connections, while no close reaches the gateway: it must wait out the gateway's
  keepalive before each reconnect, so there is never a second connection at the gateway,
  and no promotion (the masters still see it healthy).
"""

from __future__ import annotations

from functools import partial

import pytest
from helpers import hold, label, phase, settle, warm_up

from harness.failover import (
    BOUND,
    FAULT,
    SHARD,
    Failover,
    Run,
    db_bound,
    master_and_coreapp_bound,
    run_failover,
)
from harness.history import Event
from harness.judge import bounds
from harness.judge.checkers import (
    no_lost_acks,
    no_promotion,
    primary_masters,
    recovery,
    single_connected,
)
from harness.nemesis.blackhole import Blackhole
from harness.nemesis.cut import Cut
from harness.nemesis.kill import Kill
from harness.nemesis.lost_close import LostClose
from harness.nemesis.reset import Reset
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
    closed: list[Event | None] = []

    def gateway_close(run: Run) -> None:
        closed.append(_closed_by(history, run.target, run.start))

    def self_fenced(run: Run) -> None:
        assert closed[0] is not None, (
            f"CHECK FAILED: {run.target} never dropped its gateway connection")
        run.figures["self_fenced_after"] = round(closed[0].time - run.start, 3)

    run_failover(Failover(
        title="primary coreapp cut from the database", fault=lambda pc: Cut(f"{pc}->db"),
        bound=db_bound, hold=2, after_wait=gateway_close, verify=self_fenced, checks=(
            ("promotion", {"shard": SHARD, "bound": BOUND}),
            ("downtime", {"bound": BOUND}),
            "single_connected",
            "no_lost_acks",
            ("primary_masters", {"last": 3}),
        ),
    ), cluster, history, nemesis, workload, mc_artifacts, record_figures)


def test_primary_master_and_primary_coreapp_killed_together(
        cluster, history, nemesis, workload, mc_artifacts, record_figures):
    """Both primaries SIGKILLed at once (one host lost): the secondary master takes the lease,
    then — the only master left — replaces the dead coreapp by database liveness within
    max(T + T/3, stale_after) + liveness_interval + margin."""
    label("failover", "hazards", "primary master and primary coreapp killed together")
    run_failover(Failover(
        title="primary master and primary coreapp killed together",
        # the coreapp first, then the master; healed the other way round
        fault=lambda pc: (Kill(pc), Kill(cluster.primary_master())),
        bound=master_and_coreapp_bound, hold=3, checks=(
            ("promotion", {"shard": SHARD, "bound": BOUND, "fault": FAULT}),
            ("downtime", {"bound": BOUND}),
            "single_connected",
            "no_lost_acks",
            ("primary_masters", {"last": 3}),
        ),
    ), cluster, history, nemesis, workload, mc_artifacts, record_figures)


def test_gateway_link_loses_answers_and_closes_one_connection_per_shard(
        cluster, history, nemesis, workload, mc_artifacts, record_figures):
    """The primary coreapp's link to the gateway fails while no close reaches the gateway
    (``LostClose``: a FIN or RST toward it is dropped, so the gateway holds a connection
    until its keepalive K runs out):

    1. the gateway's answers are black-holed for 2·K: the coreapp's pings fail and it closes
       the connection itself, but the gateway still holds it;
    2. then each connection is reset at the gateway's first answer, for 3·K: the coreapp's
       connects reach the gateway, which registers them, and end for the coreapp with a
       reset and no answer.

    After each such end the coreapp must wait out the gateway's keepalive before it connects
    again (the ghost wait), so the gateway never holds two connections for the shard; the
    masters still see it healthy, so no promotion; after the heal it delivers again within
    K + 0.5 + h/2 + connect timeout + margin."""
    label("failover", "hazards", "gateway link loses answers and closes")
    t = cluster.spec.timing
    k = t.gateway_ping_timeout
    bound = bounds.gateway_reconnect(t.heartbeat_interval, k)
    with workload.running():
        warm_up(history)
        pc = cluster.primary_coreapp(0)
        lost = LostClose()
        with phase("fault: every close toward the gateway lost"):
            nemesis.start(lost)
        answers = Blackhole(f"{pc}->gateway", stream="downstream")
        with phase(f"fault: answers on {pc}->gateway black-holed for {2 * k:g}s"):
            nemesis.start(answers)
            first = history.now()
            hold(2 * k)
            nemesis.heal(answers)
        reset = Reset(f"{pc}->gateway")
        with phase(f"fault: {pc}->gateway reset at the first answer for {3 * k:g}s"):
            nemesis.start(reset)
            second = history.now()
            hold(3 * k)
        with phase("heal"):
            nemesis.heal(reset)
            nemesis.heal(lost)
            end = history.now()
            settle(cluster, history)
    events = history.events()
    # connections of the coreapp the gateway ended itself (keepalive, or a kick) in each
    # phase: it never heard their close
    ghosts = [sum(1 for e in events if e.f in ("gw-timeout", "gw-kick")
                  and e.value.get("node") == pc and a <= e.time < b)
              for a, b in ((first, second), (second, end + k + 1))]
    judge(events, [
        partial(no_promotion, shard=0),
        partial(recovery, bound=bound, fault=lost.id),
        single_connected, no_lost_acks, partial(primary_masters, last=3),
    ], artifacts=mc_artifacts, secrets=cluster.secrets(), record=record_figures,
        title="gateway link loses answers and closes",
        extra_figures={"connections_held_after_their_close": sum(ghosts)})
    assert all(ghosts), (
        f"the scenario did not provoke its case: the gateway itself ended {ghosts} "
        f"connection(s) of {pc} in the two phases; each needs one whose close was lost")
