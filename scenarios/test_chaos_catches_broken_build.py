"""The chaos run has teeth: against a deliberately broken build of the roles (a coreapp that
never self-fences, ``--mc-test-break=never-self-fence``) a seeded chaos run fails with a gateway
conflict, shrinks the schedule, and the printed replay commands reproduce the failure.

Runs pytest as a user would, in subprocesses, and reads what they print. The seed is the first
whose schedule (kinds ``cut,kill,pause``) cuts a primary coreapp from the database for at least
4 s within its first 30 s: the hazard fencing.md rule 2 exists for (the owner cannot confirm,
a master replaces it, the old owner must drop its gateway connection first). Chosen by that
rule from the generator, not by running the cluster.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.nemesis.schedule import random_schedule
from harness.spec import Topology

pytestmark = [pytest.mark.chaos, pytest.mark.nightly, pytest.mark.integration]

KINDS = ("cut", "kill", "pause")
DURATION = 60.0
TOPOLOGY = Topology(coreapps=3, shards=2)
ROOT = Path(__file__).resolve().parent.parent


def seed_with_db_cut() -> int:
    for seed in range(10_000):
        for step in random_schedule(seed, DURATION, KINDS, TOPOLOGY):
            link = str(getattr(step.fault, "link", ""))
            if (step.fault.kind == "cut" and re.fullmatch(r"primary-coreapp:\d->db", link)
                    and step.duration >= 4 and step.at <= 30):
                return seed
    raise AssertionError("no seed below 10000 cuts a primary coreapp from the database")


def run_pytest(args: list[str], artifacts: Path, timeout: float) -> subprocess.CompletedProcess:
    cmd = [sys.executable, *args, "-p", "no:cacheprovider", f"--mc-artifacts={artifacts}",
           "-s", "-q"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    print(proc.stdout[-4000:])
    return proc


def test_seed_rule_finds_a_db_cut():
    seed = seed_with_db_cut()
    steps = random_schedule(seed, DURATION, KINDS, TOPOLOGY)
    assert any(s.fault.kind == "cut" and s.fault.link.endswith("->db") and s.duration >= 4
               for s in steps)


def test_chaos_run_catches_never_self_fence_and_replays(tmp_path):
    seed = seed_with_db_cut()
    first = run_pytest(
        ["-m", "pytest", "scenarios/test_chaos.py::test_random_fault_schedule", "-m", "chaos",
         f"--chaos-seed={seed}", f"--chaos-duration={DURATION:g}",
         f"--chaos-faults={','.join(KINDS)}", "--chaos-shrink=300",
         "--mc-test-break=never-self-fence"], tmp_path / "first", timeout=900)
    out = first.stdout
    assert first.returncode == 1, f"the broken build passed the chaos run (exit {first.returncode})"
    assert "CHECK FAILED" in out and "single_connected" in out, out[-3000:]
    replays = re.findall(r"^(?:E\s+)?replay(?: the smallest failing schedule)?: (python .*)$",
                         out, re.MULTILINE)
    assert replays, "no replay command printed"
    shrunk = [r for r in replays if "--chaos-steps=" in r]
    assert shrunk, "a failing run prints the shrunk schedule's replay command"
    replay = shlex.split(shrunk[-1])
    assert "--mc-test-break=never-self-fence" in replay
    t0 = time.monotonic()
    again = run_pytest([*replay[1:], "--chaos-shrink=0"], tmp_path / "replay", timeout=600)
    print(f"[chaos] the shrunk replay ran in {time.monotonic() - t0:.1f} s "
          f"(exit {again.returncode})")
    assert again.returncode == 1, "the printed replay command did not reproduce the failure"
    assert "single_connected" in again.stdout
