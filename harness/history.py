"""The history: an append-only list of events, the only input of the checkers.

Model (Jepsen-style): every client operation is an ``invoke`` followed by ``ok`` (it
happened), ``fail`` (it certainly did not happen) or ``info`` (unknown: a timeout). Faults,
observations (health, shard map) and the gateway's own event log are ``info``/``ok`` events on
the same timeline. ``time`` is seconds since the history started on the harness's monotonic
clock; ``wall`` is unix time, used to place events recorded elsewhere (the gateway's log).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

EventType = Literal["invoke", "ok", "fail", "info"]
EVENT_TYPES: tuple[str, ...] = ("invoke", "ok", "fail", "info")


@dataclass(frozen=True)
class Event:
    index: int
    time: float
    wall: float
    process: str
    type: str
    f: str
    value: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        return cls(
            index=int(d["index"]),
            time=float(d["time"]),
            wall=float(d.get("wall", 0.0)),
            process=str(d["process"]),
            type=str(d["type"]),
            f=str(d["f"]),
            value=dict(d.get("value") or {}),
        )


class History:
    """Thread-safe recorder. ``append`` is cheap; ``events`` returns a snapshot in time order.

    If ``path`` is given, every event is also written as one JSON line as it arrives, so a
    killed run still leaves its history on disk.
    """

    def __init__(self, path: str | Path | None = None, *, clock=time.monotonic,
                 wall=time.time) -> None:
        self._clock = clock
        self._wall = wall
        self._t0 = clock()
        self._wall0 = wall()
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self.path = Path(path) if path is not None else None
        self._fh = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("w", encoding="utf-8")

    def now(self) -> float:
        return self._clock() - self._t0

    def time_of_wall(self, wall: float) -> float:
        """Place an event stamped with unix time on this history's clock."""
        return wall - self._wall0

    def append(self, process: str, type: str, f: str, value: dict[str, Any] | None = None,
               *, at_wall: float | None = None) -> Event:
        if type not in EVENT_TYPES:
            raise ValueError(f"event type {type!r} is not one of {EVENT_TYPES}")
        with self._lock:
            if at_wall is None:
                t, w = self.now(), self._wall()
            else:
                t, w = self.time_of_wall(at_wall), at_wall
            ev = Event(len(self._events), round(t, 6), w, process, type, f, dict(value or {}))
            self._events.append(ev)
            if self._fh is not None:
                self._fh.write(ev.to_json() + "\n")
                self._fh.flush()
            return ev

    def events(self) -> list[Event]:
        with self._lock:
            return sorted(self._events, key=lambda e: (e.time, e.index))

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events())

    def __len__(self) -> int:
        return len(self._events)


def load(path: str | Path) -> list[Event]:
    with Path(path).open(encoding="utf-8") as fh:
        evs = [Event.from_dict(json.loads(line)) for line in fh if line.strip()]
    return sorted(evs, key=lambda e: (e.time, e.index))


def make(rows: Iterable[tuple]) -> list[Event]:
    """Build a history from literal rows ``(time, process, type, f, value)`` — for tests."""
    out = []
    for i, row in enumerate(rows):
        t, process, type_, f, *rest = row
        value = rest[0] if rest else {}
        out.append(Event(i, float(t), 1_700_000_000.0 + float(t), process, type_, f, value))
    return sorted(out, key=lambda e: (e.time, e.index))
