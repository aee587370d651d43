"""The container plan of a cluster: what ``harness.cluster.bringup`` creates for a topology. Pure:
no Docker engine is asked; the same arguments give the same plan.

One network per run, named by the run id; on it, in this order: ``db``, ``nfs`` (only with
NFS media), ``toxiproxy``, ``gateway`` (stage ``infra``, started first), then ``master-1`` …,
``coreapp-1`` …, ``webapp-1`` … (stage ``nodes``, started once the infrastructure answers).
Each container is ``<run>-<name>`` with hostname ``<name>`` and the run's labels
(``mc.run``, ``mc.owner``, ``mc.component=<name>``). Nodes reach the database, the gateway,
the NFS server and each other only through toxiproxy (``harness.cluster.links``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.cluster import cleanup
from harness.cluster.links import LinkTable, build_links
from harness.spec import Topology

DB_NAME, DB_USER = "waent", "waent"
#: Seconds a webapp's media call may take (``WA_MEDIA_TIMEOUT``).
MEDIA_TIMEOUT = 1.5
#: Where a webapp mounts the run's media volume (``media="volume"``).
MEDIA_MOUNT = "/usr/local/wamedia"
#: Infrastructure containers in start order (``nfs`` only with NFS media).
INFRA = ("db", "nfs", "toxiproxy", "gateway")

#: SYN retries of the toxiproxy container's kernel (``net.ipv4.tcp_syn_retries``, a
#: per-namespace setting): a connect to an address nobody answers gives up after 1 + 2 = 3 s
#: instead of the default 6 retries' 127 s. toxiproxy (v2.12.0, ``proxy.go``) dials a link's
#: upstream inside the link's accept loop with no timeout, so one dial hung on a stopped
#: node's address holds every later connection of that link; with the default the link stayed
#: blocked up to 64 s after the node was back (its next SYN retransmission): a false outage
#: that a client connecting to the node itself never sees.
TOXIPROXY_SYN_RETRIES = 1
NODE_ROLES = ("master", "coreapp", "webapp")


@dataclass(frozen=True)
class ContainerPlan:
    """One container: ``name`` is its short name (hostname, network alias, ``/etc/hosts``
    entry); ``image`` the image role of :mod:`harness.cluster.images` (db, nfs, toxiproxy, node);
    ``options`` the rest of the engine's create arguments (command, init, environment, tmpfs,
    cap_add, volumes)."""

    name: str
    role: str            # master | coreapp | webapp | db | nfs | toxiproxy | gateway
    stage: str           # infra | nodes
    container_name: str  # <run>-<name>
    image: str
    network: str
    labels: dict[str, str]
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def environment(self) -> dict[str, str]:
        return dict(self.options.get("environment", {}))


def labels(run_id: str, component: str, keep: bool = False) -> dict[str, str]:
    """The labels of every resource of a run (containers, network, volume): teardown and the
    sweeper find them by ``mc.run``."""
    return {cleanup.LABEL_RUN: run_id, cleanup.LABEL_OWNER: cleanup.owner_label(keep),
            cleanup.LABEL_COMPONENT: component}


def media_volume(topology: Topology, run_id: str) -> str | None:
    """The name of the run's media volume, or None with NFS media."""
    return f"{run_id}-media" if topology.media == "volume" else None


def node_env(topology: Topology, links: LinkTable, name: str, role: str,
             db_password: str) -> dict[str, str]:
    """The environment of one node (``multiconnect.config`` reads it)."""
    tm = topology.timing
    db_link = links[f"{name}->db"]
    env = {
        "WA_DB_ENGINE": "MYSQL", "WA_DB_HOSTNAME": "toxiproxy",
        "WA_DB_PORT": str(db_link.listen_port), "WA_DB_USERNAME": name,
        "WA_DB_PASSWORD": db_password, "WA_DB_NAME": DB_NAME,
        "WA_NODE_NAME": name, "EXTERNAL_HOSTNAME": name,
        "WA_HEARTBEAT_INTERVAL": str(tm.heartbeat_interval),
        "WA_UNHEALTHY_INTERVAL": str(tm.unhealthy_interval),
        "WA_DB_MONITOR_SCALE": str(tm.db_monitor_scale),
        "WA_MASTER_LEASE_TTL": str(tm.lease_ttl),
        "WA_GATEWAY_PING_TIMEOUT": str(tm.gateway_ping_timeout),
        "WA_DB_TIMEOUT": str(max(0.5, min(2.0, tm.heartbeat_interval))),
        "WA_ROUTES": links.routes_for(name, "toxiproxy"),
    }
    if role == "master":
        env["WA_MASTER_NODE"] = "1"
    if topology.test_break:
        env["WA_TEST_BREAK"] = topology.test_break
    if role == "coreapp":
        env["WA_GATEWAY_ADDRESS"] = f"toxiproxy:{links[f'{name}->gateway'].listen_port}"
    if role == "webapp":
        if topology.media == "nfs":
            port = links[f"{name}->nfs"].listen_port
            env["WA_MEDIA_PATH"] = f"nfs://toxiproxy:{port}/export"
        else:
            env["WA_MEDIA_PATH"] = MEDIA_MOUNT
        # below the roles' default (3 s) by more than the bounds' margin, so a webapp that
        # ignores the setting fails the NFS outage's fail-fast bound (timeout + margin)
        env["WA_MEDIA_TIMEOUT"] = str(MEDIA_TIMEOUT)
    return env


def _infra_options(topology: Topology, db_password: str,
                   db_root_password: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, image role, options) of the infrastructure, in start order."""
    tm = topology.timing
    out: list[tuple[str, str, dict[str, Any]]] = [
        ("db", "db", {"environment": {
            "MC_DB_NAME": DB_NAME, "MC_DB_USER": DB_USER, "MC_DB_PASSWORD": db_password,
            "MC_DB_ROOT_PASSWORD": db_root_password,
            # the official mysql image's variables, for users who point db at it
            "MYSQL_DATABASE": DB_NAME, "MYSQL_USER": DB_USER,
            "MYSQL_PASSWORD": db_password, "MYSQL_ROOT_PASSWORD": db_root_password,
        }, "tmpfs": {"/var/lib/mysql": "rw,size=512m"}})]
    if topology.media == "nfs":
        out.append(("nfs", "nfs", {
            "cap_add": ["DAC_READ_SEARCH", "SYS_ADMIN"],
            "tmpfs": {"/export": "rw,size=256m,mode=0777"}}))
    out.append(("toxiproxy", "toxiproxy", {
        "sysctls": {"net.ipv4.tcp_syn_retries": str(TOXIPROXY_SYN_RETRIES)}}))
    out.append(("gateway", "node", {
        "command": ["gateway"], "init": True,
        "environment": {"GATEWAY_PING_TIMEOUT": str(tm.gateway_ping_timeout),
                        "LD_PRELOAD": ""}}))
    return out


def plan(topology: Topology, run_id: str, *, db_password: str, db_root_password: str,
         keep: bool = False, links: LinkTable | None = None) -> list[ContainerPlan]:
    """Every container of the cluster, infrastructure first (see the module docstring)."""
    links = build_links(topology) if links is None else links
    volume = media_volume(topology, run_id)

    def one(name: str, role: str, stage: str, image: str,
            options: dict[str, Any]) -> ContainerPlan:
        return ContainerPlan(name, role, stage, f"{run_id}-{name}", image, run_id,
                             labels(run_id, name, keep), options)

    out = [one(name, name, "infra", image, options)
           for name, image, options in _infra_options(topology, db_password, db_root_password)]
    for role in NODE_ROLES:
        for name in topology.node_names(role):
            options: dict[str, Any] = {
                "command": ["coreapp" if role == "master" else role], "init": True,
                "environment": node_env(topology, links, name, role, db_password)}
            if volume is not None and role == "webapp":
                options["volumes"] = {volume: {"bind": MEDIA_MOUNT, "mode": "rw"}}
            out.append(one(name, role, "nodes", "node", options))
    return out


def image_names(containers: list[ContainerPlan]) -> tuple[str, ...]:
    """The images to make sure of before bring-up: the shared ``base`` (the node image's
    parent) and each image role the plan uses, in first-use order."""
    return ("base",) + tuple(dict.fromkeys(c.image for c in containers))
