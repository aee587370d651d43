"""Mutation testing through the simulator: which broken builds of ``mutations/`` does
``python -m multiconnect.sim`` catch, and within how many seeds?

For each mutant the patch is applied to a scratch copy of ``multiconnect/``
(:func:`harness.mutation.suite.apply_to_copy`); if it changes no module the simulator imports, the
mutant is *not simulated* (the REST API, media, settings validation…) and nothing runs.
Otherwise, per timing preset, ``python -m multiconnect.sim --seeds N --stop-at-first
--no-shrink`` runs on the copy (a subprocess whose ``PYTHONPATH`` is the copy): *caught* at
the first seed that violates an invariant (the seed count and the invariant are recorded),
*crashed* when the simulator stops with an exception (the mutant broke a call), *survived*
after N clean seeds. The unmutated source runs the same seeds first; a violation there
stops the run (a mutant's catch would mean nothing).

Two more columns run tests on the mutated copy (copied beside it; *caught* when one fails):
``sim tests``, the simulator's scripted scenarios and regressions (``tests/test_sim.py``,
every simulated mutant); ``differential``, the test of the simulator's model of the SQL
(``multiconnect/sim/db.py``) against the SQL on a real MariaDB (``tests/test_db_model_sql.py``,
mutants of the SQL side, :data:`SQL_FILES`: the simulator itself never runs the SQL text).

``python -m harness mutation-sim [--only NAME ...] [--seeds N] [--timing T ...] [--out F]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.mutation.suite import (
    ROOT,
    SOURCE,
    Mutant,
    MutantError,
    apply_to_copy,
    load_library,
    select,
)

TIMINGS = ("documented", "ci")
TEST_COLUMNS = ("sim tests", "differential")
#: the SQL side: the statements' call sites and rendering, the DDL, the shared decisions (a
#: mutant of these changes both sides, so the differential test is expected to survive it)
SQL_FILES = {"multiconnect/db.py", "multiconnect/schema.py", "multiconnect/decisions.py"}
SIM_TESTS = "tests/test_sim.py"
DIFFERENTIAL = "tests/test_db_model_sql.py"
HELPERS = ("tests/local_cluster.py",)
#: the cross-interpreter test compares the copy with the unmutated tree: not a verdict
SIM_TESTS_SKIP = "not pypy3"
FAIL_LINE = re.compile(r"^FAIL seed (\d+): (\S+) at t=")
PATCHED_FILE = re.compile(r"^diff --git a/(\S+) ", re.M)


@dataclass
class SimOutcome:
    mutant: str
    layer: str
    timing: str
    verdict: str          # caught | crashed | survived | not simulated
    seeds: int            # seeds run (the catching one included)
    invariant: str        # the violated invariant, or the crash's last line
    seconds: float


def simulated_files(source: Path = SOURCE) -> set[str]:
    """Repository paths of the modules ``multiconnect.sim`` imports (run in a subprocess)."""
    code = ("import sys, multiconnect.sim, multiconnect.sim.__main__\n"
            "for m in list(sys.modules.values()):\n"
            "    f = getattr(m, '__file__', None) or ''\n"
            "    print(f)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=source.parent, check=True,
                         capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(source.parent)}).stdout
    root = source.parent.resolve()
    files = set()
    for line in out.splitlines():
        p = Path(line).resolve() if line else None
        if p is not None and p.is_relative_to(root / source.name):
            files.add(p.relative_to(root).as_posix())
    return files


def patched_files(mutant: Mutant) -> set[str]:
    return set(PATCHED_FILE.findall(mutant.patch.read_text()))


def run_sim(tree: Path, timing: str, seeds: int, timeout: float) -> tuple[str, int, str]:
    """(verdict, seeds run, invariant or crash line) of the simulator on ``tree``."""
    cmd = [sys.executable, "-m", "multiconnect.sim", "--seeds", str(seeds), "--timing", timing,
           "--stop-at-first", "--no-shrink", "--context", "0"]
    res = subprocess.run(cmd, cwd=tree, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "PYTHONPATH": str(tree)})
    for line in res.stdout.splitlines():
        m = FAIL_LINE.match(line)
        if m:
            return "caught", int(m.group(1)) + 1, m.group(2)
    if res.returncode == 0:
        return "survived", seeds, ""
    last = (res.stderr.strip().splitlines() or [f"exit status {res.returncode}"])[-1]
    return "crashed", 0, last[:160]


def run_tests(tree: Path, test: str, timeout: float, select: str = "") -> tuple[str, str]:
    """(verdict, first failure line) of the test file ``test`` (a repository path) run
    against ``tree``'s ``multiconnect`` (the harness comes from this repository)."""
    (tree / "tests").mkdir(exist_ok=True)
    for rel in (test, *HELPERS):
        shutil.copy(ROOT / rel, tree / rel)
    path = os.pathsep.join(map(str, (tree, tree / "tests", ROOT)))
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                          "-p", "no:randomly", *(["-k", select] if select else []), test],
                         cwd=tree, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "PYTHONPATH": path})
    lines = res.stdout.splitlines()
    if res.returncode == 0:
        return "survived", lines[-1] if lines else ""
    failed = next((ln for ln in lines if ln.startswith("FAILED ")),
                  next((ln for ln in lines if ln.startswith("E ")), lines[-1] if lines else ""))
    return "caught" if res.returncode == 1 else "crashed", failed[:160]


def run_all(mutants: Sequence[Mutant], seeds: int, timings: Sequence[str],
            progress: Callable[[str], None] = print, timeout: float = 900.0
            ) -> list[SimOutcome]:
    for timing in timings:
        verdict, _, what = run_sim(ROOT, timing, seeds, timeout)
        if verdict != "survived":
            raise MutantError(f"the unmutated simulator is not clean at {timing} timing over "
                              f"{seeds} seeds ({verdict}: {what}); fix that first")
        progress(f"baseline {timing}: {seeds} seeds clean")
    imported = simulated_files()
    outcomes: list[SimOutcome] = []
    for m in mutants:
        if not patched_files(m) & imported:
            outcomes.append(SimOutcome(m.name, m.layer, "-", "not simulated", 0, "", 0.0))
            progress(f"{m.name}: not simulated ({', '.join(sorted(patched_files(m)))})")
            continue
        with tempfile.TemporaryDirectory(prefix="mc-mut-sim-") as tmp:
            apply_to_copy(m, Path(tmp))
            checks = [("sim tests", SIM_TESTS, SIM_TESTS_SKIP)]
            if patched_files(m) & SQL_FILES:
                checks.append(("differential", DIFFERENTIAL, ""))
            for column, test, select_ in checks:
                began = time.monotonic()
                verdict, what = run_tests(Path(tmp), test, timeout, select_)
                outcomes.append(SimOutcome(m.name, m.layer, column, verdict, 0, what,
                                           round(time.monotonic() - began, 1)))
                progress(f"{m.name} [{column}]: {verdict} in {outcomes[-1].seconds:g} s")
            for timing in timings:
                began = time.monotonic()
                verdict, n, what = run_sim(Path(tmp), timing, seeds, timeout)
                o = SimOutcome(m.name, m.layer, timing, verdict, n, what,
                               round(time.monotonic() - began, 1))
                outcomes.append(o)
                progress(f"{m.name} [{timing}]: {verdict}"
                         + (f" at seed {n - 1} ({what})" if verdict == "caught" else "")
                         + (f" ({what})" if verdict == "crashed" else "")
                         + f" in {o.seconds:g} s")
    return outcomes


def table(outcomes: Sequence[SimOutcome]) -> str:
    """Markdown: one row per mutant, one column per timing ("caught within K seeds") and
    one per test column that ran."""
    timings = [t for t in TIMINGS if any(o.timing == t for o in outcomes)]
    tests = [c for c in TEST_COLUMNS if any(o.timing == c for o in outcomes)]
    rows: dict[str, dict[str, str]] = {}
    layer: dict[str, str] = {}
    for o in outcomes:
        layer[o.mutant] = o.layer
        if o.timing in TEST_COLUMNS:
            cell = o.verdict
        else:
            cell = {"caught": f"{o.seeds} ({o.invariant})", "crashed": f"crashed ({o.invariant})",
                    "survived": f"survived {o.seeds}",
                    "not simulated": "not simulated"}[o.verdict]
        rows.setdefault(o.mutant, {})[o.timing] = cell
    columns = [f"sim {t}" for t in timings] + tests
    head = "| mutant | layer | " + " | ".join(columns) + " |"
    lines = [head, "|" + "---|" * (2 + len(columns))]
    for name, cells in rows.items():
        if "-" in cells:
            values = [cells["-"]] * len(timings)
        else:
            values = [cells.get(t, "") for t in timings]
        values += [cells.get(c, "not simulated" if "-" in cells else "-") for c in tests]
        lines.append(f"| {name} | {layer[name]} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m harness mutation-sim",
                                description="Run the broken builds of mutations/ through the "
                                            "simulator (caught within how many seeds).")
    p.add_argument("--only", nargs="*", default=[], metavar="NAME", help="these mutants only")
    p.add_argument("--seeds", type=int, default=100,
                   help="seeds per mutant and timing before it counts as survived (100)")
    p.add_argument("--timing", nargs="*", choices=TIMINGS, default=list(TIMINGS),
                   help="timing presets (default: documented ci)")
    p.add_argument("--out", type=Path, default=None, help="write the outcomes as JSON here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.seeds < 1:
        print("harness mutation-sim: --seeds must be at least 1", file=sys.stderr)
        return 2
    try:
        mutants = select(load_library(), args.only)
        outcomes = run_all(mutants, args.seeds, args.timing)
    except MutantError as e:
        print(f"harness mutation-sim: {e}", file=sys.stderr)
        return 2
    print(table(outcomes))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps([asdict(o) for o in outcomes], indent=1))
    return 0
