"""Bridge (Jepsen's ``bridge``): two halves that cannot talk to each other, and one node in
the middle that still talks to both. Every link between the halves is cut; the bridge node's
links are untouched. Infrastructure stays reachable from everywhere (as in Split).

Halves: ``a``/``b`` as selectors, else the other nodes split as in :func:`split.halves`.
Targets: the bridge node; params record the halves and the links cut.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.nemesis.base import Fault, FaultContext, FaultSkipped
from harness.nemesis.draw import Draw
from harness.nemesis.registry import register
from harness.nemesis.split import cut_between, halves


@register
@dataclass
class Bridge(Fault):
    bridge: str = "primary-master"
    a: tuple[str, ...] = ()
    b: tuple[str, ...] = ()
    seed: int | None = None

    kind = "bridge"
    chaos = 130

    @classmethod
    def draw(cls, d: Draw) -> Bridge:
        return cls(bridge=d.rng.choice(("primary-master", "primary-coreapp:0")), seed=d.seed())

    def start(self, ctx: FaultContext) -> None:
        mid = ctx.resolve(self.bridge)
        others = [n for n in ctx.node_names() if n != mid]
        if self.a:
            a = [n for n in ctx.resolve_all(self.a) if n != mid]
            b = ([n for n in ctx.resolve_all(self.b) if n != mid] if self.b
                 else [n for n in others if n not in a])
        else:
            a, b = halves(others, self.seed)
        if set(a) & set(b):
            raise FaultSkipped(f"halves overlap: {sorted(set(a) & set(b))}")
        self.targets = [mid]
        cut_between(ctx, self, a, b)
        self.note(bridge=mid)

    def heal(self, ctx: FaultContext) -> None:
        ctx.enable_links(getattr(self, "_links", []))
