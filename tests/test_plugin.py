"""The reporting side of the pytest plugin, seen from outside (pytest's ``pytester``).

Model: each test writes small scenario files into a temporary project that loads the plugin
the way a fresh clone does (a copy of the repo's ``conftest.py``, the repo on ``PYTHONPATH``),
runs pytest on them in a subprocess and checks what a reader of the run gets: the Allure
results (statuses, messages, attachments, labels, ``categories.json``,
``environment.properties``, flaky flags), the ``failover figures`` terminal summary, that no
secret reaches the results, the topology options/marker and the registered markers.

No Docker: scenarios judge hand-written histories (``harness.history.make``) with
``harness.verdict.judge``; where a cluster is needed it is a stand-in class.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from harness.report import results as report
from harness.report.scrub import MASK

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
SECRET = "Zq9-S3cret-Pw"
BOUND = 5.0

# ------------------------------------------------------------------ scenario sources

#: A history helper shared by the scenario files (written as ``scenario_lib.py``).
SCENARIO_LIB = f'''
"""Shard 0: coreapp-1 serves, is killed at t=1, coreapp-2 serves from ``recovered_at``.

The downtime (last ok invoke 0.5 -> first ok invoke ``recovered_at``) is recovered_at - 0.5.
"""
from harness.history import make

SECRET = {SECRET!r}
BOUND = {BOUND!r}
PHONE = "15550000001"


def history(recovered_at, body="hello", error="no owner for shard 0"):
    up = recovered_at
    gw = {{"phone": PHONE, "shard": 0}}
    return make([
        (0.0, "gateway", "info", "gw-connect",
         {{**gw, "seq": 1, "type": "connect", "conn": 1, "node": "coreapp-1", "epoch": 1}}),
        (0.5, "sender-0", "invoke", "send", {{"to": "a", "shard": 0, "body": body}}),
        (0.6, "sender-0", "ok", "send", {{"to": "a", "shard": 0, "id": "m1"}}),
        (0.7, "gateway", "info", "gw-deliver",
         {{**gw, "seq": 2, "type": "deliver", "conn": 1, "node": "coreapp-1", "id": "m1"}}),
        (1.0, "nemesis", "info", "start",
         {{"fault": "kill", "id": "f1", "targets": ["coreapp-1"], "params": {{}}}}),
        (1.0, "gateway", "info", "gw-disconnect",
         {{**gw, "seq": 3, "type": "disconnect", "conn": 1, "node": "coreapp-1"}}),
        (1.5, "sender-0", "invoke", "send", {{"to": "b", "shard": 0}}),
        (1.6, "sender-0", "fail", "send",
         {{"to": "b", "shard": 0, "status": 503, "error": error}}),
        (up - 0.2, "gateway", "info", "gw-connect",
         {{**gw, "seq": 4, "type": "connect", "conn": 2, "node": "coreapp-2", "epoch": 2}}),
        (up, "sender-0", "invoke", "send", {{"to": "c", "shard": 0}}),
        (up + 0.1, "sender-0", "ok", "send", {{"to": "c", "shard": 0, "id": "m2"}}),
        (up + 0.2, "gateway", "info", "gw-deliver",
         {{**gw, "seq": 5, "type": "deliver", "conn": 2, "node": "coreapp-2", "id": "m2"}}),
        (up + 1.0, "nemesis", "info", "heal",
         {{"fault": "kill", "id": "f1", "targets": ["coreapp-1"], "params": {{}}}}),
    ])
'''

#: One passing and one failing failover scenario, a bring-up error and a bare assert.
SCENARIOS = '''
from functools import partial

from harness.judge.checkers import downtime, no_lost_acks, single_connected
from harness.cluster.bringup import ClusterStartError
from harness.report.results import attach_container_logs, label_scenario
from harness.report.scrub import Scrubber
from harness.verdict import judge

from scenario_lib import BOUND, SECRET, history


def checks():
    return [partial(downtime, bound=BOUND), single_connected, no_lost_acks]


def test_within_bound(tmp_path, record_figures):
    label_scenario("Failover", "Coreapp failover", "primary coreapp killed", "critical")
    attach_container_logs({"db": f"mariadbd starting\\ninit: user waent password={SECRET}\\n"
                                 f"retry with {SECRET}\\n"}, Scrubber([SECRET]))
    judge(history(3.5, body=f"otp {SECRET}"), checks(), artifacts=tmp_path,
          record=record_figures, secrets=[SECRET], title="within bound")


def test_above_bound(tmp_path, record_figures):
    label_scenario("Failover", "Coreapp failover", "slow promotion", "blocker")
    judge(history(9.5), checks(), artifacts=tmp_path, record=record_figures,
          title="above bound")


def test_bring_up_fails():
    raise ClusterStartError("db did not become ready in 60 s")


def test_bare_assert():
    assert 1 + 1 == 3
'''


# ------------------------------------------------------------------ the temporary project

@pytest.fixture(scope="session")
def mpl_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One matplotlib cache for every inner run (pytester gives each its own HOME)."""
    return tmp_path_factory.mktemp("mplconfig")


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
            mpl_config: Path) -> pytest.Pytester:
    """A pytester project that loads the plugin like a fresh clone of the repo."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")])))
    monkeypatch.setenv("MPLCONFIGDIR", str(mpl_config))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    pytester.makeconftest((REPO / "conftest.py").read_text())
    pytester.makepyfile(scenario_lib=SCENARIO_LIB)
    return pytester


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=180)


def results(alluredir: Path) -> dict[str, list[dict[str, Any]]]:
    """Allure result files by test name (a retried test has several)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for p in sorted(alluredir.glob("*-result.json")):
        d = json.loads(p.read_text(encoding="utf-8"))
        out.setdefault(d["name"], []).append(d)
    return out


def only(alluredir: Path, name: str) -> dict[str, Any]:
    found = results(alluredir).get(name, [])
    assert len(found) == 1, f"{name}: {len(found)} result files"
    return found[0]


def attachments(alluredir: Path, result: dict[str, Any]) -> dict[str, tuple[str, Path]]:
    """Attachment name -> (MIME type, file)."""
    out = {}
    for a in result.get("attachments", []):
        path = alluredir / a["source"]
        assert path.is_file(), f"attachment {a['name']!r} has no file"
        out[a["name"]] = (a["type"], path)
    return out


def fixture_attachments(alluredir: Path, result: dict[str, Any],
                        ) -> dict[str, tuple[str, Path]]:
    """Attachments made in the test's fixtures (Allure's "Set up"/"Tear down" on its page)."""
    out = {}
    for p in alluredir.glob("*-container.json"):
        c = json.loads(p.read_text(encoding="utf-8"))
        if result["uuid"] not in c.get("children", []):
            continue
        for step in c.get("befores", []) + c.get("afters", []):
            out.update(attachments(alluredir, step))
    return out


def labels(result: dict[str, Any]) -> dict[str, str]:
    return {lb["name"]: lb["value"] for lb in result["labels"]}


def details(result: dict[str, Any]) -> tuple[str, str]:
    sd = result.get("statusDetails") or {}
    return sd.get("message", ""), sd.get("trace", "")


def files_containing(directory: Path, needle: str) -> list[str]:
    raw = needle.encode()
    return sorted(p.name for p in directory.rglob("*") if p.is_file() and raw in p.read_bytes())


def figures_section(lines: list[str]) -> list[str]:
    """The lines of the ``failover figures`` terminal section."""
    start = next(i for i, line in enumerate(lines) if re.fullmatch(r"=+ failover figures =+",
                                                                     line))
    rest = lines[start + 1:]
    end = next((i for i, line in enumerate(rest) if line.startswith("====")), len(rest))
    return [line for line in rest[:end]
            if line.strip() and not line.startswith("every figure, as JSON: ")]


def summary_rows(section: list[str]) -> list[list[str]]:
    """Table body rows (cells split on runs of 2+ spaces), header and rule excluded."""
    assert section[0].split() == ["scenario", "promotion", "downtime", "bound", "verdict",
                                  "retried"]
    assert set(section[1].replace(" ", "")) == {"-"}
    return [re.split(r" {2,}", line.strip()) for line in section[2:-1]]


# ------------------------------------------------------------------ 1. Allure results

def test_allure_results_statuses_attachments_and_labels(project: pytest.Pytester) -> None:
    project.makepyfile(test_scenarios=SCENARIOS)
    alluredir = project.path / "allure-results"
    res = run(project, f"--alluredir={alluredir}")
    res.assert_outcomes(passed=1, failed=3)

    ok = only(alluredir, "test_within_bound")
    bad = only(alluredir, "test_above_bound")
    assert ok["status"] == "passed"
    assert bad["status"] == "failed"
    message, trace = details(bad)
    # allure-pytest prefixes the exception type; the category regexes allow it
    assert re.match(r"(?:AssertionError: )?CHECK FAILED: downtime: ", message), message
    assert "max downtime 9.000 s exceeds the bound 5.000 s" in message
    assert "test_scenarios.py" in trace and "secrets = " not in trace  # judge() hides its frame

    for result, story, severity in ((ok, "primary coreapp killed", "critical"),
                                    (bad, "slow promotion", "blocker")):
        got = labels(result)
        assert (got["epic"], got["feature"], got["story"], got["severity"]) == (
            "Failover", "Coreapp failover", story, severity)

        att = attachments(alluredir, result)
        assert {"timeline", "history.jsonl", "checker results", "checker results (json)",
                "figures"} <= set(att)
        mime, png = att["timeline"]
        assert mime == "image/png"
        assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        events = [json.loads(line) for line in att["history.jsonl"][1].read_text().splitlines()]
        assert len(events) == 13
        assert {e["f"] for e in events} >= {"send", "gw-connect", "gw-deliver", "start", "heal"}
        by_name = {r["name"]: r for r in json.loads(att["checker results (json)"][1].read_text())}
        # the scenario's own checks, and the safety checks judge() always adds
        assert set(by_name) == {"downtime", "single_connected", "no_lost_acks",
                                "exclusive_claims", "no_duplicates",
                                "refused_not_delivered", "db_record", "promoted_live"}
        assert by_name["single_connected"]["valid"] is True
        assert by_name["no_lost_acks"]["valid"] is True

    ok_att, bad_att = attachments(alluredir, ok), attachments(alluredir, bad)
    assert json.loads(ok_att["figures"][1].read_text()) == {
        "downtime": 3.0, "bound": BOUND, "verdict": "pass"}
    assert json.loads(bad_att["figures"][1].read_text()) == {
        "downtime": 9.0, "bound": BOUND, "verdict": "FAIL"}
    assert "[INVALID] downtime" in bad_att["checker results"][1].read_text()
    assert "[valid] downtime" in ok_att["checker results"][1].read_text()
    assert {"log: db", "log: all nodes"} <= set(ok_att)


def test_session_end_writes_categories_and_environment(project: pytest.Pytester) -> None:
    project.makepyfile(test_scenarios=SCENARIOS)
    alluredir = project.path / "allure-results"
    run(project, f"--alluredir={alluredir}").assert_outcomes(passed=1, failed=3)

    categories = json.loads((alluredir / "categories.json").read_text(encoding="utf-8"))
    assert categories == report.CATEGORIES
    env = (alluredir / "environment.properties").read_text(encoding="latin-1").splitlines()
    assert any(re.fullmatch(r"project\.version=\d+\.\d+\.\d+\S*", line) for line in env), env

    def category(name: str) -> list[str]:
        r = only(alluredir, name)
        message, trace = details(r)
        return report.categorize(r["status"], message or None, trace or None,
                                 flaky=bool((r.get("statusDetails") or {}).get("flaky")))

    assert only(alluredir, "test_bring_up_fails")["status"] == "broken"
    assert category("test_above_bound") == [report.PRODUCT_DEFECT]
    assert category("test_bring_up_fails") == [report.HARNESS_ERROR]
    assert category("test_bare_assert") == [report.OTHER_FAILURE]
    assert category("test_within_bound") == []


# ------------------------------------------------------------------ 2. terminal summary

def test_terminal_summary_has_one_row_per_judged_scenario(project: pytest.Pytester) -> None:
    project.makepyfile(test_scenarios=SCENARIOS)
    res = run(project)  # no --alluredir: the summary does not depend on Allure
    res.assert_outcomes(passed=1, failed=3)
    assert any(line.startswith("every figure, as JSON: ") for line in res.outlines)
    section = figures_section(res.outlines)
    rows = summary_rows(section)
    assert rows == [
        ["test_within_bound", "-", "3.00 s", "5.00 s", "pass", "-"],
        ["test_above_bound", "-", "9.00 s !", "5.00 s", "FAIL", "-"],
    ]
    assert section[-1] == "2 scenarios: 1 FAIL, 1 pass"
    saved = json.loads((project.path / "reports" / "artifacts" / "figures.json").read_text())
    assert [(r["test"].split("::")[-1], r["verdict"]) for r in saved] == [
        ("test_within_bound", "pass"), ("test_above_bound", "FAIL")]
    assert saved[0]["downtime"] == 3.0


def test_the_summary_covers_every_xdist_worker(project: pytest.Pytester) -> None:
    """With pytest-xdist each worker judges its own tests; the controller's table has them
    all (the workers hand their rows over when they end)."""
    pytest.importorskip("xdist")
    project.makepyfile(test_scenarios=SCENARIOS)
    res = run(project, "-n", "2")
    res.assert_outcomes(passed=1, failed=3)
    rows = summary_rows(figures_section(res.outlines))
    assert sorted(rows) == sorted([
        ["test_within_bound", "-", "3.00 s", "5.00 s", "pass", "-"],
        ["test_above_bound", "-", "9.00 s !", "5.00 s", "FAIL", "-"],
    ])


def test_no_figures_no_summary_section(project: pytest.Pytester) -> None:
    project.makepyfile(test_plain="def test_nothing_judged():\n    assert True\n")
    res = run(project)
    res.assert_outcomes(passed=1)
    assert not any("failover figures" in line for line in res.outlines)


# ------------------------------------------------------------------ 3. scrubbing

def test_secret_in_history_and_logs_never_reaches_the_results(project: pytest.Pytester) -> None:
    project.makepyfile(test_scenarios=SCENARIOS)
    alluredir = project.path / "allure-results"
    run(project, f"--alluredir={alluredir}").assert_outcomes(passed=1, failed=3)

    assert files_containing(alluredir, SECRET) == []
    # the secret really was there and was masked, not merely absent
    att = attachments(alluredir, only(alluredir, "test_within_bound"))
    history = att["history.jsonl"][1].read_text()
    assert f"otp {MASK}" in history
    for name in ("log: db", "log: all nodes"):
        text = att[name][1].read_text()
        assert f"retry with {MASK}" in text
        assert "password=" + MASK in text


FAILING_WITH_SECRETS = '''
from functools import partial

from harness.judge.checkers import downtime
from harness.verdict import judge

from scenario_lib import BOUND, SECRET, history


def test_secret_only_in_the_secret_list(tmp_path, record_figures):
    judge(history(9.5), [partial(downtime, bound=BOUND)], artifacts=tmp_path,
          record=record_figures, secrets=[SECRET])


def test_secret_in_a_failed_operation(tmp_path, record_figures):
    judge(history(9.5, error=f"db refused {SECRET}"), [partial(downtime, bound=BOUND)],
          artifacts=tmp_path, record=record_figures, secrets=[SECRET])
'''


def test_failing_judge_does_not_leak_its_secret_list(project: pytest.Pytester) -> None:
    project.makepyfile(test_failing=FAILING_WITH_SECRETS)
    alluredir = project.path / "allure-results"
    run(project, f"--alluredir={alluredir}").assert_outcomes(failed=2)
    r = only(alluredir, "test_secret_only_in_the_secret_list")
    message, trace = details(r)
    assert message.startswith("AssertionError: CHECK FAILED:")
    assert SECRET not in trace


def test_failing_judge_scrubs_its_message(project: pytest.Pytester) -> None:
    project.makepyfile(test_failing=FAILING_WITH_SECRETS)
    alluredir = project.path / "allure-results"
    run(project, f"--alluredir={alluredir}").assert_outcomes(failed=2)
    message, _trace = details(only(alluredir, "test_secret_in_a_failed_operation"))
    assert message.startswith("AssertionError: CHECK FAILED:")
    assert "db refused" in message  # the explanation quotes the failed operation's error
    assert SECRET not in message


FAKE_CLUSTER = f'''
"""A stand-in for harness.cluster.bringup.Cluster: the plugin's cluster path without Docker."""
import contextlib
from pathlib import Path

import harness.cluster.bringup


class FakeCluster:
    def __init__(self, spec):
        self.spec = spec
        self.run_id = "fake1"
        self.engine_url = "unix:///var/run/docker.sock"
        self.images = {{"node": "mc-node:test", "db": "mc-db:test"}}

    def start(self):
        Path("started").write_text(self.run_id)

    def stop(self):
        Path("stopped").write_text(self.run_id)

    def secrets(self):
        return [{SECRET!r}]

    @contextlib.contextmanager
    def db_connect(self):
        class Cursor:
            def execute(self, sql):
                assert sql == "SELECT VERSION()"

            def fetchone(self):
                return ("10.11.6-MariaDB-0+deb12u1",)

        class Conn:
            @contextlib.contextmanager
            def cursor(self):
                yield Cursor()

        yield Conn()

    def logs(self):
        return {{"coreapp-1": "connecting to db as waent with {SECRET}\\nready\\n"}}

    def gateway_events(self, since=0):
        return [{{"seq": 1, "type": "connect"}}]

    def __repr__(self):
        return "<FakeCluster fake1>"


harness.cluster.bringup.Cluster = FakeCluster


def test_fails_on_a_cluster(cluster):
    assert cluster.run_id == "fake1"
    assert Path("started").exists()
    assert False, "the scenario failed"
'''


def test_failed_cluster_test_keeps_scrubbed_logs_and_environment(
        project: pytest.Pytester) -> None:
    project.makepyfile(test_fake_cluster=FAKE_CLUSTER)
    alluredir = project.path / "allure-results"
    artifacts = project.path / "artifacts"
    run(project, f"--alluredir={alluredir}", f"--mc-artifacts={artifacts}").assert_outcomes(
        failed=1)

    assert (project.path / "stopped").read_text() == "fake1"  # torn down after the failure
    # written in the cluster fixture: setup (topology) and teardown (logs) sections
    att = fixture_attachments(alluredir, only(alluredir, "test_fails_on_a_cluster"))
    assert f"coreapp-1 | connecting to db as waent with {MASK}" in att["log: coreapp-1"][
        1].read_text()
    assert json.loads(att["topology"][1].read_text())["coreapps"] == 2
    saved = list(artifacts.rglob("coreapp-1.log"))
    assert len(saved) == 1 and MASK in saved[0].read_text()
    assert list(artifacts.rglob("gateway-events.json"))

    env = dict(line.split("=", 1) for line in (alluredir / "environment.properties")
               .read_text(encoding="latin-1").splitlines())
    assert env["image.node"] == "mc-node:test"
    assert env["db.engine"] == "mariadb"
    assert env["heartbeat_interval"] == "1"
    assert env["db.version"] == "10.11.6-MariaDB-0+deb12u1"
    assert files_containing(alluredir, SECRET) == []
    assert files_containing(artifacts, SECRET) == []


WEDGED_ENGINE = '''
from pathlib import Path

import harness.cluster.bringup
from harness.cluster.engine import EngineNotAnswering


class WedgedCluster:
    def __init__(self, spec, **kw):
        self.spec = spec

    def start(self):
        with Path("starts").open("a") as f:
            f.write("x")
        raise EngineNotAnswering("engine not answering: GET /networks: no answer in 10 s")


harness.cluster.bringup.Cluster = WedgedCluster


def test_first(cluster):
    pass


def test_second(cluster):
    pass
'''


def test_an_engine_that_stops_answering_ends_the_run_with_one_error(
        project: pytest.Pytester) -> None:
    """No cascade: the first test that needs a cluster finds the engine wedged, the run
    stops there with the engine's message instead of every later test timing out."""
    project.makepyfile(test_wedged=WEDGED_ENGINE)
    result = run(project)
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    result.stdout.fnmatch_lines(["*the Docker engine is not answering; stopping the run*"
                                 "GET /networks*"])
    assert (project.path / "starts").read_text() == "x"  # the second test never tried


# ------------------------------------------------------------------ 4. retries

FLAKY = '''
from functools import partial
from pathlib import Path

from harness.judge.checkers import downtime
from harness.verdict import judge

from scenario_lib import BOUND, history


def test_fails_once(tmp_path, record_figures):
    attempts = Path("attempts")
    n = int(attempts.read_text()) + 1 if attempts.exists() else 1
    attempts.write_text(str(n))
    judge(history(9.5 if n == 1 else 2.5), [partial(downtime, bound=BOUND)],
          artifacts=tmp_path, record=record_figures)


def test_always_passes(tmp_path, record_figures):
    judge(history(2.5), [partial(downtime, bound=BOUND)], artifacts=tmp_path,
          record=record_figures)
'''


@pytest.fixture
def rerun_project(project: pytest.Pytester) -> pytest.Pytester:
    # pytest-rerunfailures is not a project dependency; report.mark_flaky_retries itself is
    # covered with hand-made result files in tests/test_report.py
    pytest.importorskip("pytest_rerunfailures")
    project.makepyfile(test_flaky=FLAKY)
    return project


def test_pass_on_retry_is_marked_flaky(rerun_project: pytest.Pytester) -> None:
    alluredir = rerun_project.path / "allure-results"
    res = run(rerun_project, f"--alluredir={alluredir}", "--reruns", "2")
    assert res.parseoutcomes() == {"passed": 2, "rerun": 1}
    assert (rerun_project.path / "attempts").read_text() == "2"

    attempts = sorted(results(alluredir)["test_fails_once"], key=lambda d: d["stop"])
    assert [a["status"] for a in attempts] == ["failed", "passed"]
    assert attempts[0]["historyId"] == attempts[1]["historyId"]
    last = attempts[1]
    assert (last.get("statusDetails") or {}).get("flaky") is True
    assert report.categorize("passed", None, None, flaky=True) == [report.FLAKY]
    # a plain pass stays a plain pass
    steady = only(alluredir, "test_always_passes")
    assert not (steady.get("statusDetails") or {}).get("flaky")


def test_summary_shows_a_retried_scenario_once(rerun_project: pytest.Pytester) -> None:
    res = run(rerun_project, "--reruns", "2")
    assert res.parseoutcomes() == {"passed": 2, "rerun": 1}
    section = figures_section(res.outlines)
    rows = [r for r in summary_rows(section) if r[0] == "test_fails_once"]
    assert rows == [["test_fails_once", "-", "2.00 s", "5.00 s", "pass", "1"]]
    assert section[-1] == "2 scenarios: 2 pass; 1 retried"


# ------------------------------------------------------------------ 5. topology

TOPOLOGY = '''
import pytest

import harness.cluster.bringup


@pytest.fixture(autouse=True)
def no_cluster(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a cluster was started")
    monkeypatch.setattr(harness.cluster.bringup.Cluster, "start", refuse)


@pytest.mark.topology(coreapps=5, shards=4)
def test_marker_wins(mc_topology):
    t = mc_topology
    assert (t.masters, t.coreapps, t.webapps, t.shards) == (3, 5, 1, 4)
    assert (t.timing.heartbeat_interval, t.timing.unhealthy_interval) == (5, 30)


def test_session_topology(mc_topology):
    t = mc_topology
    assert (t.masters, t.coreapps, t.webapps, t.shards) == (3, 2, 1, 1)
    assert t.timing.heartbeat_interval == 5


@pytest.mark.topology(shards=3)
def test_invalid_marker(mc_topology):
    pass
'''


def test_invalid_shards_option_is_a_usage_error(project: pytest.Pytester) -> None:
    project.makepyfile(test_plain="def test_never_runs():\n    assert False\n")
    res = run(project, "--mc-shards", "3")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    err = res.stderr.str()
    assert "'shards'" in err and "3" in err
    assert "failed" not in res.stdout.str()


@pytest.mark.parametrize("args, named", [
    (["--chaos-faults", "kill,meteor"], "--chaos-faults='meteor'"),
    (["--chaos-steps", "1,x"], "--chaos-steps='1,x'"),
    (["--chaos-runs", "0"], "--chaos-runs=0"),
    (["--chaos-shrink", "-1"], "--chaos-shrink=-1.0"),
    (["--mc-test-break", "sometimes"], "'test_break' = 'sometimes'"),
])
def test_bad_chaos_options_are_refused_before_anything_runs(project: pytest.Pytester, args,
                                                             named) -> None:
    project.makepyfile(test_plain="def test_never_runs():\n    assert False\n")
    res = run(project, *args)
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert named in res.stderr.str()
    assert "failed" not in res.stdout.str()


def test_topology_marker_option_and_ini(project: pytest.Pytester) -> None:
    project.makeini("[pytest]\nmc_timing = documented\n")
    project.makepyfile(test_topology=TOPOLOGY)
    res = run(project, "--mc-masters", "3")
    res.assert_outcomes(passed=2, errors=1)
    res.stdout.fnmatch_lines(["*ERROR at setup of test_invalid_marker*",
                              "*SpecError: topology field 'shards' = 3 is invalid*"])


# ------------------------------------------------------------------ 6. markers

#: The plugin's own markers (this repository's integration, procedures and setup are
#: registered in its pyproject.toml, which the temporary project does not have).
MARKER_NAMES = ("failover", "chaos", "nightly", "topology")


def test_markers_are_listed(project: pytest.Pytester) -> None:
    res = run(project, "--markers")
    assert res.ret == pytest.ExitCode.OK
    out = res.stdout.str()
    for name in MARKER_NAMES:
        assert re.search(rf"^@pytest\.mark\.{name}(\(\*\*fields\))?: \S", out, re.M), name


def test_strict_markers_accepts_the_plugin_markers(project: pytest.Pytester) -> None:
    decorators = "\n".join(f"@pytest.mark.{m}" for m in MARKER_NAMES[:-1])
    project.makepyfile(test_marked=f"import pytest\n\n{decorators}\n"
                                   "@pytest.mark.topology(shards=2)\n"
                                   "def test_marked(mc_topology):\n"
                                   "    assert mc_topology.shards == 2\n")
    run(project, "--strict-markers").assert_outcomes(passed=1)


def test_strict_markers_still_rejects_unknown_markers(project: pytest.Pytester) -> None:
    project.makepyfile(test_unknown="import pytest\n\n@pytest.mark.failovr\n"
                                    "def test_typo():\n    pass\n")
    res = run(project, "--strict-markers")
    assert res.ret == pytest.ExitCode.INTERRUPTED
    res.stdout.fnmatch_lines(["*'failovr' not found in `markers` configuration option*"])



# ------------------------------------------------------------------ the configuration file

def test_an_option_value_that_moves_pytests_root_out_of_the_project_is_refused(project):
    """pytest issue #8846: the value of ``--alluredir DIR`` written apart counts as a test
    path while pytest picks its root; a DIR outside the project moved the root there and the
    run (every pytest-xdist worker too) went on without the project's configuration — its
    markers, test paths, timeout. Refused before anything runs, with the spelling that
    works; written with '=' or inside the project it runs."""
    project.makeini("[pytest]\nmarkers =\n    ours: a marker of this project\n")
    project.makepyfile(test_one="import pytest\n\n\n@pytest.mark.ours\ndef test_one():\n"
                                "    pass\n")
    outside = project.path.parent / f"{project.path.name}-results"
    outside.mkdir()
    refused = run(project, "--strict-markers", "--alluredir", str(outside))
    assert refused.ret == pytest.ExitCode.USAGE_ERROR, refused.stdout.str()
    refused.stderr.fnmatch_lines([f"*took the directory in '--alluredir {outside}' for a "
                                  f"test path*Write the option with '=': --alluredir={outside}"])
    assert not list(outside.iterdir())  # nothing ran, nothing was written
    joined = run(project, "--strict-markers", f"--alluredir={outside}")
    assert joined.ret == pytest.ExitCode.OK, joined.stdout.str()
    (project.path / "results").mkdir()
    inside = run(project, "--strict-markers", "--alluredir", "results")
    assert inside.ret == pytest.ExitCode.OK, inside.stdout.str()


def test_a_scenario_whose_fault_needs_the_engines_host_is_skipped_saying_why(project):
    """On an engine reached other than through a socket here, lost-close and engine-freeze
    cannot act: their scenarios are skipped with the fault's reason. Any other fault that
    could not start (nothing to resolve, a conflict) stays a failure: a skip there would
    hide a broken scenario."""
    project.makepyfile(test_faults_here="""
from harness.nemesis.base import FaultConflict, NeedsEngineHost, ResolveError


def test_needs_host():
    raise NeedsEngineHost("lost-close needs the Docker engine on this machine")


def test_nothing_to_resolve():
    raise ResolveError("no primary coreapp")


def test_conflict():
    raise FaultConflict("coreapp-1 is already under fault f1")
""")
    result = run(project, "-rs")
    result.assert_outcomes(skipped=1, failed=2)
    result.stdout.fnmatch_lines(["*SKIPPED*lost-close needs the Docker engine on this machine*"])
