"""Simulator throughput: schedules per minute on one core, and simulated/real time.

Each schedule is the CLI's default: 10 simulated minutes of seeded faults (about 4 per
minute, every kind), then the quiet period and the measured failover (≈ 11–12 simulated
minutes in all), 2 masters / 3 coreapps / 2 shards / 1 webapp, documented timing. Time is the
CPU time of this process (``time.process_time``), so other load on the machine does not
count; wall time is printed too. Goal: ≥ 1,000 schedules per minute per core.
Run: ``python benchmarks/bench_sim.py [--schedules 60] [--timing documented|ci] [--repeat 3]
[--python pypy3] [--warmup 300]``. ``--python`` re-runs this script under that interpreter
(Debian 12's ``pypy3``, Python 3.9: see ``multiconnect/sim/_compat.py``). Its JIT keeps
warming up for a few hundred schedules; ``--warmup N`` first runs N other seeds, not counted,
so the figure is the steady state (say which one you quote: a CLI run pays the warm-up).
Under PyPy it runs with the simulator's GC setting (``multiconnect/sim/_compat.py``).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from multiconnect.sim import SimConfig, run_schedule  # noqa: E402
from multiconnect.sim._compat import reexec_with_gc_nursery  # noqa: E402


def measure(cfg: SimConfig, seeds: range) -> dict[str, float]:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    sim = 0.0
    events = 0
    bad = 0
    for seed in seeds:
        r = run_schedule(replace(cfg, seed=seed))
        sim += r.sim_time
        events += r.events
        bad += 0 if r.ok else 1
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    n = len(seeds)
    return {"n": n, "cpu": cpu, "wall": wall, "per_min": 60.0 * n / cpu, "sim": sim,
            "ratio": sim / cpu, "events": events, "us_per_event": 1e6 * cpu / events,
            "violations": bad}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--schedules", type=int, default=60)
    ap.add_argument("--timing", default="documented", choices=["documented", "ci"])
    ap.add_argument("--repeat", type=int, default=3, help="runs; the median is reported")
    ap.add_argument("--first", type=int, default=1000, help="first seed")
    ap.add_argument("--warmup", type=int, default=0,
                    help="schedules run first and not counted (other seeds; JIT warm-up)")
    ap.add_argument("--python", default="",
                    help="run the benchmark under this interpreter instead (e.g. pypy3)")
    args = ap.parse_args()
    reexec_with_gc_nursery([__file__, *sys.argv[1:]])  # under PyPy: its GC setting first
    if args.python:
        return subprocess.call([
            args.python, __file__, "--schedules", str(args.schedules), "--timing", args.timing,
            "--repeat", str(args.repeat), "--first", str(args.first),
            "--warmup", str(args.warmup)])
    cfg = SimConfig(timing_name=args.timing)
    seeds = range(args.first, args.first + args.schedules)
    if args.warmup:
        measure(cfg, range(args.first + 100_000, args.first + 100_000 + args.warmup))
    runs = [measure(cfg, seeds) for _ in range(args.repeat)]
    med = statistics.median(r["per_min"] for r in runs)
    best = min(runs, key=lambda r: abs(r["per_min"] - med))
    print(f"simulator benchmark: {best['n']} schedules × {args.repeat} runs, timing "
          f"{args.timing}, seeds {seeds.start}-{seeds.stop - 1}, warm-up {args.warmup}, "
          f"{platform.python_implementation()} {platform.python_version()}")
    print(f"  schedules per minute (one core, CPU time): {med:.0f}  (goal ≥ 1000; runs: "
          + ", ".join(f"{r['per_min']:.0f}" for r in runs) + ")")
    print(f"  simulated/real time: {best['ratio']:.0f}× ({best['sim'] / best['n']:.0f} s "
          f"simulated per schedule, {best['cpu'] / best['n'] * 1000:.0f} ms CPU each, "
          f"{best['wall'] / best['n'] * 1000:.0f} ms wall)")
    print(f"  events: {best['events'] / best['n']:.0f} per schedule, "
          f"{best['us_per_event']:.2f} µs each")
    print(f"  violations: {best['violations']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
