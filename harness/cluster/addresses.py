"""Fixed addresses on a run's network, so that no name lookup is on the cluster's data path.

Docker's embedded DNS server (``127.0.0.11`` in every container) runs inside dockerd. While
the engine is busy — starting or removing a container takes its network locks, longer on a
long-running engine — lookups wait, and before this plan every new connection waited with
them: toxiproxy resolves its upstream on every dial (each webapp forward is a new
connection) and the nodes resolve ``toxiproxy`` on every database reconnect. Freezing
dockerd for 2 s stopped every shard for 2.3 s (docs/engine-stalls.md). So:

- the run's network gets a subnet pinned by the harness (the one the engine itself picks
  for a new network, so its address pools and host-route checks still apply);
- every container of the cluster gets a fixed address in the lower half of it, known
  before anything starts and kept across a restart; the engine places any other container
  (one that a test starts beside the cluster) in the upper half;
- every container gets every name in its ``/etc/hosts`` (``extra_hosts``): names resolve
  from the file, the engine is never asked.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
import docker.types


@dataclass(frozen=True)
class AddressPlan:
    subnet: str                 # e.g. "192.168.240.0/20"
    gateway: str                # the bridge's own address on the host
    addresses: dict[str, str]   # container short name -> fixed IPv4 address

    @property
    def dynamic_range(self) -> str:
        """The upper half of the subnet: where the engine places containers without a
        fixed address."""
        return str(list(ipaddress.ip_network(self.subnet).subnets(prefixlen_diff=1))[1])

    def hosts(self) -> dict[str, str]:
        """``extra_hosts`` for every container: each name and its address."""
        return dict(self.addresses)


def plan(subnet: str, gateway: str, names: Sequence[str]) -> AddressPlan:
    """Give ``names`` consecutive addresses after the gateway, in the lower half."""
    net = ipaddress.ip_network(subnet)
    lower = list(net.subnets(prefixlen_diff=1))[0]
    first = int(ipaddress.ip_address(gateway)) + 1
    last = int(lower.broadcast_address) - 1
    if first + len(names) - 1 > last:
        raise ValueError(f"subnet {subnet} is too small for {len(names)} fixed addresses")
    return AddressPlan(subnet, gateway, {
        name: str(ipaddress.ip_address(first + i)) for i, name in enumerate(names)})


def create_network(client: docker.DockerClient, name: str, labels: dict[str, str],
                   names: Sequence[str], attempts: int = 5,
                   progress: Callable[[str], None] | None = None) -> tuple[Any, AddressPlan]:
    """Create the run's ``--internal`` bridge with a pinned subnet and plan its addresses.

    The engine picks a free subnet for a first, empty network; that one is removed and the
    network created again with the subnet pinned. Another run may take the subnet in
    between ("overlaps"): then the engine is asked again."""
    for attempt in range(1, attempts + 1):
        probe = client.networks.create(name, driver="bridge", internal=True, labels=labels,
                                       check_duplicate=True)
        try:
            probe.reload()
            cfg = probe.attrs["IPAM"]["Config"][0]
            subnet, gateway = cfg["Subnet"], cfg["Gateway"]
        finally:
            probe.remove()
        addresses = plan(subnet, gateway, names)
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(
            subnet=subnet, gateway=gateway, iprange=addresses.dynamic_range)])
        try:
            network = client.networks.create(name, driver="bridge", internal=True,
                                             labels=labels, ipam=ipam, check_duplicate=True)
        except docker.errors.APIError as e:
            if "overlap" not in str(e) or attempt == attempts:
                raise
            if progress:
                progress(f"[cluster] subnet {subnet} was taken meanwhile ({e}); asking again")
            time.sleep(0.1 * attempt)
            continue
        return network, addresses
    raise AssertionError("unreachable")
