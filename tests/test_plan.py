"""The container plan of a cluster (harness.cluster.plan), read without Docker.

Model: ``plan(topology, run_id, ...)`` lists the infrastructure (db, nfs with NFS media,
toxiproxy, gateway) and then masters, coreapps and webapps; every container is
``<run>-<name>`` on the run's network, labelled with the run, its owner and its name; nodes
get the roles' environment (database and gateway through toxiproxy, the topology's timing).
"""

from __future__ import annotations

from harness.cluster import cleanup
from harness.cluster.links import build_links
from harness.cluster.plan import (
    DB_NAME,
    MEDIA_MOUNT,
    MEDIA_TIMEOUT,
    ContainerPlan,
    image_names,
    labels,
    media_volume,
    node_env,
    plan,
)
from harness.spec import topology

RUN = "mctest0001"
PW, ROOT_PW = "pw-node", "pw-root"

COMMON_ENV = {
    "WA_DB_ENGINE", "WA_DB_HOSTNAME", "WA_DB_PORT", "WA_DB_USERNAME", "WA_DB_PASSWORD",
    "WA_DB_NAME", "WA_NODE_NAME", "EXTERNAL_HOSTNAME", "WA_HEARTBEAT_INTERVAL",
    "WA_UNHEALTHY_INTERVAL", "WA_DB_MONITOR_SCALE", "WA_MASTER_LEASE_TTL",
    "WA_GATEWAY_PING_TIMEOUT", "WA_DB_TIMEOUT", "WA_ROUTES",
}


def _plan(**kw: object) -> dict[str, ContainerPlan]:
    return {c.name: c for c in plan(topology(**kw), RUN, db_password=PW,
                                    db_root_password=ROOT_PW)}


def test_default_topology_containers_in_start_order() -> None:
    containers = plan(topology(), RUN, db_password=PW, db_root_password=ROOT_PW)
    assert [(c.name, c.role, c.stage, c.image) for c in containers] == [
        ("db", "db", "infra", "db"),
        ("nfs", "nfs", "infra", "nfs"),
        ("toxiproxy", "toxiproxy", "infra", "toxiproxy"),
        ("gateway", "gateway", "infra", "node"),
        ("master-1", "master", "nodes", "node"),
        ("master-2", "master", "nodes", "node"),
        ("coreapp-1", "coreapp", "nodes", "node"),
        ("coreapp-2", "coreapp", "nodes", "node"),
        ("webapp-1", "webapp", "nodes", "node"),
    ]
    assert image_names(containers) == ("base", "db", "nfs", "toxiproxy", "node")


def test_every_container_is_named_labelled_and_on_the_runs_network() -> None:
    for c in _plan().values():
        assert c.container_name == f"{RUN}-{c.name}"
        assert c.network == RUN
        assert c.labels == {cleanup.LABEL_RUN: RUN, cleanup.LABEL_OWNER: cleanup.owner_label(),
                            cleanup.LABEL_COMPONENT: c.name}
    kept = plan(topology(), RUN, db_password=PW, db_root_password=ROOT_PW, keep=True)
    assert {c.labels[cleanup.LABEL_OWNER] for c in kept} == {cleanup.KEEP}
    assert labels(RUN, "network")[cleanup.LABEL_COMPONENT] == "network"


def test_infrastructure_options() -> None:
    p = _plan()
    db_env = p["db"].environment
    assert db_env["MC_DB_NAME"] == db_env["MYSQL_DATABASE"] == DB_NAME
    assert db_env["MC_DB_PASSWORD"] == db_env["MYSQL_PASSWORD"] == PW
    assert db_env["MC_DB_ROOT_PASSWORD"] == db_env["MYSQL_ROOT_PASSWORD"] == ROOT_PW
    assert p["db"].options["tmpfs"] == {"/var/lib/mysql": "rw,size=512m"}
    assert p["nfs"].options["cap_add"] == ["DAC_READ_SEARCH", "SYS_ADMIN"]
    assert p["toxiproxy"].options == {"sysctls": {"net.ipv4.tcp_syn_retries": "1"}}
    assert p["gateway"].options["command"] == ["gateway"]
    assert p["gateway"].environment == {"GATEWAY_PING_TIMEOUT": "2.0", "LD_PRELOAD": ""}


def test_node_environment_by_role() -> None:
    p = _plan()
    links = build_links(topology())
    for name, c in p.items():
        if c.stage != "nodes":
            continue
        env = c.environment
        assert set(env) >= COMMON_ENV, name
        assert env["WA_NODE_NAME"] == env["WA_DB_USERNAME"] == name
        assert env["WA_DB_HOSTNAME"] == "toxiproxy"
        assert env["WA_DB_PORT"] == str(links[f"{name}->db"].listen_port)
        assert env == node_env(topology(), links, name, c.role, PW)
        assert c.options["command"] == ["coreapp" if c.role == "master" else c.role]
        assert c.options["init"] is True
        assert ("WA_MASTER_NODE" in env) == (c.role == "master")
        assert ("WA_GATEWAY_ADDRESS" in env) == (c.role == "coreapp")
        assert ("WA_MEDIA_PATH" in env) == (c.role == "webapp")
        assert "WA_TEST_BREAK" not in env
        assert "volumes" not in c.options
    assert p["coreapp-2"].environment["WA_GATEWAY_ADDRESS"] == (
        f"toxiproxy:{links['coreapp-2->gateway'].listen_port}")
    web = p["webapp-1"].environment
    assert web["WA_MEDIA_PATH"] == f"nfs://toxiproxy:{links['webapp-1->nfs'].listen_port}/export"
    assert web["WA_MEDIA_TIMEOUT"] == str(MEDIA_TIMEOUT)


def test_volume_media_three_masters_documented_timing() -> None:
    t = topology(masters=3, coreapps=3, webapps=2, shards=2, media="volume",
                 timing="documented", test_break="promote-on-primary-miss")
    containers = plan(t, RUN, db_password=PW, db_root_password=ROOT_PW)
    p = {c.name: c for c in containers}
    assert "nfs" not in p
    assert [c.name for c in containers if c.stage == "infra"] == ["db", "toxiproxy", "gateway"]
    assert [c.name for c in containers if c.stage == "nodes"] == t.all_nodes
    assert image_names(containers) == ("base", "db", "toxiproxy", "node")
    assert media_volume(t, RUN) == f"{RUN}-media"
    for k in (1, 2):
        web = p[f"webapp-{k}"]
        assert web.environment["WA_MEDIA_PATH"] == MEDIA_MOUNT
        assert web.options["volumes"] == {f"{RUN}-media": {"bind": MEDIA_MOUNT, "mode": "rw"}}
    env = p["master-3"].environment
    assert env["WA_HEARTBEAT_INTERVAL"] == "5" and env["WA_UNHEALTHY_INTERVAL"] == "30"
    assert env["WA_DB_TIMEOUT"] == "2.0" and env["WA_MASTER_LEASE_TTL"] == "10.0"
    assert env["WA_TEST_BREAK"] == "promote-on-primary-miss"
    assert p["gateway"].environment["GATEWAY_PING_TIMEOUT"] == "10.0"
    assert media_volume(topology(), RUN) is None
