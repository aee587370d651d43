"""Seeded fault schedules and their injection (the harness's nemesis vocabulary).

Model. A schedule is drawn from the world's RNG before the run starts: about
``fault_rate × minutes`` faults, each with a kind, a start, a duration (a multiple of the
unhealthy interval u) and four uniform "picks". The target is resolved from the picks when
the fault starts — often the current owner of a shard or the lease holder, so faults land
where they matter. Faults overlap freely; a node is claimed by at most one kill/pause at a
time (a later one is skipped). Every fault heals at its end or when the chaos phase ends,
whichever is first. Kinds:

- ``kill``: the process dies (kernel closes its sockets); heal boots a fresh process.
- ``pause``: the process freezes; heal resumes it with its queued timers and replies.
- ``cut`` / ``blackhole`` / ``oneway``: one link disabled (resets) / data dropped both ways /
  data dropped one way (upstream or downstream).
- ``isolate``: every link of one node cut.
- ``latency``: 0.05–3 s ± jitter on one link (coreapp→gateway links are capped, A3).
- ``loss``: 5–50 % loss on one link (retransmission delays).
- ``db-outage``: every ``*->db`` link cut, or black-holed, or the database paused.
- ``db-slow``: database replies delayed up to 0.2–4 s.
- ``gateway-pause``: the gateway freezes (``docker pause``): connections are still accepted and
  what they carry queues up; heal resumes it (``SimGateway.resume_order``).
- ``clock-skew``: a node's wall clock jumps by up to ±1 h (the cores must not care).
- ``settings``: an operator PATCHes the settings (heartbeat interval h/2–2h, unhealthy
  interval u/2–2u, at least twice the new h) through the first webapp to the primary master
  (``MasterRole.settings_patch``; tried on each master, again every second until one takes
  it); heal PATCHes the preset back. Every role reads the new values (broadcast through the
  database) and its failure detector uses them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .net import Link
from .protocols import ClusterView

DURATION_U = {  # (min, max) in multiples of the unhealthy interval
    "kill": (0.2, 3.0), "pause": (0.03, 2.0), "cut": (0.1, 3.0), "blackhole": (0.1, 3.0),
    "oneway": (0.1, 3.0), "isolate": (0.1, 3.0), "latency": (0.1, 2.0), "loss": (0.1, 2.0),
    "db-outage": (0.03, 1.5), "db-slow": (0.1, 1.5), "clock-skew": (0.5, 4.0),
    "gateway-pause": (0.03, 4.0), "settings": (1.0, 6.0),
}


@dataclass(frozen=True)
class FaultSpec:
    index: int
    kind: str
    start: float
    duration: float
    picks: tuple[float, float, float, float]

    def describe(self) -> str:
        return f"f{self.index} {self.kind} at {self.start:.3f}s for {self.duration:.3f}s"


def make_schedule(cl: ClusterView) -> list[FaultSpec]:
    cfg = cl.cfg
    rng = cl.world.rng
    chaos = cfg.minutes * 60.0
    u = cfg.timing.unhealthy_interval
    expected = cfg.fault_rate * cfg.minutes
    n = int(expected) + (1 if rng.random() < expected - int(expected) else 0)
    kinds = list(cfg.faults)
    out = []
    for i in range(n):
        kind = kinds[int(rng.random() * len(kinds))] if kinds else "pause"
        start = rng.random() * chaos * 0.97
        lo, hi = DURATION_U[kind]
        duration = u * (lo + (hi - lo) * rng.random())
        picks = (rng.random(), rng.random(), rng.random(), rng.random())
        out.append(FaultSpec(i, kind, start, duration, picks))
    if not kinds:
        return []
    out.sort(key=lambda f: (f.start, f.index))
    return out


class Injector:
    """Starts and heals the faults of one schedule."""

    def __init__(self, cl: ClusterView, schedule: list[FaultSpec]) -> None:
        self.cl = cl
        self.schedule = schedule
        self.active: dict[int, tuple] = {}   # index -> undo info
        self.claims: dict[str, int] = {}     # node -> fault index (kill/pause)
        self.heal_at: dict[int, float] = {}
        self.started = 0
        self.skipped = 0

    def arm(self, chaos_end: float) -> None:
        w = self.cl.world
        for f in self.schedule:
            self.heal_at[f.index] = min(f.start + f.duration, chaos_end)
            w.at(f.start, self._start, f)
            w.at(self.heal_at[f.index], self._heal, f.index)
        w.at(chaos_end, self._heal_all, None)

    # -- targets -----------------------------------------------------------------------------
    def _node(self, p: float, q: float, roles: tuple[str, ...] = ("master", "coreapp")) -> str:
        """An interesting node: a shard owner, the lease holder, or any node."""
        cl = self.cl
        if p < 0.45 and "coreapp" in roles:
            owners = [o for o in (cl.db.owner(s) for s in range(cl.cfg.shards)) if o]
            if owners:
                return owners[int(q * len(owners))]
        if p < 0.65 and "master" in roles and cl.db.lease_holder:
            return cl.db.lease_holder
        names = [h.name for h in cl.hosts.values() if h.role in roles]
        return names[int(q * len(names))]

    def _link(self, p: float, q: float) -> Link:
        """An interesting link: primary master → an owner, an owner's database or gateway
        link, or any link."""
        cl = self.cl
        owners = [o for o in (cl.db.owner(s) for s in range(cl.cfg.shards)) if o]
        owner = owners[int(q * len(owners))] if owners else None
        holder = cl.db.lease_holder
        if owner and p < 0.35 and holder:
            return cl.net.link(holder, owner)
        if owner and p < 0.55:
            return cl.net.link(owner, "db")
        if owner and p < 0.7:
            return cl.net.link(owner, "gateway")
        links = list(cl.net.links.values())
        return links[int(q * len(links))]

    # -- start / heal ----------------------------------------------------------------------
    def _start(self, f: FaultSpec) -> None:
        cl = self.cl
        w = cl.world
        w.arm_timers()
        net = cl.net
        p0, p1, p2, p3 = f.picks
        undo: tuple
        if f.kind in ("kill", "pause"):
            name = self._node(p0, p1)
            host = cl.hosts[name]
            if name in self.claims or not host.alive:
                self._skip(f, f"{name} is busy")
                return
            self.claims[name] = f.index
            if f.kind == "kill":
                host.crash()
            else:
                w.pause(host)
            undo = (f.kind, name)
            targets = name
        elif f.kind in ("cut", "blackhole", "oneway", "latency", "loss"):
            link = self._link(p0, p1)
            if f.kind == "cut":
                params: dict = {}
                kind = "cut"
            elif f.kind == "blackhole":
                params, kind = {"stream": "both"}, "drop"
            elif f.kind == "oneway":
                params, kind = {"stream": "up" if p2 < 0.5 else "down"}, "drop"
            elif f.kind == "latency":
                lat = 0.05 + 2.95 * p2 * p2
                params = {"stream": "both", "latency": lat, "jitter": lat * p3,
                          "until": self.heal_at[f.index]}
                kind = "latency"
            else:
                params, kind = {"loss": 0.05 + 0.45 * p2}, "loss"
            net.add_effect(link, f.index, kind, params)
            undo = ("links", [link])
            targets = " ".join([link.name] + [
                f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                for k, v in params.items() if k != "until"])
        elif f.kind == "isolate":
            name = self._node(p0, p1, ("master", "coreapp", "webapp"))
            links = [lk for lk in net.links.values() if name in (lk.client, lk.server)]
            for lk in links:
                net.add_effect(lk, f.index, "cut", {})
            undo = ("links", links)
            targets = name
        elif f.kind == "db-outage":
            if p2 < 0.7:
                kind, params = ("cut", {}) if p2 < 0.4 else ("drop", {"stream": "both"})
                links = [lk for lk in net.links.values() if lk.server == "db"]
                for lk in links:
                    net.add_effect(lk, f.index, kind, params)
                undo = ("links", links)
                targets = f"*->db {kind}"
            else:
                if "db" in self.claims:
                    self._skip(f, "db is busy")
                    return
                self.claims["db"] = f.index
                w.pause(cl.db_server)
                undo = ("db-pause",)
                targets = "db paused"
        elif f.kind == "gateway-pause":
            if "gateway" in self.claims:
                self._skip(f, "gateway is busy")
                return
            self.claims["gateway"] = f.index
            w.pause(cl.gateway)
            undo = ("gateway-pause",)
            targets = "gateway paused"
        elif f.kind == "db-slow":
            cl.db_server.slow[f.index] = 0.2 + 3.8 * p2
            undo = ("slow",)
            targets = f"db replies up to {cl.db_server.slow[f.index]:.2f}s late"
        elif f.kind == "clock-skew":
            name = self._node(p0, p1, ("master", "coreapp", "webapp"))
            offset = (2.0 * p2 - 1.0) * 3600.0
            cl.hosts[name].wall_offset += offset
            undo = ("skew", name, offset)
            targets = f"{name} wall clock {offset:+.1f}s"
        elif f.kind == "settings":
            if "settings" in self.claims:
                self._skip(f, "settings change under way")
                return
            self.claims["settings"] = f.index
            t = cl.cfg.timing
            h = max(1, round(t.heartbeat_interval * (0.5 + 1.5 * p0)))
            u = max(2 * h, round(t.unhealthy_interval * (0.5 + 1.5 * p1)))
            cl.patch_settings({"heartbeat_interval": h, "unhealthy_interval": u})
            undo = ("settings",)
            targets = f"PATCH heartbeat_interval {h}, unhealthy_interval {u}"
        else:  # pragma: no cover - validated in SimConfig
            raise ValueError(f.kind)
        self.active[f.index] = undo
        self.started += 1
        w.note("nemesis", "start f%d %s: %s", f.index, f.kind, targets)

    def _skip(self, f: FaultSpec, why: str) -> None:
        self.skipped += 1
        self.cl.world.note("nemesis", "skip f%d %s: %s", f.index, f.kind, why)

    def _heal(self, index: int) -> None:
        undo = self.active.pop(index, None)
        if undo is None:
            return
        cl = self.cl
        w = cl.world
        kind = undo[0]
        if kind in ("kill", "pause"):
            name = undo[1]
            host = cl.hosts[name]
            self.claims.pop(name, None)
            if kind == "kill":
                if not host.alive:
                    host.boot()
            elif host.paused:
                w.resume(host)
        elif kind == "links":
            for lk in undo[1]:
                cl.net.remove_effect(lk, index)
        elif kind == "db-pause":
            self.claims.pop("db", None)
            w.resume(cl.db_server)
        elif kind == "gateway-pause":
            self.claims.pop("gateway", None)
            w.resume(cl.gateway)
        elif kind == "slow":
            cl.db_server.slow.pop(index, None)
        elif kind == "skew":
            cl.hosts[undo[1]].wall_offset -= undo[2]
        elif kind == "settings":
            self.claims.pop("settings", None)
            t = cl.cfg.timing
            cl.patch_settings({"heartbeat_interval": t.heartbeat_interval,
                               "unhealthy_interval": t.unhealthy_interval})
        w.note("nemesis", "heal f%d", index)

    def _heal_all(self, _: object) -> None:
        for index in sorted(self.active):
            self._heal(index)
        self.cl.world.note("nemesis", "all faults healed; quiet period")
