"""The engine's own work must not reach the cluster.

A container started or removed beside a running cluster, or the Docker engine busy or frozen
outright, is not a fault of the system under test: every shard must keep serving, and no
coreapp may self-fence or reconnect. Before the cluster's names were pinned in each
container's /etc/hosts, every new connection through toxiproxy asked the engine's embedded
DNS server, so a busy engine stalled every shard at once; at CI timings a healthy owner then
self-fenced (docs/engine-stalls.md). These scenarios fail on such a build. They guard the
harness and the machine, not a promise of the roles (no broken build of the roles is caught
here), so they are ``integration`` (``make test``, CI), not part of ``-m failover``.
"""

from __future__ import annotations

from functools import partial

import pytest
from helpers import faulted, hold, label, phase, warm_up

from harness.judge import bounds
from harness.judge.checkers import connections_kept, downtime, no_lost_acks, single_connected
from harness.nemesis.engine_freeze import EngineFreeze
from harness.verdict import judge

pytestmark = pytest.mark.integration

BYSTANDERS = 5


def _judge(cluster, history, since, mc_artifacts, record_figures, title):
    judge(history.events(), [
        partial(downtime, bound=bounds.MARGIN),
        partial(connections_kept, since=since),
        single_connected, no_lost_acks,
    ], artifacts=mc_artifacts, secrets=cluster.secrets(), record=record_figures, title=title)


@pytest.mark.topology(coreapps=5, shards=4)
def test_containers_started_and_removed_beside_the_cluster_cost_nothing(
        cluster, history, workload, mc_artifacts, record_figures):
    """Five containers that are not part of the cluster are started on its network and
    killed and removed again, one after another, under traffic on every shard: no shard is
    down longer than the margin, no gateway connection ends or is opened."""
    label("failover", "engine", "unrelated containers started and removed")
    with workload.running():
        warm_up(history)
        since = history.now()
        for i in range(BYSTANDERS):
            with phase(f"bystander {i + 1} of {BYSTANDERS}: start, then kill and remove"):
                c = cluster.start_bystander(f"bystander-{i + 1}")
                hold(1.0)
                c.remove(force=True)
                hold(1.0)
    _judge(cluster, history, since, mc_artifacts, record_figures,
           "unrelated containers started and removed")


@pytest.mark.topology(coreapps=5, shards=4)
def test_a_frozen_engine_costs_nothing(cluster, history, nemesis, workload, mc_artifacts,
                                       record_figures):
    """The engine's process is stopped (SIGSTOP) for F + h — longer than any owner may act
    without a fresh confirmation — under traffic on every shard, then resumed: no shard is
    down longer than the margin, no gateway connection ends or is opened."""
    label("failover", "engine", "Docker engine frozen")
    t = cluster.spec.timing
    frozen = t.ownership_ttl + t.heartbeat_interval
    with workload.running():
        warm_up(history)
        since = history.now()
        with faulted(cluster, history, nemesis, EngineFreeze(),
                     f"fault: engine frozen for {frozen:g} s"):
            hold(frozen)
        hold(1.0)
    _judge(cluster, history, since, mc_artifacts, record_figures, "Docker engine frozen")
