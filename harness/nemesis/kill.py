"""Kill: SIGKILL a node's container (``docker kill``); heal starts it again.

The node restarts from scratch (same container, same environment) and must rejoin as a
secondary. Target: one selector, resolved at fault time (``"primary-coreapp:0"``).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.nemesis import Fault, FaultContext, register
from harness.nemesis.common import container, refuse_stateful, status


@register
@dataclass
class Kill(Fault):
    target: str
    signal: str = "SIGKILL"

    kind = "kill"

    def start(self, ctx: FaultContext) -> None:
        name = ctx.resolve(self.target)
        refuse_stateful(self.kind, name)
        ctx.claim("container", name)
        self.targets = [name]
        container(ctx, name).kill(signal=self.signal)

    def heal(self, ctx: FaultContext) -> None:
        for name in self.targets:
            c = container(ctx, name)
            if status(c) != "running":
                c.start()
            ctx.refresh_ip(name)
