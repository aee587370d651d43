"""harness.cluster.access: which endpoints the harness dials, where it dials them (directly
or through the access container's published ports), and what "the port holds a connection"
means both ways. Pure logic and loopback sockets; the access container itself is exercised
against an engine in its own network namespace (tests/test_engines_integration.py)."""

from __future__ import annotations

import socket

import pytest

from harness.cluster.access import (
    FIRST_PORT,
    NotPublished,
    Reach,
    endpoints,
    holds_open,
    http_url,
    listen_ports,
)
from harness.cluster.links import PORTS, build_links
from harness.spec import Topology
from tests.loopback import listening


def test_the_endpoints_are_what_the_harness_dials_and_nothing_else() -> None:
    t = Topology(masters=2, coreapps=3, webapps=2, shards=2)
    links = build_links(t)
    assert endpoints(t, links) == (
        ("toxiproxy", PORTS["toxiproxy_api"]), ("gateway", PORTS["gateway_log"]),
        ("db", PORTS["db"]), ("nfs", PORTS["nfs"]),
        ("toxiproxy", links["client->webapp-1"].listen_port),
        ("toxiproxy", links["client->webapp-2"].listen_port),
        ("master-1", PORTS["internal"]), ("master-2", PORTS["internal"]),
        ("coreapp-1", PORTS["internal"]), ("coreapp-2", PORTS["internal"]),
        ("coreapp-3", PORTS["internal"]))


def test_without_nfs_media_the_nfs_port_is_not_an_endpoint() -> None:
    t = Topology(media="volume")
    assert ("nfs", PORTS["nfs"]) not in endpoints(t, build_links(t))


def test_each_endpoint_gets_its_own_listen_port() -> None:
    t = Topology(masters=3, coreapps=4, webapps=3)
    eps = endpoints(t, build_links(t))
    ports = listen_ports(eps)
    assert list(ports) == list(eps)
    assert sorted(ports.values()) == list(range(FIRST_PORT, FIRST_PORT + len(eps)))


def test_direct_reach_is_the_container_address_and_the_same_port() -> None:
    reach = Reach(direct={"db": "10.1.0.3"}.__getitem__)
    assert not reach.through_access
    assert reach("db", 3306) == ("10.1.0.3", 3306)


def test_through_access_reach_is_the_engine_host_and_the_published_port() -> None:
    reach = Reach(host="build-3", published={("db", 3306): 49153, ("gateway", 8080): 49154})
    assert reach.through_access
    assert reach("db", 3306) == ("build-3", 49153)
    assert reach("gateway", 8080) == ("build-3", 49154)


def test_an_endpoint_the_access_container_does_not_forward_is_named_in_the_error() -> None:
    reach = Reach(host="build-3", published={("db", 3306): 49153})
    with pytest.raises(NotPublished) as e:
        reach("coreapp-9", 6250)
    assert "coreapp-9:6250 is not forwarded" in str(e.value)
    assert "db:3306" in str(e.value)


def test_a_server_that_keeps_the_connection_holds_open() -> None:
    with listening("hang") as (port, _):
        assert holds_open("127.0.0.1", port, hold=0.2)


def test_a_proxy_whose_upstream_is_down_does_not_hold_open() -> None:
    with listening("close") as (port, _):
        assert not holds_open("127.0.0.1", port, hold=0.5)


def test_a_port_nobody_listens_on_does_not_hold_open() -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    assert not holds_open("127.0.0.1", port, hold=0.2)


def test_an_ipv6_host_is_bracketed_in_a_url() -> None:
    assert http_url("::1", 8080) == "http://[::1]:8080"
    assert http_url("build-3", 8080) == "http://build-3:8080"
