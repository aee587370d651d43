"""Mutation score of the failover suite: how many broken builds in mutations/ it catches, how fast.

Runs ``pytest -m failover -x`` against every mutant (or ``--only NAME …``) through
:mod:`harness.mutation.suite`, or reads results files of earlier runs (``--from
reports/mutation.json …``; merged, a later file's outcome of a mutant replacing an earlier
one's), and prints the table, then: the score (caught / mutants), the same for the silent
mutants (no client-visible symptom in the happy path), per layer, the median and longest
seconds to catch, and the survivors with their promises.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.mutation import suite as mutation  # noqa: E402
from harness.mutation.suite import Outcome  # noqa: E402


def figures(outcomes: list[Outcome]) -> str:
    def score(group: list[Outcome]) -> str:
        caught = sum(o.verdict == "caught" for o in group)
        return f"{caught}/{len(group)}" if group else "-"

    caught = [o.seconds for o in outcomes if o.verdict == "caught"]
    by_layer: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        by_layer[o.layer].append(o)
    lines = [
        f"mutants {len(outcomes)}; caught {score(outcomes)}; "
        f"silent ones caught {score([o for o in outcomes if o.silent])}",
        "seconds to catch: " + (f"median {statistics.median(caught):.0f}, longest "
                                f"{max(caught):.0f}" if caught else "-"),
        "by layer: " + ", ".join(f"{k} {score(v)}" for k, v in sorted(by_layer.items())),
    ]
    for verdict in ("survived", "error"):
        rest = [o for o in outcomes if o.verdict == verdict]
        if rest:
            lines.append(f"{verdict}: " + ", ".join(f"{o.name} ({o.promise})" for o in rest))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="sources", type=Path, nargs="+", metavar="FILE",
                    help="print the table and figures of earlier runs' results files (merged, "
                         "later files win) instead of running")
    ap.add_argument("--only", nargs="+", default=[], metavar="NAME", help="these mutants only")
    ap.add_argument("--timeout", type=float, default=1800.0,
                    help="seconds one mutant's suite may run (default 1800)")
    args = ap.parse_args(argv)
    if args.sources:
        merged: dict[str, Outcome] = {}
        for source in args.sources:
            if not source.is_file():
                ap.error(f"--from {source}: no such file")
            for o in json.loads(source.read_text())["outcomes"]:
                merged[o["name"]] = Outcome(**o)
        outcomes = list(merged.values())
        print(mutation.table(outcomes))
    else:
        try:
            mutants = mutation.select(mutation.load_library(), args.only)
        except mutation.MutantError as e:
            ap.error(str(e))
        outcomes = mutation.run_all(mutants, timeout=args.timeout,
                                    out=mutation.ROOT / "reports" / "mutation.json")
        print(mutation.table(outcomes))
    print(figures(outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
