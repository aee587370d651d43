"""Cut: disable links' proxies. New connections are refused and open ones are closed, so
both ends see errors at once (a clean partition, as a crashed peer or a firewall REJECT).

``link`` is one link spec or several (``"client->webapp-1"``, ``"primary-coreapp:0->db"``,
``"*->db"``, ``"master-1<->coreapp-2"``), resolved at fault time. Targets are the link names.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.nemesis.base import Fault, FaultContext, as_tuple
from harness.nemesis.draw import Draw
from harness.nemesis.registry import register


@register
@dataclass
class Cut(Fault):
    link: str | tuple[str, ...]

    kind = "cut"
    chaos = 70

    @classmethod
    def draw(cls, d: Draw) -> Cut:
        return cls(d.rng.choice(d.links))

    def start(self, ctx: FaultContext) -> None:
        links = ctx.resolve_link_specs(as_tuple(self.link))
        self.targets = links
        ctx.disable_links(links)

    def heal(self, ctx: FaultContext) -> None:
        ctx.enable_links(self.targets)
