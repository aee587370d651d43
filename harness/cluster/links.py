"""The link table: every connection between components goes through a toxiproxy proxy named
``src->dst``, so any link can be cut, slowed or black-holed by name.

Links (for a topology): ``<node>->db`` for every node; ``master-i->coreapp-j`` (heartbeats);
``webapp-k->coreapp-j`` and ``webapp-k->master-i`` (routing, health, master-only commands);
``coreapp-j->gateway``; ``webapp-k->nfs`` (the webapps serve media); and ``client->webapp-k``
(the harness's own API traffic, so the webapp's ingress can be cut too). The harness observes
the database and the gateway directly, never through a proxy.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from harness.spec import Topology

FIRST_PORT = 20000
PORTS = {"db": 3306, "nfs": 2049, "gateway": 5222, "internal": 6250, "heartbeat": 6253,
         "api": 9090, "toxiproxy_api": 8474, "gateway_log": 8080}


@dataclass(frozen=True)
class Link:
    src: str
    dst: str
    listen_port: int
    upstream: str      # host:port inside the cluster network
    kind: str          # db | heartbeat | internal | gateway | nfs | api

    @property
    def name(self) -> str:
        return f"{self.src}->{self.dst}"


class LinkTable:
    def __init__(self, links: Iterable[Link]) -> None:
        self._links = {link.name: link for link in links}

    def __iter__(self) -> Iterator[Link]:
        return iter(self._links.values())

    def __len__(self) -> int:
        return len(self._links)

    def __getitem__(self, name: str) -> Link:
        try:
            return self._links[name]
        except KeyError:
            raise KeyError(f"no link named {name!r}; links: {', '.join(sorted(self._links))}") \
                from None

    def names(self) -> list[str]:
        return sorted(self._links)

    def touching(self, node: str) -> list[Link]:
        """Every link into or out of ``node``."""
        return [lk for lk in self if node in (lk.src, lk.dst)]

    def between(self, a: Iterable[str], b: Iterable[str]) -> list[Link]:
        """Links from a group to another, in both directions."""
        sa, sb = set(a), set(b)
        return [lk for lk in self if (lk.src in sa and lk.dst in sb)
                or (lk.src in sb and lk.dst in sa)]

    def from_(self, src: str) -> list[Link]:
        return [lk for lk in self if lk.src == src]

    def to(self, dst: str) -> list[Link]:
        return [lk for lk in self if lk.dst == dst]

    def routes_for(self, node: str, proxy_host: str) -> str:
        """``WA_ROUTES`` for a node: its peers reached through the proxy."""
        items = []
        for lk in self.from_(node):
            if lk.kind == "heartbeat":
                items.append(f"{lk.dst}/heartbeat={proxy_host}:{lk.listen_port}")
            elif lk.kind == "internal":
                items.append(f"{lk.dst}={proxy_host}:{lk.listen_port}")
        return ",".join(items)

    def to_dicts(self, proxy_host: str) -> list[dict[str, str]]:
        return [{"name": lk.name, "listen": f"{proxy_host}:{lk.listen_port}",
                 "upstream": lk.upstream} for lk in self]


def build_links(t: Topology) -> LinkTable:
    masters, coreapps, webapps = (t.node_names(r) for r in ("master", "coreapp", "webapp"))
    port = FIRST_PORT
    links: list[Link] = []

    def add(src: str, dst: str, upstream_port: int, kind: str) -> None:
        nonlocal port
        links.append(Link(src, dst, port, f"{dst}:{upstream_port}", kind))
        port += 1

    for n in masters + coreapps + webapps:
        add(n, "db", PORTS["db"], "db")
    for m in masters:
        for c in coreapps:
            add(m, c, PORTS["heartbeat"], "heartbeat")
    for w in webapps:
        for n in coreapps + masters:
            add(w, n, PORTS["internal"], "internal")
    for c in coreapps:
        add(c, "gateway", PORTS["gateway"], "gateway")
    if t.media == "nfs":
        for w in webapps:
            add(w, "nfs", PORTS["nfs"], "nfs")
    for w in webapps:
        add("client", w, PORTS["api"], "api")
    return LinkTable(links)
