"""Database outage, seen by every node at once. Variants:

- ``links`` (default): every ``*->db`` link cut — connections refused/reset at once;
- ``blackhole``: every ``*->db`` link black-holed — queries hang until the nodes' timeouts;
- ``pause``: the database container paused — hangs for everyone, the harness's own direct
  reads included;
- ``stop``: ``docker stop`` / ``start`` of the database; refused when its data directory is a
  tmpfs (the cluster's default), since a stop would erase the database, not interrupt it.

The harness observes the database directly (not through toxiproxy), so with ``links`` and
``blackhole`` it can still watch the nodes' liveness rows stop advancing. Targets: ``["db"]``.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.nemesis.base import Fault, FaultContext, FaultSkipped
from harness.nemesis.common import add_toxics, container, remove_toxics, status
from harness.nemesis.draw import Draw
from harness.nemesis.registry import register

VARIANTS = ("links", "blackhole", "pause", "stop")


def outage_start(ctx: FaultContext, fault: Fault, node: str, variant: str,
                 data_dir: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    if node not in ctx.cluster.nodes:
        raise FaultSkipped(f"this cluster has no {node!r} container")
    fault.targets = [node]
    if variant in ("links", "blackhole"):
        links = [lk.name for lk in ctx.cluster.links.to(node)]
        fault.note(links=links)
        fault._links = links
        if variant == "links":
            ctx.disable_links(links)
        else:
            add_toxics(ctx, fault, links, "timeout", "both", {"timeout": 0})
        return
    c = container(ctx, node)
    ctx.claim("container", node)
    if variant == "pause":
        c.pause()
        return
    tmpfs = (c.attrs.get("HostConfig") or {}).get("Tmpfs") or {}
    if data_dir in tmpfs:
        raise FaultSkipped(f"stopping {node} would erase its data ({data_dir} is a tmpfs); "
                           "use variant links, blackhole or pause")
    c.stop(timeout=10)


def outage_heal(ctx: FaultContext, fault: Fault, node: str, variant: str) -> None:
    if variant == "links":
        ctx.enable_links(getattr(fault, "_links", []))
    elif variant == "blackhole":
        remove_toxics(ctx, fault)
    elif variant == "pause":
        c = container(ctx, node)
        if status(c) == "paused":
            c.unpause()
    elif variant == "stop":
        c = container(ctx, node)
        if status(c) != "running":
            c.start()
        ctx.refresh_ip(node)


@register
@dataclass
class DbOutage(Fault):
    variant: str = "links"

    kind = "db-outage"
    chaos = 140

    @classmethod
    def draw(cls, d: Draw) -> DbOutage:
        return cls(variant=d.rng.choice(("links", "blackhole", "pause")))

    def start(self, ctx: FaultContext) -> None:
        outage_start(ctx, self, "db", self.variant, "/var/lib/mysql")

    def heal(self, ctx: FaultContext) -> None:
        outage_heal(ctx, self, "db", self.variant)
