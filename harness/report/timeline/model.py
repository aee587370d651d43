"""The timeline model of one scenario's history (what the report's picture shows).

Model: ``build_model(events)`` is a pure function from a history (see harness.history and the
History section of docs/contracts.md) to a ``TimelineModel``:

- ``ops``: completed operations (``ok``/``fail``/``info``) counted per time bucket, one series
  per group: ``shard N`` for ``send`` (shard from the op's value, else from the process's last
  invoke), ``media`` for ``upload``/``download``.
- ``faults``: the fault windows of :func:`harness.judge.checkers.base.fault_windows` (the checkers'
  own reading of the nemesis's events) as spans to draw: a fault never healed runs to the end
  of the picture (``healed=False``).
- ``markers``: gateway ``gw-connect``/``gw-disconnect``/``gw-kick``/``gw-timeout``/
  ``gw-conflict`` events, plus ``promotion`` markers: a ``gw-connect`` for a shard by a node other
  than the one that connected for that shard before it (the first connect of a shard is not one).
- ``lanes``: per node, role segments from ``health`` observations (read by
  :func:`harness.cluster.api_client.health_nodes`). Each observation holds until the next
  ``health`` event (or the end of the history); a failed/unknown poll ends all segments.

Drawing it is :mod:`harness.report.timeline.draw`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.cluster.api_client import health_nodes
from harness.history import Event
from harness.judge.checkers.base import fault_windows

# Role lane states, in legend order.
PRIMARY = "primary master"
SECONDARY = "secondary master"
CONNECTED = "coreapp connected"
NOT_CONNECTED = "coreapp not connected"
UNREACHABLE = "unreachable"
OTHER = "other"
LANE_STATES: tuple[str, ...] = (PRIMARY, SECONDARY, CONNECTED, NOT_CONNECTED, UNREACHABLE, OTHER)

GATEWAY_MARKERS: tuple[str, ...] = ("connect", "disconnect", "kick", "timeout", "conflict")
MEDIA_FS = ("upload", "download")


@dataclass(frozen=True)
class FaultSpan:
    """One fault window as drawn: ``start`` .. ``end`` (history seconds); an unhealed fault
    ends where the picture does (``healed=False``)."""

    id: str
    kind: str
    targets: tuple[str, ...]
    start: float
    end: float
    healed: bool

    @property
    def label(self) -> str:
        tgt = ",".join(self.targets)
        return f"{self.kind} {tgt}".strip() + ("" if self.healed else " (not healed)")


@dataclass(frozen=True)
class Marker:
    """A vertical marker: a gateway event or a promotion."""

    time: float
    kind: str  # connect | disconnect | kick | timeout | conflict | promotion
    node: str
    shard: str
    label: str


@dataclass(frozen=True)
class RoleSegment:
    node: str
    state: str  # one of LANE_STATES
    start: float
    end: float


@dataclass(frozen=True)
class OpSeries:
    """Counts per bucket for one group; bucket i covers ``t0 + i*bucket`` .. ``+bucket``."""

    group: str
    ok: tuple[int, ...]
    fail: tuple[int, ...]
    info: tuple[int, ...]


@dataclass(frozen=True)
class TimelineModel:
    t0: float
    t1: float
    bucket: float
    ops: tuple[OpSeries, ...]
    faults: tuple[FaultSpan, ...]
    markers: tuple[Marker, ...]
    lanes: dict[str, tuple[RoleSegment, ...]]
    bounds: dict[str, float] = field(default_factory=dict)

    @property
    def n_buckets(self) -> int:
        return len(self.ops[0].ok) if self.ops else _n_buckets(self.t0, self.t1, self.bucket)

    @property
    def promotions(self) -> tuple[Marker, ...]:
        return tuple(m for m in self.markers if m.kind == "promotion")

    @property
    def bound_deadline(self) -> float | None:
        """First fault start + ``bounds['bound']``, if both exist."""
        if "bound" not in self.bounds or not self.faults:
            return None
        return min(f.start for f in self.faults) + float(self.bounds["bound"])


def choose_bucket(duration: float) -> float:
    """Bucket width for a history of ``duration`` seconds (at most ~100 buckets)."""
    for width in (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0):
        if duration / width <= 100:
            return width
    return 60.0 * math.ceil(duration / (100 * 60.0))


def _n_buckets(t0: float, t1: float, bucket: float) -> int:
    return max(1, math.ceil((t1 - t0) / bucket - 1e-9))


def lane_state(entry: Any) -> str:
    """Map one node's health entry to a lane state."""
    if not isinstance(entry, Mapping) or "error" in entry or "errors" in entry:
        return UNREACHABLE
    role = str(entry.get("role", ""))
    if role == "primary_master":
        return PRIMARY
    if role == "secondary_master":
        return SECONDARY
    if role == "coreapp":
        return CONNECTED if entry.get("gateway_status") == "connected" else NOT_CONNECTED
    return OTHER


def fault_spans(events: Iterable[Event], end: float | None = None) -> list[FaultSpan]:
    """The history's fault windows (:func:`harness.judge.checkers.base.fault_windows`: one pairing
    of nemesis starts and heals for checkers and pictures) as spans to draw, in start order;
    an unhealed one ends at ``end`` (default: the last event), never before its start."""
    evs = list(events)
    if end is None:
        end = max((e.time for e in evs), default=0.0)
    return [FaultSpan(w.id, w.kind, w.targets, w.start, w.end(max(end, w.start)), w.healed)
            for w in fault_windows(evs)]


def _markers(events: list[Event]) -> list[Marker]:
    out: list[Marker] = []
    last_node: dict[str, str] = {}
    for ev in events:
        if not ev.f.startswith("gw-"):
            continue
        kind = ev.f[3:]
        if kind not in GATEWAY_MARKERS:
            continue
        v = ev.value
        node = str(v.get("node", "?"))
        shard = str(v.get("shard", "?"))
        if kind == "conflict":
            other = v.get("by_node", "?")
            label = f"CONFLICT shard {shard}: {other} vs {node}"
        elif kind == "kick":
            label = f"kick {node} (shard {shard}) by {v.get('by_node', '?')}"
        else:
            label = f"{kind} {node} (shard {shard})"
        out.append(Marker(ev.time, kind, node, shard, label))
        if kind == "connect":
            prev = last_node.get(shard)
            if prev is not None and prev != node:
                out.append(Marker(ev.time, "promotion", node, shard,
                                  f"promotion: {node} owns shard {shard}"))
            last_node[shard] = node
    return out


def _lanes(events: list[Event], t1: float) -> dict[str, tuple[RoleSegment, ...]]:
    current: dict[str, tuple[str, float]] = {}
    segs: dict[str, list[RoleSegment]] = defaultdict(list)

    def close(node: str, at: float) -> None:
        state, since = current.pop(node)
        if at > since:
            segs[node].append(RoleSegment(node, state, since, at))

    for ev in events:
        if ev.f != "health":
            continue
        nodes = health_nodes(ev.value) if ev.type == "ok" else None
        if nodes is None:
            for node in list(current):
                close(node, ev.time)
            continue
        seen = {node: lane_state(entry) for node, entry in nodes.items()}
        for node in list(current):
            if node not in seen or seen[node] != current[node][0]:
                close(node, ev.time)
        for node, state in seen.items():
            segs.setdefault(node, [])
            if node not in current:
                current[node] = (state, ev.time)
    for node in list(current):
        close(node, t1)
    return {n: tuple(segs[n]) for n in sorted(segs, key=_node_sort_key)}


def _node_sort_key(name: str) -> tuple[int, str]:
    order = {"master": 0, "coreapp": 1, "webapp": 2}
    return (order.get(name.split("-", 1)[0], 3), name)


def _ops(events: list[Event], t0: float, bucket: float, n: int) -> tuple[OpSeries, ...]:
    counts: dict[str, dict[str, list[int]]] = {}
    last_invoke: dict[str, dict[str, Any]] = {}
    for ev in events:
        if ev.f != "send" and ev.f not in MEDIA_FS:
            continue
        if ev.type == "invoke":
            last_invoke[ev.process] = ev.value
            continue
        if ev.f == "send":
            shard = ev.value.get("shard", last_invoke.get(ev.process, {}).get("shard", "?"))
            group = f"shard {shard}"
        else:
            group = "media"
        c = counts.setdefault(group, {"ok": [0] * n, "fail": [0] * n, "info": [0] * n})
        i = min(n - 1, max(0, int((ev.time - t0) // bucket)))
        c[ev.type][i] += 1
    return tuple(OpSeries(g, tuple(c["ok"]), tuple(c["fail"]), tuple(c["info"]))
                 for g, c in sorted(counts.items(), key=lambda kv: _group_key(kv[0])))


def _group_key(group: str) -> tuple[int, float, str]:
    if group.startswith("shard "):
        rest = group[6:]
        return (0, float(rest) if rest.lstrip("-").isdigit() else math.inf, group)
    return (1, 0.0, group)


def build_model(events: Iterable[Event], *, bounds: Mapping[str, float] | None = None,
                bucket: float | None = None) -> TimelineModel:
    """Pure: history -> TimelineModel (see the module docstring)."""
    evs = sorted(events, key=lambda e: (e.time, e.index))
    if evs:
        t0 = min(0.0, evs[0].time)
        t1 = max(evs[-1].time, t0 + 1.0)
    else:
        t0, t1 = 0.0, 1.0
    width = bucket if bucket is not None else choose_bucket(t1 - t0)
    n = _n_buckets(t0, t1, width)
    clean_bounds = {k: float(v) for k, v in (bounds or {}).items()
                    if isinstance(v, int | float) and not isinstance(v, bool)}
    return TimelineModel(
        t0=t0, t1=t1, bucket=width,
        ops=_ops(evs, t0, width, n),
        faults=tuple(fault_spans(evs, end=t1)),
        markers=tuple(_markers(evs)),
        lanes=_lanes(evs, t1),
        bounds=clean_bounds,
    )
