"""The plugin's pytest conventions: options (flag + ``mc_`` ini key, command line > ini >
default), per-test state in ``item.stash``, markers registered once, the per-test timeout
(extended for chaos tests), the scenarios' ``helpers`` import in every import mode, the
documented test order.

Most checks run pytest in a subprocess on a temporary project that loads the plugin the way a
fresh clone does (a copy of the repo's ``conftest.py``, the repo on ``PYTHONPATH``); no Docker.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from harness.pytest_plugin import plugin
from harness.spec import TIMINGS
from multiconnect.sharding import ALLOWED_SHARD_COUNTS

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester project that loads the plugin like a fresh clone of the repo."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")])))
    monkeypatch.delenv("PYTEST_TIMEOUT", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    pytester.makeconftest((REPO / "conftest.py").read_text())
    return pytester


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=120)


# ------------------------------------------------------------------ options

def doc_table() -> dict[str, tuple[str, str]]:
    """The module docstring's options table: flag -> (ini key, default)."""
    lines = (plugin.__doc__ or "").splitlines()
    borders = [i for i, line in enumerate(lines) if re.fullmatch(r"=+( +=+){3}", line)]
    assert len(borders) == 3, "the options table (header and two borders)"
    starts = [m.start() for m in re.finditer(r"=+", lines[borders[0]])]
    rows = {}
    for line in lines[borders[1] + 1:borders[2]]:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows[cells[0]] = (cells[1], cells[2])
    return rows


def test_every_option_has_an_mc_ini_key_and_a_row_in_the_docstring() -> None:
    assert doc_table() == {o.flag: (o.ini, o.default_text) for o in plugin.OPTIONS}
    assert all(o.ini.startswith("mc_") for o in plugin.OPTIONS)
    assert len({o.ini for o in plugin.OPTIONS}) == len(plugin.OPTIONS)
    # the names users type stay the same
    assert {o.flag for o in plugin.OPTIONS} >= {
        "--mc-timing", "--mc-shards", "--mc-fresh-cluster", "--mc-keep-failed",
        "--mc-artifacts", "--mc-test-break", "--chaos-seed", "--chaos-duration",
        "--chaos-faults", "--chaos-runs", "--chaos-steps", "--chaos-shrink", "--chaos-soak",
        "--chaos-soak-interval"}


def test_shards_help_lists_the_allowed_counts() -> None:
    shards = next(o for o in plugin.OPTIONS if o.flag == "--mc-shards")
    assert f"({', '.join(map(str, ALLOWED_SHARD_COUNTS))})" in shards.help


def test_help_shows_every_flag_and_ini_key(project: pytest.Pytester) -> None:
    res = run(project, "--help")
    assert res.ret == pytest.ExitCode.OK
    out = res.stdout.str()
    for o in plugin.OPTIONS:
        assert re.search(rf"^  {re.escape(o.flag)}\b", out, re.M), o.flag
        assert re.search(rf"^  {o.ini} \((string|bool)\):", out, re.M), o.ini


DUMP_OPTIONS = '''
import json
from pathlib import Path

from harness.pytest_plugin.plugin import OPTIONS


def test_dump(request):
    values = {o.dest: request.config.getoption(o.dest) for o in OPTIONS}
    Path("options.json").write_text(json.dumps(values))
'''

#: A non-default value for every option, as an ini file writes it, and as getoption gives it.
INI_VALUES: dict[str, tuple[str, Any]] = {
    "mc_masters": ("3", "3"), "mc_coreapps": ("5", "5"), "mc_webapps": ("2", "2"),
    "mc_shards": ("4", "4"), "mc_timing": ("documented", "documented"),
    "mc_db_engine": ("mysql", "mysql"), "mc_media": ("volume", "volume"),
    "mc_db_image": ("db:x", "db:x"), "mc_node_image": ("node:y", "node:y"),
    "mc_test_break": ("never-self-fence", "never-self-fence"),
    "mc_artifacts": ("arts", "arts"), "mc_fresh_cluster": ("true", True),
    "mc_keep_failed": ("yes", True), "mc_chaos_seed": ("7", 7),
    "mc_chaos_duration": ("30", 30.0), "mc_chaos_faults": ("kill,cut", "kill,cut"),
    "mc_chaos_runs": ("2", 2), "mc_chaos_steps": ("0,3", "0,3"), "mc_chaos_shrink": ("0", 0.0),
    "mc_chaos_soak": ("true", True), "mc_chaos_soak_interval": ("2.5", 2.5),
    "mc_docker_host": ("unix:///run/a.sock, unix:///run/b.sock",
                       ["unix:///run/a.sock", "unix:///run/b.sock"]),
    "mc_engine_slots": ("unix:///run/a.sock=2", ["unix:///run/a.sock=2"]),
}


def dumped(project: pytest.Pytester, *args: str) -> dict[str, Any]:
    run(project, *args).assert_outcomes(passed=1)
    return json.loads((project.path / "options.json").read_text())


def test_defaults_without_command_line_or_ini(project: pytest.Pytester) -> None:
    project.makepyfile(test_dump=DUMP_OPTIONS)
    expected = {o.dest: str(o.default) if o.kind == "str" else o.default
                for o in plugin.OPTIONS}
    assert dumped(project) == expected
    assert set(INI_VALUES) == {o.ini for o in plugin.OPTIONS}


def test_ini_keys_set_every_option_and_the_command_line_wins(project: pytest.Pytester) -> None:
    project.makepyfile(test_dump=DUMP_OPTIONS)
    project.makeini("[pytest]\n" + "".join(f"{k} = {raw}\n"
                                           for k, (raw, _) in INI_VALUES.items()))
    by_dest = {o.dest: INI_VALUES[o.ini][1] for o in plugin.OPTIONS}
    assert dumped(project) == by_dest
    cli = {"mc_timing": "ci", "mc_shards": "2", "chaos_runs": 3, "chaos_duration": 45.0,
           "chaos_faults": "pause", "chaos_seed": 11}
    got = dumped(project, "--mc-timing=ci", "--mc-shards", "2", "--chaos-runs=3",
                 "--chaos-duration=45", "--chaos-faults=pause", "--chaos-seed=11")
    assert got == {**by_dest, **cli}


@pytest.mark.parametrize("ini, message", [
    ("mc_chaos_runs = many", "ini key mc_chaos_runs = 'many' is invalid: an integer"),
    ("mc_chaos_runs = 0", "--chaos-runs=0 is invalid: a number >= 1 (from ini key "
                          "mc_chaos_runs)"),
    ("mc_chaos_faults = meteor", "--chaos-faults='meteor' is invalid"),
    ("mc_fresh_cluster = maybe", "ini key mc_fresh_cluster is invalid: true or false"),
    ("mc_shards = 3", "'shards'"),
    ("mc_docker_host = docker.sock", "mc_docker_host 'docker.sock' is invalid: a Docker engine "
                                     "URL"),
    ("mc_docker_host = unix:///run/a.sock\nmc_engine_slots = unix:///run/b.sock=2",
     "--mc-engine-slots 'unix:///run/b.sock=2' is invalid: URL=K where URL is one of the "
     "engines given"),
])
def test_a_bad_ini_value_is_a_usage_error(project: pytest.Pytester, ini: str,
                                          message: str) -> None:
    project.makepyfile(test_plain="def test_never_runs():\n    assert False\n")
    project.makeini(f"[pytest]\n{ini}\n")
    res = run(project)
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert message in res.stderr.str()
    assert "failed" not in res.stdout.str()


def test_a_bad_engine_on_the_command_line_or_in_the_environment_is_a_usage_error(
        project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    project.makepyfile(test_plain="def test_never_runs():\n    assert False\n")
    res = run(project, "--mc-docker-host", "tcp://host")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert "--mc-docker-host 'tcp://host' is invalid" in res.stderr.str()
    monkeypatch.setenv("MC_DOCKER_HOSTS", "unix:///run/a.sock,unix:///run/a.sock")
    res = run(project)
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert "MC_DOCKER_HOSTS 'unix:///run/a.sock' is invalid: each engine once" \
        in res.stderr.str()


# ------------------------------------------------------------------ per-test state

STASH = '''
from pathlib import Path

import pytest

from harness.pytest_plugin import plugin


@pytest.fixture
def outcome(request):
    yield
    with Path("outcomes").open("a") as f:
        f.write(f"{request.node.name} failed={plugin._failed(request)} "
                f"phases={sorted(request.node.stash[plugin.REPORTS])} "
                f"attrs={sorted(a for a in vars(request.node) if a.startswith('mc_'))}\\n")


def test_passes(outcome):
    pass


def test_fails(outcome):
    assert False
'''


def test_reports_are_kept_in_the_item_stash_not_on_the_item(project: pytest.Pytester) -> None:
    project.makepyfile(test_stash=STASH)
    run(project).assert_outcomes(passed=1, failed=1)
    assert (project.path / "outcomes").read_text().splitlines() == [
        "test_passes failed=False phases=['call', 'setup'] attrs=[]",
        "test_fails failed=True phases=['call', 'setup'] attrs=[]",
    ]


# ------------------------------------------------------------------ markers

def pyproject_markers() -> dict[str, str]:
    ini = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    return dict(line.split(":", 1) for line in ini.get("markers", []))


def marker_name(spec: str) -> str:
    return spec.split("(")[0]


def used_markers() -> set[str]:
    """Names of ``pytest.mark.X`` in the code (not in strings) of tests/ and scenarios/."""
    names = set()
    for path in [*REPO.glob("tests/*.py"), *REPO.glob("scenarios/*.py")]:
        try:
            tree = ast.parse(path.read_text(), str(path))
        except SyntaxError:
            continue  # its own collection reports it
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                    and node.value.attr == "mark" and isinstance(node.value.value, ast.Name) \
                    and node.value.value.id == "pytest":
                names.add(node.attr)
    return names


def test_every_marker_is_registered_in_one_place() -> None:
    ours = {marker_name(m) for m in plugin.MARKERS}
    repo = set(pyproject_markers())
    assert ours == {"failover", "chaos", "nightly", "topology"}
    assert repo == {"integration", "procedures", "setup"}
    assert not ours & repo
    builtin = {"parametrize", "skip", "skipif", "xfail", "usefixtures", "filterwarnings",
               "timeout"}
    assert used_markers() - builtin <= ours | repo


def test_the_plugin_registers_only_its_own_markers(project: pytest.Pytester) -> None:
    res = run(project, "--markers")
    out = res.stdout.str()
    for name in ("failover", "chaos", "nightly", "topology"):
        assert len(re.findall(rf"^@pytest\.mark\.{name}\b", out, re.M)) == 1, name
    for name in ("integration", "procedures", "setup"):
        assert not re.search(rf"^@pytest\.mark\.{name}\b", out, re.M), name


# ------------------------------------------------------------------ per-test timeout

def test_chaos_allowance_comes_from_the_settings() -> None:
    ci, documented = TIMINGS["ci"], TIMINGS["documented"]
    base = plugin.chaos_allowance(120, 600, ci)
    # one execution = duration + 2 settle + slack; shrinking adds its budget + one execution
    execution = plugin.chaos_allowance(120, 0, ci)
    assert base == pytest.approx(2 * execution + 600)
    assert plugin.chaos_allowance(300, 0, ci) == pytest.approx(execution + 180)
    assert plugin.chaos_allowance(120, 0, documented) > execution  # slower timing, longer
    assert execution > 120 + plugin.CHAOS_EXECUTION_SLACK


HANGS = '''
import json
import time
from pathlib import Path

import pytest


def record(request):
    marker = request.node.get_closest_marker("timeout")
    with Path("timeouts.jsonl").open("a") as f:
        f.write(json.dumps([request.node.name, marker.args[0] if marker else None]) + "\\n")


def test_plain_hangs(request):
    record(request)
    time.sleep(60)


@pytest.mark.chaos
def test_chaos_gets_longer(request):
    record(request)
    time.sleep(2)


@pytest.mark.chaos
@pytest.mark.timeout(1)
def test_chaos_keeps_its_own_marker(request):
    record(request)
    time.sleep(60)
'''


def timeouts(project: pytest.Pytester) -> dict[str, float | None]:
    lines = (project.path / "timeouts.jsonl").read_text().splitlines()
    return dict(json.loads(line) for line in lines)


def test_a_hung_test_fails_with_its_stack_and_chaos_tests_get_longer(
        project: pytest.Pytester) -> None:
    project.makepyfile(test_hangs=HANGS)
    project.makeini("[pytest]\ntimeout = 1\n")
    t0 = time.monotonic()
    res = run(project, "--chaos-duration=5", "--chaos-shrink=0")
    assert time.monotonic() - t0 < 40  # not the 2 x 60 s of sleeping
    res.assert_outcomes(passed=1, failed=2)
    out = res.stdout.str()
    assert "Failed: Timeout (>1.0s) from pytest-timeout." in out
    # the failure shows where the test hung
    res.stdout.fnmatch_lines(["*def test_plain_hangs(request):*", "*time.sleep(60)*"])
    assert "test_chaos_gets_longer" not in "".join(
        line for line in res.outlines if line.startswith("FAILED"))
    assert timeouts(project) == {
        "test_plain_hangs": None,
        "test_chaos_gets_longer": round(1 + plugin.chaos_allowance(5, 0, TIMINGS["ci"])),
        "test_chaos_keeps_its_own_marker": 1,
    }


@pytest.mark.parametrize("args", [["--timeout=0"], ["-p", "no:timeout"]])
def test_no_per_test_timeout_nothing_added(project: pytest.Pytester, args: list[str]) -> None:
    project.makepyfile(test_chaos="import pytest\n\n"
                                  "@pytest.mark.chaos\n"
                                  "def test_chaos(request):\n"
                                  "    assert request.node.get_closest_marker('timeout') "
                                  "is None\n")
    run(project, *args).assert_outcomes(passed=1)


def test_this_repository_has_a_generous_per_test_timeout() -> None:
    ini = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert ini["timeout"] >= 1200  # scenarios and operator procedures take minutes each
    assert ini["timeout_method"] == "signal"  # the test fails, the run goes on
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.startswith("pytest-timeout") for d in deps)


# ------------------------------------------------------------------ scenarios' helpers

@pytest.mark.parametrize("mode", ["prepend", "append", "importlib"])
def test_scenarios_collect_in_every_import_mode(mode: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest", "scenarios", "--collect-only", "-q",
                           "-p", "no:cacheprovider", f"--import-mode={mode}"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"^\d+ tests collected", proc.stdout, re.M), proc.stdout[-2000:]
    assert "scenarios/test_chaos.py::test_random_fault_schedule[run0]" in proc.stdout


# ------------------------------------------------------------------ test order

ORDER = '''
import pytest


@pytest.mark.topology(shards=2)
def test_a():
    pass


def test_b():
    pass


@pytest.mark.topology(coreapps=3)
def test_c():
    pass


@pytest.mark.topology(shards=2)
def test_d():
    pass


def test_e():
    pass
'''


@pytest.mark.parametrize("args, ini, order", [
    ([], "", "b e c a d"),  # grouped by topology (cluster reuse on)
    (["--mc-fresh-cluster"], "", "a b c d e"),  # file order
    ([], "mc_fresh_cluster = true", "a b c d e"),
])
def test_grouping_by_topology_is_switchable(project: pytest.Pytester, args: list[str],
                                            ini: str, order: str) -> None:
    project.makepyfile(test_order=ORDER)
    project.makeini(f"[pytest]\n{ini}\n")
    res = run(project, "--collect-only", "-q", *args)
    got = [line.split("::test_")[1] for line in res.outlines if "::test_" in line]
    assert got == order.split()
