"""The operator procedures of the seed guide, run with docker-compose on ``fixtures/compose/``.

Each test gets its own :class:`harness.cluster.compose.ComposeRun` (private copy of the files, a LAN
without egress, unique project names) and tears everything down. Services are reached at
the host's LAN address (published ports) or at container IPs on that LAN.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pymysql
import pytest
import requests

from harness.cluster.api_client import ApiClient, ApiError, roles_from_health
from harness.cluster.compose import (
    NEW_VERSION,
    OLD_VERSION,
    ComposeMissing,
    ComposeRun,
    Project,
    compose_command,
    egress_rule_counters,
    ensure_versioned_images,
)
from harness.cluster.engine import ensure_engine
from harness.wait import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.procedures]

T = TypeVar("T")
ADMIN_PASSWORD = "A1-compose-admin"
SINGLE = "multiconnect-compose.yml"
SINGLE_SERVICES = {"db", "gateway", "waweb", "master1", "master2", "wacore1", "wacore2",
                   "wacore3"}
BRING_UP = 120.0  # seconds: every bring-up wait (measured ≈ 20 s on a 2-core machine)
# the CI preset (multiconnect.timing "ci"), for scenarios that measure a bound
CI_TIMING = {"WA_HEARTBEAT_INTERVAL": "1", "WA_UNHEALTHY_INTERVAL": "3",
             "WA_DB_MONITOR_SCALE": "0.05", "WA_MASTER_LEASE_TTL": "5",
             "WA_GATEWAY_PING_TIMEOUT": "2"}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def versioned_images() -> dict[str, str]:
    try:
        compose_command()
    except ComposeMissing as e:
        pytest.fail(str(e), pytrace=False)
    return ensure_versioned_images(ensure_engine())


@pytest.fixture
def run(versioned_images: dict[str, str]) -> Iterator[ComposeRun]:
    with ComposeRun(hosts=["dbserver", "server-a", "server-b", "server-c"]) as r:
        yield r
        # no packet of the run was forwarded off its LAN (rule counters, no probe sent)
        counters = egress_rule_counters(r.bridge)
        assert len(counters) == 2, f"no-egress rules missing: {counters}"
        dropped = [n for n, _ in counters]
        print(f"no-egress rules of {r.bridge}: dropped packets {dropped}")
        assert dropped == [0, 0], f"a container tried to leave the run's LAN: {counters}"


# --------------------------------------------------------------------------- helpers


def wait(check: Callable[[], T], what: str, timeout: float = BRING_UP) -> T:
    return wait_for(check, timeout=timeout, what=what, interval=0.5)


def admin(url: str) -> ApiClient:
    """An authenticated client; the first login changes the default password."""
    api = ApiClient(url, "admin", "secret", timeout=3.0)

    def attempt() -> bool:
        # a fresh database may refuse both for a moment (users not seeded yet): retry both
        api.password = "secret"
        try:
            api.login(new_password=ADMIN_PASSWORD)
        except ApiError as e:
            if e.status != 401:
                raise
            api.password = ADMIN_PASSWORD
            try:
                api.login()
            except ApiError as e2:
                if e2.status != 401:
                    raise
                return False
        return True

    wait(attempt, f"admin login at {url}")
    return api


def delivered(gateway_url: str) -> dict[str, int]:
    """message id → deliveries recorded by the gateway stand-in."""
    out: dict[str, int] = {}
    since = 0
    for _ in range(1000):
        body = requests.get(f"{gateway_url}/events", params={"since": since, "limit": 10000},
                            timeout=3).json()
        for e in body["events"]:
            if e["type"] == "deliver":
                out[e["id"]] = out.get(e["id"], 0) + 1
        if not body["events"] or body["next"] == since:
            return out
        since = body["next"]
    raise AssertionError("gateway event log did not end after 1000 pages")


def message_round_trip(api: ApiClient, gateway_url: str, to: str = "19995550001",
                       timeout: float = BRING_UP) -> str:
    """Send until one message is accepted (201) and delivered at the gateway; its id."""
    state: dict[str, str] = {}

    def attempt() -> bool:
        if "id" not in state:
            r = api.send_text(to, "procedure check")
            if r.status_code != 201:
                return False
            state["id"] = r.json()["messages"][0]["id"]
        return state["id"] in delivered(gateway_url)

    wait(attempt, "a message accepted (201) and delivered at the gateway", timeout)
    return state["id"]


def roles(api: ApiClient) -> dict[str, dict[str, Any]]:
    return roles_from_health(api.health())


def wait_default_refused(run: ComposeRun) -> None:
    """Wait for the webapp to answer; the default password must be refused (401): the
    password change made before is in the database."""
    fresh = ApiClient(f"http://{run.host_ip}:9090", "admin", "secret", timeout=3.0)

    def answer() -> int:
        try:
            fresh.login()
        except ApiError as e:
            if e.status in (401, 200):
                return e.status
            raise
        return 200

    status = wait(answer, "the webapp answering a login with the default password")
    assert status == 401, "the default password was accepted: the earlier change was lost"


def single_server(run: ComposeRun, suffix: str = "single", **env: str) -> Project:
    p = run.project(suffix, [SINGLE], **env)
    p.up()
    return p


def ready_single(run: ComposeRun, p: Project) -> tuple[ApiClient, str]:
    api = admin(f"http://{run.host_ip}:9090")
    gw = f"http://{p.ip('gateway')}:8080"
    message_round_trip(api, gw)
    return api, gw


# --------------------------------------------------------------------------- 1


def test_single_server_up_ps_and_api(run: ComposeRun) -> None:
    """1. ``up -d``; ``ps`` shows every service running; health, login and a message on 9090."""
    p = single_server(run)
    services = set(p.compose("config", "--services").stdout.split())
    assert services == SINGLE_SERVICES
    api, gw = ready_single(run, p)
    running = set(p.compose("ps", "--services", "--filter", "status=running").stdout.split())
    assert running == SINGLE_SERVICES, f"not running: {SINGLE_SERVICES - running}"
    ps = p.compose("ps").stdout
    for svc in SINGLE_SERVICES:
        line = next((ln for ln in ps.splitlines() if f"_{svc}_1 " in ln), "")
        assert " Up " in line, f"`ps` does not show {svc} up:\n{ps}"
    assert f"{run.host_ip}:9090->9090/tcp" in ps

    def healthy() -> dict[str, dict[str, Any]] | None:
        health = roles(api)
        by_role = sorted(str(r.get("role")) for r in health.values())
        connected = [n for n, r in health.items() if r.get("gateway_status") == "connected"
                     and r.get("role") == "coreapp"]
        ok = set(health) == SINGLE_SERVICES - {"db", "gateway", "waweb"} and by_role == [
            "coreapp", "coreapp", "coreapp", "primary_master", "secondary_master"]
        return health if ok and len(connected) == 1 else None

    # every node answers in /v1/health (a node can miss one round on a loaded machine)
    wait(healthy, "/v1/health: 2 masters (primary, secondary), 3 coreapps, 1 connected", 30)


# --------------------------------------------------------------------------- 6


def test_down_keeps_volumes_and_down_v_removes_them(run: ComposeRun) -> None:
    """6. ``down`` keeps volumes (a later ``up`` sees the data); ``down -v`` removes them."""
    p = single_server(run)
    api, gw = ready_single(run, p)  # the admin password change is stored in the database
    volumes = set(p.volumes())
    assert {f"{p.name}_{v}" for v in ("mysqlData", "whatsappData", "whatsappMedia")} \
        <= volumes, volumes
    p.down()
    assert p.containers() == [], "down left containers"
    assert set(p.volumes()) == volumes, "down removed volumes"
    p.up()
    wait_default_refused(run)
    api = ApiClient(f"http://{run.host_ip}:9090", "admin", ADMIN_PASSWORD, timeout=3.0)
    wait(lambda: bool(api.login()), "login with the password set before `down`")
    message_round_trip(api, f"http://{p.ip('gateway')}:8080")
    p.down(volumes=True)
    assert p.containers() == []
    assert p.volumes() == [], "down -v kept volumes"


# --------------------------------------------------------------------------- 7


def test_logs_to_debug_output_has_every_service(run: ComposeRun) -> None:
    """7. ``docker-compose logs > debug_output.txt`` contains every service's lines."""
    p = single_server(run)
    ready_single(run, p)
    cmd = " ".join(p.command("logs", "--no-color")) + " > debug_output.txt"
    subprocess.run(cmd, shell=True, cwd=run.dir, env={**run.base_env(), **p.env},
                   check=True, timeout=60)
    text = (run.dir / "debug_output.txt").read_text()
    for svc in SINGLE_SERVICES:
        lines = [ln for ln in text.splitlines() if ln.startswith(f"{svc}_1 ")]
        assert lines, f"debug_output.txt has no line of {svc}"
    assert "ready for connections" in text  # db
    assert "became primary master" in text  # a master
    assert "connected to gateway for shard 0" in text  # a coreapp
    assert "webapp waweb ready" in text  # webapp


# --------------------------------------------------------------------------- the LAN


def test_lookup_of_a_removed_sibling_stays_on_the_lan(run: ComposeRun) -> None:
    """A node that asks for a name no longer on the LAN (a sibling ``down`` removed first)
    sends no packet off it: Docker's embedded DNS forwards unknown names to the containers'
    upstream server, which the run sets to the host's LAN address (the ``run`` fixture then
    checks the no-egress rules dropped nothing; with the host's resolver they counted the
    queries)."""
    infra = run.project("dbserver", ["stand-ins.yml"])
    infra.up("gateway")
    [gateway] = infra.containers("gateway")
    probe = ("import socket\ntry:\n    socket.getaddrinfo('wacore1', 6250)\n"
             "except socket.gaierror:\n    print('unresolved')\n")
    res = gateway.exec_run(["python3", "-c", probe], environment={"LD_PRELOAD": ""})
    assert res.output.decode().strip() == "unresolved", res.output
    counters = egress_rule_counters(run.bridge)
    assert [n for n, _ in counters] == [0, 0], counters


# --------------------------------------------------------------------------- 2, 3


def db_rows(host: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of one query, as root on the compose database (db.env's root password)."""
    conn = pymysql.connect(host=host, port=3306, user="root", password="compose-Root-1",
                           database="waent", connect_timeout=3, read_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


def multi_server(run: ComposeRun, master_ports: str) -> dict[str, Project]:
    """The database and gateway stand-ins on ``dbserver``, then master (server-a), webapp
    (server-c), each a compose project of its own, as on separate machines."""
    run.edit("db.env", "WA_DB_HOSTNAME=db\n", "WA_DB_HOSTNAME=dbserver\n")
    common = {**CI_TIMING, "WA_GATEWAY_ADDRESS": "dbserver:5222"}
    infra = run.project("dbserver", ["stand-ins.yml"])
    infra.up()
    wait(lambda: db_rows(run.host_ip, "SELECT 1"), "the database on dbserver:3306")
    master = run.project("server-a", ["multiconnect-master.yml"], EXTERNAL_HOSTNAME="server-a",
                         COREAPP_EXTERNAL_PORTS=master_ports, **common)
    webapp = run.project("server-c", ["multiconnect-webapp.yml"], EXTERNAL_HOSTNAME="server-c",
                         **common)
    master.up()
    webapp.up()
    return {"dbserver": infra, "server-a": master, "server-c": webapp}


def coreapp_server(run: ComposeRun, suffix: str, **env: str) -> Project:
    return run.project(suffix, ["multiconnect-coreapp.yml"], EXTERNAL_HOSTNAME="server-b",
                       WA_GATEWAY_ADDRESS="dbserver:5222", **CI_TIMING, **env)


def registered(run: ComposeRun) -> dict[str, tuple[str, str]]:
    """node name → (address, heartbeat address) from the nodes table."""
    return {n: (a, h) for n, a, h in db_rows(
        run.host_ip, "SELECT name, address, heartbeat_address FROM nodes")}


def test_per_role_files_as_three_servers_form_one_cluster(run: ComposeRun) -> None:
    """2. master (server-a, 6250-6253), coreapp (server-b, 6350-6353), webapp (server-c)."""
    servers = multi_server(run, master_ports="6250-6253")
    core = coreapp_server(run, "server-b", COREAPP_EXTERNAL_PORTS="6350-6353")
    core.up()
    api = admin(f"http://{run.host_ip}:9090")
    message_round_trip(api, f"http://{run.host_ip}:8080")
    nodes = registered(run)
    assert nodes["server-a"] == ("server-a:6250", "server-a:6253"), nodes
    assert nodes["server-b"] == ("server-b:6350", "server-b:6353"), nodes
    assert "server-c" in nodes, nodes
    wait(lambda: (lambda h: h.get("server-a", {}).get("role") == "primary_master"
                  and h.get("server-b") == {"role": "coreapp", "gateway_status": "connected"}
                  )(roles(api)),
         "/v1/health: server-a primary master, server-b a connected coreapp", 30)
    published = core.compose("port", "wacore", "6253").stdout.strip()
    assert published == f"{run.host_ip}:6353", published
    assert servers["server-c"].compose("port", "waweb", "9090").stdout.strip() == \
        f"{run.host_ip}:9090"


def test_two_instances_of_a_role_clash_then_work_with_port_range(run: ComposeRun) -> None:
    """3. a second coreapp on server-b fails on a port clash with the default range and
    joins the cluster with ``COREAPP_EXTERNAL_PORTS=6350-6353`` ("6350-6353:6250-6253")."""
    multi_server(run, master_ports="6550-6553")
    first = coreapp_server(run, "server-b")
    first.up()
    api = admin(f"http://{run.host_ip}:9090")
    message_round_trip(api, f"http://{run.host_ip}:8080")
    second = coreapp_server(run, "server-b-2", WA_NODE_NAME="server-b-2")
    res = second.up(check=False)
    out = res.stdout + res.stderr
    assert res.returncode != 0, f"a second instance on the default ports started:\n{out}"
    assert "port is already allocated" in out or "address already in use" in out, out
    assert "server-b-2" not in registered(run)
    second.down(volumes=True)
    second.env["COREAPP_EXTERNAL_PORTS"] = "6350-6353"
    second.up()
    wait(lambda: registered(run).get("server-b-2") == ("server-b:6350", "server-b:6353"),
         "the second instance registered at server-b:6350 / 6353")
    wait(lambda: (lambda h: h.get("server-b-2", {}).get("role") == "coreapp"
                  and h.get("server-b", {}).get("gateway_status") == "connected")(roles(api)),
         "/v1/health: the second instance a coreapp, the first one still connected", 30)
    message_round_trip(api, f"http://{run.host_ip}:8080", timeout=30)


# --------------------------------------------------------------------------- 5


def upload(api: ApiClient, data: bytes) -> str:
    r = api.upload_media(data, "application/octet-stream", timeout=10)
    assert r.status_code == 201, r.text
    return r.json()["media"][0]["id"]


def test_external_volumes_keep_data_and_media_and_bind_mounts_work(run: ComposeRun) -> None:
    """5. volumes attached with ``external: true`` keep earlier data and media across a new
    install (``down -v`` leaves them); bind mounts to host paths hold the files."""
    labels = {"mc.run": run.run_id, "mc.owner": run.owner}
    for vol in ("mysql", "media"):
        run.client.volumes.create(f"{run.run_id}-{vol}", labels=labels)
    for key, vol in (("mysqlData", "mysql"), ("whatsappMedia", "media")):
        run.edit(SINGLE, f"  {key}:\n    labels: *labels\n",
                 f"  {key}:\n    external: true\n    name: {run.run_id}-{vol}\n")
    data = b"procedure media " + run.run_id.encode() * 100
    first = single_server(run, "first")
    api, _ = ready_single(run, first)
    media_id = upload(api, data)
    first.down(volumes=True)
    names = {v.name for v in run.client.volumes.list(filters={"label": f"mc.run={run.run_id}"})}
    assert {f"{run.run_id}-mysql", f"{run.run_id}-media"} <= names, "down -v removed an " \
        "external volume"

    second = single_server(run, "second")  # a new install on the kept volumes
    wait_default_refused(run)
    api, _ = ready_single(run, second)
    got = api.get_media(media_id, timeout=10)
    assert got.status_code == 200 and got.content == data, "media of the first install lost"
    second.down(volumes=True)

    run.edit(SINGLE, "      - whatsappMedia:/usr/local/wamedia\n",
             "      - ./wamedia:/usr/local/wamedia\n")
    run.edit(SINGLE, "      - mysqlData:/var/lib/mysql\n", "      - ./mysql:/var/lib/mysql\n")
    third = single_server(run, "third")
    api, _ = ready_single(run, third)  # a blank database: the default password worked
    media_id = upload(api, data)
    assert (run.dir / "wamedia" / media_id).read_bytes() == data
    assert (run.dir / "mysql" / "waent").is_dir(), "the database is not in the bind mount"
    assert api.get_media(media_id, timeout=10).content == data


# --------------------------------------------------------------------------- 4


class Traffic(threading.Thread):
    """One sender: a message every ``period`` s until stopped (bounded by ``max_seconds``
    and ``max_sends``); records (start time, status, id or None) per attempt."""

    def __init__(self, url: str, period: float = 0.2, max_seconds: float = 400.0,
                 max_sends: int = 4000) -> None:
        super().__init__(daemon=True)
        self.api = ApiClient(url, "admin", ADMIN_PASSWORD, timeout=2.0)
        self.period, self.max_seconds, self.max_sends = period, max_seconds, max_sends
        self.stop_event = threading.Event()
        self.log: list[tuple[float, int, str | None]] = []

    def run(self) -> None:
        t_end = time.monotonic() + self.max_seconds
        for k in range(self.max_sends):
            if self.stop_event.is_set() or time.monotonic() > t_end:
                return
            t0 = time.monotonic()
            status, mid = 0, None
            try:
                if self.api.token is None:
                    self.api.login()
                r = self.api.send_text(f"1999555{k % 1000:04d}", f"upgrade traffic {k}")
                status = r.status_code
                if status == 201:
                    mid = r.json()["messages"][0]["id"]
                elif status == 401:
                    self.api.token = None
            except (requests.RequestException, ApiError, ValueError):
                status = 0
            self.log.append((t0, status, mid))
            self.stop_event.wait(max(0.0, self.period - (time.monotonic() - t0)))

    def acked(self, since: float = 0.0) -> list[str]:
        return [m for t, s, m in list(self.log) if s == 201 and m and t >= since]

    def longest_gap(self, start: float, end: float) -> float:
        """Longest time without an acknowledged send, over sends started in [start, end]."""
        times = [t for t, s, _ in list(self.log) if s == 201]
        before = [t for t in times if t < start]
        inside = [t for t in times if start <= t <= end]
        points = ([before[-1]] if before else [start]) + inside
        return max((b - a for a, b in zip(points, points[1:], strict=False)), default=end - start)


def schema_version(p: Project) -> int:
    return int(db_rows(p.ip("db"), "SELECT version FROM schema_version WHERE id = 1")[0][0])


def logs_of(p: Project, *services: str) -> str:
    return p.compose("logs", "--no-color", *services).stdout


def test_upgrade_under_traffic_then_rollback_refused(run: ComposeRun) -> None:
    """4. 0.1.0 → 0.2.0 (schema 1 → 2) by changing the image version and running ``up -d``
    under traffic: the primary master upgrades the schema, the API is back within a bound
    computed from the settings, no acknowledged message is lost. A rollback to 0.1.0 is
    refused as the roles document it (a master never downgrades; old nodes wait)."""
    h, u, scale, ttl, k = 1, 3, 0.05, 5.0, 2.0  # CI_TIMING
    p = single_server(run, **CI_TIMING)
    api, gw = ready_single(run, p)
    assert schema_version(p) == 1
    traffic = Traffic(f"http://{run.host_ip}:9090")
    traffic.start()
    try:
        wait(lambda: len(traffic.acked()) >= 5, "5 messages acknowledged before the upgrade", 30)

        # --- upgrade: the operator changes the image version in the file and runs up -d
        run.edit(SINGLE, f"WA_IMAGE_TAG:-{OLD_VERSION}", f"WA_IMAGE_TAG:-{NEW_VERSION}")
        t_up = time.monotonic()
        p.up(timeout=180)
        up_seconds = time.monotonic() - t_up
        # recreate + new lease (T) + stale old registration (120·scale) + unhealthy (u) +
        # ownership TTL (2h) + fence (K + 0.5) + two heartbeats + client margin (1.5)
        bound = up_seconds + ttl + 120 * scale + u + 2 * h + k + 0.5 + 2 * h + 1.5
        wait(lambda: traffic.acked(since=time.monotonic() - 1.0) and schema_version(p) == 2,
             f"the API acknowledging messages again on schema 2 (bound {bound:.1f}s)",
             timeout=bound)
        t_back = time.monotonic()
        gap = traffic.longest_gap(t_up, t_back)
        print(f"upgrade: up -d {up_seconds:.1f}s, longest gap without an ack {gap:.1f}s, "
              f"bound {bound:.1f}s")
        assert gap <= bound, f"API down {gap:.1f}s > bound {bound:.1f}s"
        masters = logs_of(p, "master1", "master2")
        assert "upgrading schema 1 -> 2" in masters, masters[-3000:]
        for svc in ("waweb", "master1", "master2", "wacore1", "wacore2", "wacore3"):
            tags = p.containers(svc)[0].image.tags
            assert f"mc-node:{NEW_VERSION}" in tags, f"{svc} runs {tags}"
        assert db_rows(p.ip("db"), "SHOW TABLES LIKE 'message_stats'"), "no v2 table"

        # --- rollback attempt: 0.1.0 code on a schema-2 database
        run.edit(SINGLE, f"WA_IMAGE_TAG:-{NEW_VERSION}", f"WA_IMAGE_TAG:-{OLD_VERSION}")
        p.up(timeout=180)
        wait(lambda: "refusing to downgrade" in logs_of(p, "master1", "master2"),
             "a 0.1.0 master refusing to downgrade schema 2", 60)
        wait(lambda: all("schema version 2, this node needs 1" in logs_of(p, c)
                         for c in ("wacore1", "wacore2", "wacore3")),
             "every 0.1.0 coreapp waiting for its schema", 60)
        t_old = time.monotonic()
        time.sleep(ttl + 120 * scale)  # long enough for a promotion, were one to happen
        assert schema_version(p) == 2, "the schema was downgraded"
        acked_old = traffic.acked(since=t_old)
        assert acked_old == [], f"0.1.0 nodes acknowledged {len(acked_old)} messages"
        health = roles(api)
        assert not any(r.get("gateway_status") == "connected" and r.get("role") == "coreapp"
                       for r in health.values()), health

        # --- forward again: the cluster comes back on 0.2.0
        run.edit(SINGLE, f"WA_IMAGE_TAG:-{OLD_VERSION}", f"WA_IMAGE_TAG:-{NEW_VERSION}")
        t_up = time.monotonic()
        p.up(timeout=180)
        wait(lambda: traffic.acked(since=t_up), "messages acknowledged on 0.2.0 again",
             timeout=(time.monotonic() - t_up) + bound)
    finally:
        traffic.stop_event.set()
        traffic.join(10)
    acked = traffic.acked()
    sent = delivered(gw)
    lost = [m for m in acked if m not in sent]
    print(f"upgrade: {len(traffic.log)} sends, {len(acked)} acknowledged, {len(lost)} lost")
    assert len(acked) >= 10
    assert lost == [], f"{len(lost)} acknowledged messages never delivered: {lost[:5]}"
