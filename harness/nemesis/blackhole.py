"""Black hole: connections stay open (and new ones are accepted by the proxy) but no data
gets through — a ``timeout`` toxic with ``timeout: 0`` on both streams, or one of them. Peers
see hangs until their own timeouts fire (a DROP firewall rule, a dead switch).

Data sent while the toxic is in place is dropped; heal removes the toxic and later data
flows again on the same connections.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.nemesis import Fault, FaultContext, as_tuple, register
from harness.nemesis.common import add_toxics, remove_toxics


@register
@dataclass
class Blackhole(Fault):
    link: str | tuple[str, ...]
    stream: str = "both"

    kind = "blackhole"

    def start(self, ctx: FaultContext) -> None:
        links = ctx.resolve_link_specs(as_tuple(self.link))
        self.targets = links
        add_toxics(ctx, self, links, "timeout", self.stream, {"timeout": 0})

    def heal(self, ctx: FaultContext) -> None:
        remove_toxics(ctx, self)
