"""The pytest plugin (entry point ``pytest11: multiconnect_chaos``).

Settings reach a test three ways, like pytest's own plugins: command-line option, ini key,
marker — the marker wins for its test (``@pytest.mark.topology(coreapps=5, shards=4)``).

Fixtures: ``mc_topology`` (the spec for this test), ``cluster`` (a ready cluster: the last
passing test's if its topology matches and it passes the reuse gate, see
:mod:`harness.reuse`; ``--mc-fresh-cluster`` starts one per test), ``cluster_factory``
(start several / custom ones), ``history`` (JSON lines under the test's artifact directory),
``nemesis`` and ``workload`` (healed / stopped in teardown whatever happens),
``record_figures`` (figures for the terminal summary and the report).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .engine import EngineNotAnswering
from .fixtures import nemesis, workload  # noqa: F401 - fixtures offered by the plugin
from .spec import DB_ENGINES, MEDIA_BACKENDS, TIMINGS, SpecError, Topology

MARKERS = {
    "failover": "failover scenario on a real cluster (CI: pytest -m failover)",
    "chaos": "randomized, seeded fault schedules (nightly)",
    "nightly": "runs with the documented (slow) timings; nightly only",
    "procedures": "documented operator procedures (compose, upgrade, volumes)",
    "integration": "needs Docker or real servers",
    "topology(**fields)": "topology for this test, e.g. topology(coreapps=5, shards=4)",
}

OPTIONS: list[tuple[str, str, Any, str]] = [
    # (name, type, default, help)
    ("masters", "int", 2, "number of masters"),
    ("coreapps", "int", 2, "number of coreapps"),
    ("webapps", "int", 1, "number of webapps"),
    ("shards", "int", 1, "shards (1, 2, 4, 8, 16, 32)"),
    ("timing", "str", "ci", f"timing preset: {', '.join(TIMINGS)}"),
    ("db_engine", "str", "mariadb", f"database engine: {', '.join(DB_ENGINES)}"),
    ("media", "str", "nfs", f"media store: {', '.join(MEDIA_BACKENDS)}"),
    ("db_image", "str", "", "use this db image instead of building MariaDB"),
    ("node_image", "str", "", "use this node image instead of building it"),
    ("test_break", "str", "", "a deliberately broken build of the roles, for mutation "
     "checks only: never-self-fence, promote-on-primary-miss"),
    ("artifacts", "str", "reports/artifacts", "where histories and logs are written"),
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("multiconnect", "multiconnect chaos cluster")
    for name, _typ, default, help_ in OPTIONS:
        flag = "--mc-" + name.replace("_", "-")
        group.addoption(flag, dest=f"mc_{name}", default=None,
                        help=f"{help_} (ini: mc_{name}; default {default})")
        parser.addini(f"mc_{name}", help_, default=str(default))
    group.addoption("--chaos-seed", type=int, default=None, dest="chaos_seed",
                    help="seed of the random fault schedule (default: random, printed)")
    group.addoption("--chaos-duration", type=float, default=120.0, dest="chaos_duration",
                    help="seconds of random faults per chaos run (default 120)")
    group.addoption("--chaos-faults", default="", dest="chaos_faults",
                    help="comma-separated fault kinds for chaos runs (default: all)")
    group.addoption("--chaos-runs", type=int, default=1, dest="chaos_runs",
                    help="independent chaos runs, seeds seed, seed+1, … (with -n N, N "
                         "clusters run at once)")
    group.addoption("--chaos-steps", default="", dest="chaos_steps",
                    help="replay only these steps of the seed's schedule (printed by "
                         "shrinking), e.g. 0,3,7")
    group.addoption("--chaos-shrink", type=float, default=600.0, dest="chaos_shrink",
                    help="seconds to spend shrinking a failing schedule (0: off; default 600)")
    group.addoption("--chaos-soak", action="store_true", dest="chaos_soak",
                    help="soak mode: sample every node's memory and open fds, fail on "
                         "steady growth")
    group.addoption("--chaos-soak-interval", type=float, default=10.0,
                    dest="chaos_soak_interval", help="seconds between soak samples (10)")
    group.addoption("--mc-fresh-cluster", action="store_true", dest="mc_fresh_cluster",
                    help="a new cluster for every test (default: a passing test's cluster "
                         "serves the next test of the same topology after a reuse gate)")
    group.addoption("--mc-keep-failed", action="store_true", dest="mc_keep_failed",
                    help="keep a failed test's cluster running for inspection "
                         "(remove it with: python -m harness down --run-id ID)")


def pytest_configure(config: pytest.Config) -> None:
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")
    config.stash[SUMMARY] = []
    config.stash[ENVIRONMENT] = {}
    config.stash[SECRETS] = []
    # validate the session-wide topology before any test starts anything
    if not config.option.help and not getattr(config.option, "collectonly", False):
        try:
            base_topology(config)
        except SpecError as e:
            raise pytest.UsageError(str(e)) from None
        from .chaos import ChaosOptionError
        try:
            _validate_chaos_options(config)
        except ChaosOptionError as e:
            raise pytest.UsageError(str(e)) from None


def _validate_chaos_options(config: pytest.Config) -> None:
    """Refuse bad chaos options before any cluster starts."""
    from .chaos import ChaosOptionError, parse_kinds, parse_steps

    parse_kinds(config.getoption("chaos_faults"))
    parse_steps(config.getoption("chaos_steps"))
    for name, low in (("chaos_runs", 1), ("chaos_duration", 1e-9), ("chaos_shrink", 0),
                      ("chaos_soak_interval", 1e-9)):
        value = config.getoption(name)
        if value < low:
            raise ChaosOptionError(name.replace("_", "-"), value,
                                   f"a number >= {low:g}" if low else "a number >= 0")


SUMMARY = pytest.StashKey[list]()
ENVIRONMENT = pytest.StashKey[dict]()
SECRETS = pytest.StashKey[list]()


def _setting(config: pytest.Config, name: str) -> str:
    value = config.getoption(f"mc_{name}")
    return value if value is not None else config.getini(f"mc_{name}")


def base_topology(config: pytest.Config) -> Topology:
    def as_int(name: str) -> int:
        raw = _setting(config, name)
        try:
            return int(raw)
        except ValueError:
            raise SpecError(name, raw, "an integer") from None

    images = {}
    if _setting(config, "db_image"):
        images["db"] = _setting(config, "db_image")
    if _setting(config, "node_image"):
        images["node"] = _setting(config, "node_image")
    return Topology().with_(
        masters=as_int("masters"), coreapps=as_int("coreapps"), webapps=as_int("webapps"),
        shards=as_int("shards"), timing=_setting(config, "timing"),
        db_engine=_setting(config, "db_engine"), media=_setting(config, "media"),
        images=images, test_break=_setting(config, "test_break"))


@pytest.fixture
def mc_topology(request: pytest.FixtureRequest) -> Topology:
    spec = base_topology(request.config)
    marker = request.node.get_closest_marker("topology")
    if marker is not None:
        spec = spec.with_(**marker.kwargs)
    return spec


def _safe(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid)[-120:]


@pytest.fixture
def mc_artifacts(request: pytest.FixtureRequest) -> Path:
    root = Path(_setting(request.config, "artifacts"))
    path = root / _safe(request.node.nodeid)
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"mc_rep_{rep.when}", rep)


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(getattr(getattr(request.node, f"mc_rep_{w}", None), "failed", False)
               for w in ("setup", "call"))


@pytest.fixture(scope="session")
def mc_cluster_pool(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The session's :class:`harness.reuse.ClusterPool`; removes the idle cluster at the end
    (also after Ctrl-C: pytest tears session fixtures down)."""
    from .cluster import Cluster
    from .reuse import ClusterPool

    def start(spec: Topology) -> Cluster:
        c = Cluster(spec)
        c.start()
        return c

    pool = ClusterPool(start, enabled=not request.config.getoption("mc_fresh_cluster"))
    try:
        yield pool
    finally:
        pool.close()


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """With reuse on, tests of the same topology run together: a stable sort puts the tests
    with a ``topology`` marker after the others, grouped by marker (order otherwise kept)."""
    if config.getoption("mc_fresh_cluster"):
        return

    def key(item: pytest.Item) -> tuple[int, str]:
        marker = item.get_closest_marker("topology")
        return (0, "") if marker is None else (1, repr(sorted(marker.kwargs.items())))

    items.sort(key=key)


@pytest.fixture
def cluster_factory(request: pytest.FixtureRequest, mc_topology: Topology,
                    mc_artifacts: Path, mc_cluster_pool: Any) -> Iterator[Callable[..., Any]]:
    from .cluster import Cluster

    started: list[Cluster] = []

    def acquire(spec: Topology) -> Cluster:
        try:
            return mc_cluster_pool.acquire(spec)
        except EngineNotAnswering as e:
            # every later test would wait for the same engine: one error, not a cascade
            pytest.exit(f"the Docker engine is not answering; stopping the run. {e}",
                        returncode=pytest.ExitCode.INTERNAL_ERROR)

    def make(**changes: Any) -> Cluster:
        spec = mc_topology.with_(**changes) if changes else mc_topology
        try:
            import allure
        except ImportError:
            c = acquire(spec)
        else:
            with allure.step(f"cluster: {_describe(spec)}"):
                c = acquire(spec)
            allure.attach(json.dumps({**spec.to_dict(), "run_id": c.run_id,
                                      "test_on_this_cluster": getattr(c, "uses", 1)}, indent=1),
                          name="topology", attachment_type=allure.attachment_type.JSON)
        started.append(c)
        _note_environment(request.config, c)
        return c

    yield make
    failed = _failed(request)
    for c in started:
        try:
            if failed:
                _save_failure_artifacts(c, mc_artifacts)
        finally:
            if failed and request.config.getoption("mc_keep_failed"):
                print(f"\n[cluster] kept {c.run_id} for inspection: "
                      f"python -m harness down --run-id {c.run_id}")
            else:
                mc_cluster_pool.release(c, reusable=not failed)


def _note_environment(config: pytest.Config, c: Any) -> None:
    env = config.stash[ENVIRONMENT]
    t = c.spec.timing
    env.update({f"image.{k}": v for k, v in c.images.items()})
    env.update({"db.engine": c.spec.db_engine, "heartbeat_interval": t.heartbeat_interval,
                "unhealthy_interval": t.unhealthy_interval, "db_monitor_scale": t.db_monitor_scale,
                "lease_ttl": t.lease_ttl, "gateway_ping_timeout": t.gateway_ping_timeout})
    config.stash[SECRETS].extend(c.secrets())
    try:
        with c.db_connect() as conn, conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            env["db.version"] = cur.fetchone()[0]
    except Exception:  # noqa: BLE001 - informational only
        pass


def _describe(spec: Topology) -> str:
    t = spec.timing
    return (f"{spec.masters} masters, {spec.coreapps} coreapps, {spec.webapps} webapps, "
            f"{spec.shards} shard(s), heartbeat {t.heartbeat_interval}s, "
            f"unhealthy {t.unhealthy_interval}s")


def _save_failure_artifacts(c: Any, where: Path) -> None:
    from .scrub import Scrubber
    scrub = Scrubber(c.secrets())
    try:
        logs = c.logs()
    except Exception as e:  # noqa: BLE001 - a broken engine must not hide the test failure
        logs = {"harness": f"could not read container logs: {e}"}
    for name, text in logs.items():
        (where / f"{name}.log").write_text(scrub.text(text))
    with contextlib.suppress(Exception):
        (where / "gateway-events.json").write_text(
            json.dumps(c.gateway_events(getattr(c, "gateway_since", 0)), indent=1))
    try:
        from . import report
        report.attach_container_logs(logs, scrub)
    except Exception:  # noqa: BLE001
        pass


@pytest.fixture
def cluster(cluster_factory: Callable[..., Any]) -> Any:
    return cluster_factory()


@pytest.fixture
def history(mc_artifacts: Path) -> Iterator[Any]:
    from .history import History
    h = History(mc_artifacts / "history.jsonl")
    yield h
    h.close()


@pytest.fixture
def record_figures(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``record_figures(promotion=…, downtime=…, bound=…)`` for the summary and report."""

    def record(**figures: Any) -> None:
        rows = request.config.stash[SUMMARY]
        earlier = [r for r in rows if r["test"] == request.node.nodeid]
        # a rerun replaces its earlier attempt's row and says it was retried
        for r in earlier:
            rows.remove(r)
        row = {"test": request.node.nodeid, **figures,
               "retried": sum(1 + r.get("retried", 0) for r in earlier)}
        rows.append(row)
        print("figures: " + ", ".join(f"{k}={_fmt(v)}" for k, v in figures.items()))
        try:
            import allure
            allure.attach(json.dumps(figures, indent=1, default=str), name="figures",
                          attachment_type=allure.attachment_type.JSON)
        except ImportError:
            pass

    return record


def _fmt(v: Any) -> str:
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int,
                            config: pytest.Config) -> None:
    from .report import ScenarioSummary, format_summary

    rows = config.stash.get(SUMMARY, [])
    if not rows:
        return
    terminalreporter.section("failover figures")
    summary = [ScenarioSummary(r["test"].split("::")[-1], r.get("promotion"), r.get("downtime"),
                               r.get("bound"), r.get("verdict", "-"), r.get("retried", 0))
               for r in rows]
    root = Path(_setting(config, "artifacts"))
    root.mkdir(parents=True, exist_ok=True)
    (root / "figures.json").write_text(json.dumps(rows, indent=1, default=str))
    terminalreporter.write_line(f"every figure, as JSON: {root / 'figures.json'}")
    for line in format_summary(summary).splitlines():
        terminalreporter.write_line(line)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Report-level files in the Allure results directory (if one is in use)."""
    config = session.config
    results_dir = getattr(config.option, "allure_report_dir", None)
    if not results_dir:
        return
    from . import report
    from .scrub import Scrubber

    report.write_categories(results_dir)
    props: dict[str, Any] = {"project.version": _version()}
    with_spec = config.stash.get(ENVIRONMENT, {})
    props.update(with_spec)
    report.write_environment(results_dir, props, Scrubber(config.stash.get(SECRETS, [])))
    report.mark_flaky_retries(results_dir)


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("mc-chaos")
    except Exception:  # noqa: BLE001 - not installed: from the source tree
        from multiconnect import __version__
        return __version__


def pytest_report_header(config: pytest.Config) -> str:
    try:
        t = base_topology(config)
    except SpecError:
        return ""
    return f"multiconnect cluster: {_describe(t)}; started {time.strftime('%H:%M:%S')}"
