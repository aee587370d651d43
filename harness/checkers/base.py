"""Shared pieces of the checkers: ``Result``, ``compose`` and history helpers.

Model. A checker is a pure function ``check(events, **params) -> Result``. It never mutates
the events and never trusts their order: ``prepare`` sorts them by ``(time, index)`` once
(``compose`` shares one prepared copy between its checkers). Gateway events are ordered by
``(time, seq)``: ``seq`` is the gateway's own serialisation order, so at equal timestamps it
decides what happened first (events without ``seq``, e.g. hand-written ones, fall back to the
history index). Durations are rounded to 1 µs, the history's resolution, before they are
compared with a bound, so a figure exactly equal to its bound passes. Views derived from a
prepared history (paired operations, gateway connections, health snapshots, fault windows)
are computed once and shared through ``Prepared.memo``; they must be treated as read-only.

Client operations are paired per process (Jepsen: a process has at most one operation in
flight): an ``invoke`` is completed by the next ``ok``/``fail``/``info`` of the same process
and ``f``. An invoke never completed (the history ended, or the process invoked again) is
treated as ``info`` (outcome unknown).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, NamedTuple, Protocol, TypeVar, overload

from harness.history import Event

Figure = float | int | str | None

#: Float resolution used for durations compared with bounds (the history's rounding).
RESOLUTION_DIGITS = 6


@dataclass(frozen=True)
class Result:
    """The verdict of one checker. ``results`` holds the sub-results of a composed checker."""

    name: str
    valid: bool
    figures: dict[str, Figure]
    explanation: str
    results: tuple[Result, ...] = field(default=())


class Checker(Protocol):
    def __call__(self, events: Sequence[Event], /) -> Result: ...


# -- the prepared history -----------------------------------------------------------------

_order: Callable[[Event], tuple[float, int]] = attrgetter("time", "index")
_T = TypeVar("_T")


def _gateway_order(e: Event) -> tuple[float, float, int]:
    seq = e.value.get("seq")
    return (e.time, seq if isinstance(seq, int | float) else -1, e.index)


class Prepared(Sequence[Event]):
    """A time-ordered copy of a history with per-``f`` indexes built on first use."""

    __slots__ = ("_events", "_by_f", "_gateway", "_memo")

    def __init__(self, events: Sequence[Event]) -> None:
        self._events: list[Event] = sorted(events, key=_order)
        self._by_f: dict[str, list[Event]] | None = None
        self._gateway: list[Event] | None = None
        self._memo: dict[Hashable, Any] = {}

    @overload
    def __getitem__(self, i: int) -> Event: ...
    @overload
    def __getitem__(self, i: slice) -> list[Event]: ...
    def __getitem__(self, i):  # type: ignore[no-untyped-def]
        return self._events[i]

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[Event]:
        return iter(self._events)

    @property
    def start(self) -> float:
        return self._events[0].time if self._events else 0.0

    @property
    def end(self) -> float:
        """Time of the last event: where open windows (unhealed faults, outages) stop."""
        return self._events[-1].time if self._events else 0.0

    def select(self, *fs: str) -> list[Event]:
        """Events whose ``f`` is one of ``fs``, in time order (do not mutate the list)."""
        if self._by_f is None:
            by: dict[str, list[Event]] = {}
            for e in self._events:
                by.setdefault(e.f, []).append(e)
            self._by_f = by
        if len(fs) == 1:
            return self._by_f.get(fs[0], [])
        return self.memo(("select", *fs), lambda: sorted(
            (e for f in dict.fromkeys(fs) for e in self._by_f.get(f, [])), key=_order))

    def memo(self, key: Hashable, compute: Callable[[], _T]) -> _T:
        """Compute a derived view once per prepared history (checkers share it)."""
        try:
            return self._memo[key]  # type: ignore[no-any-return]
        except KeyError:
            value = self._memo[key] = compute()
            return value

    def gateway(self) -> list[Event]:
        """The gateway's events (``f`` = ``gw-*``) in ``(time, seq)`` order."""
        if self._gateway is None:
            if self._by_f is None:
                self.select("")
            assert self._by_f is not None
            gw = [e for f, evs in self._by_f.items() if f.startswith("gw-") for e in evs]
            gw.sort(key=_gateway_order)
            self._gateway = gw
        return self._gateway


def prepare(events: Sequence[Event]) -> Prepared:
    """Return ``events`` time-ordered (a no-op on an already prepared history)."""
    return events if isinstance(events, Prepared) else Prepared(events)


def gateway_key(e: Event) -> tuple[float, float, int]:
    """The ordering key of a gateway event: ``(time, seq, index)``."""
    return _gateway_order(e)


# -- operations ---------------------------------------------------------------------------

class Op(NamedTuple):
    """One client operation: its invoke and its completion (``None`` if never completed)."""

    process: str
    f: str
    invoke: Event
    complete: Event | None

    @property
    def type(self) -> str:
        return self.complete.type if self.complete is not None else "info"

    @property
    def latency(self) -> float | None:
        if self.complete is None:
            return None
        return round(self.complete.time - self.invoke.time, RESOLUTION_DIGITS)

    def get(self, key: str, default: Any = None) -> Any:
        """A value field, from the completion first, else from the invoke."""
        if self.complete is not None and key in self.complete.value:
            return self.complete.value[key]
        return self.invoke.value.get(key, default)


def pair_ops(events: Sequence[Event], *fs: str) -> tuple[list[Op], int]:
    """Pair invokes with completions per process for the given ``f`` names.

    Returns the operations in invoke order and the number of orphan completions (a completion
    with no invoke in flight for its process), which are ignored. Shared through the
    prepared history's memo: do not mutate the returned list.
    """
    prep = prepare(events)
    return prep.memo(("pair_ops", *fs), lambda: _pair(prep.select(*fs)))


def _pair(events: list[Event]) -> tuple[list[Op], int]:
    pending: dict[tuple[str, str], tuple[Event, int]] = {}
    slots: list[Op | None] = []
    orphans = 0
    for e in events:
        key = (e.process, e.f)
        if e.type == "invoke":
            prev = pending.pop(key, None)
            if prev is not None:
                slots[prev[1]] = Op(e.process, e.f, prev[0], None)
            pending[key] = (e, len(slots))
            slots.append(None)
            continue
        inv = pending.pop(key, None)
        if inv is None:
            orphans += 1
            continue
        slots[inv[1]] = Op(e.process, e.f, inv[0], e)
    for inv, i in pending.values():
        slots[i] = Op(inv.process, inv.f, inv, None)
    return slots, orphans  # type: ignore[return-value]


# -- value helpers ------------------------------------------------------------------------

def shard_of(v: Any) -> int | str | None:
    """Normalise a shard number (``0``, ``"0"`` → ``0``)."""
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    s = str(v).strip()
    try:
        return int(s)
    except ValueError:
        return s


def node_name(key: str) -> str:
    """A node's name from a health key: ``"coreapp-1:abc123"`` (the real client's
    ``<hostname>:<container-id>``) and ``"coreapp-1"`` both give ``"coreapp-1"``."""
    return str(key).split(":", 1)[0]


def health_snapshots(events: Sequence[Event]) -> list[tuple[Event, dict[str, Mapping[str, Any]]]]:
    """Every ``health`` ok event with its node entries (keys normalised by ``node_name``).

    The time of a snapshot is its completion time (when the harness knew it). Shared through
    the prepared history's memo: do not mutate."""
    prep = prepare(events)
    return prep.memo("health_snapshots", lambda: _snapshots(prep.select("health")))


def _snapshots(events: list[Event]) -> list[tuple[Event, dict[str, Mapping[str, Any]]]]:
    out = []
    for e in events:
        if e.type != "ok":
            continue
        nodes = e.value.get("nodes")
        if not isinstance(nodes, Mapping):
            continue
        out.append((e, {(k.split(":", 1)[0] if ":" in k else k): v
                        for k, v in nodes.items() if isinstance(v, Mapping)}))
    return out


def has_error_envelope(value: Mapping[str, Any]) -> bool:
    """True if a failure value carries the API's error envelope
    ``{"errors": [{"code": N, "title": …}]}`` — at top level or under ``error``/``body``."""
    for cand in (value, value.get("error"), value.get("body")):
        if not isinstance(cand, Mapping):
            continue
        errs = cand.get("errors")
        if (isinstance(errs, list) and errs and isinstance(errs[0], Mapping)
                and "code" in errs[0]):
            return True
    return False


# -- bounds and text ----------------------------------------------------------------------

def dur(x: float) -> float:
    """Round a duration to the history's resolution (1 µs)."""
    return round(x, RESOLUTION_DIGITS)


def bound_value(bound: Any) -> float | None:
    """A bound given as a number or as a ``harness.bounds.Bound``."""
    if bound is None:
        return None
    v = float(getattr(bound, "value", bound))
    if math.isnan(v):
        raise ValueError("bound is NaN")
    return v


def bound_text(bound: Any) -> str:
    v = bound_value(bound)
    formula = getattr(bound, "formula", None)
    return f"{v:.3f} s ({formula})" if formula else f"{v:.3f} s"


def t(x: float | None) -> str:
    return "t=?" if x is None else f"t={x:.3f}"


def s(x: float | None) -> str:
    return "?" if x is None else f"{x:.3f} s"


def first_few(items: Sequence[Any], n: int = 5) -> str:
    head = ", ".join(str(i) for i in items[:n])
    return head + (f", … (+{len(items) - n})" if len(items) > n else "")


# -- composition --------------------------------------------------------------------------

def compose(*checkers: Callable[..., Result], name: str = "compose") -> Callable[..., Result]:
    """Combine checkers (use ``functools.partial`` to bind their parameters).

    The combined result is valid only if every sub-result is; its figures are the
    sub-figures prefixed ``"<sub-result name>."`` (a repeated name gets ``#2``, ``#3``…);
    the sub-results are kept in ``results``. The history is prepared once and shared.
    """
    if not checkers:
        raise ValueError("compose needs at least one checker")

    def check(events: Sequence[Event]) -> Result:
        prep = prepare(events)
        results = tuple(c(prep) for c in checkers)
        figures: dict[str, Figure] = {}
        seen: dict[str, int] = {}
        for r in results:
            seen[r.name] = seen.get(r.name, 0) + 1
            prefix = r.name if seen[r.name] == 1 else f"{r.name}#{seen[r.name]}"
            for k, v in r.figures.items():
                figures[f"{prefix}.{k}"] = v
        failed = [r for r in results if not r.valid]
        if failed:
            text = (f"{len(failed)} of {len(results)} checks failed. "
                    + " ".join(f"[{r.name}] {r.explanation}" for r in failed))
        else:
            text = (f"All {len(results)} checks passed: "
                    + ", ".join(r.name for r in results) + ".")
        return Result(name, not failed, figures, text, results)

    check.__name__ = name
    return check
