"""harness.cluster.engines: engine URLs from the command line, ini or environment, checked
before anything starts; slots and the round-robin placement of pytest-xdist workers."""

from __future__ import annotations

import docker
import pytest

from harness.cluster import engine as engine_module
from harness.cluster.engine import build_engine, dockerd_sockets, engine_url
from harness.cluster.engines import (
    Engine,
    EngineSettingError,
    check_url,
    engine_for,
    engine_host,
    engines_from,
    is_here,
    slot_order,
    split_hosts,
)

A, B, C = "unix:///run/a.sock", "tcp://127.0.0.1:2376", "ssh://ci@localhost"


@pytest.mark.parametrize("url", [A, "unix:///var/run/docker.sock", B, "tcp://[::1]:2375",
                                 "tcp://10.0.0.2:2376", "ssh://build-3", C,
                                 "ssh://ci@build-3:2222"])
def test_urls_the_docker_sdk_takes_are_accepted(url: str) -> None:
    assert check_url(url) == url


@pytest.mark.parametrize("url", ["", "docker.sock", "unix://relative.sock", "unix:///",
                                 "tcp://host", "tcp://host:port", "http://host:2375",
                                 "npipe:////./pipe/docker_engine", "ssh://", "ssh://a b"])
def test_anything_else_is_refused_naming_the_setting_and_the_forms(url: str) -> None:
    with pytest.raises(EngineSettingError) as e:
        check_url(url)
    assert str(e.value).startswith(f"--mc-docker-host {url!r} is invalid: ")
    assert "unix:///path" in str(e.value) and "tcp://host:port" in str(e.value)


@pytest.mark.parametrize("url", [A, B, C, "tcp://[::1]:2375", "ssh://localhost:2222"])
def test_an_engine_on_this_machine_is_reached_directly(url: str) -> None:
    assert is_here(url)


@pytest.mark.parametrize("url", ["tcp://192.0.2.7:2376", "ssh://ci@192.0.2.7"])  # TEST-NET-1
def test_an_engine_elsewhere_is_accepted_and_reached_through_its_access_container(
        url: str) -> None:
    """Nothing is sent: the check binds a local socket to the address (only this machine's
    addresses bind)."""
    assert engines_from([url], env={}) == [Engine(url)]
    assert not is_here(url)
    assert engine_host(url) == "192.0.2.7"


def test_the_host_an_engine_publishes_on() -> None:
    assert engine_host("tcp://build-3.example:2376") == "build-3.example"
    assert engine_host("ssh://ci@build-3:2222") == "build-3"
    assert engine_host("tcp://[::1]:2375") == "::1"
    assert engine_host(A) == "localhost"


def test_the_command_line_wins_then_the_ini_then_the_environment() -> None:
    env = {"MC_DOCKER_HOSTS": f"{C}"}
    assert engines_from([A], ini=B, env=env) == [Engine(A)]
    assert engines_from([], ini=f"{B}\n{A}", env=env) == [Engine(B), Engine(A)]
    assert engines_from([], ini="", env=env) == [Engine(C)]
    assert engines_from([], ini="", env={}) == []


def test_the_error_names_where_the_bad_value_came_from() -> None:
    with pytest.raises(EngineSettingError, match="^mc_docker_host 'nope'"):
        engines_from([], ini="nope", env={})
    with pytest.raises(EngineSettingError, match="^MC_DOCKER_HOSTS 'nope'"):
        engines_from([], env={"MC_DOCKER_HOSTS": f"{A},nope"})


def test_an_engine_given_twice_is_refused_with_the_slots_hint() -> None:
    with pytest.raises(EngineSettingError, match="each engine once.*--mc-engine-slots"):
        engines_from([A, B, A], env={})


def test_hosts_split_on_commas_spaces_and_lines() -> None:
    assert split_hosts(f" {A},{B}\n  {C} ,") == [A, B, C]
    assert split_hosts("") == []


def test_slots_name_a_given_engine_and_a_count() -> None:
    assert engines_from([A, B], slots=[f"{A}=2"], env={}) == [Engine(A, 2), Engine(B, 1)]
    for bad, why in ((f"{C}=2", "one of the engines given"), (A, "URL=K"),
                     (f"{A}=0", "from 1 to 16"), (f"{A}=x", "from 1 to 16"),
                     (f"{A}=17", "from 1 to 16")):
        with pytest.raises(EngineSettingError, match=why):
            engines_from([A, B], slots=[bad], env={})


def test_workers_take_engines_round_robin_over_slots() -> None:
    a, b = Engine(A, 2), Engine(B, 1)
    assert slot_order([a, b]) == [a, b, a]
    assert [engine_for(f"gw{n}", [a, b]) for n in range(5)] == [a, b, a, a, b]
    assert engine_for(None, [a, b]) == a          # no xdist: the first engine
    assert engine_for("master", [a, b]) == a
    assert engine_for("gw3", []) is None          # none given: the local engine


@pytest.mark.parametrize("cmdline, sockets", [
    (["dockerd"], ["/var/run/docker.sock"]),
    (["dockerd", "--host", "unix:///run/mc-docker2/docker.sock", "--data-root", "/x"],
     ["/run/mc-docker2/docker.sock"]),
    (["dockerd", "-H", "unix:///a.sock", "-H=tcp://0.0.0.0:2375", "--host=unix:///b.sock"],
     ["/a.sock", "/b.sock"]),
    (["dockerd", "-Hunix:///c.sock"], ["/c.sock"]),
])
def test_a_dockerd_is_found_by_the_sockets_on_its_command_line(cmdline, sockets) -> None:
    assert dockerd_sockets(cmdline) == sockets


@pytest.mark.parametrize(("given", "kw"), [
    ("unix:///run/a.sock", {}), ("tcp://10.0.0.2:2375", {}),
    ("ssh://ci@build-3:2222", {"use_ssh_client": True})])
def test_a_clients_engine_url_is_the_one_the_user_gave(given: str, kw: dict) -> None:
    """What runs are labelled and reported with, and what decides direct or access
    (``is_here``): the SDK keeps ``http://`` for tcp and ``http+docker://ssh`` for ssh.
    Nothing is dialled: the client is made with a fixed API version."""
    client = docker.DockerClient(base_url=given, version="1.41", **kw)
    try:
        assert engine_url(client) == given
    finally:
        client.close()


class _Client:
    def __init__(self, url: str) -> None:
        self.url = url


ELSEWHERE = "tcp://192.0.2.7:2376"  # TEST-NET-1: never dialled, only checked for being local


def test_images_are_built_on_the_first_engine_given_that_is_on_this_machine() -> None:
    clients = {u: _Client(u) for u in (ELSEWHERE, B, A)}
    assert build_engine([ELSEWHERE, B, A], clients, lambda _: None) is clients[B]


def test_with_every_engine_elsewhere_images_are_built_on_this_machines_engine(
        monkeypatch: pytest.MonkeyPatch) -> None:
    local = _Client("unix:///var/run/docker.sock")
    monkeypatch.setattr(engine_module, "ensure_engine", lambda progress: local)
    monkeypatch.setattr(engine_module, "engine_url", lambda client: client.url)
    clients = {ELSEWHERE: _Client(ELSEWHERE)}
    assert build_engine([ELSEWHERE], clients, lambda _: None) is local


def test_with_no_engine_here_at_all_images_are_built_on_the_first_given_saying_why(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable(progress):
        raise engine_module.EngineUnavailable("no dockerd here")

    monkeypatch.setattr(engine_module, "ensure_engine", unavailable)
    said: list[str] = []
    clients = {ELSEWHERE: _Client(ELSEWHERE)}
    assert build_engine([ELSEWHERE], clients, said.append) is clients[ELSEWHERE]
    assert said == [f"[images] no engine on this machine to build on (no dockerd here); "
                    f"building on {ELSEWHERE}"]
