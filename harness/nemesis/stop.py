"""Stop: graceful ``docker stop`` (SIGTERM through the container's init, SIGKILL after
``grace`` seconds); heal starts the container again."""

from __future__ import annotations

from dataclasses import dataclass

from harness.nemesis.base import Fault, FaultContext
from harness.nemesis.common import container, ensure_running, take_node
from harness.nemesis.draw import Draw
from harness.nemesis.registry import register


@register
@dataclass
class Stop(Fault):
    target: str
    grace: int = 10

    kind = "stop"
    chaos = 20

    @classmethod
    def draw(cls, d: Draw) -> Stop:
        return cls(d.rng.choice(d.nodes), grace=d.rng.choice((1, 5, 10)))

    def start(self, ctx: FaultContext) -> None:
        name = take_node(ctx, self, self.target)
        container(ctx, name).stop(timeout=self.grace)

    def heal(self, ctx: FaultContext) -> None:
        ensure_running(ctx, self)
