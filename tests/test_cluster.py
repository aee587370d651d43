"""The Docker cluster layer on real Docker (``-m integration``): bring-up, what ``describe()``
promises, the NFS media path, multiconnect sharding, teardown, the CLI, and the sweeper.

Model: ``Cluster(spec).start()`` is ready when /v1/health shows one primary master and one
connected coreapp per shard and a message to every shard was delivered at the gateway; every
container/network/volume carries ``mc.run=<run id>``; ``stop()`` removes them all. The
machine has 2 cores, so only one cluster runs at a time: the default cluster is class-scoped
(torn down when its class ends, before the next test starts another one).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
import requests

from harness.cluster import cleanup
from harness.cluster.api_client import ApiClient, roles_from_health
from harness.cluster.bringup import Cluster
from harness.cluster.engine import ensure_engine
from harness.cluster.links import build_links
from harness.spec import topology

pytestmark = pytest.mark.integration
pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT = 240.0  # generous: a 2-core machine shared with other work


def _plugin_args() -> list[str]:
    """``-p harness.pytest_plugin.plugin`` unless the installed package already loads it
    (entry point)."""
    from importlib.metadata import entry_points
    installed = any(ep.name == "multiconnect_chaos" for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", "harness.pytest_plugin.plugin"]


@pytest.fixture(scope="module")
def docker_client():
    return ensure_engine()


def labelled(client, run_id: str) -> dict[str, list[str]]:
    """Everything Docker still has with ``mc.run=<run_id>``."""
    flt = {"label": f"{cleanup.LABEL_RUN}={run_id}"}
    return {"containers": [c.name for c in client.containers.list(all=True, filters=flt)],
            "networks": [n.name for n in client.networks.list(filters=flt)],
            "volumes": [v.name for v in client.volumes.list(filters=flt)]}


def nothing_left(client, run_id: str) -> bool:
    return not any(labelled(client, run_id).values())


def coreapp_statuses(health: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {n: r.get("gateway_status", "") for n, r in health.items()
            if r.get("role") == "coreapp"}


def conclusive_health(cluster: Cluster, timeout: float = 30.0) -> dict[str, dict[str, Any]]:
    """The first /v1/health in which every master and coreapp answered.

    The webapp gives each node 0.5 s; on a loaded machine a live node can miss that and show
    as an error entry, which says nothing about its state. So this waits for a snapshot that
    is conclusive (bounded), while checking safety on every snapshot seen on the way: never
    more connected coreapps than shards, never more than one primary master.
    """
    expected = set(cluster.spec.node_names("master") + cluster.spec.node_names("coreapp"))
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            health = cluster.health()
        except requests.RequestException as e:  # the whole call timed out: not conclusive
            last = e
            continue
        connected = [n for n, s in coreapp_statuses(health).items() if s == "connected"]
        primaries = [n for n, r in health.items() if r.get("role") == "primary_master"]
        assert len(connected) <= cluster.spec.shards, health
        assert len(primaries) <= 1, health
        if set(health) >= expected and not any("error" in health[n] for n in expected):
            return health
        last = health
    pytest.fail(f"no /v1/health within {timeout:g} s in which every node answered; "
                f"last: {last!r}")


def gateway_connections(cluster: Cluster) -> list[dict[str, Any]]:
    r = requests.get(f"{cluster.gateway_url}/connections", timeout=5)
    r.raise_for_status()
    return r.json()["connections"]


# --------------------------------------------------------------------------- default cluster


@pytest.fixture(scope="class")
def default_cluster(docker_client) -> Iterator[Cluster]:
    """One default cluster for the read-only checks of a class; removed when the class ends."""
    c = Cluster(topology(), client=docker_client)
    c.start(timeout=START_TIMEOUT)
    try:
        yield c
    finally:
        c.stop()
        assert nothing_left(docker_client, c.run_id), labelled(docker_client, c.run_id)


@pytest.fixture
def cluster(default_cluster: Cluster) -> Cluster:
    return default_cluster


class TestDefaultCluster:
    """Read-only checks on one default cluster (2 masters, 2 coreapps, 1 webapp, 1 shard)."""

    def test_health_shows_one_primary_one_secondary_one_connected_one_disconnected(
            self, cluster: Cluster) -> None:
        health = conclusive_health(cluster)
        roles = sorted(r.get("role", "?") for n, r in health.items() if n.startswith("master"))
        assert roles == ["primary_master", "secondary_master"], health
        assert sorted(coreapp_statuses(health).values()) == ["connected", "disconnected"], health
        primary = next(n for n, r in health.items() if r.get("role") == "primary_master")
        assert cluster.primary_master() == primary
        connected = next(n for n, s in coreapp_statuses(health).items() if s == "connected")
        assert cluster.shard_map() == {0: {"hostname": connected,
                                           "epoch": cluster.shard_map()[0]["epoch"]}}
        assert cluster.primary_coreapp(0) == connected
        # the gateway's own view agrees: one connection, held by that coreapp, for shard 0
        conns = gateway_connections(cluster)
        assert [(c["node"], c["shard"]) for c in conns] == [(connected, 0)], conns

    def test_message_is_acknowledged_and_delivered_at_the_gateway(self,
                                                                  cluster: Cluster) -> None:
        before = cluster.gateway_events()
        to = "1555" + str(uuid.uuid4().int % 10**7).zfill(7)
        r = cluster.api().send_text(to, "hello from test_cluster")
        assert r.status_code == 201, r.text
        mid = r.json()["messages"][0]["id"]
        # the gateway records the delivery before it acks, and the 201 follows the ack
        delivered = [e for e in cluster.gateway_events()
                     if e["type"] == "deliver" and e.get("id") == mid]
        assert len(delivered) == 1, delivered
        e = delivered[0]
        assert (e["to"], e["duplicate"], e["shard"]) == (to, False, 0)
        assert e["node"] == cluster.primary_coreapp(0)
        assert all(x.get("id") != mid for x in before)

    def test_media_round_trip_lands_on_the_nfs_server(self, cluster: Cluster) -> None:
        data = os.urandom(10_000) + b"\x00\xff" * 500  # > 3.9 KB: several NFSv4 writes
        api = cluster.api()
        r = api.upload_media(data, "application/octet-stream")
        assert r.status_code == 201, r.text
        media_id = r.json()["media"][0]["id"]
        got = api.get_media(media_id)
        assert got.status_code == 200 and got.content == data
        # read it back from the NFS server itself, not through the webapp
        url = f"nfs://nfs/export/{media_id}?version=4"
        code, out = cluster.exec("webapp-1", [
            "bash", "-o", "pipefail", "-c",
            'nfs-cat "$0" 2>/tmp/nfs-cat.err | base64 -w0 || { cat /tmp/nfs-cat.err; exit 1; }',
            url])
        assert code == 0, out
        on_nfs = base64.b64decode(out.strip())
        assert hashlib.sha256(on_nfs).hexdigest() == hashlib.sha256(data).hexdigest()
        assert on_nfs == data
        # control: a name that is not there fails, so the read above proves presence
        code, out = cluster.exec("webapp-1", ["nfs-cat", f"nfs://nfs/export/{uuid.uuid4().hex}"
                                              "?version=4"])
        assert code != 0, out

    def test_describe_has_every_promised_key(self, cluster: Cluster) -> None:
        d = json.loads(json.dumps(cluster.describe()))
        assert d["run_id"] == cluster.run_id
        assert set(d["admin"]) >= {"username", "password"}
        assert set(d["db"]) >= {"host", "port", "user", "password", "database"}
        for key in ("webapp_url", "toxiproxy_url", "gateway_url"):
            assert d[key].startswith("http://"), d[key]
        names = {n["name"] for n in d["nodes"]}
        assert names == {"db", "nfs", "toxiproxy", "gateway", "master-1", "master-2",
                         "coreapp-1", "coreapp-2", "webapp-1"}
        for n in d["nodes"]:
            assert set(n) == {"name", "role", "container", "ip"}
            assert n["container"] == f"{cluster.run_id}-{n['name']}"
            ipaddress.ip_address(n["ip"])
            assert n["role"] == n["name"].split("-")[0]  # master-1 → master, db → db
        assert [lk["name"] for lk in d["links"]] == [lk.name for lk in build_links(cluster.spec)]
        proxy_ip = next(n["ip"] for n in d["nodes"] if n["name"] == "toxiproxy")
        for lk in d["links"]:
            assert set(lk) >= {"name", "listen", "upstream"}
            assert lk["listen"].startswith(proxy_ip + ":")

    def test_describe_values_work(self, cluster: Cluster) -> None:
        d = cluster.describe()
        # the admin password logs in with HTTP Basic, no password change asked
        r = requests.post(f"{d['webapp_url']}/v1/users/login",
                          auth=(d["admin"]["username"], d["admin"]["password"]), timeout=5)
        assert r.status_code == 200, r.text
        token = r.json()["users"][0]["token"]
        h = requests.get(f"{d['webapp_url']}/v1/health", timeout=5,
                         headers={"Authorization": f"Bearer {token}"})
        assert h.status_code == 200 and "health" in h.json()
        stale = requests.post(f"{d['webapp_url']}/v1/users/login", auth=("admin", "secret"),
                              timeout=5)
        assert stale.status_code == 401  # the default password was really changed
        db = d["db"]
        conn = pymysql.connect(host=db["host"], port=db["port"], user=db["user"],
                               password=db["password"], database=db["database"],
                               connect_timeout=5)
        with contextlib.closing(conn), conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM shard_map")
            assert cur.fetchone()[0] == 1
        proxies = requests.get(f"{d['toxiproxy_url']}/proxies", timeout=5).json()
        assert set(proxies) == {lk["name"] for lk in d["links"]}
        for lk in d["links"]:
            p = proxies[lk["name"]]
            assert p["enabled"] and p["upstream"] == lk["upstream"]
            assert p["listen"].rsplit(":", 1)[1] == lk["listen"].rsplit(":", 1)[1]
        assert requests.get(f"{d['gateway_url']}/health", timeout=5).ok
        for n in d["nodes"]:
            c = cluster.client.containers.get(n["container"])
            nets = c.attrs["NetworkSettings"]["Networks"]
            assert nets[cluster.run_id]["IPAddress"] == n["ip"]
            assert c.labels[cleanup.LABEL_RUN] == cluster.run_id

    def test_network_is_internal_and_labelled(self, cluster: Cluster) -> None:
        net = cluster.client.networks.get(cluster.run_id)
        assert net.attrs["Internal"] is True
        assert net.attrs["Labels"][cleanup.LABEL_RUN] == cluster.run_id
        assert net.attrs["Labels"][cleanup.LABEL_OWNER] == cleanup.owner_label()

    def test_logs_cover_every_container(self, cluster: Cluster) -> None:
        logs = cluster.logs()
        assert set(logs) == set(cluster.nodes)
        assert any(line for line in logs["webapp-1"].splitlines())


# --------------------------------------------------------------------------- multiconnect


def test_four_shards_five_coreapps_then_stop_leaves_nothing(docker_client) -> None:
    spec = topology(coreapps=5, shards=4, media="volume")
    c = Cluster(spec, client=docker_client)
    mounted: list[str] = []
    try:
        c.start(timeout=START_TIMEOUT)
        health = conclusive_health(c)
        statuses = coreapp_statuses(health)
        assert len(statuses) == 5, health
        connected = sorted(n for n, s in statuses.items() if s == "connected")
        assert len(connected) == 4, health
        assert sorted(statuses.values()).count("disconnected") == 1, health
        smap = c.shard_map()
        assert sorted(smap) == [0, 1, 2, 3]
        owners = [row["hostname"] for row in smap.values()]
        assert len(set(owners)) == 4 and sorted(owners) == connected, (smap, statuses)
        conns = gateway_connections(c)
        assert sorted((x["shard"], x["node"]) for x in conns) == sorted(
            (shard, row["hostname"]) for shard, row in smap.items()), (conns, smap)
        before = labelled(docker_client, c.run_id)
        assert before["volumes"] == [f"{c.run_id}-media"] and before["networks"] == [c.run_id]
        # db, toxiproxy, gateway (no nfs with volume media) + 2 masters + 5 coreapps + webapp
        assert sorted(before["containers"]) == sorted(
            f"{c.run_id}-{n}" for n in ["db", "toxiproxy", "gateway", *spec.all_nodes])
        for ctr in docker_client.containers.list(
                all=True, filters={"label": f"{cleanup.LABEL_RUN}={c.run_id}"}):
            mounted += [m["Name"] for m in ctr.attrs.get("Mounts", []) if m["Type"] == "volume"]
    finally:
        c.stop()
    assert labelled(docker_client, c.run_id) == {"containers": [], "networks": [],
                                                  "volumes": []}
    leftover = [v for v in mounted if _volume_exists(docker_client, v)]
    assert not leftover, f"volumes of the run's containers survived stop(): {leftover}"


def _volume_exists(client, name: str) -> bool:
    import docker.errors
    try:
        client.volumes.get(name)
    except docker.errors.NotFound:
        return False
    return True


# --------------------------------------------------------------------------- CLI


def _cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_cli_up_json_then_down_round_trip(docker_client) -> None:
    run_id = ""
    try:
        try:
            up = _cli("up", "--json", "--timeout", str(START_TIMEOUT),
                      timeout=START_TIMEOUT + 120)
        except subprocess.TimeoutExpired as e:
            err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
            m = re.search(r"\[cluster\] (mc[0-9a-f]{8})", err)
            run_id = m.group(1) if m else ""
            raise
        m = re.search(r"\[cluster\] (mc[0-9a-f]{8})", up.stderr)
        run_id = m.group(1) if m else ""
        assert up.returncode == 0, up.stderr[-4000:]
        info = json.loads(up.stdout)
        assert info["run_id"] == run_id
        # the cluster answers with what the JSON says
        api = ApiClient(info["webapp_url"], info["admin"]["username"],
                        info["admin"]["password"], timeout=5)
        api.login()
        roles = {r.get("role") for r in roles_from_health(api.health()).values()}
        assert "primary_master" in roles
        r = api.send_text("15550001234", "via the CLI's cluster")
        assert r.status_code == 201, r.text
        assert requests.get(f"{info['gateway_url']}/health", timeout=5).ok
        # kept: owner label 'keep', survives this process, listed by ps, logs by node
        ctrs = docker_client.containers.list(
            all=True, filters={"label": f"{cleanup.LABEL_RUN}={run_id}"})
        assert ctrs and all(c.labels[cleanup.LABEL_OWNER] == cleanup.KEEP for c in ctrs)
        ps = _cli("ps")
        assert ps.returncode == 0
        line = next(ln for ln in ps.stdout.splitlines() if ln.startswith(run_id))
        assert "owner=keep" in line and f"containers={len(ctrs)} running={len(ctrs)}" in line
        logs = _cli("logs", "--run-id", run_id)
        assert logs.returncode == 0
        prefixes = {ln.split("|", 1)[0].strip() for ln in logs.stdout.splitlines() if "|" in ln}
        assert {"db", "toxiproxy", "gateway", "master-1", "coreapp-1", "webapp-1"} <= prefixes
        down = _cli("down", "--run-id", run_id)
        assert down.returncode == 0, down.stderr
        n = int(re.search(rf"{run_id}: removed (\d+) resources", down.stdout).group(1))
        assert n == len(ctrs) + 1  # containers + the network
        assert nothing_left(docker_client, run_id)
    finally:
        if run_id:
            cleanup.remove_run(docker_client, run_id)


def _keep_creates(client, since: float, until: float) -> list[str]:
    """Containers created with owner ``keep`` (what ``harness up`` makes) in the window."""
    events = client.events(since=int(since), until=int(until) + 1, decode=True, filters={
        "type": "container", "event": "create",
        "label": f"{cleanup.LABEL_OWNER}={cleanup.KEEP}"})
    return [e.get("Actor", {}).get("Attributes", {}).get("name", "?") for e in events]


def _kept_containers(client) -> set[str]:
    return {c.name for c in client.containers.list(all=True, filters={
        "label": f"{cleanup.LABEL_OWNER}={cleanup.KEEP}"})}


def test_cli_up_with_an_invalid_topology_exits_nonzero_and_creates_nothing(
        docker_client) -> None:
    """Counted on ``mc.owner=keep`` containers (what ``up`` creates), since other work on
    this machine may start and stop its own labelled containers meanwhile."""
    before = _kept_containers(docker_client)
    t0 = time.time()
    res = _cli("up", "--shards", "3", "--json")
    t1 = time.time()
    assert res.returncode == 2, (res.returncode, res.stderr)
    assert "'shards'" in res.stderr and "1, 2, 4, 8, 16, 32" in res.stderr, res.stderr
    assert res.stdout == ""
    assert _kept_containers(docker_client) <= before
    assert _keep_creates(docker_client, t0, t1) == []


# --------------------------------------------------------------------------- sweeper


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_sweeper_removes_a_dead_owners_run_and_keeps_the_others(docker_client) -> None:
    from harness.cluster.images import ensure_images
    node = ensure_images(docker_client, names=("base", "node"), progress=lambda _l: None)["node"]
    tag = uuid.uuid4().hex[:6]
    dead = {"run": f"mcsweepdead{tag}", "owner": f"{socket.gethostname()}:{_dead_pid()}"}
    keep = {"run": f"mcsweepkeep{tag}", "owner": cleanup.KEEP}
    other = {"run": f"mcsweepother{tag}", "owner": "another-host.invalid:1"}
    made = []
    try:
        for r in (dead, keep, other):
            labels = {cleanup.LABEL_RUN: r["run"], cleanup.LABEL_OWNER: r["owner"]}
            made.append(docker_client.containers.create(
                node, command=["gateway"], name=f"{r['run']}-dummy", labels=labels,
                network_mode="none"))
        dead_labels = {cleanup.LABEL_RUN: dead["run"], cleanup.LABEL_OWNER: dead["owner"]}
        docker_client.networks.create(dead["run"], internal=True, labels=dead_labels)
        docker_client.volumes.create(f"{dead['run']}-v", labels=dead_labels)
        assert cleanup.runs(docker_client)[dead["run"]] == dead["owner"]
        lines: list[str] = []
        swept = cleanup.sweep(docker_client, lines.append)
        assert dead["run"] in swept
        assert keep["run"] not in swept and other["run"] not in swept
        assert nothing_left(docker_client, dead["run"])
        assert labelled(docker_client, keep["run"])["containers"] == [f"{keep['run']}-dummy"]
        assert labelled(docker_client, other["run"])["containers"] == [f"{other['run']}-dummy"]
        assert any(dead["run"] in ln and "3 leftovers" in ln for ln in lines), lines
    finally:
        for r in (dead, keep, other):
            cleanup.remove_run(docker_client, r["run"])
    for r in (dead, keep, other):
        assert nothing_left(docker_client, r["run"])


# --------------------------------------------------------------------------- plugin fixtures

FAILING_CLUSTER_TEST = """
import os

def test_fails_on_a_real_cluster(cluster):
    with open(os.environ["MC_RUN_ID_FILE"], "w") as f:
        f.write(cluster.run_id)
    assert cluster.health(), "cluster answers"
    assert False, "deliberate failure"
"""


@pytest.mark.parametrize("keep", [False, True], ids=["removed", "kept"])
def test_plugin_cluster_fixture_after_a_failed_test(pytester: pytest.Pytester,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    docker_client, keep: bool) -> None:
    """A failed test's cluster: logs saved under the artifacts directory, then removed —
    or, with --mc-keep-failed, left running (and removed here)."""
    id_file = pytester.path / "run-id.txt"
    monkeypatch.setenv("MC_RUN_ID_FILE", str(id_file))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    pytester.makepyfile(test_inner=FAILING_CLUSTER_TEST)
    art = pytester.path / "art"
    args = [*_plugin_args(), "-p", "no:cacheprovider", "--mc-artifacts", str(art)]
    run_id = ""
    try:
        result = pytester.runpytest_subprocess(*args, *(["--mc-keep-failed"] if keep else []),
                                               timeout=START_TIMEOUT + 120)
        run_id = id_file.read_text() if id_file.exists() else ""
        assert run_id, result.stdout.str()[-3000:]
        result.assert_outcomes(failed=1)
        assert "deliberate failure" in result.stdout.str()
        saved = {p.name for p in art.rglob("*.log")}
        assert {"webapp-1.log", "coreapp-1.log", "master-1.log", "db.log"} <= saved, saved
        webapp_log = next(art.rglob("webapp-1.log")).read_text()
        assert "webapp-1" in webapp_log
        left = labelled(docker_client, run_id)
        if keep:
            assert f"python -m harness down --run-id {run_id}" in result.stdout.str()
            assert len(left["containers"]) == 9 and left["networks"] == [run_id], left
        else:
            assert not any(left.values()), left
    finally:
        if run_id:
            cleanup.remove_run(docker_client, run_id)
