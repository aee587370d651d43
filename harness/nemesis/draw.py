"""What a random schedule hands a fault kind to draw one fault: a :class:`Draw` (the schedule's
seeded RNG, the topology, the step's duration) and the selectors a topology offers."""

from __future__ import annotations

import random
from dataclasses import dataclass

from harness.spec import Topology


def node_selectors(t: Topology) -> list[str]:
    """The node selectors random schedules aim at on ``t`` (roles, resolved at fault time)."""
    sel = [f"primary-coreapp:{s}" for s in range(t.shards)] + ["primary-master"]
    if t.coreapps > t.shards:
        sel.append("secondary-coreapp")
    if t.masters > 1:
        sel.append("secondary-master")
    sel += [f"webapp:{k}" for k in range(1, t.webapps + 1)]
    return sel


def link_selectors(t: Topology) -> list[str]:
    """The link selectors random schedules aim at on ``t``."""
    out = []
    for s in range(t.shards):
        pc = f"primary-coreapp:{s}"
        out += [f"{pc}->db", f"{pc}->gateway", f"primary-master->{pc}"]
        if t.masters > 1:
            out.append(f"secondary-master->{pc}")
        out += [f"webapp:{k}->{pc}" for k in range(1, t.webapps + 1)]
    out += ["primary-master->db"] + [f"client->webapp:{k}" for k in range(1, t.webapps + 1)]
    if t.media == "nfs":
        out += [f"webapp:{k}->nfs" for k in range(1, t.webapps + 1)]
    return out


@dataclass(frozen=True)
class Draw:
    """One draw of a random schedule: its seeded RNG (every random choice comes from it, in
    a fixed order), the topology, the step's duration and the selectors the topology offers."""

    rng: random.Random
    topology: Topology
    duration: float

    @property
    def nodes(self) -> list[str]:
        return node_selectors(self.topology)

    @property
    def links(self) -> list[str]:
        return link_selectors(self.topology)

    def seed(self) -> int:
        """A seed for a fault that shuffles by itself (split halves)."""
        return self.rng.randrange(2**31)
