"""The failover suite's reliability and wall time: run it N times in a row, report the pass
count of every scenario and the spread of every figure.

    python benchmarks/bench_failover.py [--runs 5] [--timeout 1200] [-- extra pytest args]

Each run is one ``pytest -m failover`` subprocess (what ``make failover`` runs, without the
set-up and the HTML report), timed whole. After each run the plugin's
``reports/artifacts/figures.json`` is copied to ``reports/artifacts/runs/run-K.json``.
Prints, per scenario: passes/runs and min–max (median) of promotion and downtime, with the
bound; then each run's wall time and the median. Bounded: every run has a timeout.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "reports" / "artifacts" / "figures.json"


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    return (f"{min(values):.2f}–{max(values):.2f} ({statistics.median(values):.2f})"
            if len(values) > 1 else f"{values[0]:.2f}")


def summarize(runs: list[list[dict]]) -> list[str]:
    """One line per scenario over every run's figure rows."""
    by_test: dict[str, list[dict]] = defaultdict(list)
    for rows in runs:
        for r in rows:
            by_test[r["test"].split("::")[-1]].append(r)
    lines = [f"{'scenario':<70} {'pass':>5}  {'promotion s':<20} {'downtime s':<20} bound s"]
    for name, rows in by_test.items():
        passes = sum(1 for r in rows if r.get("verdict") == "pass")
        nums = {k: [float(r[k]) for r in rows if isinstance(r.get(k), int | float)]
                for k in ("promotion", "downtime", "bound")}
        bound = spread(nums["bound"]).split(" ")[0] if nums["bound"] else "-"
        lines.append(f"{name[:70]:<70} {passes}/{len(rows):<3}  "
                     f"{spread(nums['promotion']):<20} {spread(nums['downtime']):<20} {bound}")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=1200.0, help="seconds per run")
    ap.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    keep = FIGURES.parent / "runs"
    keep.mkdir(parents=True, exist_ok=True)
    runs, walls, exits = [], [], []
    for k in range(1, args.runs + 1):
        FIGURES.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "pytest", "-m", "failover", "-q", "-p", "no:cacheprovider",
               *args.pytest_args]
        print(f"[bench] run {k}/{args.runs}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.monotonic()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                              timeout=args.timeout)
        walls.append(time.monotonic() - t0)
        exits.append(proc.returncode)
        tail = [ln for ln in proc.stdout.splitlines() if ln.strip()][-1:]
        print(f"[bench] run {k}: exit {proc.returncode} in {walls[-1]:.0f} s: "
              f"{tail[0] if tail else ''}", flush=True)
        rows = json.loads(FIGURES.read_text()) if FIGURES.exists() else []
        shutil.copy(FIGURES, keep / f"run-{k}.json") if FIGURES.exists() else None
        runs.append(rows)
    print()
    for line in summarize(runs):
        print(line)
    print(f"\nwall time per run: {', '.join(f'{w:.0f} s' for w in walls)}; "
          f"median {statistics.median(walls):.0f} s; exits {exits}")
    return 0 if all(e == 0 for e in exits) else 1


if __name__ == "__main__":
    sys.exit(main())
