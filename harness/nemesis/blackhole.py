"""Black hole: no data crosses the links while the fault holds — a toxiproxy ``timeout``
toxic with ``timeout: 0`` on both streams, or on one (``stream``). Connections stay open and
new ones are accepted by the proxy, but what is sent is dropped: peers see hangs until their
own timeouts fire (a DROP firewall rule, a dead switch). A close still passes the toxic, so
the other end does learn that a connection ended.

Heal removes the toxic, and toxiproxy (>= 2.1) then closes every connection that went
through it, those opened while it held included: data does not flow again on the old
connections; their peers see them end and connect again (new connections pass).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.nemesis.base import Fault, FaultContext, as_tuple
from harness.nemesis.common import add_toxics, remove_toxics
from harness.nemesis.draw import Draw
from harness.nemesis.registry import register


@register
@dataclass
class Blackhole(Fault):
    link: str | tuple[str, ...]
    stream: str = "both"

    kind = "blackhole"
    chaos = 80

    @classmethod
    def draw(cls, d: Draw) -> Blackhole:
        return cls(d.rng.choice(d.links),
                   stream=d.rng.choice(("both", "upstream", "downstream")))

    def start(self, ctx: FaultContext) -> None:
        links = ctx.resolve_link_specs(as_tuple(self.link))
        self.targets = links
        add_toxics(ctx, self, links, "timeout", self.stream, {"timeout": 0})

    def heal(self, ctx: FaultContext) -> None:
        remove_toxics(ctx, self)
