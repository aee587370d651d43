"""The topology spec: what cluster to build. Frozen, validated before anything starts.

Two timing presets: ``ci`` (heartbeat 1 s, unhealthy 3 s, database monitoring scaled to
3 s / 6 s, lease 5 s, gateway keepalive 2 s) for a 2-core CI machine, and ``documented``
(the real client's defaults: 5 s / 30 s, 60 s / 120 s) for nightly runs.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from multiconnect.config import TEST_BREAKS
from multiconnect.timing import TIMINGS, Timing
from multiconnect.topology import TopologyError, check_counts, check_int

DB_ENGINES = ("mariadb", "mysql")
MEDIA_BACKENDS = ("nfs", "volume")
IMAGE_ROLES = ("db", "nfs", "toxiproxy", "node")


class SpecError(TopologyError):
    """One invalid field of a topology: names it, the value, and what is allowed (the counts'
    rules are :func:`multiconnect.topology.check_counts`, shared with the simulator)."""


@dataclass(frozen=True)
class Topology:
    masters: int = 2
    coreapps: int = 2
    webapps: int = 1
    shards: int = 1
    timing: Timing = field(default_factory=Timing)
    db_engine: str = "mariadb"
    media: str = "nfs"
    images: tuple[tuple[str, str], ...] = ()  # (role, image ref) overrides: no local build
    test_break: str = ""  # a deliberately broken build of the roles (mutation checks only)

    # -- derived -------------------------------------------------------------------------
    def node_names(self, role: str) -> list[str]:
        count = {"master": self.masters, "coreapp": self.coreapps, "webapp": self.webapps}[role]
        return [f"{role}-{i}" for i in range(1, count + 1)]

    @property
    def all_nodes(self) -> list[str]:
        return self.node_names("master") + self.node_names("coreapp") + self.node_names("webapp")

    def image_overrides(self) -> dict[str, str]:
        return dict(self.images)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["images"] = dict(self.images)
        return d

    def with_(self, **changes: Any) -> Topology:
        """A copy with changes; timing keys may be given flat (``heartbeat_interval=5``), and
        ``timing`` as a preset name, a ``Timing`` or a function of the current ``Timing`` (a
        test's marker relative to the session's preset)."""
        timing_keys = {f.name for f in fields(Timing)}
        t = {k: changes.pop(k) for k in list(changes) if k in timing_keys}
        if callable(changes.get("timing")):
            changes["timing"] = changes["timing"](self.timing)
        if "timing" in changes and isinstance(changes["timing"], str):
            name = changes.pop("timing")
            if name not in TIMINGS:
                raise SpecError("timing", name, f"one of {', '.join(TIMINGS)}")
            changes["timing"] = TIMINGS[name]
        if "images" in changes and isinstance(changes["images"], dict):
            changes["images"] = tuple(sorted(changes["images"].items()))
        unknown = set(changes) - {f.name for f in fields(Topology)}
        if unknown:
            name = sorted(unknown)[0]
            raise SpecError(name, changes[name], "unknown field; allowed: "
                            + ", ".join(sorted({f.name for f in fields(Topology)} | timing_keys)))
        new = replace(self, **changes)
        if t:
            new = replace(new, timing=replace(new.timing, **t))
        return validate(new)


def validate(t: Topology) -> Topology:
    """``t`` if every field is valid, else :class:`SpecError` for the first invalid one."""
    tm = t.timing
    try:
        check_counts(t.masters, t.coreapps, t.webapps, t.shards)
        if not isinstance(tm, Timing):
            raise SpecError("timing", tm, "a Timing, or through topology()/with_() a preset "
                            "name: " + ", ".join(TIMINGS))
        check_int("heartbeat_interval", tm.heartbeat_interval, 1, 600)
        check_int("unhealthy_interval", tm.unhealthy_interval, 2, 3600)
    except SpecError:
        raise
    except TopologyError as e:
        raise SpecError(e.field, e.value, e.allowed) from None
    if tm.unhealthy_interval < 2 * tm.heartbeat_interval:
        raise SpecError("unhealthy_interval", tm.unhealthy_interval,
                        f"at least 2 × heartbeat_interval ({2 * tm.heartbeat_interval})")
    for name, value, lo, hi in (("db_monitor_scale", tm.db_monitor_scale, 0.001, 10.0),
                                ("lease_ttl", tm.lease_ttl, 0.5, 600.0),
                                ("gateway_ping_timeout", tm.gateway_ping_timeout, 0.2, 600.0)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise SpecError(name, value, f"a number from {lo:g} to {hi:g} (seconds)")
    if t.db_engine not in DB_ENGINES:
        raise SpecError("db_engine", t.db_engine, f"one of {', '.join(DB_ENGINES)}")
    if t.media not in MEDIA_BACKENDS:
        raise SpecError("media", t.media, f"one of {', '.join(MEDIA_BACKENDS)}")
    for role, ref in t.images:
        if role not in IMAGE_ROLES:
            raise SpecError("images", role, f"image roles are {', '.join(IMAGE_ROLES)}")
        if not isinstance(ref, str) or not ref or " " in ref:
            raise SpecError(f"images.{role}", ref, "an image reference like mysql:8.0")
    if t.test_break and t.test_break not in TEST_BREAKS:
        raise SpecError("test_break", t.test_break, f"'' or one of {', '.join(TEST_BREAKS)}")
    if t.db_engine == "mysql" and "db" not in dict(t.images):
        raise SpecError("db_engine", "mysql",
                        "mysql needs images={'db': '<a MySQL 8 image you have loaded>'}: "
                        "only MariaDB is built locally")
    return t


def topology(**kwargs: Any) -> Topology:
    """Build and validate a topology (``timing`` may be a preset name)."""
    return Topology().with_(**kwargs)
