"""Pause: freeze every process of a container (``docker pause``, cgroup freezer); heal
unpauses. The kernel still completes TCP handshakes for a paused container, but nothing
answers: peers see hangs, not refusals. Allowed on ``db``, ``nfs`` and ``gateway`` too."""

from __future__ import annotations

from dataclasses import dataclass

from harness.nemesis.base import Fault, FaultContext, FaultSkipped
from harness.nemesis.common import container, status
from harness.nemesis.draw import Draw
from harness.nemesis.registry import register


@register
@dataclass
class Pause(Fault):
    target: str

    kind = "pause"
    chaos = 30

    @classmethod
    def draw(cls, d: Draw) -> Pause:
        return cls(d.rng.choice(d.nodes + ["db", "gateway"]))

    def start(self, ctx: FaultContext) -> None:
        name = ctx.resolve(self.target)
        if name in ("toxiproxy", "client"):
            raise FaultSkipped(f"pause of {name!r} is not supported (it carries every link)")
        ctx.claim("container", name)
        self.targets = [name]
        container(ctx, name).pause()

    def heal(self, ctx: FaultContext) -> None:
        for name in self.targets:
            c = container(ctx, name)
            if status(c) == "paused":
                c.unpause()
