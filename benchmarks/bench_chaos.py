"""Benchmark nightly chaos throughput: schedules and faults per hour, and replay time.

    python benchmarks/bench_chaos.py [--runs N] [--duration S] [--first-seed K]

Each run is one ``pytest scenarios/test_chaos.py -m chaos`` subprocess with seed K+i at the
given duration (default 120 s, the option's default), timed whole — cluster bring-up, the
schedule, the final heal and liveness wait, judging and teardown — because that is what a
nightly job pays per schedule. Faults are the steps that actually started (the run's
``faults=`` figure). Prints each run and the medians; schedules/hour = 3600 / median wall
time, faults/hour = median faults × schedules/hour. A replay is a run like any other (same
seed, same schedule), so its time is the per-run wall time; the broken-build test
(``scenarios/test_chaos_catches_broken_build.py``) prints the time of an actual replay.
Bounded: every subprocess has a timeout of duration + 600 s.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_run(seed: int, duration: float) -> tuple[float, int, str]:
    cmd = [sys.executable, "-m", "pytest", "scenarios/test_chaos.py", "-m", "chaos", "-s",
           "-q", "-p", "no:cacheprovider", f"--chaos-seed={seed}",
           f"--chaos-duration={duration:g}", "--chaos-shrink=0"]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          timeout=duration + 600)
    wall = time.monotonic() - t0
    m = re.search(r"faults=(\d+)", proc.stdout)
    verdict = "pass" if proc.returncode == 0 else f"FAIL (exit {proc.returncode})"
    if m is None:
        raise SystemExit(f"seed {seed}: no faults= figure in the output:\n{proc.stdout[-2000:]}")
    return wall, int(m.group(1)), verdict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=120.0)
    ap.add_argument("--first-seed", type=int, default=1000)
    a = ap.parse_args()
    walls, faults = [], []
    for i in range(a.runs):
        seed = a.first_seed + i
        wall, n, verdict = one_run(seed, a.duration)
        walls.append(wall)
        faults.append(n)
        print(f"run {i + 1}/{a.runs} seed {seed}: {wall:.1f} s wall, {n} faults, {verdict}",
              flush=True)
    per_run = statistics.median(walls)
    per_hour = 3600 / per_run
    print(f"\nduration {a.duration:g} s, {a.runs} runs: median wall {per_run:.1f} s per "
          f"schedule (min {min(walls):.1f}, max {max(walls):.1f})")
    print(f"schedules/hour: {per_hour:.1f}; faults/hour: "
          f"{statistics.median(faults) * per_hour:.0f} (median {statistics.median(faults):g} "
          "faults per schedule)")
    print(f"replay of a seed: {per_run:.1f} s (a replay is one run)")


if __name__ == "__main__":
    main()
