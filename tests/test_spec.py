"""The topology spec (harness.spec) and the plugin's refusal of invalid options.

Model: a Topology is a frozen value; ``topology(**kw)`` / ``Topology.with_(**kw)`` build one
and ``validate`` refuses any invalid field with one SpecError that names the field, the value
and what is allowed. The pytest plugin validates the session topology in pytest_configure, so
a bad ``--mc-*`` option is a usage error before any test (or Docker call) runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.spec import TIMINGS, SpecError, Timing, Topology, topology, validate

REPO = Path(__file__).resolve().parents[1]
pytest_plugins = ["pytester"]


# --------------------------------------------------------------------------- defaults



def _plugin_args() -> list[str]:
    """``-p harness.pytest_plugin.plugin`` unless the installed package already loads it
    (entry point)."""
    from importlib.metadata import entry_points
    installed = any(ep.name == "multiconnect_chaos" for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", "harness.pytest_plugin.plugin"]


def test_defaults_are_two_masters_two_coreapps_one_webapp_one_shard_ci_timing() -> None:
    t = topology()
    assert (t.masters, t.coreapps, t.webapps, t.shards) == (2, 2, 1, 1)
    assert t.timing == TIMINGS["ci"] == Timing()
    assert (t.timing.heartbeat_interval, t.timing.unhealthy_interval) == (1, 3)
    assert t.timing.liveness_interval == pytest.approx(3.0)
    assert t.timing.stale_after == pytest.approx(6.0)
    assert (t.db_engine, t.media, t.images, t.test_break) == ("mariadb", "nfs", (), "")
    assert Topology() == t
    assert t.all_nodes == ["master-1", "master-2", "coreapp-1", "coreapp-2", "webapp-1"]


def test_documented_preset_is_the_real_clients_defaults() -> None:
    tm = topology(timing="documented").timing
    assert (tm.heartbeat_interval, tm.unhealthy_interval) == (5, 30)
    assert (tm.liveness_interval, tm.stale_after) == (60.0, 120.0)


def test_topology_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        topology().masters = 3  # type: ignore[misc]


# --------------------------------------------------------------------------- refusals


def _refused(**kw: Any) -> SpecError:
    with pytest.raises(SpecError) as info:
        topology(**kw)
    return info.value


@pytest.mark.parametrize(("kw", "field", "value", "allowed"), [
    ({"masters": 0}, "masters", 0, "from 1 to 9"),
    ({"masters": 10}, "masters", 10, "from 1 to 9"),
    ({"masters": True}, "masters", True, "integer"),
    ({"masters": 2.0}, "masters", 2.0, "integer"),
    ({"coreapps": 0}, "coreapps", 0, "from 1 to 40"),
    ({"webapps": 0}, "webapps", 0, "from 1 to 9"),
    ({"shards": 3}, "shards", 3, "1, 2, 4, 8, 16, 32"),
    ({"shards": 0}, "shards", 0, "1, 2, 4, 8, 16, 32"),
    ({"shards": 4, "coreapps": 3}, "coreapps", 3, "at least shards (4)"),
    ({"heartbeat_interval": 2}, "unhealthy_interval", 3, "at least 2 × heartbeat_interval (4)"),
    ({"heartbeat_interval": 0}, "heartbeat_interval", 0, "from 1 to 600"),
    ({"unhealthy_interval": 1}, "unhealthy_interval", 1, "from 2 to 3600"),
    ({"lease_ttl": 0}, "lease_ttl", 0, "from 0.5 to 600"),
    ({"db_monitor_scale": "fast"}, "db_monitor_scale", "fast", "a number"),
    ({"gateway_ping_timeout": 0.1}, "gateway_ping_timeout", 0.1, "from 0.2 to 600"),
    ({"db_engine": "postgres"}, "db_engine", "postgres", "one of mariadb, mysql"),
    ({"db_engine": "mysql"}, "db_engine", "mysql", "images={'db'"),
    ({"media": "s3"}, "media", "s3", "one of nfs, volume"),
    ({"images": {"web": "x:1"}}, "images", "web", "db, nfs, toxiproxy, node"),
    ({"images": {"db": ""}}, "images.db", "", "an image reference"),
    ({"test_break": "nope"}, "test_break", "nope", "never-self-fence"),
    ({"timing": "fast"}, "timing", "fast", "one of ci, documented"),
    ({"colour": "red"}, "colour", "red", "unknown field"),
])
def test_invalid_field_is_refused_naming_field_value_and_what_is_allowed(
        kw: dict[str, Any], field: str, value: Any, allowed: str) -> None:
    e = _refused(**kw)
    assert (e.field, e.value) == (field, value)
    assert allowed in e.allowed
    text = str(e)
    assert repr(field) in text and repr(value) in text and allowed in text


def test_unknown_field_error_lists_every_allowed_name_including_flat_timing_keys() -> None:
    allowed = _refused(colour="red").allowed
    for name in ("masters", "coreapps", "webapps", "shards", "timing", "db_engine", "media",
                 "images", "test_break", "heartbeat_interval", "unhealthy_interval",
                 "lease_ttl"):
        assert name in allowed


def test_mysql_with_an_image_override_is_accepted() -> None:
    t = topology(db_engine="mysql", images={"db": "mysql:8.0"})
    assert t.image_overrides() == {"db": "mysql:8.0"}


def test_coreapps_equal_to_shards_is_accepted() -> None:
    t = topology(shards=4, coreapps=4)
    assert (t.shards, t.coreapps) == (4, 4)


def test_validate_refuses_a_directly_built_topology() -> None:
    with pytest.raises(SpecError) as info:
        validate(Topology(shards=3))
    assert info.value.field == "shards"


@pytest.mark.parametrize("shards", [True, 4.0])
def test_shards_must_be_an_integer(shards: Any) -> None:
    e = _refused(shards=shards, coreapps=4)
    assert e.field == "shards"


@pytest.mark.parametrize("timing", ["documented", None])
def test_validate_refuses_a_timing_that_is_not_a_timing(timing: Any) -> None:
    with pytest.raises(SpecError) as info:
        validate(Topology(timing=timing))  # type: ignore[arg-type]
    assert info.value.field == "timing"


# --------------------------------------------------------------------------- with_ / to_dict


def test_with_accepts_flat_timing_keys_and_keeps_the_rest() -> None:
    base = topology(coreapps=3)
    t = base.with_(heartbeat_interval=2, unhealthy_interval=7, lease_ttl=8.0)
    assert t.timing == dataclasses.replace(Timing(), heartbeat_interval=2,
                                           unhealthy_interval=7, lease_ttl=8.0)
    assert t.coreapps == 3 and base.timing == Timing()  # the original is unchanged


def test_with_applies_flat_timing_keys_on_top_of_a_named_preset() -> None:
    t = topology().with_(timing="documented", unhealthy_interval=12)
    assert t.timing == dataclasses.replace(TIMINGS["documented"], unhealthy_interval=12)


def test_with_validates_the_result() -> None:
    with pytest.raises(SpecError) as info:
        topology(shards=4, coreapps=4).with_(coreapps=2)
    assert info.value.field == "coreapps"


def test_with_does_not_change_the_callers_dict() -> None:
    changes = {"heartbeat_interval": 2, "unhealthy_interval": 6, "masters": 3}
    topology().with_(**changes)
    assert changes == {"heartbeat_interval": 2, "unhealthy_interval": 6, "masters": 3}


def test_to_dict_is_plain_json_with_nested_timing_and_images_as_a_mapping() -> None:
    t = topology(shards=2, coreapps=3, images={"node": "mine:1", "db": "mysql:8.0"},
                 db_engine="mysql", heartbeat_interval=2, unhealthy_interval=5)
    d = json.loads(json.dumps(t.to_dict()))
    assert d == {
        "masters": 2, "coreapps": 3, "webapps": 1, "shards": 2,
        "timing": {"heartbeat_interval": 2, "unhealthy_interval": 5, "db_monitor_scale": 0.05,
                   "lease_ttl": 5.0, "gateway_ping_timeout": 2.0},
        "db_engine": "mysql", "media": "nfs", "images": {"db": "mysql:8.0", "node": "mine:1"},
        "test_break": "",
    }


def test_images_given_as_a_dict_are_stored_sorted_so_equal_specs_compare_equal() -> None:
    a = topology(images={"node": "n:1", "db": "d:1"}, db_engine="mysql")
    b = topology(images={"db": "d:1", "node": "n:1"}, db_engine="mysql")
    assert a == b and a.images == (("db", "d:1"), ("node", "n:1"))


def test_node_names_per_role() -> None:
    t = topology(masters=3, coreapps=5, webapps=2, shards=4)
    assert t.node_names("master") == ["master-1", "master-2", "master-3"]
    assert t.node_names("coreapp")[-1] == "coreapp-5"
    assert t.node_names("webapp") == ["webapp-1", "webapp-2"]


# --------------------------------------------------------------------------- plugin options

SPY_CONFTEST = """
import os, docker, harness.cluster.engine

def _spy(*a, **k):
    open(os.environ["MC_SPY_FILE"], "a").write("docker called\\n")
    raise RuntimeError("docker must not be called")

docker.from_env = _spy
docker.DockerClient.__init__ = _spy
harness.cluster.engine.ensure_engine = _spy
"""

CLUSTER_TEST = """
def test_uses_a_cluster(cluster):
    assert cluster is not None

def test_plain():
    assert True
"""


@pytest.fixture
def plugin_dir(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
               tmp_path: Path) -> Path:
    """A pytester project with the plugin on the path and a conftest that records any
    attempt to reach Docker (in a file) and makes it fail."""
    spy = tmp_path / "docker-calls.txt"
    monkeypatch.setenv("MC_SPY_FILE", str(spy))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    pytester.syspathinsert(REPO)
    pytester.makeconftest(SPY_CONFTEST)
    pytester.makepyfile(test_x=CLUSTER_TEST)
    return spy


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*_plugin_args(), "-p", "no:cacheprovider",
                                         "--mc-artifacts", str(pytester.path / "art"), *args)


def test_plugin_refuses_three_shards_at_configuration_before_any_docker_call(
        pytester: pytest.Pytester, plugin_dir: Path) -> None:
    result = _run(pytester, "--mc-shards", "3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    err = result.stderr.str()
    assert "'shards'" in err and "3" in err and "1, 2, 4, 8, 16, 32" in err, err
    assert "passed" not in result.stdout.str() and "collected" not in result.stdout.str()
    assert not plugin_dir.exists(), "Docker was called before the usage error"


def test_plugin_refuses_an_invalid_ini_value_and_a_bad_timing_name(
        pytester: pytest.Pytester, plugin_dir: Path) -> None:
    pytester.makeini("[pytest]\nmc_coreapps = 1\nmc_shards = 2\n")
    result = _run(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "'coreapps'" in result.stderr.str() and "at least shards (2)" in result.stderr.str()
    result = _run(pytester, "--mc-timing", "fast")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "'timing'" in result.stderr.str() and "ci, documented" in result.stderr.str()
    assert not plugin_dir.exists()


def test_plugin_accepts_valid_options_and_runs_tests_without_docker(
        pytester: pytest.Pytester, plugin_dir: Path) -> None:
    """Control: valid options configure fine; only the test that asks for a cluster
    touches Docker (and fails here, through the spy)."""
    result = _run(pytester, "--mc-shards", "4", "--mc-coreapps", "5", "-k", "plain")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=1, deselected=1)
    assert "4 shard(s)" in result.stdout.str()
    assert not plugin_dir.exists()
    # the spy does see Docker being reached: the cluster test errors in setup through it
    result = _run(pytester, "--mc-shards", "4", "--mc-coreapps", "5", "-k", "cluster")
    result.assert_outcomes(errors=1, deselected=1)
    assert plugin_dir.read_text().startswith("docker called")


def test_plugin_marker_wins_over_the_command_line(pytester: pytest.Pytester,
                                                  plugin_dir: Path) -> None:
    pytester.makepyfile(test_marker="""
import pytest

@pytest.mark.topology(coreapps=5, shards=4)
def test_marked(mc_topology):
    assert (mc_topology.coreapps, mc_topology.shards, mc_topology.masters) == (5, 4, 3)

def test_unmarked(mc_topology):
    assert (mc_topology.coreapps, mc_topology.shards, mc_topology.masters) == (2, 1, 3)
""")
    result = _run(pytester, "--mc-masters", "3", "test_marker.py")
    result.assert_outcomes(passed=2)


def test_plugin_refuses_an_invalid_marker_for_its_test_only(pytester: pytest.Pytester,
                                                            plugin_dir: Path) -> None:
    pytester.makepyfile(test_marker="""
import pytest

@pytest.mark.topology(shards=3)
def test_bad(mc_topology):
    pass

def test_good(mc_topology):
    pass
""")
    result = _run(pytester, "test_marker.py")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*SpecError*'shards' = 3*"])
    assert not plugin_dir.exists()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


def test_timing_given_as_a_function_of_the_current_timing() -> None:
    base = Topology().with_(timing="documented")
    spec = base.with_(webapps=2, timing=lambda t: dataclasses.replace(
        t, unhealthy_interval=3 * t.unhealthy_interval))
    assert spec.timing.unhealthy_interval == 90 and spec.timing.heartbeat_interval == 5
    assert spec.webapps == 2 and base.timing.unhealthy_interval == 30
