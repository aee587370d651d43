"""The pytest plugin (entry point ``pytest11: multiconnect_chaos``).

Settings reach a test three ways, like pytest's own plugins: command-line option, ini key,
marker — the marker wins for its test (``@pytest.mark.topology(coreapps=5, shards=4)``).

Fixtures: ``mc_topology`` (the spec for this test), ``cluster`` (a ready cluster: the last
passing test's if its topology matches and it passes the reuse gate, see
:mod:`harness.cluster.reuse`; ``--mc-fresh-cluster`` starts one per test), ``cluster_factory``
(start several / custom ones), ``history`` (JSON lines under the test's artifact directory),
``nemesis`` and ``workload`` (healed / stopped in teardown whatever happens),
``record_figures`` (figures for the terminal summary and the report).

Options
-------
Every option is a command-line flag and an ini key (``[tool.pytest.ini_options]`` in
pyproject.toml, or ``[pytest]`` in pytest.ini); every ini key starts with ``mc_``. A value
comes from the command line, else the ini key, else the default. After ``pytest_configure``
``config.getoption(dest)`` returns that value (dest: the flag without ``--``, ``-`` as ``_``,
e.g. ``chaos_runs``). ``pytest --help`` lists them (group "multiconnect chaos cluster").

=====================  ======================  =================  ============================
command line           ini key                 default            meaning
=====================  ======================  =================  ============================
--mc-masters           mc_masters              2                  masters
--mc-coreapps          mc_coreapps             2                  coreapps
--mc-webapps           mc_webapps              1                  webapps
--mc-shards            mc_shards               1                  shards (counts: see --help)
--mc-timing            mc_timing               ci                 timing preset: ci, documented
--mc-db-engine         mc_db_engine            mariadb            database engine
--mc-media             mc_media                nfs                media store
--mc-db-image          mc_db_image             (none)             db image instead of building it
--mc-node-image        mc_node_image           (none)             node image instead of building it
--mc-test-break        mc_test_break           (none)             broken build (mutation)
--mc-artifacts         mc_artifacts            reports/artifacts  histories and logs
--mc-fresh-cluster     mc_fresh_cluster        false              a new cluster per test
--mc-keep-failed       mc_keep_failed          false              keep a failed test's cluster
--mc-docker-host       mc_docker_host          (local engine)     engine URL, repeatable
--mc-engine-slots      mc_engine_slots         (1 each)           URL=K clusters at once
--chaos-seed           mc_chaos_seed           (random)           first run's seed
--chaos-duration       mc_chaos_duration       120                seconds of faults per run
--chaos-faults         mc_chaos_faults         (all kinds)        fault kinds, comma-separated
--chaos-runs           mc_chaos_runs           1                  independent chaos runs
--chaos-steps          mc_chaos_steps          (every step)       replay only these steps
--chaos-shrink         mc_chaos_shrink         600                seconds of shrinking (0 off)
--chaos-soak           mc_chaos_soak           false              soak mode (memory, fds)
--chaos-soak-interval  mc_chaos_soak_interval  10                 seconds between soak samples
=====================  ======================  =================  ============================

Flags (``--mc-fresh-cluster``, ``--mc-keep-failed``, ``--chaos-soak``) only switch on from the
command line; their ini keys take ``true``/``false``. Lists (``--mc-docker-host``,
``--mc-engine-slots``) repeat on the command line; their ini keys take one value per line or
comma-separated ones; without either, ``MC_DOCKER_HOSTS`` (comma-separated) gives the engines.
Which engine a pytest-xdist worker's clusters run on: :mod:`harness.cluster.engines`. The
topology options are checked by :class:`harness.spec.Topology`, the engines by
:mod:`harness.cluster.engines` and the chaos options by :mod:`harness.chaos.runner` in
``pytest_configure``: a bad value is a usage error before any cluster starts.

Markers
-------
The plugin registers its own markers (``pytest --markers``): ``failover``, ``chaos``,
``nightly`` and ``topology(**fields)``, so they work under ``--strict-markers`` in any project
that installs the plugin. A project registers its other markers itself (this repository:
``integration``, ``procedures``, ``setup`` in pyproject.toml).

Test order
----------
The plugin reorders nothing at random and does not use pytest-randomly. With cluster reuse on
(the default) it groups tests by topology so that one cluster serves a whole group: a stable
sort puts the tests without a ``topology`` marker first, then the tests of each marker
together; the order is otherwise kept. The switch: ``--mc-fresh-cluster`` (ini
``mc_fresh_cluster = true``) turns reuse and this grouping off. The grouping runs after other
plugins' reordering (``trylast``): pytest-randomly is not a dependency, but where it is
installed it shuffles first and each group keeps its order (``-p no:randomly`` turns it off,
``--randomly-seed=N`` repeats an order). pytest's ``--lf``/``--ff``/``--nf`` still reorder last
(hook wrappers).

Per-test timeout
----------------
A hung test fails with every thread's stack instead of holding the run: with pytest-timeout
(a dependency of this project) its ``timeout`` ini key is the per-test bound (this
repository: 1200 s in pyproject.toml, ``timeout_method = signal``: the test fails, the run
goes on), ``--timeout=N`` or ``PYTEST_TIMEOUT`` set it for one run, ``--timeout=0`` or
``-p no:timeout`` turn it off, ``@pytest.mark.timeout(N)`` sets one test's. Tests marked
``chaos`` get the per-test bound plus what their own settings need (:func:`chaos_allowance`:
the schedule's ``--chaos-duration``, the settle waits of the topology's timing, and with
shrinking on the ``--chaos-shrink`` budget plus one more execution), computed from the run's
settings, never from a measured speed; a chaos test with its own ``timeout`` marker keeps it.
Without a per-test bound (pytest-timeout absent, or none configured) nothing is added.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness.cluster.engine import (
    EngineConfig,
    EngineNotAnswering,
    EngineUnavailable,
    build_engine,
    ensure_engine,
    print_to_stderr,
)
from harness.cluster.engines import (
    Engine,
    EngineSettingError,
    engine_for,
    engines_from,
    split_hosts,
)
from harness.judge import bounds
from harness.pytest_plugin.fixtures import nemesis, workload  # noqa: F401 - fixtures offered by the plugin
from harness.spec import DB_ENGINES, MEDIA_BACKENDS, TIMINGS, SpecError, Topology
from multiconnect.config import TEST_BREAKS
from multiconnect.sharding import ALLOWED_SHARD_COUNTS
from multiconnect.timing import Timing

#: The plugin's own markers, registered in :func:`pytest_configure` (a project that installs
#: the plugin registers its other markers itself).
MARKERS = {
    "failover": "failover scenario on a real cluster (CI: pytest -m failover)",
    "chaos": "randomized, seeded fault schedules (nightly); a per-test timeout is extended "
             "by the chaos settings",
    "nightly": "long; nightly only (tox -e nightly; make test deselects it)",
    "topology(**fields)": "topology for this test, e.g. topology(coreapps=5, shards=4)",
}


@dataclass(frozen=True)
class Option:
    """One option of the plugin: a command-line flag and an ``mc_`` ini key.

    ``kind``: ``str`` (kept as text; the topology options are checked by
    :class:`harness.spec.Topology`), ``int``, ``float``, ``flag`` (``store_true`` on the
    command line, ``true``/``false`` in the ini file) or ``list`` (repeated on the command
    line; one per line or comma-separated in the ini file). ``shown``: the default as the help
    and the module docstring's table show it.
    """

    flag: str
    kind: str
    default: Any
    help: str
    shown: str = ""

    @property
    def dest(self) -> str:
        """The ``config.getoption`` name: ``--chaos-runs`` -> ``chaos_runs``."""
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def ini(self) -> str:
        """The ini key: the dest with the one prefix ``mc_``."""
        return self.dest if self.dest.startswith("mc_") else f"mc_{self.dest}"

    @property
    def default_text(self) -> str:
        """The default as the docstring's table shows it."""
        if self.shown:
            return self.shown
        if self.kind == "flag":
            return "false"
        if self.kind == "list":
            return "(none)"
        return f"{self.default:g}" if isinstance(self.default, float) else str(self.default)

    @property
    def ini_default(self) -> Any:
        """What ``config.getini`` returns when the ini file does not set the key."""
        if self.kind == "flag":
            return False
        if self.kind == "list":
            return ""
        return "" if self.default is None else str(self.default)


def _topology_option(name: str, default: Any, help_: str, shown: str = "") -> Option:
    return Option("--mc-" + name.replace("_", "-"), "str", default, help_, shown)


#: Every option of the plugin (the module docstring's table lists them).
OPTIONS: list[Option] = [
    _topology_option("masters", 2, "number of masters"),
    _topology_option("coreapps", 2, "number of coreapps"),
    _topology_option("webapps", 1, "number of webapps"),
    _topology_option("shards", 1, f"shards ({', '.join(map(str, ALLOWED_SHARD_COUNTS))})"),
    _topology_option("timing", "ci", f"timing preset: {', '.join(TIMINGS)}"),
    _topology_option("db_engine", "mariadb", f"database engine: {', '.join(DB_ENGINES)}"),
    _topology_option("media", "nfs", f"media store: {', '.join(MEDIA_BACKENDS)}"),
    _topology_option("db_image", "", "use this db image instead of building MariaDB",
                     "(none)"),
    _topology_option("node_image", "", "use this node image instead of building it",
                     "(none)"),
    _topology_option("test_break", "", "a deliberately broken build of the roles, for "
                     f"mutation checks only: {', '.join(TEST_BREAKS)}", "(none)"),
    _topology_option("artifacts", "reports/artifacts", "where histories and logs are written"),
    Option("--mc-fresh-cluster", "flag", False,
           "a new cluster for every test, tests not grouped by topology (else a passing "
           "test's cluster serves the next test of the same topology after a reuse gate)"),
    Option("--mc-keep-failed", "flag", False,
           "keep a failed test's cluster running for inspection (remove it with: python -m "
           "harness down --run-id ID)"),
    Option("--mc-docker-host", "list", [], "a Docker engine to run clusters on: unix:///path, "
           "tcp://host:port or ssh://[user@]host; repeat for several (with -n N, workers take "
           "them round robin); env MC_DOCKER_HOSTS", "(local engine)"),
    Option("--mc-engine-slots", "list", [], "URL=K: engine URL holds K clusters at once "
           "(repeatable)", "(1 each)"),
    Option("--chaos-seed", "int", None, "seed of the random fault schedule", "(random)"),
    Option("--chaos-duration", "float", 120.0, "seconds of random faults per chaos run"),
    Option("--chaos-faults", "str", "", "comma-separated fault kinds for chaos runs",
           "(all kinds)"),
    Option("--chaos-runs", "int", 1, "independent chaos runs, seeds seed, seed+1, … (with -n N, "
           "N clusters run at once)"),
    Option("--chaos-steps", "str", "", "replay only these steps of the seed's schedule "
           "(printed by shrinking), e.g. 0,3,7", "(every step)"),
    Option("--chaos-shrink", "float", 600.0,
           "seconds to spend shrinking a failing schedule (0: off)"),
    Option("--chaos-soak", "flag", False,
           "soak mode: sample every node's memory and open fds, fail on steady growth"),
    Option("--chaos-soak-interval", "float", 10.0, "seconds between soak samples"),
]

_BY_DEST = {o.dest: o for o in OPTIONS}

SUMMARY = pytest.StashKey[list]()
ENVIRONMENT = pytest.StashKey[dict]()
SECRETS = pytest.StashKey[list]()
#: Where each option's value came from: ``command line``, ``ini`` or ``default`` (by dest).
OPTION_SOURCES = pytest.StashKey[dict[str, str]]()
#: A test's reports by phase (``setup``, ``call``, ``teardown``), in ``item.stash``.
REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("multiconnect", "multiconnect chaos cluster")
    for o in OPTIONS:
        default = o.default_text.strip("()")
        # default=None on the command line: "not given", so the ini key can fill it in
        if o.kind == "flag":
            group.addoption(o.flag, action="store_true", dest=o.dest, default=None,
                            help=f"{o.help} (ini: {o.ini} = true/false; default {default})")
            parser.addini(o.ini, f"{o.help} ({o.flag}; default {default})", type="bool",
                          default=o.ini_default)
            continue
        kwargs: dict[str, Any] = {"type": int} if o.kind == "int" else (
            {"type": float} if o.kind == "float" else (
                {"action": "append"} if o.kind == "list" else {}))
        group.addoption(o.flag, dest=o.dest, default=None,
                        help=f"{o.help} (ini: {o.ini}; default {default})", **kwargs)
        parser.addini(o.ini, f"{o.help} ({o.flag}; default {default})",
                      default=o.ini_default)


def _from_ini(o: Option, raw: Any) -> Any:
    if o.kind == "flag":
        return bool(raw)
    if o.kind == "list":
        return split_hosts(str(raw))
    if o.kind == "str":
        return str(raw)
    text = str(raw).strip()
    if not text:
        return o.default
    try:
        return int(text) if o.kind == "int" else float(text)
    except ValueError:
        what = "an integer" if o.kind == "int" else "a number"
        raise pytest.UsageError(f"ini key {o.ini} = {raw!r} is invalid: {what} "
                                f"(command line: {o.flag})") from None


def _resolve_options(config: pytest.Config) -> None:
    """Command line > ini key > default, written back to ``config.option`` so that
    ``config.getoption(dest)`` is the value wherever it is read."""
    sources: dict[str, str] = {}
    for o in OPTIONS:
        value = config.getoption(o.dest)
        if value is not None:
            sources[o.dest] = "command line"
            continue
        try:
            raw = config.getini(o.ini)
            value = _from_ini(o, raw)
        except (ValueError, pytest.UsageError):
            if not config.option.help:
                if o.kind == "flag":  # getini's ValueError: not a truth value
                    raise pytest.UsageError(f"ini key {o.ini} is invalid: true or false "
                                            f"(command line: {o.flag})") from None
                raise
            raw, value = o.ini_default, o.default  # pytest --help still shows the help
        sources[o.dest] = "default" if raw == o.ini_default else "ini"
        setattr(config.option, o.dest, value)
    config.stash[OPTION_SOURCES] = sources


def pytest_configure(config: pytest.Config) -> None:
    check_configuration_found(config)
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")
    config.stash[SUMMARY] = []
    config.stash[ENVIRONMENT] = {}
    config.stash[SECRETS] = []
    _resolve_options(config)
    # validate the session-wide topology before any test starts anything
    if not config.option.help and not getattr(config.option, "collectonly", False):
        try:
            base_topology(config)
            run_engines(config)
        except (SpecError, EngineSettingError) as e:
            raise pytest.UsageError(str(e)) from None
        _validate_chaos_options(config)


def check_configuration_found(config: pytest.Config) -> None:
    """Refuse a run that lost the project's configuration file to an option's value.

    pytest picks its root directory and configuration file before plugins add their
    options, so the value of a plugin option written as a separate argument
    (``--alluredir /tmp/results``) counts as a test path then (pytest issue #8846). A
    directory outside the project moves the root there, and the run goes on without the
    project's markers, test paths, timeout and ``mc_*`` settings (under pytest-xdist every
    worker too). Written with ``=`` the value is never taken for a path."""
    if config.inipath is not None:
        return
    args = [str(a) for a in config.invocation_params.args]
    here = Path(config.invocation_params.dir)
    taken = [f"{opt} {value}" for opt, value in zip(args, args[1:], strict=False)
             if opt.startswith("--") and "=" not in opt and not value.startswith("-")
             and (here / value).is_dir()]
    if not taken:
        return
    try:
        from _pytest.config.findpaths import locate_config
        project_file = locate_config(here, [here])[1]
    except Exception:  # noqa: BLE001 - pytest's internals moved: say nothing rather than guess
        return
    if project_file is None:
        return
    raise pytest.UsageError(
        f"pytest found no configuration file, so this run would go without {project_file}'s "
        f"settings (markers, test paths, timeout): it took the directory in "
        f"'{taken[0]}' for a test path while choosing its root directory (pytest issue "
        f"#8846). Write the option with '=': {taken[0].replace(' ', '=', 1)}")


def run_engines(config: pytest.Config) -> list[Engine]:
    """The engines given (``--mc-docker-host``, its ini key, else ``MC_DOCKER_HOSTS``), with
    their ``--mc-engine-slots``; empty: the local engine."""
    hosts = config.getoption("mc_docker_host") or []
    from_ini = config.stash[OPTION_SOURCES].get("mc_docker_host") == "ini"
    return engines_from([] if from_ini else hosts, ini=",".join(hosts) if from_ini else "",
                        slots=config.getoption("mc_engine_slots") or [])


def worker_engine(config: pytest.Config) -> Engine | None:
    """This process's engine: pytest-xdist worker ``gwN`` takes slot N (round robin); None:
    the local engine."""
    worker = getattr(config, "workerinput", {}).get("workerid")
    return engine_for(worker, run_engines(config))


def _validate_chaos_options(config: pytest.Config) -> None:
    """Refuse bad chaos options before any cluster starts (a usage error naming the flag, and
    the ini key if the value came from there)."""
    from harness.chaos.runner import ChaosOptionError, parse_kinds, parse_steps

    def at_least(dest: str, low: float) -> Callable[[Any], None]:
        def check(value: Any) -> None:
            if value < low:
                raise ChaosOptionError(dest.replace("_", "-"), value,
                                       f"a number >= {low:g}" if low else "a number >= 0")
        return check

    checks: list[tuple[str, Callable[[Any], Any]]] = [
        ("chaos_faults", parse_kinds), ("chaos_steps", parse_steps)]
    checks += [(dest, at_least(dest, low)) for dest, low in (
        ("chaos_runs", 1), ("chaos_duration", 1e-9), ("chaos_shrink", 0),
        ("chaos_soak_interval", 1e-9))]
    sources = config.stash.get(OPTION_SOURCES, {})
    for dest, check in checks:
        try:
            check(config.getoption(dest))
        except ChaosOptionError as e:
            where = f" (from ini key {_BY_DEST[dest].ini})" if sources.get(dest) == "ini" else ""
            raise pytest.UsageError(f"{e}{where}") from None


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


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Iterator[object]:
    """A scenario whose fault needs the engine's own host, on an engine reached otherwise
    (:class:`harness.nemesis.base.NeedsEngineHost`), is skipped with the fault's reason; any
    other fault that could not start stays an error."""
    from harness.nemesis.base import NeedsEngineHost
    try:
        return (yield)
    except NeedsEngineHost as e:
        pytest.skip(str(e))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None],
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep the test's report of each phase in ``item.stash`` (read by its fixtures'
    teardown: did the test fail?)."""
    rep = yield
    item.stash.setdefault(REPORTS, {})[rep.when] = rep
    return rep


def _failed(request: pytest.FixtureRequest) -> bool:
    reports = request.node.stash.get(REPORTS, {})
    return any(reports[w].failed for w in ("setup", "call") if w in reports)


@pytest.fixture(scope="session")
def mc_cluster_pool(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The session's :class:`harness.cluster.reuse.ClusterPool`; removes the idle cluster at the
    end (also after Ctrl-C: pytest tears session fixtures down). With engines given, its
    clusters run on this worker's engine (:func:`worker_engine`), from images built where the
    run starts (:func:`harness.cluster.engine.build_engine`) and shipped there, and every
    engine given is swept of dead runs first."""
    from harness.cluster import cleanup
    from harness.cluster.bringup import Cluster
    from harness.cluster.reuse import ClusterPool

    engines = run_engines(request.config)
    mine = worker_engine(request.config)
    on_engine: dict[str, Any] = {}  # none given: the local engine, as Cluster() finds it
    try:
        clients = {e.url: ensure_engine(config=EngineConfig(base_url=e.url, start=False))
                   for e in engines}
        if mine is not None:
            on_engine["client"] = clients[mine.url]
            source = build_engine([e.url for e in engines], clients)
            if source is not clients[mine.url]:  # built where the run starts, shipped here
                on_engine["image_source"] = source
        for client in clients.values():  # a run killed on any engine is swept from all
            cleanup.sweep(client, print_to_stderr)
    except EngineUnavailable as e:
        pytest.exit(f"an engine given by --mc-docker-host does not answer; stopping the run. "
                    f"{e}", returncode=pytest.ExitCode.USAGE_ERROR)

    def start(spec: Topology) -> Cluster:
        c = Cluster(spec, **on_engine)
        c.start()
        return c

    pool = ClusterPool(start, enabled=not request.config.getoption("mc_fresh_cluster"))
    try:
        yield pool
    finally:
        pool.close()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """Chaos tests get their longer per-test timeout; with reuse on, tests of the same
    topology run together: a stable sort puts the tests with a ``topology`` marker after the
    others, grouped by marker (order otherwise kept). ``trylast``: after any plugin that
    shuffles (pytest-randomly's hook is ``tryfirst``)."""
    _extend_chaos_timeouts(config, items)
    if config.getoption("mc_fresh_cluster"):
        return

    def key(item: pytest.Item) -> tuple[int, str]:
        marker = item.get_closest_marker("topology")
        return (0, "") if marker is None else (1, repr(sorted(marker.kwargs.items())))

    items.sort(key=key)


#: Seconds a chaos execution takes besides its schedule and its two settle waits:
#: run_schedule's slack (30 s), the health snapshots after the recovery (20 s), starting and
#: stopping the workload.
CHAOS_EXECUTION_SLACK = 60.0


def chaos_allowance(duration: float, shrink: float, timing: Timing) -> float:
    """Seconds a chaos test may need on top of the per-test timeout, from its settings.

    One execution: ``duration`` of faults, then up to ``settle`` for the recovery, with
    ``settle`` the bound :class:`harness.chaos.runner.ChaosRunner` waits
    (:func:`harness.judge.bounds.chaos_settle`), another ``settle`` for a trial's ready wait, and
    :data:`CHAOS_EXECUTION_SLACK`. With shrinking on (``shrink`` > 0) the budget plus one more
    execution, since the last trial may start just inside the budget.
    """
    settle = bounds.chaos_settle(timing)
    execution = max(0.0, duration) + 2 * settle + CHAOS_EXECUTION_SLACK
    return execution + (shrink + execution if shrink > 0 else 0.0)


def per_test_timeout(config: pytest.Config) -> float | None:
    """pytest-timeout's per-test bound for this run (``--timeout``, ``PYTEST_TIMEOUT``, ini
    ``timeout``), or None: pytest-timeout absent or blocked, or no positive bound set."""
    if not config.pluginmanager.hasplugin("timeout"):
        return None
    try:
        from pytest_timeout import get_env_settings
    except ImportError:
        return None
    timeout = get_env_settings(config).timeout
    return float(timeout) if timeout and timeout > 0 else None


def _item_timing(config: pytest.Config, item: pytest.Item) -> Timing | None:
    try:
        spec = base_topology(config)
        marker = item.get_closest_marker("topology")
        return (spec.with_(**marker.kwargs) if marker is not None else spec).timing
    except (SpecError, TypeError, ValueError):
        return None  # reported by the test itself (or by pytest_configure)


def _extend_chaos_timeouts(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A ``timeout`` marker on every ``chaos`` test without one: the per-test bound plus
    :func:`chaos_allowance` of the run's chaos options and the test's timing."""
    base = per_test_timeout(config)
    if base is None:
        return
    duration = float(config.getoption("chaos_duration"))
    shrink = float(config.getoption("chaos_shrink"))
    for item in items:
        if item.get_closest_marker("chaos") is None \
                or item.get_closest_marker("timeout") is not None:
            continue
        timing = _item_timing(config, item)
        timings = [timing] if timing is not None else list(TIMINGS.values())
        extra = max(chaos_allowance(duration, shrink, t) for t in timings)
        item.add_marker(pytest.mark.timeout(round(base + extra)))


@pytest.fixture
def cluster_factory(request: pytest.FixtureRequest, mc_topology: Topology,
                    mc_artifacts: Path, mc_cluster_pool: Any) -> Iterator[Callable[..., Any]]:
    from harness.cluster.bringup import Cluster

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
            allure.attach(json.dumps({**spec.to_dict(), "run_id": c.run_id, "engine": c.engine_url,
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
    from harness.report.scrub import Scrubber
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
        from harness.report import results as report
        report.attach_container_logs(logs, scrub)
    except Exception:  # noqa: BLE001
        pass


@pytest.fixture
def cluster(cluster_factory: Callable[..., Any]) -> Any:
    return cluster_factory()


@pytest.fixture
def history(mc_artifacts: Path) -> Iterator[Any]:
    from harness.history import History
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
    from harness.report.results import ScenarioSummary, format_summary

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


def _portable(value: Any) -> Any:
    """A figure as pytest-xdist can carry it from a worker (a ``Bound`` as its seconds)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist, on the controller: a worker ended; its summary rows join this one's, so
    the ``failover figures`` table covers every worker's tests."""
    rows = getattr(node, "workeroutput", {}).get("mc_summary", [])
    node.config.stash.setdefault(SUMMARY, []).extend(rows)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """On a pytest-xdist worker: hand the summary rows to the controller. Report-level files
    in the Allure results directory (if one is in use)."""
    config = session.config
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["mc_summary"] = [{k: _portable(v) for k, v in row.items()}
                                      for row in config.stash.get(SUMMARY, [])]
    results_dir = getattr(config.option, "allure_report_dir", None)
    if not results_dir:
        return
    from harness.report import results as report
    from harness.report.scrub import Scrubber

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
