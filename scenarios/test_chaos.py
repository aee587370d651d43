"""Nightly chaos: a seeded random fault schedule under continuous traffic on every shard,
judged by the safety checkers over the whole history and by liveness after the final heal.

Replay a run with the command printed on failure (same seed, duration and fault kinds give
the identical schedule; toxiproxy's own randomness — jitter — is not seeded, see
ENVIRONMENT.md).
"""

from __future__ import annotations

import random
import shlex
import time
from functools import partial

import pytest
from helpers import label

from harness import bounds
from harness.checkers import no_duplicates, no_lost_acks, primary_masters, single_connected
from harness.nemesis.schedule import ALL_KINDS, random_schedule, run_schedule
from harness.verdict import judge
from harness.wait import WaitTimeout, wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.nightly]


def _kinds(config) -> list[str]:
    raw = config.getoption("chaos_faults")
    kinds = [k.strip() for k in raw.split(",") if k.strip()] if raw else list(ALL_KINDS)
    bad = [k for k in kinds if k not in ALL_KINDS]
    if bad:
        raise pytest.UsageError(f"--chaos-faults: unknown kind(s) {bad}; known: "
                                + ", ".join(ALL_KINDS))
    return kinds


def replay_command(request, seed: int, duration: float, kinds: list[str]) -> str:
    t = request.getfixturevalue("mc_topology")
    args = ["python", "-m", "pytest", request.node.nodeid, "-m", "chaos",
            f"--chaos-seed={seed}", f"--chaos-duration={duration:g}",
            f"--chaos-faults={','.join(kinds)}", f"--mc-masters={t.masters}",
            f"--mc-coreapps={t.coreapps}", f"--mc-shards={t.shards}",
            f"--mc-webapps={t.webapps}"]
    return " ".join(shlex.quote(a) for a in args)


@pytest.mark.topology(coreapps=3, shards=2)
def test_random_fault_schedule(request, cluster, history, nemesis, workload, mc_artifacts,
                               record_figures):
    """Random faults (overlapping, up to two at once) for --chaos-duration seconds; then all
    healed. Safety over the whole run: one connected coreapp per shard at every instant, no
    acknowledged message lost, no duplicate delivery; liveness: one primary master and one
    connected coreapp per shard within a bound after the final heal."""
    label("chaos", "random schedules", "seeded random fault schedule")
    config = request.config
    seed = config.getoption("chaos_seed")
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    duration = config.getoption("chaos_duration")
    kinds = _kinds(config)
    replay = replay_command(request, seed, duration, kinds)
    print(f"[chaos] seed {seed}; replay: {replay}")
    schedule = random_schedule(seed, duration, kinds, cluster.spec)
    t = cluster.spec.timing
    settle = float(bounds.partition_failover(t.heartbeat_interval, t.unhealthy_interval,
                                             t.gateway_ping_timeout)) + t.lease_ttl + 10
    live_error = None
    with workload.running():
        run_schedule(nemesis, schedule, max_time=duration + 30)
        healed_at = time.monotonic()
        try:
            wait_for(cluster.ready_state, timeout=settle,
                     what="one primary master and one connected coreapp per shard")
        except WaitTimeout as e:
            live_error = str(e)
        recovered = time.monotonic() - healed_at
        time.sleep(3)
    try:
        judge(history.events(), [
            single_connected, no_lost_acks, partial(no_duplicates, allow="indeterminate"),
            partial(primary_masters, last=3),
        ], artifacts=mc_artifacts, secrets=cluster.secrets(), record=record_figures,
            title=f"chaos seed {seed}", extra_figures={"seed": seed,
                                                      "recovery": round(recovered, 2),
                                                      "faults": len(schedule)})
        assert live_error is None, f"CHECK FAILED: no recovery after the final heal: {live_error}"
    except AssertionError as e:
        raise AssertionError(f"{e}\nreplay: {replay}") from None
