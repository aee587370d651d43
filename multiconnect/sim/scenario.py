"""Scripted scenarios: the simulated cluster driven by hand instead of a random schedule.

For regression tests of one precise interleaving (the invariants are checked as in a random
run; the first violation stops it). Times are virtual seconds; links are named by their
endpoints (``"coreapp-1", "db"``). Example::

    s = Scenario(SimConfig(seed=1))
    s.at(50.0, lambda s: s.cut("coreapp-1", "db"))
    violation = s.run(120.0)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .cluster import Cluster
from .invariants import Violation
from .runner import format_line
from .simconfig import SimConfig
from .world import Endpoint


class Scenario:
    def __init__(self, cfg: SimConfig | None = None, rates: dict[str, float] | None = None,
                 ignore: tuple[str, ...] = ()) -> None:
        """``rates``: clock rates by node name; ``ignore``: invariant kinds only noted."""
        self.cfg = (cfg or SimConfig()).validate()
        self.cl = Cluster(self.cfg)
        self.world = self.cl.world
        self.cl.check.ignore.update(ignore)
        for name, rate in (rates or {}).items():
            self.cl.hosts[name].rate = rate
        self._fid = 100_000
        self.cl.boot_all()

    # -- scheduling ----------------------------------------------------------------------
    def at(self, t: float, action: Callable[[Scenario], Any]) -> None:
        self.world.at(t, lambda _: action(self))

    def run(self, until: float) -> Violation | None:
        self.world.run(until)
        return self.cl.check.violation

    # -- faults (each returns an id for heal) -------------------------------------------
    def _effect(self, client: str, server: str, kind: str, params: dict[str, Any]) -> int:
        self.world.arm_timers()
        self._fid += 1
        self.cl.net.add_effect(self.cl.net.link(client, server), self._fid, kind, params)
        self.world.note("scenario", "%s %s->%s %s", kind, client, server, params or "")
        return self._fid

    def cut(self, client: str, server: str) -> int:
        return self._effect(client, server, "cut", {})

    def drop(self, client: str, server: str, stream: str = "both") -> int:
        return self._effect(client, server, "drop", {"stream": stream})

    def heal(self, client: str, server: str, fid: int) -> None:
        self.cl.net.remove_effect(self.cl.net.link(client, server), fid)
        self.world.note("scenario", "heal %s->%s", client, server)

    def _endpoint(self, name: str) -> Endpoint:
        """A node by name; ``"gateway"`` and ``"db"`` too."""
        special: dict[str, Endpoint] = {"gateway": self.cl.gateway, "db": self.cl.db_server}
        return special[name] if name in special else self.cl.hosts[name]

    def pause(self, name: str) -> None:
        self.world.arm_timers()
        self.world.pause(self._endpoint(name))
        self.world.note("scenario", "pause %s", name)

    def resume(self, name: str) -> None:
        self.world.resume(self._endpoint(name))
        self.world.note("scenario", "resume %s", name)

    def kill(self, name: str) -> None:
        self.world.arm_timers()
        self.cl.hosts[name].crash()

    def boot(self, name: str) -> None:
        self.cl.hosts[name].boot()

    # -- looking ---------------------------------------------------------------------------
    def owner(self, shard: int) -> str | None:
        return self.cl.db.owner(shard)

    def valid_until(self, shard: int) -> float:
        """The database's ``valid_until`` for the shard's current owner and epoch."""
        row = self.cl.db.shard_rows[shard]
        return self.cl.db.own_valid[(row.hostname, row.epoch)]

    def trace_lines(self, since: float = 0.0) -> list[str]:
        return [format_line(r) for r in self.world.trace if r[0] >= since]
