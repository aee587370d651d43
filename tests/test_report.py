"""Scrubbing, report-level files, categories, the summary table and the offline check."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import pytest

from harness.history import make
from harness.report import html as report_html
from harness.report import results as report
from harness.report.scrub import MASK, Scrubber

SECRET = "Sup3r-S3cret!pw"
REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ a stand-in for allure

class FakeAllure:
    """Records what would be attached (the ``allure`` module's surface that report uses)."""

    def __init__(self) -> None:
        self.attached: list[tuple[str, object, object]] = []
        self.labels: list[tuple[str, object]] = []
        self.attachment_type = SimpleNamespace(TEXT="text", JSON="json", PNG="png")
        self.severity_level = {"CRITICAL": "critical-level", "NORMAL": "normal-level"}
        rec = self.labels
        self.dynamic = SimpleNamespace(
            epic=lambda v: rec.append(("epic", v)), feature=lambda v: rec.append(("feature", v)),
            story=lambda v: rec.append(("story", v)),
            severity=lambda v: rec.append(("severity", v)))

    def attach(self, body, name=None, attachment_type=None, extension=None):
        self.attached.append((name, body, attachment_type))

    def body(self, name: str):
        return next(b for n, b, _t in self.attached if n == name)


@pytest.fixture
def fake_allure(monkeypatch):
    fake = FakeAllure()
    monkeypatch.setattr(report, "_allure", lambda: fake)
    return fake


# ------------------------------------------------------------------ scrubber

def test_password_in_container_logs_does_not_survive(fake_allure):
    logs = {
        "coreapp-1": f"2025-01-01T00:00:01Z db connect user=waent password={SECRET}\nok\n",
        "master-1": f"2025-01-01T00:00:02Z env WA_DB_PASSWORD={SECRET}\n"
                    f"2025-01-01T00:00:03Z retry with {SECRET} failed\n",
    }
    n = report.attach_container_logs(logs, Scrubber([SECRET]))
    assert n == 3
    assert [a[0] for a in fake_allure.attached] == ["log: coreapp-1", "log: master-1",
                                                    "log: all nodes"]
    for _name, body, _t in fake_allure.attached:
        assert SECRET not in body
        assert MASK in body
    assert fake_allure.body("log: coreapp-1").startswith("coreapp-1 | 2025-01-01T00:00:01Z")
    combined = fake_allure.body("log: all nodes").splitlines()
    # every line carries its node ("ok" has no timestamp, so node by node)
    assert [line.split(" | ")[0].strip() for line in combined] == [
        "coreapp-1", "coreapp-1", "master-1", "master-1"]


def test_merge_logs_orders_timestamped_lines():
    merged = report.merge_logs({
        "b": "2025-01-01T00:00:02.5Z two\n2025-01-01T00:00:04Z four\n",
        "a": "2025-01-01T00:00:01Z one\n2025-01-01T00:00:03Z three\n",
    })
    assert [line.split()[-1] for line in merged.splitlines()] == ["one", "two", "three", "four"]
    assert merged.splitlines()[0].startswith("a | ")


def test_merge_logs_keeps_node_order_without_timestamps():
    merged = report.merge_logs({"n2": "x\ny\n", "n1": "z\n"})
    assert merged == "n2 | x\nn2 | y\nn1 | z\n"


def test_basic_auth_base64_is_scrubbed_for_a_known_password():
    s = Scrubber([SECRET])
    token = base64.b64encode(f"admin:{SECRET}".encode()).decode()
    for text in (f"Authorization: Basic {token}", f"header={token}",
                 json.dumps({"headers": {"authorization": f"Basic {token}"}})):
        out = s.text(text)
        assert token not in out and MASK in out
        # no fragment of the encoding that would decode to the password remains
        assert base64.b64encode(SECRET.encode()).decode()[:12] not in out


def test_basic_auth_of_unknown_credentials_is_scrubbed_generically():
    token = base64.b64encode(b"root:not-listed").decode()
    assert Scrubber().text(f"Authorization: Basic {token}") == f"Authorization: Basic {MASK}"
    assert Scrubber().text("basic usage: see the manual") == "basic usage: see the manual"


def test_encodings_of_a_secret_are_scrubbed():
    s = Scrubber([SECRET])
    assert SECRET not in s.text(f"pw {SECRET} end")
    assert quote(SECRET, safe="") not in s.text(f"/login?p={quote(SECRET, safe='')}&x=1")
    assert s.text(f"url q?x={quote(SECRET, safe='')}&y=2") == f"url q?x={MASK}&y=2"
    escaped = json.dumps('a"' + SECRET)[1:-1]
    assert SECRET not in s.text(escaped)
    b64_bare = base64.b64encode(b"xx" + SECRET.encode()).decode()
    assert s.text(f"blob {b64_bare}") == f"blob {MASK}"


def test_generic_credential_shapes():
    s = Scrubber()
    assert s.text("Authorization: Bearer eyJhbGciOi.JIUzI1NiJ9.abc") == \
        f"Authorization: Bearer {MASK}"
    assert s.text("WA_DB_PASSWORD=hunter2 WA_DB_NAME=waent") == \
        f"WA_DB_PASSWORD={MASK} WA_DB_NAME=waent"
    assert s.text('{"password": "p\\"w", "user": "admin"}') == \
        f'{{"password": "{MASK}", "user": "admin"}}'
    assert s.text("mysql://waent:topsecret@db:3306/waent") == f"mysql://waent:{MASK}@db:3306/waent"
    assert s.text("the bearer of news, 3 retries") == "the bearer of news, 3 retries"


def test_short_secrets_are_ignored_rather_than_blanking_words():
    assert Scrubber(["ab", ""]).text("about a cab") == "about a cab"


def test_json_deep_scrub():
    s = Scrubber([SECRET])
    obj = {"env": {"WA_DB_PASSWORD": "anything", "WA_DB_NAME": "waent"},
           "nodes": [{"log": f"x {SECRET} y"}, ("t", SECRET)],
           "api_key": 12345, "must_change_password": True, "count": 3}
    out = s.json(obj)
    assert out == {"env": {"WA_DB_PASSWORD": MASK, "WA_DB_NAME": "waent"},
                   "nodes": [{"log": f"x {MASK} y"}, ["t", MASK]],
                   "api_key": MASK, "must_change_password": True, "count": 3}
    assert obj["env"]["WA_DB_PASSWORD"] == "anything"  # input untouched


def test_attach_json_and_history_are_scrubbed(fake_allure):
    s = Scrubber([SECRET])
    report.attach_json("topology", {"db": {"password": SECRET, "host": "db"}}, s)
    evs = make([(0.5, "health", "ok", "health", {"nodes": {}, "note": f"pw {SECRET}"})])
    report.attach_history(evs, s)
    topo = json.loads(fake_allure.body("topology"))
    assert topo == {"db": {"host": "db", "password": MASK}}
    lines = fake_allure.body("history.jsonl").splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["value"]["note"] == f"pw {MASK}"


def test_attach_timeline_attaches_png(fake_allure):
    evs = make([(0.0, "sender-0", "ok", "send", {"shard": 0})])
    assert report.attach_timeline(evs, {"downtime": 1.0, "bound": 2.0}) is True
    name, body, typ = fake_allure.attached[0]
    assert name == "timeline" and typ == "png" and body.startswith(b"\x89PNG")


@dataclass
class _Result:
    name: str
    valid: bool
    figures: dict = field(default_factory=dict)
    explanation: str = ""


def test_attach_results_accepts_objects_and_dicts(fake_allure):
    rs = [_Result("promotion-bound", True, {"promotion": 9.25}),
          {"name": "no-lost-ack", "valid": False, "figures": {"lost": 2},
           "explanation": "g1, g7 acknowledged but never delivered"}]
    report.attach_results(rs)
    text = fake_allure.body("checker results")
    assert "[valid] promotion-bound" in text and "promotion = 9.250" in text
    assert "[INVALID] no-lost-ack" in text and "g1, g7 acknowledged" in text
    data = json.loads(fake_allure.body("checker results (json)"))
    assert [d["valid"] for d in data] == [True, False]
    msg = report.check_failed_message(rs)
    assert msg == f"{report.CHECK_FAILED_PREFIX} no-lost-ack: g1, g7 acknowledged but never " \
                  "delivered"
    assert report.check_failed_message(rs[:1]) is None


def test_label_scenario(fake_allure):
    assert report.label_scenario("failover", "coreapp", "kill primary", "Critical")
    assert fake_allure.labels == [("epic", "failover"), ("feature", "coreapp"),
                                  ("story", "kill primary"), ("severity", "critical-level")]
    with pytest.raises(ValueError, match="severity"):
        report.label_scenario("e", "f", "s", "urgent")


def test_without_allure_nothing_is_attached(monkeypatch):
    monkeypatch.setattr(report, "_allure", lambda: None)
    assert report.attach_text("x", "y", None) is False
    assert report.attach_container_logs({"n": "x"}, None) == 0
    assert report.attach_timeline([], None) is False


# ------------------------------------------------------------------ report-level files

def test_write_environment(tmp_path):
    path = report.write_environment(tmp_path, {
        "cluster.masters": 2, "image tag": "mc/node:abc", "WA_DB_PASSWORD": "whatever",
        "db.url": f"mysql://waent:{SECRET}@db/waent", "note": "línea\nnext"},
        Scrubber([SECRET]))
    assert path == tmp_path / "environment.properties"
    assert path.read_text(encoding="latin-1").splitlines() == [
        "cluster.masters=2",
        "image\\ tag=mc/node:abc",
        f"WA_DB_PASSWORD={MASK}",
        f"db.url=mysql://waent:{MASK}@db/waent",
        "note=l\\u00ednea\\nnext",
    ]


def test_write_categories_matches_the_checked_in_config(tmp_path):
    path = report.write_categories(tmp_path)
    written = json.loads(path.read_text())
    assert written == report.CATEGORIES
    assert json.loads((REPO / "reports" / "config" / "categories.json").read_text()) == written
    names = {c["name"] for c in written}
    assert {"Product defect", "Harness or environment error", "Flaky: passed on retry"} <= names


@pytest.mark.parametrize(("status", "message", "trace", "flaky", "expected"), [
    ("failed", "AssertionError: CHECK FAILED: promotion 41 s > 35 s\nassert False", "t", False,
     ["Product defect"]),
    ("failed", "Failed: CHECK FAILED: 2 lost", None, False, ["Product defect"]),
    ("broken", "harness.cluster.bringup.ClusterStartError: db not ready in 60 s", "tb", False,
     ["Harness or environment error"]),
    ("broken", "harness.cluster.images.ImageBuildError: step 3", "tb", False,
     ["Harness or environment error"]),
    ("broken", "requests.exceptions.ConnectionError: refused",
     "File docker/api/client.py\ndocker.errors.APIError: 500 Server Error", False,
     ["Harness or environment error"]),
    ("broken", "harness.cluster.engine.EngineUnavailable: no /var/run/docker.sock", "", False,
     ["Harness or environment error"]),
    ("failed", "AssertionError: assert 2 == 3", "tb", False, ["Unclassified test failure"]),
    ("broken", "KeyError: 'x'", "tb", False, ["Unclassified test failure"]),
    ("passed", None, None, True, ["Flaky: passed on retry"]),
    ("passed", None, None, False, []),
])
def test_categories_separate_product_from_harness(status, message, trace, flaky, expected):
    assert report.categorize(status, message, trace, flaky) == expected


def test_category_regexes_avoid_python_only_syntax():
    # Allure reads them with java.util.regex: no (?P<...>), no inline flags beyond DOTALL use
    for c in report.CATEGORIES:
        for key in ("messageRegex", "traceRegex"):
            if key in c:
                re.compile(c[key])
                assert "(?P" not in c[key] and "\\A" not in c[key] and "\\Z" not in c[key]


def test_keep_trend_history(tmp_path):
    prev, results = tmp_path / "html", tmp_path / "results"
    results.mkdir()
    assert report.keep_trend_history(prev, results) is False
    (prev / "history").mkdir(parents=True)
    (prev / "history" / "history-trend.json").write_text('[{"data": {"passed": 3}}]')
    assert report.keep_trend_history(prev, results) is True
    assert json.loads((results / "history" / "history-trend.json").read_text()) == [
        {"data": {"passed": 3}}]


def _result(d: Path, uuid: str, hid: str, status: str, stop: int) -> Path:
    p = d / f"{uuid}-result.json"
    p.write_text(json.dumps({"uuid": uuid, "historyId": hid, "status": status,
                             "start": stop - 1, "stop": stop}))
    return p


def test_mark_flaky_retries(tmp_path):
    _result(tmp_path, "a1", "h1", "failed", 10)
    passed = _result(tmp_path, "a2", "h1", "passed", 20)
    _result(tmp_path, "b1", "h2", "passed", 10)          # passed first time
    _result(tmp_path, "c1", "h3", "passed", 10)          # passed, then failed: not flaky
    _result(tmp_path, "c2", "h3", "failed", 20)
    assert report.mark_flaky_retries(tmp_path) == ["a2"]
    assert json.loads(passed.read_text())["statusDetails"]["flaky"] is True
    assert "statusDetails" not in json.loads((tmp_path / "b1-result.json").read_text())


# ------------------------------------------------------------------ terminal summary

def test_format_summary_is_a_fixed_width_table():
    rows = [
        report.ScenarioSummary("kill primary coreapp", 9.5, 12.25, 35.0, "PASS", 0),
        report.ScenarioSummary("partition master", None, 41.0, 35.0, "FAIL", 2),
    ]
    assert report.format_summary(rows) == (
        "scenario              promotion   downtime    bound  verdict  retried\n"
        "--------------------  ---------  ---------  -------  -------  -------\n"
        "kill primary coreapp     9.50 s    12.25 s  35.00 s  PASS           -\n"
        "partition master              -  41.00 s !  35.00 s  FAIL           2\n"
        "2 scenarios: 1 FAIL, 1 PASS; 1 retried\n")


def test_format_summary_truncates_long_names_and_handles_no_rows():
    long = "x" * 80
    out = report.format_summary([report.ScenarioSummary(long, 1.0, 2.0, 3.0, "PASS")])
    first_row = out.splitlines()[2]
    assert first_row.startswith("x" * 55 + "…  ")
    assert report.format_summary([]).splitlines()[-1] == "0 scenarios"


# ------------------------------------------------------------------ offline HTML check

GTAG_PAGE = """<html><head><title>r</title></head><body>
<script src="data:text/javascript;base64,{app}"></script>
<script async src="https://www.googletagmanager.com/gtag/js?id=G-X"></script>
<script>
  window.dataLayer = window.dataLayer || [];
  function gtag(){{dataLayer.push(arguments);}}
  gtag('config', 'G-X');
</script>
<script>d('data/x.json','{data}')</script>
</body></html>"""


def _page(app_js: str, data: str = "{}") -> str:
    return GTAG_PAGE.format(app=base64.b64encode(app_js.encode()).decode(),
                            data=base64.b64encode(data.encode()).decode())


def test_analytics_is_stripped_and_clean_page_passes(tmp_path):
    (tmp_path / "index.html").write_text(
        _page('const ns="http://www.w3.org/2000/svg"; a.href="#/x";'))
    assert any("googletagmanager" in f for f in report_html.find_external_requests(tmp_path))
    report_html.make_offline(tmp_path, log=lambda _m: None)
    html = (tmp_path / "index.html").read_text()
    assert "googletagmanager" not in html and "gtag(" not in html
    assert report_html.find_external_requests(tmp_path) == []


@pytest.mark.parametrize("js", [
    'fetch("https://collector.example/e")',
    'navigator.sendBeacon("https://t.example/b", x)',
    'img.src = "//cdn.example/pixel.gif"',
    'xhr.open("POST", "https://api.example/q")',
    'el.setAttribute("src", "https://cdn.example/x.js")',
])
def test_external_requests_inside_inlined_scripts_fail_loudly(tmp_path, js):
    (tmp_path / "index.html").write_text(_page(js))
    with pytest.raises(report_html.ExternalRequestError) as exc:
        report_html.make_offline(tmp_path, log=lambda _m: None)
    assert "example" in str(exc.value)


def test_remote_image_in_embedded_report_data_is_found(tmp_path):
    data = json.dumps({"descriptionHtml": '<img src="https://tracker.example/p.png">'})
    (tmp_path / "index.html").write_text(_page("let a=1;", data))
    findings = report_html.find_external_requests(tmp_path)
    assert any("tracker.example" in f for f in findings)


def test_netlog_separates_page_requests_from_browser_background(tmp_path):
    netlog = {
        "constants": {"logEventTypes": {"URL_REQUEST_START_JOB": 7, "OTHER": 8}},
        "events": [
            {"type": 7, "params": {"url": "https://update.example/x", "initiator": "not an origin",
                                   "network_isolation_key": "null null"}},
            {"type": 7, "params": {"url": "https://cdn.example/a.js", "initiator": "null",
                                   "network_isolation_key": "file:// file://"}},
            {"type": 7, "params": {"url": "file:///r/index.html", "initiator": "null"}},
            {"type": 8, "params": {"url": "https://other.example/"}},
        ]}
    p = tmp_path / "net.json"
    p.write_text(json.dumps(netlog)[:-2] + ",")  # a log cut short, as after a crash
    assert report_html.external_urls_in_netlog(p) == ["https://cdn.example/a.js"]


def test_generate_refuses_to_overwrite_a_directory_that_is_not_a_report(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "x-result.json").write_text("{}")
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(report_html.ReportToolError, match="refusing"):
        report_html.generate(results, out, allure=Path("/nonexistent/allure"))
    assert (out / "notes.txt").read_text() == "keep me"


def test_generate_needs_results(tmp_path):
    with pytest.raises(report_html.ReportToolError, match="no Allure results"):
        report_html.generate(tmp_path, tmp_path / "out", allure=Path("/nonexistent/allure"))
