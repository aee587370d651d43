"""The mutation runner's pure parts: mutant headers, applying a patch to a copy, reading a JUnit
report, verdicts, the table; and the real library (every mutant parses and applies)."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from harness.mutation import suite as mutation
from harness.mutation.suite import MutantError, Outcome

HEADER = textwrap.dedent("""\
    Promise: S2
    Layer: core
    Broken: the core keeps acting on an expired confirmation
    Realistic: a <= for a <
    Silent: yes
    Expect: scenarios/test_network.py, single_connected
    """)


def _diff(src: Path, rel: str, new: str) -> str:
    """A git diff turning ``src/rel`` into ``new`` (paths under multiconnect/)."""
    old = (src / rel).read_text()
    a, b = src.parent / "a", src.parent / "b"
    for d, text in ((a, old), (b, new)):
        (d / "multiconnect").mkdir(parents=True, exist_ok=True)
        (d / "multiconnect" / rel).write_text(text)
    res = subprocess.run(["git", "diff", "--no-index", "--no-prefix", "--", f"a/multiconnect/{rel}",
                          f"b/multiconnect/{rel}"], cwd=src.parent, capture_output=True,
                         text=True)
    return res.stdout


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "multiconnect"
    src.mkdir()
    (src / "core.py").write_text("def valid(now, until):\n    return now < until\n")
    return src


def _mutant_file(tmp_path: Path, source: Path, name: str = "core-lte.patch",
                 header: str = HEADER, new: str | None = None) -> Path:
    new = new or "def valid(now, until):\n    return now <= until\n"
    p = tmp_path / "lib" / name
    p.parent.mkdir(exist_ok=True)
    p.write_text(header + "\n" + _diff(source, "core.py", new))
    return p


def test_a_well_formed_mutant_parses(tmp_path: Path, source: Path) -> None:
    m = mutation.parse_mutant(_mutant_file(tmp_path, source))
    assert (m.name, m.promise, m.layer, m.silent) == ("core-lte", "S2", "core", True)
    assert m.expect.startswith("scenarios/test_network.py")


@pytest.mark.parametrize(("change", "message"), [
    (("Promise: S2", "Promise: Z9"), "Promise 'Z9' is not one of M1, M2"),
    (("Layer: core", "Layer: kernel"), "Layer 'kernel' is not one of sql, core"),
    (("Silent: yes", "Silent: maybe"), "Silent must be yes or no"),
    (("Realistic: a <= for a <\n", ""), "missing header field(s) Realistic"),
    (("Expect:", "Hope:"), "header line 'Hope:"),
])
def test_a_bad_header_names_the_file_field_and_allowed_values(
        tmp_path: Path, source: Path, change: tuple[str, str], message: str) -> None:
    p = _mutant_file(tmp_path, source, header=HEADER.replace(*change))
    with pytest.raises(MutantError, match="core-lte.patch") as e:
        mutation.parse_mutant(p)
    assert message in str(e.value)


def test_the_file_name_must_start_with_the_layer(tmp_path: Path, source: Path) -> None:
    with pytest.raises(MutantError, match="must start with its layer"):
        mutation.parse_mutant(_mutant_file(tmp_path, source, name="sql-lte.patch"))


def test_a_file_without_a_diff_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "core-x.patch"
    p.write_text(HEADER + "\njust prose\n")
    with pytest.raises(MutantError, match="needs a header, a blank line, then a git diff"):
        mutation.parse_mutant(p)


def test_apply_changes_the_copy_only(tmp_path: Path, source: Path) -> None:
    m = mutation.parse_mutant(_mutant_file(tmp_path, source))
    copy = mutation.apply_to_copy(m, tmp_path / "work", source)
    assert "now <= until" in (copy / "core.py").read_text()
    assert "now < until" in (source / "core.py").read_text()


def test_a_patch_that_no_longer_applies_is_a_clear_error(tmp_path: Path, source: Path) -> None:
    m = mutation.parse_mutant(_mutant_file(tmp_path, source))
    (source / "core.py").write_text("def valid(now, until):\n    return until > now\n")
    with pytest.raises(MutantError, match="core-lte.patch does not apply"):
        mutation.check_library([m], source)


def test_select_refuses_unknown_names_and_lists_the_known(tmp_path: Path,
                                                          source: Path) -> None:
    m = mutation.parse_mutant(_mutant_file(tmp_path, source))
    assert mutation.select([m], []) == [m]
    assert mutation.select([m], ["core-lte"]) == [m]
    with pytest.raises(MutantError, match="unknown mutant.*nope; known: core-lte"):
        mutation.select([m], ["nope"])


JUNIT = """<?xml version="1.0"?><testsuites><testsuite name="pytest">
<testcase classname="scenarios.test_a" name="test_ok" time="3.0"/>
<testcase classname="scenarios.test_b" name="test_bad" time="9.0">
<failure message="AssertionError: CHECK FAILED: single_connected: shard 0 had two; downtime: \
shard 1 down 4.0 s">trace</failure></testcase>
<testcase classname="scenarios.test_c" name="test_later" time="1.0"><error message="boom"/>
</testcase></testsuite></testsuites>"""


def test_first_failure_is_the_first_failed_or_errored_case() -> None:
    test, message = mutation.first_failure(JUNIT)
    assert test == "scenarios.test_b::test_bad"
    assert mutation.reason_of(message) == "single_connected, downtime"
    errored = JUNIT.replace('<failure message="AssertionError: CHECK FAILED: single_connected: '
                            'shard 0 had two; downtime: shard 1 down 4.0 s">trace</failure>', "")
    assert mutation.first_failure(errored) == ("scenarios.test_c::test_later", "error: boom")
    clean = '<testsuites><testsuite><testcase classname="a" name="t"/></testsuite></testsuites>'
    assert mutation.first_failure(clean) == ("", "")


def test_reason_keeps_only_checker_names() -> None:
    message = ("CHECK FAILED: exclusive_claims: INVALID: 3 overlapping claim(s); first in "
               "shard-0: coreapp-1 (epoch 3) claimed; downtime: INVALID: 9 s")
    assert mutation.reason_of(message) == "exclusive_claims, downtime"
    assert mutation.reason_of("CHECK FAILED: mine: x", known={"mine"}) == "mine"


def test_reason_without_check_failed_is_the_first_line() -> None:
    first = "TimeoutError: no new primary"
    assert mutation.reason_of(first + "\nmore") == first
    assert mutation.reason_of("") == ""


@pytest.mark.parametrize(("code", "test", "verdict"), [
    (0, "", "survived"), (1, "s::t", "caught"), (1, "", "error"), (2, "", "error"),
    (5, "", "error"), (-1, "", "error"),
])
def test_verdicts(code: int, test: str, verdict: str) -> None:
    assert mutation.verdict_of(code, test) == verdict


def test_table_and_summary() -> None:
    outcomes = [
        Outcome("core-a", "S2", "core", True, "caught", "scenarios.x::test_a", "downtime", 60.0),
        Outcome("sql-b", "M1", "sql", False, "caught", "scenarios.y::test_b", "primary_masters",
                100.0),
        Outcome("shell-c", "A1", "shell", False, "survived", "", "", 420.0),
    ]
    text = mutation.table(outcomes)
    assert text.splitlines()[0].split()[:4] == ["mutant", "promise", "silent", "verdict"]
    assert "test_b" in text and "survived" in text
    s = mutation.summary(outcomes)
    assert (s["caught"], s["survived"], s["score"], s["median_seconds_to_catch"]) == (
        2, ["shell-c"], 0.667, 80.0)


def test_the_library_covers_every_promise_and_every_mutant_applies() -> None:
    """mutations/: at least 25 mutants, one or more per promise of docs/promises.md, every
    header valid and every patch applicable to the current multiconnect/."""
    mutants = mutation.load_library()
    assert len(mutants) >= 25
    assert {m.promise for m in mutants} == set(mutation.PROMISES)
    mutation.check_library(mutants)


def test_bench_merges_results_files_later_wins(tmp_path: Path, capsys) -> None:
    import dataclasses
    import json
    import sys

    sys.path.insert(0, str(mutation.ROOT / "benchmarks"))
    import bench_mutation

    def outcome(name: str, verdict: str, seconds: float) -> dict:
        return dataclasses.asdict(Outcome(name, "M1", "core", True, verdict,
                                          "scenarios.x::test_y" if verdict == "caught" else "",
                                          "exclusive_claims" if verdict == "caught" else "",
                                          seconds))

    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(json.dumps({"outcomes": [outcome("core-a", "survived", 400),
                                              outcome("core-b", "caught", 100)]}))
    second.write_text(json.dumps({"outcomes": [outcome("core-a", "caught", 200)]}))
    assert bench_mutation.main(["--from", str(first), str(second)]) == 0
    out = capsys.readouterr().out
    assert "mutants 2; caught 2/2" in out and "median 150" in out and "survived" not in out
    with pytest.raises(SystemExit):
        bench_mutation.main(["--from", str(tmp_path / "missing.json")])
