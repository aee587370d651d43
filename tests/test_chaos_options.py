"""harness.chaos.runner: options, replay commands, schedule subsets and settling (no cluster)."""

from __future__ import annotations

import shlex
import threading
import time

import pytest

from harness.chaos.runner import (
    ChaosOptionError,
    ChaosOptions,
    conclusive,
    parse_kinds,
    parse_steps,
    replay_command,
    settle,
)
from harness.history import History
from harness.nemesis.schedule import ALL_KINDS, random_schedule
from harness.spec import Topology
from harness.wait import WaitTimeout


def test_parse_kinds_and_steps():
    assert parse_kinds("") == list(ALL_KINDS)
    assert parse_kinds(" kill, cut ") == ["kill", "cut"]
    with pytest.raises(ChaosOptionError, match="meteor"):
        parse_kinds("kill,meteor")
    assert parse_steps("") is None
    assert parse_steps("7,0,3,3") == (0, 3, 7)
    for bad in ("x", "-1", ","):
        with pytest.raises(ChaosOptionError, match="chaos-steps"):
            parse_steps(bad)


def test_subset_keeps_original_times_and_seed():
    sched = random_schedule(5, 120.0, ("kill", "cut"), Topology(coreapps=3, shards=2))
    sub = sched.subset([3, 1])
    assert [s.at for s in sub] == [sched[1].at, sched[3].at]
    assert sub.seed == 5
    with pytest.raises(IndexError, match="not in this schedule"):
        sched.subset([len(sched)])


def test_replay_command_carries_everything_that_fixes_the_schedule():
    t = Topology(coreapps=3, shards=2, test_break="never-self-fence")
    opts = ChaosOptions(seed=42, duration=90.0, kinds=("cut", "kill"))
    cmd = shlex.split(replay_command("scenarios/test_chaos.py::t[run0]", opts, t, (0, 4)))
    for arg in ("--chaos-seed=42", "--chaos-duration=90", "--chaos-faults=cut,kill",
                "--mc-coreapps=3", "--mc-shards=2", "--mc-timing=ci", "--chaos-runs=1",
                "--mc-test-break=never-self-fence", "--chaos-steps=0,4"):
        assert arg in cmd, arg
    whole = shlex.split(replay_command("x", opts, Topology()))
    assert not any(a.startswith(("--chaos-steps", "--mc-test-break")) for a in whole)


def test_same_options_give_the_same_schedule():
    opts = ChaosOptions(seed=9, duration=180.0, kinds=tuple(ALL_KINDS))
    t = Topology(coreapps=3, shards=2)
    assert opts.schedule(t).to_dicts() == opts.schedule(t).to_dicts()
    assert opts.schedule(t).to_dicts() != ChaosOptions(10, 180.0, opts.kinds).schedule(t).to_dicts()


# -- settling after the faults ---------------------------------------------------------------

class _Cluster:
    """Just what ``settle`` reads: the spec's masters and the ready state."""

    def __init__(self, ready: bool) -> None:
        self.spec = Topology(masters=2)
        self.ready = ready

    def ready_state(self):
        return {"primary_master": "master-1"} if self.ready else None


def _health(history: History, **nodes) -> None:
    history.append("health", "ok", "health", {"nodes": nodes})


PRIMARY = {"role": "primary_master", "gateway_status": "uninitialized"}
SECONDARY = {"role": "secondary_master", "gateway_status": "uninitialized"}


def test_conclusive_snapshots_have_every_master_answering():
    h = History()
    _health(h, **{"master-1:0f3a": PRIMARY, "master-2": SECONDARY})
    _health(h, **{"master-1": PRIMARY, "master-2": {"error": "timeout"}})
    h.append("health", "fail", "health", {"error": "webapp down"})
    assert [conclusive(e, ["master-1", "master-2"]) for e in h.events()] == [True, False, False]


def test_settle_waits_for_conclusive_snapshots_after_the_ready_state():
    h = History()
    _health(h, **{"master-1": PRIMARY, "master-2": SECONDARY})  # before: does not count

    def later() -> None:
        time.sleep(0.05)
        _health(h, **{"master-1": PRIMARY, "master-2": {"error": "timeout"}})
        for _ in range(2):
            _health(h, **{"master-1": PRIMARY, "master-2": SECONDARY})

    threading.Thread(target=later, daemon=True).start()
    done = settle(_Cluster(True), h, timeout=1, snapshots=2, snapshot_timeout=5)
    assert done.error is None and done.recovered is not None and done.snapshots == 2


def test_settle_strict_raises_and_lenient_reports_a_cluster_that_is_not_ready():
    h = History()
    with pytest.raises(WaitTimeout, match="one primary master and one connected coreapp"):
        settle(_Cluster(False), h, timeout=0.1, snapshot_timeout=0.1)
    done = settle(_Cluster(False), h, timeout=0.1, snapshot_timeout=0.1, strict=False)
    assert done.recovered is None and "one primary master" in done.error
    assert done.snapshots == 0
