"""One-way partition of request/response links.

What "one-way" means here. Every link is a TCP connection that ``src`` opens to ``dst``
through toxiproxy, which terminates TCP on both sides: handshakes, ACKs and window updates
are exchanged between each endpoint and the proxy, so no TCP-level direction can be cut. What
can be cut is the *application data* in one direction, with a ``timeout`` toxic
(``timeout: 0``, connections stay open) on one toxiproxy stream:

- ``drop="upstream"`` (src → dst data lost): requests never arrive; ``dst`` sees a silent
  peer, ``src`` sees its requests time out. Nothing the request asked for happens.
- ``drop="downstream"`` (dst → src data lost): requests arrive and are *acted on* (a message
  is delivered, a heartbeat is counted by the coreapp), but ``src`` never sees the answer and
  times out. This is the asymmetric case that distinguishes "I cannot hear you" from "you
  cannot hear me", e.g. a master whose heartbeats reach a coreapp but whose replies are lost.

Connections stay established either way; neither side sees a reset.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.nemesis.base import Fault, FaultContext, as_tuple
from harness.nemesis.common import add_toxics, remove_toxics
from harness.nemesis.draw import Draw
from harness.nemesis.registry import register


@register
@dataclass
class Oneway(Fault):
    link: str | tuple[str, ...]
    drop: str = "downstream"

    kind = "oneway"
    chaos = 110

    @classmethod
    def draw(cls, d: Draw) -> Oneway:
        return cls(d.rng.choice(d.links), drop=d.rng.choice(("upstream", "downstream")))

    def start(self, ctx: FaultContext) -> None:
        if self.drop not in ("upstream", "downstream"):
            raise ValueError(f"drop must be upstream or downstream, got {self.drop!r}")
        links = ctx.resolve_link_specs(as_tuple(self.link))
        self.targets = links
        add_toxics(ctx, self, links, "timeout", self.drop, {"timeout": 0})

    def heal(self, ctx: FaultContext) -> None:
        remove_toxics(ctx, self)
