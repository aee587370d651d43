"""Mutation testing: does ``pytest -m failover`` catch each broken build in ``mutations/``?

A mutant is one file ``mutations/<layer>-<name>.patch``: a header of ``Key: value`` lines
(see :data:`FIELDS`), a blank line, then a ``git diff`` of ``multiconnect/``. For each mutant
the runner copies ``multiconnect/`` to a scratch folder, applies the patch there (``git
apply``; the working tree is never touched), builds a node image from the copy
(``mc-mut-node:<hash>``, on the real base image, so only the source layer is new), and runs
``pytest -m failover -x --mc-node-image=<ref>`` in a subprocess with a JUnit report. The
mutant is *caught* when a test fails; the first failing test, the checkers its ``CHECK
FAILED`` message names (or the error's first line) and the seconds until pytest stopped are
recorded (pytest's output: ``reports/mutation/<name>.log``). A mutant that survives the whole
suite is *survived*. Every patch is checked to apply before anything is built; the image of
each mutant is removed after its run, and leftovers of an interrupted run at the next start.

``python -m harness mutation [--only NAME ...] [--list] [--out FILE] [-- PYTEST ARGS]``;
``tox -e mutation``; ``python benchmarks/bench_mutation.py`` prints the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "mutations"
SOURCE = ROOT / "multiconnect"
LOGS = ROOT / "reports" / "mutation"
CHECK_FAILED = "CHECK FAILED:"

#: The promise matrix of docs/promises.md: every mutant names one of these rows.
PROMISES = ("M1", "M2", "M3", "C1", "C2", "C3", "C4", "S1", "S2", "S3", "A1", "A2", "A3",
            "D1", "D2", "F1", "F2", "G1", "G2", "U1", "U2")
LAYERS = ("sql", "core", "shell", "webapp", "media", "config", "clock")
FIELDS = ("Promise", "Layer", "Broken", "Realistic", "Silent", "Expect")


class MutantError(ValueError):
    """A mutant file that cannot be used: bad header, or a patch that does not apply."""


@dataclass(frozen=True)
class Mutant:
    name: str
    promise: str
    layer: str
    broken: str
    realistic: str
    silent: bool
    expect: str
    patch: Path


@dataclass(frozen=True)
class Outcome:
    name: str
    promise: str
    layer: str
    silent: bool
    verdict: str  # "caught" | "survived" | "error" (the run could not judge the mutant)
    first_failure: str  # test id, or "" when nothing failed
    reason: str  # checkers named by CHECK FAILED, or the failure's first line
    seconds: float  # pytest's wall time: until the first failure with -x


# ------------------------------------------------------------------ the library (pure)
def parse_mutant(path: Path) -> Mutant:
    """Read one mutant file; a missing or bad header field is a :class:`MutantError` naming
    the file, the field and the allowed values."""
    text = path.read_text()
    head, sep, diff = text.partition("\n\n")
    if not sep or "diff --git " not in diff:
        raise MutantError(f"{path.name}: needs a header, a blank line, then a git diff")
    fields: dict[str, str] = {}
    for line in head.splitlines():
        key, colon, value = line.partition(":")
        if not colon or key not in FIELDS:
            raise MutantError(f"{path.name}: header line {line!r} is not one of "
                              f"{', '.join(f + ': …' for f in FIELDS)}")
        fields[key] = value.strip()
    missing = [f for f in FIELDS if not fields.get(f)]
    if missing:
        raise MutantError(f"{path.name}: missing header field(s) {', '.join(missing)}")
    if fields["Promise"] not in PROMISES:
        raise MutantError(f"{path.name}: Promise {fields['Promise']!r} is not one of "
                          f"{', '.join(PROMISES)} (docs/promises.md)")
    if fields["Layer"] not in LAYERS:
        raise MutantError(f"{path.name}: Layer {fields['Layer']!r} is not one of "
                          f"{', '.join(LAYERS)}")
    if fields["Silent"] not in ("yes", "no"):
        raise MutantError(f"{path.name}: Silent must be yes or no, not {fields['Silent']!r}")
    if not path.name.startswith(fields["Layer"] + "-"):
        raise MutantError(f"{path.name}: the file name must start with its layer "
                          f"({fields['Layer']}-…)")
    return Mutant(name=path.name.removesuffix(".patch"), promise=fields["Promise"],
                  layer=fields["Layer"], broken=fields["Broken"],
                  realistic=fields["Realistic"], silent=fields["Silent"] == "yes",
                  expect=fields["Expect"], patch=path)


def load_library(folder: Path = LIBRARY) -> list[Mutant]:
    return [parse_mutant(p) for p in sorted(folder.glob("*.patch"))]


def select(mutants: Sequence[Mutant], names: Sequence[str]) -> list[Mutant]:
    """The mutants named (all when none are); an unknown name is a :class:`MutantError`."""
    if not names:
        return list(mutants)
    known = {m.name: m for m in mutants}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise MutantError(f"unknown mutant(s) {', '.join(unknown)}; known: "
                          f"{', '.join(sorted(known))}")
    return [known[n] for n in names]


# ------------------------------------------------------------------ applying a patch
def apply_to_copy(mutant: Mutant, dest: Path, source: Path = SOURCE) -> Path:
    """Copy ``source`` to ``dest/multiconnect`` and apply the mutant there; returns the copy.
    A patch that does not apply is a :class:`MutantError` with git's message."""
    copy = dest / "multiconnect"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    res = subprocess.run(["git", "apply", "--whitespace=nowarn", str(mutant.patch.resolve())],
                         cwd=dest, capture_output=True, text=True)
    if res.returncode != 0:
        raise MutantError(f"{mutant.patch.name} does not apply to {source.name}/: "
                          f"{res.stderr.strip()}")
    return copy


def check_library(mutants: Iterable[Mutant], source: Path = SOURCE) -> None:
    """Every patch applies to the current source (checked before anything is built)."""
    for m in mutants:
        with tempfile.TemporaryDirectory(prefix="mc-mut-check-") as tmp:
            apply_to_copy(m, Path(tmp), source)


# ------------------------------------------------------------------ reading a run (pure)
def first_failure(junit_xml: str) -> tuple[str, str]:
    """(test id, message) of the first failed or errored test case in a JUnit report, or
    ("", "") when none did."""
    root = ET.fromstring(junit_xml)
    for case in root.iter("testcase"):
        for tag in ("failure", "error"):
            bad = case.find(tag)
            if bad is not None:
                test = f"{case.get('classname', '')}::{case.get('name', '')}"
                message = bad.get("message") or (bad.text or "")
                return test, (f"{tag}: " if tag == "error" else "") + message
    return "", ""


def reason_of(message: str, known: Iterable[str] | None = None) -> str:
    """The checkers a ``CHECK FAILED: a: …; b: …`` message names (only ``known`` names count:
    an explanation may hold ``; x:`` itself), or its first line."""
    if known is None:
        from harness.judge.checkers import CHECKERS
        known = CHECKERS
    names_known = set(known)
    line = next((ln for ln in message.splitlines() if CHECK_FAILED in ln), "")
    if line:
        parts = line.split(CHECK_FAILED, 1)[1].split("; ")
        names = [n for n in (p.split(":", 1)[0].strip() for p in parts if ":" in p)
                 if n in names_known]
        if names:
            return ", ".join(names)
    first = message.strip().splitlines()[0] if message.strip() else ""
    return first[:160]


def verdict_of(exit_code: int, failed_test: str) -> str:
    """pytest's exit code → the mutant's verdict: 0 survived, 1 with a failed test caught,
    anything else (interrupted, internal error, usage, no tests) an error of the run."""
    if exit_code == 0:
        return "survived"
    if exit_code == 1 and failed_test:
        return "caught"
    return "error"


def table(outcomes: Sequence[Outcome]) -> str:
    rows = [("mutant", "promise", "silent", "verdict", "s", "first failing test", "why")]
    for o in outcomes:
        rows.append((o.name, o.promise, "yes" if o.silent else "no", o.verdict,
                     f"{o.seconds:.0f}", o.first_failure.split("::", 1)[-1], o.reason))
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:6], widths, strict=True)) + "  " + r[6]
             for r in rows]
    return "\n".join(lines)


def summary(outcomes: Sequence[Outcome]) -> dict[str, object]:
    caught = [o for o in outcomes if o.verdict == "caught"]
    return {
        "mutants": len(outcomes),
        "caught": len(caught),
        "survived": [o.name for o in outcomes if o.verdict == "survived"],
        "errors": [o.name for o in outcomes if o.verdict == "error"],
        "score": round(len(caught) / len(outcomes), 3) if outcomes else None,
        "median_seconds_to_catch": round(statistics.median(o.seconds for o in caught), 1)
        if caught else None,
    }


# ------------------------------------------------------------------ running
def _build(client, base: str, copy: Path, progress: Callable[[str], None]) -> str:
    """The node image of ``copy`` on the real base image ``base``: only the source layer is new."""
    from harness.cluster import images
    results = images.build_images(client, ["node"], overrides={"base": base},
                                  progress=progress, prefix="mc-mut-", source_dir=copy)
    return next(r.ref for r in results if r.name == "node")


def _suite(ref: str, junit: Path, pytest_args: Sequence[str], timeout: float, name: str,
           progress: Callable[[str], None]) -> tuple[int, float, str, str]:
    """Run the failover suite against a node image: (exit code or -1 on timeout, seconds,
    first failing test, its message). pytest's output goes to ``reports/mutation/<name>.log``."""
    cmd = [sys.executable, "-m", "pytest", "-m", "failover", "-x", "-q", "-p", "no:cacheprovider",
           f"--mc-node-image={ref}", f"--junitxml={junit}", *pytest_args]
    log = LOGS / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    progress(f"[mutation] {name}: {' '.join(cmd[1:])} (output: {os.path.relpath(log, ROOT)})")
    t0 = time.monotonic()
    try:
        with log.open("w") as out:
            code = subprocess.run(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                  timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        code = -1
    seconds = time.monotonic() - t0
    test, message = first_failure(junit.read_text()) if junit.exists() else ("", "")
    return code, seconds, test, message


def sweep_images(client, progress: Callable[[str], None]) -> None:
    """Remove mutant images an interrupted run left (``mc-mut-*``)."""
    for image in client.images.list():
        for tag in image.tags:
            if tag.startswith("mc-mut-"):
                progress(f"[mutation] removing {tag}, left by an earlier run")
                remove_image(client, tag)


def run_mutant(client, base: str, mutant: Mutant, pytest_args: Sequence[str], timeout: float,
               progress: Callable[[str], None]) -> Outcome:
    """Build the mutant's node image, run the failover suite against it, remove the image."""
    with tempfile.TemporaryDirectory(prefix="mc-mut-") as tmp:
        ref = _build(client, base, apply_to_copy(mutant, Path(tmp)), progress)
        try:
            code, seconds, test, message = _suite(ref, Path(tmp) / "junit.xml", pytest_args,
                                                  timeout, mutant.name, progress)
        finally:  # also on Ctrl-C: no mutant image outlives its run
            remove_image(client, ref)
    verdict = verdict_of(code, test)
    reason = reason_of(message) if test else (
        f"no verdict: pytest timed out after {timeout:g} s" if code == -1
        else f"no verdict: pytest exit code {code}" if verdict == "error" else "")
    return Outcome(mutant.name, mutant.promise, mutant.layer, mutant.silent, verdict, test,
                   reason, round(seconds, 1))


def remove_image(client, ref: str) -> None:
    import docker
    with contextlib.suppress(docker.errors.APIError):
        client.images.remove(ref, force=True)


def run_all(mutants: Sequence[Mutant], pytest_args: Sequence[str] = (),
            timeout: float = 1800.0, out: Path | None = None,
            progress: Callable[[str], None] | None = None) -> list[Outcome]:
    from harness.cluster.engine import ensure_engine

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    progress = progress or say
    check_library(mutants)
    from harness.cluster.images import ensure_images
    client = ensure_engine(progress)
    sweep_images(client, progress)
    base = ensure_images(client, ["base"], progress=progress)["base"]  # once, for every mutant
    outcomes: list[Outcome] = []
    for k, m in enumerate(mutants, 1):
        progress(f"[mutation] {k}/{len(mutants)} {m.name} (promise {m.promise}): {m.broken}")
        o = run_mutant(client, base, m, pytest_args, timeout, progress)
        progress(f"[mutation] {m.name}: {o.verdict} in {o.seconds:.0f} s"
                 + (f" by {o.first_failure} ({o.reason})" if o.first_failure else ""))
        outcomes.append(o)
        if out is not None:  # written after every mutant: a stopped run keeps what it has
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"outcomes": [asdict(x) for x in outcomes],
                                       "summary": summary(outcomes)}, indent=1))
    return outcomes


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m harness mutation",
        description="Run `pytest -m failover -x` against each broken build in mutations/ "
                    "and print which were caught, by which test and checker, how fast.")
    p.add_argument("--only", nargs="+", default=[], metavar="NAME",
                   help="these mutants only (file names without .patch)")
    p.add_argument("--list", action="store_true", help="list the library and exit")
    p.add_argument("--timeout", type=float, default=1800.0,
                   help="seconds one mutant's suite may run (default 1800)")
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "mutation.json",
                   help="results file, rewritten after every mutant "
                        "(default reports/mutation.json)")
    p.add_argument("pytest_args", nargs="*", help="after --: extra pytest arguments")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.timeout <= 0:
        parser().error("--timeout must be > 0")
    try:
        mutants = select(load_library(), args.only)
        if args.list:
            for m in mutants:
                print(f"{m.name:<40} {m.promise:<3} {'silent' if m.silent else '':<6} {m.broken}")
            return 0
        outcomes = run_all(mutants, args.pytest_args, args.timeout, args.out)
    except MutantError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(table(outcomes))
    s = summary(outcomes)
    print(f"\ncaught {s['caught']} of {s['mutants']} (score {s['score']}); median seconds to "
          f"catch {s['median_seconds_to_catch']}; survived: {', '.join(s['survived']) or '-'}; "
          f"errors: {', '.join(s['errors']) or '-'}")
    print(f"results: {os.path.relpath(args.out, ROOT)}")
    return 0 if not s["survived"] and not s["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
