"""Assembly of one simulated cluster (its configuration: :mod:`.simconfig`).

Endpoints: ``master-N``, ``coreapp-N``, ``webapp-N``, ``db``, ``gateway``. Links (who opens
connections to whom, as in the harness): ``*->db``, ``master-i->coreapp-j`` (heartbeats),
``coreapp-j->gateway``, ``webapp-k->coreapp-j``. Clock drift per node is drawn uniformly
from ``±drift`` (fencing.md A1 when ≤ 1 %).
"""

from __future__ import annotations

from ..settings import Settings
from .coreapp import CoreappProc
from .db import SimDatabase
from .gateway import SimGateway
from .invariants import Checker
from .master import MasterProc
from .net import Link, Net
from .nodes import DbServer, SimHost
from .simconfig import SimConfig
from .webapp import WebappProc
from .world import World

# the node modules see a cluster only as protocols.ClusterView


class Cluster:
    """The world with every endpoint, link, the database model and the checker."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg
        t = cfg.timing
        self.world = w = World(cfg.seed)
        self.net = net = Net(w, cfg.net)
        self.db = SimDatabase(w, cfg.shards, Settings(t.heartbeat_interval,
                                                      t.unhealthy_interval), t.stale_after)
        self.db_server = DbServer(w, net, self.db)
        self.gateway = SimGateway(w, net, t.gateway_ping_timeout)
        self.check = Checker(self)
        self.db.on_promote = self.check.on_promote
        self.gateway.on_conflict = self.check.on_conflict
        self.gateway.on_deliver = self.check.on_deliver
        self.gateway.on_connect = self._on_gateway_connect
        rng = w.rng
        self.hosts: dict[str, SimHost] = {}
        self.masters: list[SimHost] = []
        self.coreapps: list[SimHost] = []
        self.webapps: list[SimHost] = []
        for role, count, group, factory in (
                ("master", cfg.masters, self.masters, MasterProc),
                ("coreapp", cfg.coreapps, self.coreapps, CoreappProc),
                ("webapp", cfg.webapps, self.webapps, WebappProc)):
            for i in range(1, count + 1):
                drift = cfg.drift * (2.0 * rng.random() - 1.0)
                host = SimHost(w, net, f"{role}-{i}", role, drift,
                               lambda h, f=factory: f(h, self))
                self.hosts[host.name] = host
                group.append(host)
        self.gw_links: dict[str, Link] = {}
        for h in self.hosts.values():
            net.add_link(h.name, "db")
        for c in self.coreapps:
            self.gw_links[c.name] = net.add_link(c.name, "gateway", extra_cap=cfg.a3_cap)
            for m in self.masters:
                net.add_link(m.name, c.name)
            for wa in self.webapps:
                net.add_link(wa.name, c.name)
        for wa in self.webapps:  # the operator's settings changes go through a webapp
            for m in self.masters:
                net.add_link(wa.name, m.name)
        self.sending = True
        self._msg = 0
        self.watchers: list = []

    def patch_settings(self, body: dict) -> None:
        """An operator's ``PATCH /v1/settings/application`` through the first webapp."""
        host = self.webapps[0]
        if host.alive and host.proc is not None:
            host.proc.request_settings(body)

    def new_message_id(self) -> str:
        self._msg += 1
        return f"m{self._msg}"

    def boot_all(self) -> None:
        """Start every node within the first second, in a seeded order."""
        w = self.world
        for host in self.hosts.values():
            w.at(w.rng.random(), _boot, host)

    def promoted(self, shard: int, old: str | None, new: str) -> None:
        for watcher in self.watchers:
            watcher.on_promoted(shard, old, new)

    def _on_gateway_connect(self, c) -> None:
        for watcher in self.watchers:
            watcher.on_connected(c)

    def gateway_clear(self, coreapp: str) -> bool:
        """No fault on ``coreapp``'s way to the gateway now (link or paused gateway): an
        answer on it is sure to come unless one starts (``world.REPLY``)."""
        return not (self.gw_links[coreapp].faulty or self.gateway.paused)

    def owner_proc(self, shard: int):
        owner = self.db.owner(shard)
        host = self.hosts.get(owner) if owner else None
        return host.proc if host is not None and host.alive else None


def _boot(host: SimHost) -> None:
    host.boot()
