"""Split: partition the cluster's nodes (masters, coreapps, webapps) into two halves and cut
every link between them. Infrastructure (database, gateway, NFS, the client) stays reachable
from both halves; use Isolate / DbOutage / NfsOutage for those.

Halves: ``a`` as selectors (``b`` = every other node unless given); with no ``a``, the nodes
in spec order are shuffled by ``random.Random(seed)`` (no seed: taken alternately) and ``a``
is the first ⌈n/2⌉. Targets: the nodes of ``a``; params record both halves and the links.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from harness.nemesis.base import Fault, FaultContext, FaultSkipped
from harness.nemesis.draw import Draw
from harness.nemesis.registry import register


def halves(nodes: Sequence[str], seed: int | None) -> tuple[list[str], list[str]]:
    """Split ``nodes`` in two: shuffled by ``seed``, or alternately without one."""
    order = list(nodes)
    if seed is None:
        a = order[0::2]
    else:
        random.Random(seed).shuffle(order)
        a = order[: (len(order) + 1) // 2]
    return a, [n for n in nodes if n not in a]


def cut_between(ctx: FaultContext, fault: Fault, a: list[str], b: list[str]) -> list[str]:
    links = [lk.name for lk in ctx.cluster.links.between(a, b)]
    if not links:
        raise FaultSkipped(f"no links between {a} and {b}")
    fault.note(a=a, b=b, links=links)
    fault._links = links
    ctx.disable_links(links)
    return links


@register
@dataclass
class Split(Fault):
    a: tuple[str, ...] = ()
    b: tuple[str, ...] = ()
    seed: int | None = None

    kind = "split"
    chaos = 120

    @classmethod
    def draw(cls, d: Draw) -> Split:
        return cls(seed=d.seed())

    def start(self, ctx: FaultContext) -> None:
        nodes = ctx.node_names()
        if self.a:
            a = ctx.resolve_all(self.a)
            b = ctx.resolve_all(self.b) if self.b else [n for n in nodes if n not in a]
        else:
            a, b = halves(nodes, self.seed)
        if set(a) & set(b):
            raise FaultSkipped(f"halves overlap: {sorted(set(a) & set(b))}")
        self.targets = a
        cut_between(ctx, self, a, b)

    def heal(self, ctx: FaultContext) -> None:
        ctx.enable_links(getattr(self, "_links", []))
