"""``harness.mutation.simulator``: which files the simulator runs, the table, and one real mutant
caught by the simulator (subprocesses on a scratch copy; seconds)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from harness.mutation import simulator as mutation_sim
from harness.mutation import suite as mutation
from harness.mutation.simulator import SimOutcome


def mutant(name: str) -> mutation.Mutant:
    return mutation.select(mutation.load_library(), [name])[0]


def test_the_simulator_runs_the_roles_and_not_the_rest_api():
    files = mutation_sim.simulated_files()
    assert {"multiconnect/roles/master.py", "multiconnect/roles/coreapp.py",
            "multiconnect/core/ownership.py"} <= files
    assert not any(f.startswith(("multiconnect/webapp/", "multiconnect/media/")) for f in files)


def test_patched_files_name_the_diff_targets():
    m = mutant("shell-confirm-error-stays-in-flight")
    assert mutation_sim.patched_files(m) == {"multiconnect/roles/coreapp.py"}


def test_a_shell_mutant_is_caught_and_the_source_is_not():
    """The broken build re-reads no confirmation after an error (the core stays 'in flight'
    and the owner never confirms again): the simulator must catch it in a few seeds, and the
    unmutated copy must pass the same seeds."""
    m = mutant("shell-confirm-error-stays-in-flight")
    with tempfile.TemporaryDirectory() as tmp:
        verdict, seeds, what = mutation_sim.run_sim(mutation.apply_to_copy(m, Path(tmp)).parent,
                                                    "ci", 20, 300)
    assert verdict == "caught", (verdict, what)
    clean = mutation_sim.run_sim(mutation.ROOT, "ci", seeds, 300)
    assert clean[0] == "survived", clean


@pytest.mark.parametrize("outcomes,expected", [
    ([SimOutcome("a", "shell", "documented", "caught", 3, "conflict", 1.0),
      SimOutcome("a", "shell", "ci", "survived", 100, "", 9.0),
      SimOutcome("b", "media", "-", "not simulated", 0, "", 0.0)],
     ["| mutant | layer | sim documented | sim ci |",
      "| a | shell | 3 (conflict) | survived 100 |",
      "| b | media | not simulated | not simulated |"]),
    ([SimOutcome("s", "sql", "differential", "caught", 0, "E assert", 2.0),
      SimOutcome("s", "sql", "sim tests", "survived", 0, "", 7.0),
      SimOutcome("s", "sql", "ci", "survived", 100, "", 9.0),
      SimOutcome("c", "core", "ci", "caught", 1, "conflict", 1.0),
      SimOutcome("c", "core", "sim tests", "caught", 0, "E", 1.0),
      SimOutcome("m", "media", "-", "not simulated", 0, "", 0.0)],
     ["| mutant | layer | sim ci | sim tests | differential |",
      "| s | sql | survived 100 | survived | caught |",
      "| c | core | 1 (conflict) | caught | - |",
      "| m | media | not simulated | not simulated | not simulated |"]),
], ids=["a-column-per-timing", "the-test-columns"])
def test_table(outcomes, expected):
    lines = mutation_sim.table(outcomes).splitlines()
    assert [lines[0], *lines[2:]] == expected


def test_the_scripted_sim_tests_catch_a_mutant_the_random_seeds_miss():
    """shell-primary-view-uses-env-unhealthy only shows when the settings differ from the
    environment: the scripted settings scenario of tests/test_sim.py catches it, and passes
    on an unmutated copy."""
    m = mutant("shell-primary-view-uses-env-unhealthy")
    for broken in (True, False):
        with tempfile.TemporaryDirectory() as tmp:
            if broken:
                tree = mutation.apply_to_copy(m, Path(tmp)).parent
            else:
                shutil.copytree(mutation.SOURCE, Path(tmp) / "multiconnect")
                tree = Path(tmp)
            verdict, what = mutation_sim.run_tests(tree, mutation_sim.SIM_TESTS, 300,
                                                   "settings_patch_reaches")
        assert verdict == ("caught" if broken else "survived"), (broken, what)
