"""A whole cluster in Docker from a topology spec.

One ``--internal`` network per run (no egress); containers ``<run>-db``, ``<run>-nfs``,
``<run>-toxiproxy``, ``<run>-gateway``, ``<run>-master-1`` …, each reachable inside the network
by its short name. Every link between components goes through the toxiproxy container (see
:mod:`harness.cluster.links`); the harness reaches the webapps through ``client->webapp-k``
proxies and every port it dials through :meth:`Cluster.reach`: the container's address on an
engine on this machine, the access container's published port on an engine elsewhere
(:mod:`harness.cluster.access`).

Which containers, with which images, environment and labels, is the pure plan of
:mod:`harness.cluster.plan`; this module executes it (bring-up), gates reuse and answers queries.

Ready means: /v1/health shows one primary master and one connected coreapp per shard, and a
message to a recipient of every shard is acknowledged and delivered at the gateway.
"""

from __future__ import annotations

import contextlib
import secrets
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
import pymysql
import requests

from harness.cluster import access, cleanup, db_record
from harness.cluster import plan as container_plan
from harness.cluster.addresses import AddressPlan, create_network
from harness.cluster.api_client import ApiClient, ApiError, roles_from_health
from harness.cluster.engine import engine_url, ensure_engine, print_to_stderr
from harness.cluster.engines import engine_host, is_here
from harness.cluster.images import ensure_images, ship_images
from harness.cluster.links import PORTS, LinkTable, build_links
from harness.cluster.plan import DB_NAME, DB_USER, MEDIA_TIMEOUT, ContainerPlan  # noqa: F401 - re-exported
from harness.cluster.reuse import gateway_cursor
from harness.cluster.toxiproxy import Toxiproxy
from harness.spec import Topology, validate
from harness.wait import WaitTimeout, wait_for
from multiconnect.core.lease import LeaseCore
from multiconnect.core.monitor import answer_window
from multiconnect.core.ownership import FENCE_MARGIN
from multiconnect.sharding import recipients_for_shard

Progress = Callable[[str], None]


class ClusterStartError(RuntimeError):
    """Bring-up failed: the message names the component and carries its log tail."""


@dataclass
class Node:
    name: str
    role: str            # master | coreapp | webapp | db | nfs | toxiproxy | gateway
    container: Any       # docker Container
    ip: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "role": self.role, "container": self.container.name,
                "ip": self.ip}


class Cluster:
    def __init__(self, spec: Topology | None = None, *, run_id: str | None = None,
                 progress: Progress = print_to_stderr, keep: bool = False,
                 client: docker.DockerClient | None = None,
                 image_source: docker.DockerClient | None = None) -> None:
        """``client``: the engine to run on (default: the local one, started if need be);
        ``image_source``: an engine whose images are shipped to ``client`` instead of built
        there (``harness.cluster.images.ship_images``)."""
        self.spec = validate(spec or Topology())
        self.run_id = run_id or f"mc{uuid.uuid4().hex[:8]}"
        self.progress = progress
        self.keep = keep
        self.client = client
        self.image_source = image_source
        self.links: LinkTable = build_links(self.spec)
        self.nodes: dict[str, Node] = {}
        self.db_password = secrets.token_urlsafe(12)
        self.db_root_password = secrets.token_urlsafe(12)
        self.admin_password = "A1-" + secrets.token_urlsafe(12)
        self.images: dict[str, str] = {}
        self.network = None
        self.addresses: AddressPlan | None = None
        self.toxiproxy: Toxiproxy | None = None
        # where the harness dials (container, port): direct until an access container is made
        self.reach = access.Reach(direct=lambda name: self.nodes[name].ip)
        self._api: dict[int, ApiClient] = {}
        self.started = False
        # reuse between tests (harness.cluster.reuse): cleared when a fault could not be healed or a
        # test changed what the next one assumes; ``uses`` counts the tests served
        self.reusable = True
        self.uses = 1
        self.gateway_since = 0  # where a test's gateway recording starts
        self.test_started_wall: float | None = None  # set when reused: logs from here
        self.initial_settings: dict[str, Any] | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 120.0) -> Cluster:
        t0 = time.monotonic()
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise
        self.started = True
        self.progress(f"[cluster] {self.run_id} ready in {time.monotonic() - t0:.1f}s "
                      f"(engine {self.engine_url})")
        return self

    def _start(self, timeout: float) -> None:
        if self.client is None:
            self.client = ensure_engine(self.progress)
        cleanup.sweep(self.client, self.progress)
        containers = self.plan()
        self.images = ensure_images(self.image_source or self.client,
                                    names=container_plan.image_names(containers),
                                    overrides=self.spec.image_overrides(),
                                    progress=self.progress)
        if self.image_source is not None:
            ship_images(self.image_source, self.client, self.images.values(), self.progress)
        through_access = not is_here(self.engine_url)
        names = [c.name for c in containers] + ([access.NAME] if through_access else [])
        self.network, self.addresses = create_network(
            self.client, self.run_id, self._labels("network"), names, progress=self.progress)
        self.progress(f"[cluster] {self.run_id}: network created; starting infrastructure")
        self._run_all([c for c in containers if c.stage == "infra"])
        if through_access:
            self._start_access(containers, timeout)
        self._wait_infra(timeout)
        self._run_nodes([c for c in containers if c.stage == "nodes"])
        self._wait_ready(timeout)

    def plan(self) -> list[ContainerPlan]:
        """This cluster's containers (:func:`harness.cluster.plan.plan`)."""
        return container_plan.plan(self.spec, self.run_id, db_password=self.db_password,
                                   db_root_password=self.db_root_password, keep=self.keep,
                                   links=self.links)

    def stop(self) -> None:
        if self.client is None:
            return
        t0 = time.monotonic()
        n = cleanup.remove_run(self.client, self.run_id)
        self.started = False
        self.progress(f"[cluster] {self.run_id}: removed {n} resources in "
                      f"{time.monotonic() - t0:.1f}s")

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ containers
    def _labels(self, component: str) -> dict[str, str]:
        return container_plan.labels(self.run_id, component, self.keep)

    def _create(self, c: ContainerPlan) -> Node:
        assert self.client is not None and self.network is not None
        assert self.addresses is not None
        # a fixed address, and every name in /etc/hosts: no lookup asks the engine's DNS
        # (harness.cluster.addresses); the short name stays an alias for anything else on
        # the network
        ip = self.addresses.addresses[c.name]
        endpoint = self.client.api.create_endpoint_config(aliases=[c.name], ipv4_address=ip)
        container = self.client.containers.create(
            self.images[c.image], name=c.container_name, hostname=c.name, detach=True,
            labels=c.labels, network=self.network.name,
            networking_config={self.network.name: endpoint},
            extra_hosts=self.addresses.hosts(), **c.options)
        container.start()
        return Node(c.name, c.role, container, ip)

    def _start_access(self, containers: list[ContainerPlan], timeout: float) -> None:
        """The access container of an engine elsewhere (:mod:`harness.cluster.access`)."""
        assert self.client is not None and self.addresses is not None
        proxy = next(c for c in containers if c.name == "toxiproxy")
        eps = access.endpoints(self.spec, self.links)
        self.progress(f"[cluster] {self.run_id}: the engine is elsewhere; the harness reaches "
                      f"{len(eps)} endpoints through an access container published on "
                      f"{engine_host(self.engine_url)}")
        self.reach = access.start(
            self.client, run_id=self.run_id, image=self.images[proxy.image],
            network=self.network, address=self.addresses.addresses[access.NAME],
            hosts=self.addresses.hosts(), labels=self._labels, options=proxy.options,
            targets={ep: self.addresses.addresses[ep[0]] for ep in eps},
            engine_host=engine_host(self.engine_url), timeout=timeout)

    def url(self, name: str, port: int) -> str:
        """``http://host:port`` where the harness dials ``name``'s ``port``."""
        return access.http_url(*self.reach(name, port))

    def start_bystander(self, name: str) -> Any:
        """Create and start a container that is not part of the cluster on the run's network
        (the node image, sleeping; the engine places it in the subnet's upper half) and
        return it — for tests of what the engine's own work does to a running cluster. It
        carries the run's labels, so teardown removes it with the rest."""
        assert self.client is not None and self.network is not None
        container = self.client.containers.create(
            self.images["node"], name=f"{self.run_id}-{name}", entrypoint=["sleep", "600"],
            detach=True, init=True, labels=self._labels(name), network=self.network.name)
        container.start()
        return container

    def _run_all(self, containers: list[ContainerPlan]) -> None:
        """Create and start containers concurrently (each create+start is a few hundred ms
        of engine round trips); ``self.nodes`` keeps the order of ``containers``. If any
        fails, the others are still recorded so that ``stop()`` removes them."""
        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [pool.submit(self._create, c) for c in containers]
        errors = []
        for f in futures:
            try:
                node = f.result()
            except Exception as e:  # noqa: BLE001 - raised below, after recording the rest
                errors.append(e)
            else:
                self.nodes[node.name] = node
        if errors:
            raise errors[0]

    def _refresh_ips(self) -> None:
        assert self.network is not None
        for node in self.nodes.values():
            node.container.reload()
            nets = node.container.attrs["NetworkSettings"]["Networks"]
            node.ip = (nets.get(self.network.name) or {}).get("IPAddress", "")

    def _check_alive(self, names: list[str] | None = None) -> None:
        for node in self.nodes.values():
            if names is not None and node.name not in names:
                continue
            node.container.reload()
            if node.container.status in ("exited", "dead"):
                raise ClusterStartError(
                    f"container {node.container.name} ({node.role}) exited during bring-up "
                    f"with code {node.container.attrs['State'].get('ExitCode')}; last log "
                    f"lines:\n{self.log_tail(node.name)}")

    def _wait_infra(self, timeout: float) -> None:
        self._refresh_ips()
        infra = [n for n in ("db", "nfs", "toxiproxy", "gateway") if n in self.nodes]

        def db_ok() -> bool:
            self._check_alive(infra)
            self.db_connect().close()
            return True

        def toxi_ok() -> bool:
            self._check_alive(infra)
            return requests.get(f"{self.url('toxiproxy', PORTS['toxiproxy_api'])}/version",
                                timeout=1).ok

        def gw_ok() -> bool:
            self._check_alive(infra)
            return requests.get(f"{self.gateway_url}/health", timeout=1).ok

        def nfs_ok() -> bool:
            self._check_alive(infra)
            return access.holds_open(*self.reach("nfs", PORTS["nfs"]))

        checks = [("toxiproxy API", toxi_ok), ("gateway stand-in", gw_ok),
                  ("database", db_ok)]
        if "nfs" in self.nodes:
            checks.append(("NFS server", nfs_ok))
        for what, check in checks:
            self._wait(check, timeout, what)
        with contextlib.closing(self.db_connect()) as conn:
            db_record.create_accounts(conn, DB_NAME, self.spec.all_nodes, self.db_password)
        self.toxiproxy = Toxiproxy(self.url("toxiproxy", PORTS["toxiproxy_api"]))
        self.toxiproxy.populate([
            {"name": lk.name, "listen": f"0.0.0.0:{lk.listen_port}", "upstream": lk.upstream,
             "enabled": True} for lk in self.links])
        self.progress(f"[cluster] {self.run_id}: infrastructure up; {len(self.links)} links "
                      "proxied; starting nodes")

    def _wait(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        try:
            return wait_for(check, timeout=timeout, what=what)
        except WaitTimeout as e:
            tails = "\n".join(f"--- {n}\n{self.log_tail(n, 15)}" for n in self.nodes)
            raise ClusterStartError(f"{e}\ncontainer logs:\n{tails}") from e

    def node_env(self, name: str, role: str) -> dict[str, str]:
        """The environment of one node (:func:`harness.cluster.plan.node_env`)."""
        return container_plan.node_env(self.spec, self.links, name, role, self.db_password)

    def _run_nodes(self, containers: list[ContainerPlan]) -> None:
        assert self.client is not None
        volume = container_plan.media_volume(self.spec, self.run_id)
        if volume is not None:
            self.client.volumes.create(volume, labels=self._labels("media"))
        self._run_all(containers)
        self._refresh_ips()

    def _wait_ready(self, timeout: float) -> None:
        api = ApiClient(self.webapp_url(1), "admin", "secret")

        def first_login() -> bool:
            """Change the default password; if the default is refused, the change may have
            happened already (a restarted webapp, or an answer lost under load) — or the
            schema's admin row is not written yet: try both on every attempt."""
            self._check_alive()
            api.password = "secret"
            try:
                api.login(new_password=self.admin_password)
            except ApiError as e:
                if e.status != 401:
                    raise
                api.password = self.admin_password
                api.login()
            return True

        self._wait(first_login, timeout, "admin login through webapp-1")
        self._wait(self.install_db_record, timeout,
                   "the database's record (harness.cluster.db_record)")
        if self.spec.shards > 1:
            self._wait(lambda: self._check_alive() or self.set_shards(self.spec.shards),
                       timeout, f"POST /v1/account/shards to {self.spec.shards} shards")
        self._wait(lambda: self._check_alive() or self.ready_state(), timeout,
                   "one primary master and one connected coreapp per shard")
        self._wait(lambda: self._check_alive() or self.round_trip(), timeout,
                   "a message to every shard acknowledged and delivered")
        self.initial_settings = self.api().settings()

    def check_reusable(self, timeout: float = 30.0) -> str | None:
        """The reuse gate (see :mod:`harness.cluster.reuse`): None when this cluster may serve the
        next test, else why not. Resets every link; waits up to ``timeout`` for every node to
        answer health with one primary master and one connected coreapp per shard, and for a
        message to every shard to be delivered; the settings must be those of bring-up."""
        for node in self.nodes.values():
            node.container.reload()
            if node.container.status != "running":
                return f"container {node.container.name} is {node.container.status}"
        assert self.toxiproxy is not None
        self.toxiproxy.reset()
        names = self.spec.node_names("master") + self.spec.node_names("coreapp")

        def settled() -> bool:
            for k in range(2, self.spec.webapps + 1):
                self.api(k).health()  # every webapp answers (webapp-1: just below)
            roles = self.health()
            missing = [n for n in names if not roles.get(n, {}).get("role")]
            return not missing and self.ready_state(roles) is not None

        try:
            wait_for(settled, timeout=timeout, what="every master and coreapp answering "
                     "health, one primary master and one connected coreapp per shard")
            wait_for(self.round_trip, timeout=timeout, what="a message to every shard")
        except WaitTimeout as e:
            return str(e)
        now, then = self.api().settings(), self.initial_settings or {}
        changed = sorted(k for k in now.keys() | then.keys() if now.get(k) != then.get(k))
        if changed:
            return f"application settings changed since bring-up: {', '.join(changed)}"
        self.gateway_since = gateway_cursor(self.gateway_events(self.gateway_since),
                                            self.gateway_end())
        self.test_started_wall = time.time()
        return None

    # ------------------------------------------------------------------ observation
    @property
    def gateway_url(self) -> str:
        return self.url("gateway", PORTS["gateway_log"])

    def webapp_url(self, k: int = 1) -> str:
        return self.url("toxiproxy", self.links[f"client->webapp-{k}"].listen_port)

    def api(self, k: int = 1, timeout: float = 2.0) -> ApiClient:
        """An authenticated API client through the ``client->webapp-k`` link."""
        if k not in self._api:
            c = ApiClient(self.webapp_url(k), "admin", self.admin_password, timeout=timeout)
            c.login()
            self._api[k] = c
        return self._api[k]

    def health(self) -> dict[str, dict[str, Any]]:
        return roles_from_health(self.api().health())

    def ready_state(self, roles: dict[str, dict[str, Any]] | None = None) -> dict[str, Any] | None:
        """One primary master and one connected coreapp per shard in ``roles`` (default: a
        fresh health answer), else None."""
        roles = self.health() if roles is None else roles
        primaries = [n for n, r in roles.items() if r.get("role") == "primary_master"]
        connected = [n for n, r in roles.items()
                     if r.get("role") == "coreapp" and r.get("gateway_status") == "connected"]
        if len(primaries) == 1 and len(connected) == self.spec.shards:
            return {"primary_master": primaries[0], "connected": connected}
        return None

    def round_trip(self) -> bool:
        api = self.api()
        for shard in range(self.spec.shards):
            since = self.gateway_end()
            to = recipients_for_shard(shard, self.spec.shards, 1, prefix="1999")[0]
            r = api.send_text(to, f"readiness {self.run_id}")
            if r.status_code != 201:
                raise ApiError(r.status_code, r.text, f"readiness message to shard {shard}")
            mid = r.json()["messages"][0]["id"]
            if not any(e.get("id") == mid for e in self.gateway_events(since)
                       if e["type"] == "deliver"):
                return False
        return True

    def set_shards(self, shards: int) -> bool:
        """Set the shard count through the API, as an operator does (201 on success; the
        primary master applies it, so this is retried until one is elected)."""
        api = ApiClient(self.webapp_url(1), "admin", self.admin_password)
        api.login()
        r = api.request("POST", "/v1/account/shards", json={
            "cc": "1", "phone_number": "5550000001", "shards": shards, "pin": "123456"})
        if r.status_code == 201:
            return True
        if r.status_code >= 500:
            return False  # no primary master yet
        raise ApiError(r.status_code, r.text, f"setting {shards} shards")

    def gateway_events(self, since: int = 0) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            r = requests.get(f"{self.gateway_url}/events", params={"since": since}, timeout=2)
            r.raise_for_status()
            body = r.json()
            out.extend(body["events"])
            if not body["events"] or body["next"] == since:
                return out
            since = body["next"]

    def gateway_end(self) -> int:
        """The gateway log's length now (a cursor past every event so far)."""
        r = requests.get(f"{self.gateway_url}/events", params={"since": 1 << 40, "limit": 1},
                         timeout=2)
        r.raise_for_status()
        return int(r.json()["next"])

    def db_connect(self, timeout: float = 2.0) -> pymysql.connections.Connection:
        host, port = self.reach("db", PORTS["db"])
        return pymysql.connect(host=host, port=port, user="root",
                               password=self.db_root_password, connect_timeout=int(timeout),
                               read_timeout=timeout, autocommit=True)

    def install_db_record(self) -> bool:
        """Triggers of :mod:`harness.cluster.db_record` in place (the schema exists once an admin
        can log in); True when both are."""
        with contextlib.closing(self.db_connect()) as conn:
            return len(db_record.install(conn, DB_NAME)) == 2

    def db_record_end(self) -> int:
        with contextlib.closing(self.db_connect()) as conn:
            return db_record.end(conn)

    def db_record_rows(self, since: int) -> list[dict[str, Any]]:
        with contextlib.closing(self.db_connect()) as conn:
            return db_record.read(conn, since)

    def db_record_settings(self) -> dict[str, Any]:
        """What the record is judged by (:func:`harness.judge.checkers.db_record`): the lease TTL,
        the fraction of it a holder trusts, the fence a promotion must leave after the old
        owner's validity, and which account is which node."""
        tm = self.spec.timing
        return {"lease_ttl": tm.lease_ttl, "lease_safety": LeaseCore.safety,
                "fence_extra": tm.gateway_ping_timeout + FENCE_MARGIN,
                "answer_window": answer_window(tm.heartbeat_interval),
                "accounts": {n: n for n in self.spec.all_nodes},
                "masters": self.spec.node_names("master")}

    def shard_map(self) -> dict[int, dict[str, Any]]:
        """The shard map table, read directly from the database (as an operator would)."""
        with contextlib.closing(self.db_connect()) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT shard, hostname, epoch FROM `{DB_NAME}`.shard_map "
                        "ORDER BY shard")
            return {int(s): {"hostname": h, "epoch": int(e)} for s, h, e in cur.fetchall()}

    def primary_coreapp(self, shard: int = 0) -> str:
        owner = self.shard_map()[shard]["hostname"]
        if owner is None:
            raise LookupError(f"shard {shard} has no primary coreapp")
        return owner

    def primary_master(self) -> str:
        with contextlib.closing(self.db_connect()) as conn, conn.cursor() as cur:
            cur.execute(f"SELECT holder FROM `{DB_NAME}`.master_lease WHERE id = 1 "
                        "AND expires_at > NOW(6)")
            row = cur.fetchone()
        if not row or not row[0]:
            raise LookupError("no live master lease")
        return row[0]

    def container(self, name: str):
        return self.nodes[name].container

    def exec(self, name: str, cmd: list[str] | str) -> tuple[int, str]:
        res = self.container(name).exec_run(cmd)
        return res.exit_code, res.output.decode(errors="replace")

    def log_tail(self, name: str, lines: int = 30) -> str:
        try:
            return self.nodes[name].container.logs(tail=lines).decode(errors="replace")
        except docker.errors.APIError as e:
            return f"(no log: {e})"

    def logs(self) -> dict[str, str]:
        """Every container's log. On a reused cluster only what was logged since the current
        test began, under a first line that says so: the nodes log little in steady state, so
        such a log is often short or empty, and the lines before belong to earlier tests."""
        out = {}
        since = int(self.test_started_wall) if self.test_started_wall else None
        began = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(since or 0))
        header = "" if since is None else (
            f"# logged since this test began ({began} UTC); the cluster was reused from an "
            "earlier test, whose lines are left out\n")
        for name, node in self.nodes.items():
            try:
                text = node.container.logs(since=since).decode(errors="replace")
            except docker.errors.APIError as e:
                text = f"(no log: {e})\n"
            out[name] = header + (text or ("(nothing logged)\n" if header else ""))
        return out

    def secrets(self) -> list[str]:
        return [self.db_password, self.db_root_password, self.admin_password] + [
            c.token for c in self._api.values() if c.token]

    @property
    def engine_url(self) -> str:
        """The URL of the engine this cluster runs on (``unix:///path`` for a socket here)."""
        assert self.client is not None
        return engine_url(self.client)

    def describe(self) -> dict[str, Any]:
        """What a user needs to reach the cluster from here (``python -m harness up``); the
        nodes' and links' addresses are those on the run's network."""
        proxy_ip = self.nodes["toxiproxy"].ip
        db_host, db_port = self.reach("db", PORTS["db"])
        return {
            "run_id": self.run_id,
            "engine": self.engine_url,
            "webapp_url": self.webapp_url(1),
            "webapp_urls": [self.webapp_url(k) for k in range(1, self.spec.webapps + 1)],
            "admin": {"username": "admin", "password": self.admin_password},
            "db": {"host": db_host, "port": db_port, "user": "root",
                   "password": self.db_root_password, "database": DB_NAME},
            "toxiproxy_url": self.url("toxiproxy", PORTS["toxiproxy_api"]),
            "gateway_url": self.gateway_url,
            "nodes": [n.to_dict() for n in self.nodes.values()],
            "links": self.links.to_dicts(proxy_ip),
            "topology": self.spec.to_dict(),
        }
