"""Kill: SIGKILL a node's container (``docker kill``); heal starts it again.

The node restarts from scratch (same container, same environment) and must rejoin as a
secondary. Target: one selector, resolved at fault time (``"primary-coreapp:0"``).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.nemesis.base import Fault, FaultContext
from harness.nemesis.common import container, ensure_running, take_node
from harness.nemesis.draw import Draw
from harness.nemesis.registry import register


@register
@dataclass
class Kill(Fault):
    target: str
    signal: str = "SIGKILL"

    kind = "kill"
    chaos = 10

    @classmethod
    def draw(cls, d: Draw) -> Kill:
        return cls(d.rng.choice(d.nodes))

    def start(self, ctx: FaultContext) -> None:
        name = take_node(ctx, self, self.target)
        container(ctx, name).kill(signal=self.signal)

    def heal(self, ctx: FaultContext) -> None:
        ensure_running(ctx, self)
