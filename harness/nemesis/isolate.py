"""Isolate: cut every link into or out of one node (database, gateway, NFS, its peers and,
for a webapp, the client's ingress). The node keeps running; it just hears nobody and nobody
hears it. Targets: the node; params ``links``: the links cut."""

from __future__ import annotations

from dataclasses import dataclass

from harness.nemesis.base import Fault, FaultContext, FaultSkipped
from harness.nemesis.draw import Draw
from harness.nemesis.registry import register


@register
@dataclass
class Isolate(Fault):
    target: str

    kind = "isolate"
    chaos = 50

    @classmethod
    def draw(cls, d: Draw) -> Isolate:
        return cls(d.rng.choice(d.nodes))

    def start(self, ctx: FaultContext) -> None:
        name = ctx.resolve(self.target)
        links = [lk.name for lk in ctx.cluster.links.touching(name)]
        if not links:
            raise FaultSkipped(f"{name} has no links to cut")
        self.targets = [name]
        self.note(links=links)
        self._links = links
        ctx.disable_links(links)

    def heal(self, ctx: FaultContext) -> None:
        ctx.enable_links(getattr(self, "_links", []))
