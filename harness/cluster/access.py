"""How the harness reaches a container's port on a run's ``--internal`` network.

Model. The harness itself dials a fixed set of endpoints, each a (container, port) of the
run (:func:`endpoints`): toxiproxy's API, the ``client->webapp-k`` links (the API workload),
the gateway's event log, the database (the observers), the NFS port (readiness) and each
master's and coreapp's status port (the claims poller).

- **Direct** — an engine on this machine: the host routes the run's bridge, so an endpoint
  is the container's own address (the default, as before engines elsewhere existed).
- **Through the access container** — an engine elsewhere (a ``tcp://`` or ``ssh://`` host
  that is not an address of this machine): the run's addresses are routed only on that host.
  The run gets one more container, ``access``: toxiproxy (its image is already there), on the
  run's network at a fixed address and on a second network ``<run>-access`` that is not
  internal, with one listen port per endpoint (:data:`FIRST_PORT` on) and its API published
  on the engine's host. The harness dials the engine's address at the published port.

Its proxies never get a toxic: faults stay in the run's own toxiproxy, which the webapp
endpoints pass through exactly as before. Only ``access`` has a route out; the nodes stay on
the internal network alone, so ``isolate`` and ``cut`` keep their meaning. The access
container is not a node of the cluster (no fault draws it); it carries the run's labels, so
teardown and the sweeper remove it and its network with the rest.

Differences a caller sees, both because a proxy accepts a connection before it dials its
upstream:

- "the port accepts" means less through it. :func:`holds_open` asks the question both ways
  answer alike: is a connection accepted *and kept*.
- a connect that the run's toxiproxy refuses (a cut ``client->webapp-k`` link) reaches the
  harness as a connection accepted and then closed. The workload cannot tell that such a
  request never arrived, so it records it as indeterminate (``info``), never as failed: the
  checkers stay sound (an indeterminate request may or may not have happened), the history
  is less sharp. Any TCP relay does the same (the engine's own published ports included).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import docker

from harness.cluster.links import PORTS, LinkTable
from harness.cluster.toxiproxy import Toxiproxy
from harness.spec import Topology
from harness.wait import wait_for

NAME = "access"
#: The access container's first listen port; endpoint i listens on FIRST_PORT + i (apart
#: from the run's toxiproxy's link ports, which start at 20000).
FIRST_PORT = 30000

Endpoint = tuple[str, int]  # (container short name, port on the run's network)


def endpoints(topology: Topology, links: LinkTable) -> tuple[Endpoint, ...]:
    """Every (container, port) the harness dials, in a fixed order (see the module
    docstring)."""
    out: list[Endpoint] = [("toxiproxy", PORTS["toxiproxy_api"]),
                           ("gateway", PORTS["gateway_log"]), ("db", PORTS["db"])]
    if topology.media == "nfs":
        out.append(("nfs", PORTS["nfs"]))
    out += [("toxiproxy", links[f"client->webapp-{k}"].listen_port)
            for k in range(1, topology.webapps + 1)]
    out += [(name, PORTS["internal"])
            for role in ("master", "coreapp") for name in topology.node_names(role)]
    return tuple(out)


def listen_ports(eps: tuple[Endpoint, ...]) -> dict[Endpoint, int]:
    """The access container's listen port of each endpoint."""
    return {ep: FIRST_PORT + i for i, ep in enumerate(eps)}


def http_url(host: str, port: int) -> str:
    """``http://host:port``, an IPv6 host in brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def proxy_name(ep: Endpoint) -> str:
    return f"{NAME}:{ep[0]}:{ep[1]}"


class NotPublished(LookupError):
    """The harness asked for an endpoint the access container does not forward."""


class Reach:
    """Where the harness dials an endpoint: ``direct`` maps a container name to its address
    on the run's network; otherwise ``host`` and ``published`` (endpoint → port on the
    engine's host) say where the access container answers for it."""

    def __init__(self, direct: Callable[[str], str] | None = None, host: str = "",
                 published: dict[Endpoint, int] | None = None) -> None:
        self._direct = direct
        self.host = host
        self.published = dict(published or {})

    @property
    def through_access(self) -> bool:
        return self._direct is None

    def __call__(self, name: str, port: int) -> tuple[str, int]:
        if self._direct is not None:
            return self._direct(name), port
        try:
            return self.host, self.published[(name, port)]
        except KeyError:
            raise NotPublished(
                f"{name}:{port} is not forwarded by the access container (it forwards "
                f"{', '.join(f'{n}:{p}' for n, p in self.published) or 'nothing yet'}); "
                "on an engine elsewhere the harness reaches only those endpoints "
                "(harness.cluster.access.endpoints)") from None


def holds_open(host: str, port: int, hold: float = 0.3, timeout: float = 1.0) -> bool:
    """True when a connection to ``host:port`` is accepted and still open after ``hold`` s
    without data: a listening server that waits for its client (NFS, a database before its
    greeting is read). Refused, reset or closed at once — a proxy whose upstream is down —
    is False."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(hold)
            try:
                return s.recv(1, socket.MSG_PEEK) != b""
            except TimeoutError:
                return True
    except OSError:
        return False


def start(client: docker.DockerClient, *, run_id: str, image: str, network: Any,
          address: str, hosts: dict[str, str], labels: Callable[[str], dict[str, str]],
          targets: dict[Endpoint, str], engine_host: str, timeout: float,
          options: dict[str, Any]) -> Reach:
    """Create the access network and container, wait for its API, give it one proxy per
    endpoint (``targets``: endpoint → the container's address), and return the Reach of the
    published ports."""
    ports = listen_ports(tuple(targets))
    outside = client.networks.create(f"{run_id}-{NAME}", driver="bridge", internal=False,
                                     labels=labels(f"{NAME}-network"), check_duplicate=True)
    api_port = PORTS["toxiproxy_api"]
    published = {f"{p}/tcp": None for p in [api_port, *ports.values()]}
    container = client.containers.create(
        image, name=f"{run_id}-{NAME}", hostname=NAME, detach=True, labels=labels(NAME),
        network=outside.name, ports=published, extra_hosts=hosts, **options)
    network.connect(container, ipv4_address=address, aliases=[NAME])
    container.start()
    container.reload()
    bound = container.attrs["NetworkSettings"]["Ports"]

    def host_port(port: int) -> int:
        return int(bound[f"{port}/tcp"][0]["HostPort"])

    api = Toxiproxy(http_url(engine_host, host_port(api_port)))
    wait_for(api.version, timeout=timeout, what=f"the access container's API at {api.url}")
    api.populate([{"name": proxy_name(ep), "listen": f"0.0.0.0:{port}",
                   "upstream": f"{targets[ep]}:{ep[1]}", "enabled": True}
                  for ep, port in ports.items()])
    return Reach(host=engine_host, published={ep: host_port(p) for ep, p in ports.items()})
