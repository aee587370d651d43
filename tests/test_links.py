"""The link table (harness.cluster.links): one toxiproxy proxy per connection, named ``src->dst``.

Model: for a topology, ``<node>->db`` for every node; ``master-i->coreapp-j`` (heartbeat
port); ``webapp-k->coreapp-j`` and ``webapp-k->master-i`` (internal port);
``coreapp-j->gateway``; ``webapp-k->nfs`` only with NFS media; ``client->webapp-k`` (API).
Each has its own listen port on the proxy and an upstream ``dst:port`` in the network.
The expected set is computed here independently from the topology, not from the code.
"""

from __future__ import annotations

import itertools

import pytest

from harness.cluster.links import PORTS, LinkTable, build_links
from harness.spec import Topology, topology

TOPOLOGIES = [
    topology(),
    topology(masters=3, coreapps=5, webapps=2, shards=4),
    topology(masters=1, coreapps=1, webapps=1, media="volume"),
    topology(masters=2, coreapps=3, webapps=3, media="volume"),
]


def expected_links(t: Topology) -> dict[str, tuple[str, str]]:
    """name → (upstream, kind), from the documented model."""
    m = [f"master-{i}" for i in range(1, t.masters + 1)]
    c = [f"coreapp-{i}" for i in range(1, t.coreapps + 1)]
    w = [f"webapp-{i}" for i in range(1, t.webapps + 1)]
    out: dict[str, tuple[str, str]] = {}
    for n in m + c + w:
        out[f"{n}->db"] = ("db:3306", "db")
    for a, b in itertools.product(m, c):
        out[f"{a}->{b}"] = (f"{b}:6253", "heartbeat")
    for a, b in itertools.product(w, c + m):
        out[f"{a}->{b}"] = (f"{b}:6250", "internal")
    for a in c:
        out[f"{a}->gateway"] = ("gateway:5222", "gateway")
    if t.media == "nfs":
        for a in w:
            out[f"{a}->nfs"] = ("nfs:2049", "nfs")
    for a in w:
        out[f"client->{a}"] = (f"{a}:9090", "api")
    return out


@pytest.mark.parametrize("t", TOPOLOGIES, ids=lambda t: f"{t.masters}m{t.coreapps}c"
                         f"{t.webapps}w{t.shards}s-{t.media}")
def test_every_expected_link_and_no_other(t: Topology) -> None:
    table = build_links(t)
    want = expected_links(t)
    assert table.names() == sorted(want)
    assert len(table) == len(want)
    for link in table:
        assert link.name == f"{link.src}->{link.dst}"
        assert (link.upstream, link.kind) == want[link.name], link


@pytest.mark.parametrize("t", TOPOLOGIES)
def test_listen_ports_are_unique_and_clear_of_the_components_own_ports(t: Topology) -> None:
    ports = [lk.listen_port for lk in build_links(t)]
    assert len(set(ports)) == len(ports)
    assert all(1024 < p < 65536 for p in ports)
    assert not set(ports) & set(PORTS.values()), "a proxy port shadows a service port"
    assert 8474 not in ports  # the toxiproxy API itself


def test_largest_topology_still_has_unique_ports() -> None:
    t = topology(masters=9, coreapps=40, webapps=9, shards=32)
    table = build_links(t)
    ports = [lk.listen_port for lk in table]
    assert len(table) == len(expected_links(t)) and len(set(ports)) == len(ports)
    assert max(ports) < 65536


def test_nfs_links_only_with_nfs_media() -> None:
    assert {lk.name for lk in build_links(topology(webapps=2)) if lk.dst == "nfs"} == {
        "webapp-1->nfs", "webapp-2->nfs"}
    assert not [lk for lk in build_links(topology(webapps=2, media="volume"))
                if lk.dst == "nfs" or lk.kind == "nfs"]


def test_no_link_into_the_database_or_gateway_from_the_client() -> None:
    """The harness observes db and gateway directly; the only client links are to webapps."""
    table = build_links(topology(webapps=2))
    assert sorted(lk.name for lk in table.from_("client")) == [
        "client->webapp-1", "client->webapp-2"]


# --------------------------------------------------------------------------- queries


@pytest.fixture
def table() -> LinkTable:
    return build_links(topology(masters=2, coreapps=3, webapps=2, shards=2))


def names(links) -> list[str]:
    return sorted(lk.name for lk in links)


def test_touching_is_every_link_into_or_out_of_a_node(table: LinkTable) -> None:
    assert names(table.touching("coreapp-2")) == sorted([
        "coreapp-2->db", "coreapp-2->gateway", "master-1->coreapp-2", "master-2->coreapp-2",
        "webapp-1->coreapp-2", "webapp-2->coreapp-2"])
    assert names(table.touching("webapp-1")) == sorted(
        ["client->webapp-1", "webapp-1->db", "webapp-1->nfs"]
        + [f"webapp-1->{n}" for n in ("coreapp-1", "coreapp-2", "coreapp-3",
                                      "master-1", "master-2")])
    assert table.touching("nobody") == []


def test_between_covers_both_directions(table: LinkTable) -> None:
    forward = names(table.between(["master-1"], ["coreapp-1", "coreapp-3"]))
    backward = names(table.between(["coreapp-1", "coreapp-3"], ["master-1"]))
    assert forward == backward == ["master-1->coreapp-1", "master-1->coreapp-3"]
    assert names(table.between(["webapp-1", "webapp-2"], ["master-2"])) == [
        "webapp-1->master-2", "webapp-2->master-2"]
    assert table.between(["coreapp-1"], ["coreapp-2"]) == []


def test_from_and_to(table: LinkTable) -> None:
    assert names(table.from_("master-2")) == [
        "master-2->coreapp-1", "master-2->coreapp-2", "master-2->coreapp-3", "master-2->db"]
    assert names(table.to("db")) == sorted(
        f"{n}->db" for n in ("master-1", "master-2", "coreapp-1", "coreapp-2", "coreapp-3",
                             "webapp-1", "webapp-2"))
    assert names(table.to("webapp-2")) == ["client->webapp-2"]
    assert names(table.to("gateway")) == [f"coreapp-{i}->gateway" for i in (1, 2, 3)]


def _routes(raw: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in raw.split(",")) if raw else {}


def test_routes_for_a_master_are_its_heartbeat_links(table: LinkTable) -> None:
    routes = _routes(table.routes_for("master-1", "toxiproxy"))
    assert routes == {f"coreapp-{i}/heartbeat":
                      f"toxiproxy:{table[f'master-1->coreapp-{i}'].listen_port}"
                      for i in (1, 2, 3)}


def test_routes_for_a_webapp_are_its_internal_links(table: LinkTable) -> None:
    routes = _routes(table.routes_for("webapp-2", "proxy.example"))
    want = {n: f"proxy.example:{table[f'webapp-2->{n}'].listen_port}"
            for n in ("coreapp-1", "coreapp-2", "coreapp-3", "master-1", "master-2")}
    assert routes == want
    assert "nfs" not in routes and "db" not in routes


def test_routes_for_a_coreapp_are_empty(table: LinkTable) -> None:
    """A coreapp reaches only db and gateway, which come through their own variables."""
    assert table.routes_for("coreapp-1", "toxiproxy") == ""


def test_routes_parse_with_the_nodes_own_parser(table: LinkTable) -> None:
    from multiconnect.config import parse_routes
    parsed = parse_routes(table.routes_for("master-2", "toxiproxy"))
    assert parsed["coreapp-3/heartbeat"] == (
        f"toxiproxy:{table['master-2->coreapp-3'].listen_port}")
    assert len(parsed) == 3


def test_to_dicts_lists_name_listen_and_upstream(table: LinkTable) -> None:
    rows = table.to_dicts("10.0.0.9")
    assert len(rows) == len(table)
    row = next(r for r in rows if r["name"] == "webapp-1->nfs")
    assert row == {"name": "webapp-1->nfs",
                   "listen": f"10.0.0.9:{table['webapp-1->nfs'].listen_port}",
                   "upstream": "nfs:2049"}


def test_unknown_link_is_a_key_error_listing_the_names(table: LinkTable) -> None:
    with pytest.raises(KeyError) as info:
        table["coreapp-1->nfs"]
    message = info.value.args[0]
    assert "'coreapp-1->nfs'" in message
    for name in table.names():
        assert name in message


def test_links_are_deterministic() -> None:
    a = [(lk.name, lk.listen_port) for lk in build_links(topology(coreapps=3))]
    b = [(lk.name, lk.listen_port) for lk in build_links(topology(coreapps=3))]
    assert a == b
