"""Nightly chaos: seeded random fault schedules under continuous traffic on every shard,
judged by the safety checkers over the whole run and by liveness after the final heal.

Every run prints its seed and one replay command (same seed, duration, kinds and topology
give the identical schedule; toxiproxy's own randomness — jitter — is not seeded, see
ENVIRONMENT.md). A failing run is shrunk on the same cluster (``--chaos-shrink`` seconds, best
effort) and the smallest failing subset of its steps gets a replay command of its own
(``--chaos-steps``). ``--chaos-runs N`` runs N independent clusters (seeds seed…seed+N-1; with
``-n N`` from pytest-xdist, at once). ``--chaos-soak`` also samples each node's memory and
open fds and fails on steady growth.
"""

from __future__ import annotations

import pytest
from helpers import label

from harness.chaos.runner import ChaosOptions, ChaosRunner, replay_command, safety_checks
from harness.verdict import judge

pytestmark = [pytest.mark.chaos, pytest.mark.nightly]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "chaos_run" in metafunc.fixturenames:
        n = max(1, metafunc.config.getoption("chaos_runs"))
        metafunc.parametrize("chaos_run", range(n), ids=[f"run{i}" for i in range(n)])


def _replay_id(request: pytest.FixtureRequest) -> str:
    """The node id of run 0: a replay is always one run with the printed seed."""
    return request.node.nodeid.split("[")[0] + "[run0]"


@pytest.mark.topology(coreapps=3, shards=2)
def test_random_fault_schedule(request, chaos_run, cluster, history, nemesis, mc_artifacts,
                               record_figures):
    """Random faults (overlapping, up to two at once) for --chaos-duration seconds; then all
    healed. Safety over the whole run: one connected coreapp per shard at every instant, no
    acknowledged message lost, no duplicate delivery, one primary master at the end;
    liveness: one primary master and one connected coreapp per shard within a bound after
    the final heal; soak mode: no steady growth of memory or fds."""
    label("chaos", "random schedules", "seeded random fault schedule")
    opts = ChaosOptions.from_config(request.config, chaos_run)
    topology = cluster.spec
    cluster.reusable = False  # a chaos run (and its shrinking) leaves any state behind
    replay = replay_command(_replay_id(request), opts, topology)
    print(f"\n[chaos] seed {opts.seed}; replay: {replay}")
    schedule = opts.schedule(topology)
    kept = opts.steps if opts.steps is not None else tuple(range(len(schedule)))
    runner = ChaosRunner(cluster, history, nemesis, opts)
    first = runner.execute(schedule.subset(kept))
    lines = [f"replay: {replay}"]
    if first.failures() and opts.shrink_budget > 0 and len(kept) > 1:
        print(f"[chaos] failed ({', '.join(first.failures())}); shrinking "
              f"{len(kept)} steps for at most {opts.shrink_budget:g} s")
        shrunk = runner.shrink(schedule, kept, first)
        lines.append(shrunk.summary(len(kept)))
        lines.append("replay the smallest failing schedule: "
                     + replay_command(_replay_id(request), opts, topology, shrunk.indices))
    try:
        judge(first.events, safety_checks(opts.soak), artifacts=mc_artifacts,
              secrets=cluster.secrets(), record=record_figures,
              title=f"chaos seed {opts.seed}",
              extra_figures={"seed": opts.seed, "faults": first.faults,
                             "recovery": first.recovered})
        assert first.live_error is None, \
            f"CHECK FAILED: no recovery after the final heal: {first.live_error}"
    except AssertionError as e:
        raise AssertionError("\n".join([str(e), *lines])) from None
