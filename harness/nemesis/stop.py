"""Stop: graceful ``docker stop`` (SIGTERM through the container's init, SIGKILL after
``grace`` seconds); heal starts the container again."""

from __future__ import annotations

from dataclasses import dataclass

from harness.nemesis import Fault, FaultContext, register
from harness.nemesis.common import container, refuse_stateful, status


@register
@dataclass
class Stop(Fault):
    target: str
    grace: int = 10

    kind = "stop"

    def start(self, ctx: FaultContext) -> None:
        name = ctx.resolve(self.target)
        refuse_stateful(self.kind, name)
        ctx.claim("container", name)
        self.targets = [name]
        container(ctx, name).stop(timeout=self.grace)

    def heal(self, ctx: FaultContext) -> None:
        for name in self.targets:
            c = container(ctx, name)
            if status(c) != "running":
                c.start()
            ctx.refresh_ip(name)
