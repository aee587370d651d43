"""Bandwidth: limit links to ``rate`` KB/s (toxiproxy ``bandwidth`` toxic) on the given
stream(s). Small requests barely notice; media uploads and downloads slow down."""

from __future__ import annotations

from dataclasses import dataclass

from harness.nemesis.base import Fault, FaultContext, as_tuple
from harness.nemesis.common import add_toxics, remove_toxics
from harness.nemesis.draw import Draw
from harness.nemesis.registry import register


@register
@dataclass
class Bandwidth(Fault):
    link: str | tuple[str, ...]
    rate: int = 16
    stream: str = "both"

    kind = "bandwidth"
    chaos = 100

    @classmethod
    def draw(cls, d: Draw) -> Bandwidth:
        return cls(d.rng.choice(d.links), rate=d.rng.choice((1, 8, 64)))

    def start(self, ctx: FaultContext) -> None:
        if self.rate <= 0:
            raise ValueError("rate is KB/s > 0 (use Blackhole for zero)")
        links = ctx.resolve_link_specs(as_tuple(self.link))
        self.targets = links
        add_toxics(ctx, self, links, "bandwidth", self.stream, {"rate": int(self.rate)})

    def heal(self, ctx: FaultContext) -> None:
        remove_toxics(ctx, self)
