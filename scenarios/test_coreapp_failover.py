"""Coreapp failover: the documented heartbeat-based and database-based promotions."""

from __future__ import annotations

import pytest
from helpers import (
    SLOW_DETECTOR,
    attempt_in_flight,
    hold,
    label,
    phase,
    wait_history,
    wait_ready,
)

from harness.failover import (
    BOUND,
    MARGIN,
    SHARD,
    Failover,
    Run,
    db_bound,
    heartbeat_bound,
    run_failover,
)
from harness.judge.checkers.candidates import SLACK
from harness.judge.checkers.db_record import shard_change
from harness.nemesis.kill import Kill
from harness.nemesis.latency import Latency
from harness.nemesis.pause import Pause
from multiconnect.core.monitor import answer_window

pytestmark = pytest.mark.failover

#: What a coreapp failover is judged by (besides harness.verdict.ALWAYS): the shard's
#: promotion and its clients' downtime within the bound, one connected coreapp per shard, no
#: acknowledged message lost, one primary master at the end.
CHECKS = (
    ("promotion", {"shard": SHARD, "bound": BOUND}),
    ("downtime", {"bound": BOUND, "shards": None, "others_bound": None}),
    "single_connected",
    "no_lost_acks",
    ("primary_masters", {"last": 3}),
)


def test_kill_primary_coreapp_heartbeat_failover(cluster, history, nemesis, workload,
                                                 mc_artifacts, record_figures):
    """Primary coreapp SIGKILLed with 2 masters alive: a secondary is promoted within
    unhealthy_interval + heartbeat_interval + margin; clients see no longer downtime; one
    connected coreapp per shard throughout; no acknowledged message lost."""
    label("failover", "coreapp failover", "primary coreapp killed (heartbeat detection)")
    run = run_failover(Failover(
        title="kill primary coreapp (heartbeat failover)", fault=Kill, bound=heartbeat_bound,
        checks=CHECKS,
    ), cluster, history, nemesis, workload, mc_artifacts, record_figures)
    # db_record passes on an empty record: make sure the database recorded this failover
    record = next(r for r in run.results if r.name == "db_record")
    assert record.figures["promotions"] and record.figures["confirmations"], (
        f"the database's record missed the promotion: {record.explanation}")


@pytest.mark.topology(masters=1)
def test_kill_primary_coreapp_single_master_db_failover(cluster, history, nemesis, workload,
                                                        mc_artifacts, record_figures):
    """With a single master only database-based monitoring applies: the dead primary's
    liveness row turns stale and it is replaced within stale_after + liveness_interval +
    margin (60 s / 120 s documented, scaled in CI)."""
    label("failover", "coreapp failover", "primary coreapp killed, one master (database "
          "liveness detection)")
    run_failover(Failover(
        title="kill primary coreapp, one master (DB failover)", fault=Kill, bound=db_bound,
        checks=CHECKS,
    ), cluster, history, nemesis, workload, mc_artifacts, record_figures)


def test_pause_primary_coreapp_then_resume(cluster, history, nemesis, workload, mc_artifacts,
                                           record_figures):
    """A paused primary (its TCP connections stay open, it answers nothing) is replaced; the
    new primary never overlaps it at the gateway (its connection is dropped by keepalive
    before the fence lifts); resumed, it finds its ownership lapsed and rejoins as a
    secondary. The pause is aimed: the primary's database answers are slowed by 600 ms and
    it is frozen when its own status says an ownership confirmation has been on its way for
    0.65–0.85 s. A confirmation is two statements (the UPDATE, then the SELECT that reads its
    token back), so the freeze lands while the second answer, "still yours", is on its way:
    on resume the primary reads it, and its validity must count from when the confirmation
    was sent, long past (``exclusive_claims``, group ``shard-0``)."""
    label("failover", "coreapp failover", "primary coreapp paused mid-confirmation")
    slow: list[Latency] = []

    def mid_confirmation(run: Run) -> None:
        old = run.target
        slow.append(Latency(f"{old}->db", latency=600))
        with phase(f"aim: 600 ms on every database answer to {old}; wait until its "
                   "confirmation's second answer is on its way"):
            nemesis.start(slow[0])
            wait_history(history, lambda h: attempt_in_flight(
                cluster, old, "confirm_attempt_for", since=0.65, before=0.85),
                10 * run.timing.heartbeat_interval,
                f"a confirmation's second answer on its way to {old}")

    def rejoined_as_secondary(run: Run) -> None:
        hold(1.5)  # its next confirmation's answer (h/2 + 0.6 s) ends any claim it resumed with
        nemesis.heal(slow[0])
        state = wait_ready(cluster, 20)
        assert run.target not in state["connected"], (
            f"{run.target} is connected again after resuming; connected: {state['connected']}")

    run_failover(Failover(
        title="pause primary coreapp, then resume", fault=Pause, bound=heartbeat_bound,
        checks=CHECKS, aim=mid_confirmation, after_heal=rejoined_as_secondary,
    ), cluster, history, nemesis, workload, mc_artifacts, record_figures)


@pytest.mark.topology(coreapps=5, shards=4)
def test_multiconnect_one_shard_fails_over_alone(cluster, history, nemesis, workload,
                                                 mc_artifacts, record_figures):
    """4 shards + 1 standby: killing shard 2's primary costs only shard 2's recipients;
    the other shards see no downtime beyond the margin."""
    label("failover", "multiconnect", "one shard's primary killed, other shards unaffected")
    run_failover(Failover(
        title="multiconnect: kill shard 2's primary", fault=Kill, bound=heartbeat_bound,
        shard=2, checks=(
            ("promotion", {"shard": SHARD, "bound": BOUND}),
            ("downtime", {"bound": BOUND, "shards": [2], "others_bound": MARGIN}),
            "single_connected",
            "no_lost_acks",
            ("primary_masters", {"last": 3}),
        ),
    ), cluster, history, nemesis, workload, mc_artifacts, record_figures)


@SLOW_DETECTOR
def test_standby_killed_after_the_primary_is_not_promoted(cluster, history, nemesis, workload,
                                                          mc_artifacts, record_figures):
    """Only a live standby is promoted. On the slow detector's cluster (u = 9·h, 3
    coreapps) the primary coreapp is killed, and 3·h later so is the first standby in
    promotion order (candidates are taken by name). When the masters decide, about u after
    the primary's last answer, that standby has been silent 5·h to 8·h: past the 2·h + 0.5 s
    a candidate may be silent, short of u, so only the "answered lately" rule keeps it out.
    The other standby must be the one promoted, within the heartbeat failover bound
    (``promoted_live`` judges every promotion the database recorded)."""
    label("failover", "coreapp failover", "a standby dies while the primary's failure is "
          "detected; the live one is promoted")
    h = cluster.spec.timing.heartbeat_interval
    standby: list[Kill] = []

    def kill_first_standby(run: Run) -> None:
        hold(3 * h)
        first = sorted(c for c in cluster.spec.node_names("coreapp") if c != run.target)[0]
        standby.append(Kill(first))
        nemesis.start(standby[0])

    def restart_standby(run: Run) -> None:
        nemesis.heal(standby[0])

    run_failover(Failover(
        title="kill primary coreapp, then the first standby", fault=Kill,
        bound=heartbeat_bound, checks=CHECKS, then=kill_first_standby,
        after_heal=restart_standby,
    ), cluster, history, nemesis, workload, mc_artifacts, record_figures)
    events = history.events()
    dead = standby[0].targets[0]
    killed = next(e.time for e in events if e.f == "start" and e.process.startswith("nemesis")
                  and dead in e.value.get("targets", ()))
    promoted = [e for e in events if e.f == "db-shard" and e.time > killed
                and shard_change(e.value) == "promotion"]
    assert promoted, "the database recorded no promotion after the standby was killed"
    window = answer_window(h)
    assert promoted[0].time - killed > window + SLACK, (
        f"the scenario did not provoke its case: the promotion came "
        f"{promoted[0].time - killed:.2f}s after {dead} was killed, within the "
        f"{window:g}s it may still count as answering")
