"""Restart: ``docker restart`` (graceful stop with ``grace`` seconds, then start) at fault
start; the window lasts until heal, which only makes sure the container runs again. The node
comes back with a fresh process and must rejoin as a secondary."""

from __future__ import annotations

from dataclasses import dataclass

from harness.nemesis.base import Fault, FaultContext
from harness.nemesis.common import container, ensure_running, take_node
from harness.nemesis.draw import Draw
from harness.nemesis.registry import register


@register
@dataclass
class Restart(Fault):
    target: str
    grace: int = 10

    kind = "restart"
    chaos = 40

    @classmethod
    def draw(cls, d: Draw) -> Restart:
        return cls(d.rng.choice(d.nodes), grace=d.rng.choice((1, 5, 10)))

    def start(self, ctx: FaultContext) -> None:
        name = take_node(ctx, self, self.target)
        container(ctx, name).restart(timeout=self.grace)
        ctx.refresh_ip(name)

    def heal(self, ctx: FaultContext) -> None:
        ensure_running(ctx, self)
