"""At most one connected coreapp per shard at every instant (the account-ban hazard).

Model. Connection intervals are rebuilt from the gateway's log, in the gateway's own order
``(time, seq)``: a ``gw-connect`` opens the interval of its ``conn``; the first
``gw-disconnect``, ``gw-kick`` or ``gw-timeout`` of that ``conn`` closes it *at that event*;
an interval never closed is open to the end of the history. Intervals are half-open
``[connect, end)`` on that order, so for one (phone, shard):

- back-to-back — the old connection's end is ordered before the new connect (earlier time,
  or the same time and a lower ``seq``) — is **not** an overlap;
- a connect ordered before the old one's end is an overlap, even at the same timestamp (a
  zero-length overlap: the gateway had both open at once).

Any ``gw-conflict`` event (the gateway saw a second connect while one was open and kicked the
older) is a violation by itself, with one exception, the documented limit of the model
(docs/fencing.md A3 (c)): a **stalled gateway**. While the gateway is paused (a nemesis
``pause`` of ``gateway``) an owner's ping fails, it closes its connection and, after its
ghost wait, queues a new connect. On resume the gateway handles both: the lines the owner
wrote to its old connection during the stall refresh that connection, and if the new connect
is handled before the old one's close, it kicks it. No coreapp can prevent that (a queued
line cannot be taken back), so a conflict within ``m`` (0.5 s) of a gateway pause's heal
(either side: the heal is recorded once ``docker unpause`` has returned, when the gateway
runs already), by the same node, of a connection it opened before the pause began, is
counted as an ``a3_breach`` and explained, not judged. A kick by another node, of a
connection opened during the stall (two queued connects), or away from a resume stays a
violation.

``/v1/health`` observations are reported but never fail the check: a health snapshot is not
atomic (each node answers for itself at a slightly different moment, and it carries no shard
per node), so it can show the old and the new primary both ``connected`` across a legitimate
hand-over. The figures count snapshots with more ``connected`` nodes than shards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harness.history import Event
from harness.judge.bounds import FENCE_SLACK
from harness.judge.checkers.base import (
    FaultWindow,
    Figure,
    Result,
    checker,
    dur,
    fault_windows,
    first_few,
    gateway_key,
    health_snapshots,
    prepare,
    s,
    shard_of,
    t,
)

_INF_KEY = (float("inf"), float("inf"), 1 << 62)
_ENDS = ("gw-disconnect", "gw-kick", "gw-timeout")


@dataclass(frozen=True, slots=True)
class Connection:
    """One gateway connection: its ``gw-connect`` and its ending event (``None``: open)."""

    conn: Any
    phone: Any
    shard: int | str | None
    node: str | None
    epoch: Any
    start: Event
    end: Event | None

    @property
    def start_key(self) -> tuple[float, float, int]:
        return gateway_key(self.start)

    @property
    def end_key(self) -> tuple[float, float, int]:
        return gateway_key(self.end) if self.end is not None else _INF_KEY

    def end_time(self, default: float) -> float:
        return self.end.time if self.end is not None else default

    def open_at(self, when: float) -> bool:
        """Connected at time ``when`` (connected at or before it, not yet ended)."""
        return self.start.time <= when and (self.end is None or self.end.time > when)

    def describe(self) -> str:
        return (f"{self.node} (conn {self.conn}, epoch {self.epoch}) connected "
                f"{t(self.start.time)}")

    def describe_end(self) -> str:
        if self.end is None:
            return "still open at the end"
        return f"{self.end.f[3:]} {t(self.end.time)} (seq {self.end.value.get('seq')})"


def _conn_key(v: dict[str, Any]) -> Any:
    c = v.get("conn")
    return c if c is not None else ("node", v.get("node"), shard_of(v.get("shard")))


def connections(events: Sequence[Event]) -> tuple[list[Connection], list[Event]]:
    """All gateway connections in connect order, and the ending events whose connection
    never appeared (connected before the log began). Memoised: do not mutate."""
    prep = prepare(events)
    return prep.memo("connections", lambda: _connections(prep.gateway()))


def _connections(gateway: list[Event]) -> tuple[list[Connection], list[Event]]:
    out: list[Connection] = []
    opened: dict[Any, Event] = {}
    unmatched: list[Event] = []

    def close(start: Event, end: Event | None) -> None:
        v = start.value
        out.append(Connection(v.get("conn"), v.get("phone"), shard_of(v.get("shard")),
                              v.get("node"), v.get("epoch"), start, end))

    for e in gateway:
        if e.f == "gw-deliver":
            continue
        if e.f == "gw-connect":
            key = _conn_key(e.value)
            if key in opened:  # the same conn connecting twice: end the first here
                close(opened.pop(key), e)
            opened[key] = e
        elif e.f in _ENDS:
            start = opened.pop(_conn_key(e.value), None)
            if start is None:
                unmatched.append(e)
            else:
                close(start, e)
    for start in opened.values():
        close(start, None)
    out.sort(key=lambda c: c.start_key)
    return out, unmatched


def count_shards(events: Sequence[Event]) -> int:
    """Shards seen in gateway connects and shard-map observations (else in sends)."""
    prep = prepare(events)
    seen: set[Any] = set()
    for e in prep.select("gw-connect"):
        seen.add(shard_of(e.value.get("shard")))
    for e in prep.select("shard-map"):
        shards = e.value.get("shards")
        if isinstance(shards, dict):
            seen.update(shards)
    seen = {shard_of(x) for x in seen}
    if not seen - {None}:
        seen.update(shard_of(e.value.get("shard")) for e in prep.select("send")
                    if e.type == "invoke")
    seen.discard(None)
    return len(seen)


@checker
def single_connected(events: Sequence[Event], *, shards: int | None = None,
                     name: str = "single_connected") -> Result:
    """Valid iff no ``gw-conflict`` and no two gateway connections of one (phone, shard)
    overlap. ``shards`` (default: inferred) only feeds the health figures."""
    prep = prepare(events)
    conns, unmatched = connections(prep)
    stalls = [w for w in fault_windows(prep)
              if w.kind == "pause" and "gateway" in w.targets and w.heal is not None]
    started = {c.conn: c.start.time for c in conns}
    conflicts, breaches = [], []
    for e in prep.gateway():
        if e.f == "gw-conflict":
            (breaches if _a3_breach(e, stalls, started) else conflicts).append(e)

    groups: dict[tuple[Any, Any], list[Connection]] = {}
    for c in conns:
        groups.setdefault((c.phone, c.shard), []).append(c)
    overlaps: list[tuple[Connection, Connection, float]] = []
    max_concurrent = 0
    for group in groups.values():
        active: list[Connection] = []
        for c in group:
            active = [x for x in active if x.end_key > c.start_key]
            for x in active:
                hi = min(x.end_time(prep.end), c.end_time(prep.end))
                overlaps.append((x, c, dur(max(0.0, hi - c.start.time))))
            active.append(c)
            max_concurrent = max(max_concurrent, len(active))

    n_shards = shards if shards is not None else max(count_shards(prep), 1)
    snaps = health_snapshots(prep)
    over: list[tuple[Event, list[str]]] = []
    health_max = 0
    for ev, nodes in snaps:
        up = sorted(n for n, v in nodes.items() if v.get("gateway_status") == "connected")
        health_max = max(health_max, len(up))
        if len(up) > n_shards:
            over.append((ev, up))

    figures: dict[str, Figure] = {
        "connections": len(conns),
        "conflicts": len(conflicts),
        "a3_breaches": len(breaches),
        "overlaps": len(overlaps),
        "max_overlap": max((d for *_, d in overlaps), default=0.0),
        "max_concurrent": max_concurrent,
        "unmatched_ends": len(unmatched),
        "shards": n_shards,
        "health_snapshots": len(snaps),
        "health_over_connected": len(over),
        "health_max_connected": health_max,
    }
    problems: list[str] = []
    if conflicts:
        e = conflicts[0]
        v = e.value
        problems.append(
            f"{len(conflicts)} gw-conflict event(s); first {t(e.time)} (seq {v.get('seq')}): "
            f"{v.get('by_node')} (conn {v.get('by')}) connected for shard {v.get('shard')} "
            f"while {v.get('node')} (conn {v.get('conn')}, epoch {v.get('epoch')}) was "
            "connected")
    if overlaps:
        x, c, d = max(overlaps, key=lambda o: o[2])
        problems.append(
            f"{len(overlaps)} overlapping connection pair(s); longest on shard {c.shard}: "
            f"{x.describe()}, {c.describe()} (seq {c.start.value.get('seq')}) before the "
            f"first ended ({x.describe_end()}): overlap {s(d)}")
    health = (f"Health: {len(over)} of {len(snaps)} snapshot(s) showed more connected nodes "
              f"than the {n_shards} shard(s)"
              + (f", first {t(over[0][0].time)}: {', '.join(over[0][1])}" if over else "")
              + " (informational: snapshots are not atomic).")
    stalled = ""
    if breaches:
        v = breaches[0].value
        stalled = (f" {len(breaches)} conflict(s) at a stalled gateway's resume, each a node "
                   f"kicking its own connection from before the stall (A3 breach, not judged; "
                   f"first {t(breaches[0].time)}: {v.get('node')} conn {v.get('conn')} by conn "
                   f"{v.get('by')}).")
    if problems:
        text = "INVALID: " + "; ".join(problems) + ". " + health + stalled
    else:
        text = (f"{len(conns)} gateway connection(s) over {len(groups)} (phone, shard) key(s), "
                f"never more than one open per shard at once (ordered by (time, seq)); no "
                f"conflict{' but at a stalled gateway' if breaches else ''}. {health}{stalled}")
    return Result(name, not problems, figures, text)


@checker
def connections_kept(events: Sequence[Event], *, since: float = 0.0,
                     name: str = "connections_kept") -> Result:
    """Valid iff no gateway connection ended or was opened from ``since`` (default: the
    history's start) on: nothing self-fenced, reconnected, was kicked, dropped by the
    keepalive or closed — for disturbances that must not reach the coreapps at all
    (containers started beside the cluster, a busy or frozen engine). Connections opened
    before ``since`` (on a reused cluster the gateway's record starts earlier) are judged
    by how they end.

    The gateway's connect and its end are judged, not health: a self-fence shows at the
    gateway as the connection ending (``gw-disconnect``), a stalled owner as ``gw-timeout``."""
    prep = prepare(events)
    conns, orphan_ends = connections(prep)
    unmatched = sum(1 for e in orphan_ends if e.time >= since)
    ended = [c for c in conns if c.end is not None and c.end.time >= since]
    opened = [c for c in conns if c.start.time >= since]
    figures: dict[str, Figure] = {"connections": len(conns), "ended": len(ended),
                                  "opened": len(opened), "unmatched_ends": unmatched,
                                  "since": since}
    problems = []
    if ended:
        problems.append(f"{len(ended)} connection(s) ended: " + first_few(
            [f"{c.node} shard {c.shard} (conn {c.conn}): {c.describe_end()}"
             + (f" ({c.end.value.get('reason')})" if c.end and c.end.value.get("reason")
                else "") for c in ended]))
    if unmatched:
        problems.append(f"{unmatched} connection(s) opened before the gateway's record "
                        "began ended")
    if opened:
        problems.append(f"{len(opened)} connection(s) opened: " + first_few(
            [f"{c.node} shard {c.shard} (conn {c.conn}) {t(c.start.time)}" for c in opened]))
    if problems:
        return Result(name, False, figures, "INVALID: " + "; ".join(problems) + ".")
    return Result(name, True, figures,
                  f"Every one of the {len(conns)} gateway connection(s) stayed open, none was "
                  "opened: no coreapp self-fenced, reconnected or was dropped.")


def _a3_breach(conflict: Event, stalls: Sequence[FaultWindow], started: dict[Any, float]) -> bool:
    """A conflict within ``m`` of a gateway pause's heal, by the node that owned the kicked
    connection, which it had opened before that pause began (docs/fencing.md A3 (c))."""
    v = conflict.value
    if v.get("by_node") != v.get("node"):
        return False
    opened = started.get(v.get("conn"))
    return opened is not None and any(
        w.heal is not None and abs(conflict.time - w.heal) <= FENCE_SLACK
        and opened < w.start for w in stalls)
