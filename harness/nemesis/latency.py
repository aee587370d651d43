"""Latency: delay data on links by ``latency`` ms ± ``jitter`` ms (toxiproxy ``latency``
toxic). With the default ``stream="downstream"`` the delay is added once per response (server
→ client); ``"both"`` adds it to requests too (about twice the delay per round trip)."""

from __future__ import annotations

from dataclasses import dataclass

from harness.nemesis.base import Fault, FaultContext, as_tuple
from harness.nemesis.common import add_toxics, remove_toxics
from harness.nemesis.draw import Draw
from harness.nemesis.registry import register


@register
@dataclass
class Latency(Fault):
    link: str | tuple[str, ...]
    latency: int = 500
    jitter: int = 0
    stream: str = "downstream"

    kind = "latency"
    chaos = 90

    @classmethod
    def draw(cls, d: Draw) -> Latency:
        return cls(d.rng.choice(d.links), latency=d.rng.choice((50, 200, 500, 1000, 3000)),
                   jitter=d.rng.choice((0, 20, 100)), stream=d.rng.choice(("downstream", "both")))

    def start(self, ctx: FaultContext) -> None:
        if self.latency < 0 or self.jitter < 0:
            raise ValueError("latency and jitter are milliseconds >= 0")
        links = ctx.resolve_link_specs(as_tuple(self.link))
        self.targets = links
        add_toxics(ctx, self, links, "latency", self.stream,
                   {"latency": int(self.latency), "jitter": int(self.jitter)})

    def heal(self, ctx: FaultContext) -> None:
        remove_toxics(ctx, self)
