"""harness.chaos: options, replay commands and schedule subsets (no cluster)."""

from __future__ import annotations

import shlex

import pytest

from harness.chaos import ChaosOptionError, ChaosOptions, parse_kinds, parse_steps, replay_command
from harness.nemesis.schedule import ALL_KINDS, random_schedule
from harness.spec import Topology


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
