"""An engine elsewhere (scripts/remote-engine.sh: a dockerd in its own network namespace,
reached only over TCP): its containers' addresses are not routed here, so a cluster on it is
reached through the run's access container (harness/cluster/access.py) — bring-up, the API
through the run's toxiproxy (its faults still apply), the database, the gateway log, the
nodes' status ports — and teardown removes the access container and both networks. Skipped,
with the reason, where that engine cannot be started (not root, no dockerd or iproute2)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import requests

from harness.cluster import access, cleanup
from harness.cluster.bringup import Cluster
from harness.cluster.engine import EngineConfig, ensure_engine, local_dockerd
from harness.cluster.engines import engine_host, is_here
from harness.cluster.links import PORTS
from harness.run.workload import status_url
from harness.spec import topology

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "remote-engine.sh"


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def remote() -> Iterator[tuple[docker.DockerClient, docker.DockerClient, str]]:
    """(this machine's engine, the engine elsewhere, its URL); stopped again if started
    here."""
    first = ensure_engine()
    was_running = _script("status").returncode == 0
    started = _script("start")
    if started.returncode != 0:
        pytest.skip(f"no engine in its own network namespace here: "
                    f"{started.stderr.strip().splitlines()[-1]}")
    url = _script("url").stdout.strip()
    client = ensure_engine(config=EngineConfig(base_url=url, start=False))
    try:
        yield first, client, url
    finally:
        cleanup.sweep(client, lambda _: None)
        if not was_running:
            _script("stop")


@pytest.fixture(scope="module")
def cluster(remote) -> Iterator[Cluster]:
    first, client, _ = remote
    with Cluster(topology(), client=client, image_source=first,
                 progress=lambda _: None) as c:
        yield c


def test_the_engine_is_elsewhere_as_far_as_the_network_goes(remote, cluster) -> None:
    """The premise of every test here: the run's addresses are not routed on this host (a
    harness that dials them fails at once), and the faults that need the engine's host find
    no dockerd of it here (they skip)."""
    _, client, url = remote
    assert not is_here(url)
    assert not access.holds_open(cluster.nodes["db"].ip, PORTS["db"], timeout=1.0)
    assert local_dockerd(client) is None


def test_the_harness_reaches_the_cluster_through_the_access_container(remote,
                                                                      cluster) -> None:
    _, _, url = remote
    assert cluster.reach.through_access
    host = engine_host(url)
    assert cluster.reach("db", PORTS["db"])[0] == host
    assert cluster.describe()["db"]["host"] == host
    assert cluster.api().health()
    assert cluster.round_trip()                      # API in, the gateway's log read back
    assert cluster.primary_master() in cluster.spec.node_names("master")   # the database
    for name in cluster.spec.node_names("master") + cluster.spec.node_names("coreapp"):
        status = requests.get(status_url(cluster, name)(), timeout=5)
        assert status.ok and status.json()          # the claims poller's endpoint


def test_a_fault_on_the_client_link_still_applies_to_the_harness(cluster) -> None:
    """The access container forwards to the run's toxiproxy, which keeps the
    ``client->webapp-1`` link: disabling it there cuts the harness's API traffic."""
    assert cluster.toxiproxy is not None
    cluster.toxiproxy.set_enabled("client->webapp-1", False)
    try:
        with pytest.raises(requests.RequestException):
            requests.get(f"{cluster.webapp_url(1)}/v1/health", timeout=3)
    finally:
        cluster.toxiproxy.set_enabled("client->webapp-1", True)
    assert cluster.api().health()


def test_an_endpoint_outside_the_plan_is_refused_by_name(cluster) -> None:
    with pytest.raises(access.NotPublished, match="webapp-1:9090 is not forwarded"):
        cluster.reach("webapp-1", 9090)


def test_teardown_removes_the_access_container_and_both_networks(remote) -> None:
    first, client, _ = remote
    c = Cluster(topology(media="volume"), client=client, image_source=first,
                progress=lambda _: None)
    with c:
        run = {"label": f"{cleanup.LABEL_RUN}={c.run_id}"}
        assert any(x.name.endswith(f"-{access.NAME}")
                   for x in client.containers.list(filters=run))
        assert len(client.networks.list(filters=run)) == 2
    assert client.containers.list(all=True, filters=run) == []
    assert client.networks.list(filters=run) == []
