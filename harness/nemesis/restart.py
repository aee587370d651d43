"""Restart: ``docker restart`` (graceful stop with ``grace`` seconds, then start) at fault
start; the window lasts until heal, which only makes sure the container runs again. The node
comes back with a fresh process and must rejoin as a secondary."""

from __future__ import annotations

from dataclasses import dataclass

from harness.nemesis import Fault, FaultContext, register
from harness.nemesis.common import container, refuse_stateful, status


@register
@dataclass
class Restart(Fault):
    target: str
    grace: int = 10

    kind = "restart"

    def start(self, ctx: FaultContext) -> None:
        name = ctx.resolve(self.target)
        refuse_stateful(self.kind, name)
        ctx.claim("container", name)
        self.targets = [name]
        container(ctx, name).restart(timeout=self.grace)
        ctx.refresh_ip(name)

    def heal(self, ctx: FaultContext) -> None:
        for name in self.targets:
            c = container(ctx, name)
            if status(c) != "running":
                c.start()
            ctx.refresh_ip(name)
