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

Checkers register by name (:func:`checker`): :data:`CHECKERS` maps the name a checker reports
its result under to the function, so scenarios and chaos runs can name checks as data
(:func:`named_check`). It is complete once ``harness.judge.checkers`` has been imported.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from operator import attrgetter
from typing import Any, NamedTuple, Protocol, TypeVar, overload

from harness.cluster.api_client import health_nodes
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


# -- the registry -------------------------------------------------------------------------

#: Every checker by name (filled by :func:`checker` when its module is imported).
CHECKERS: dict[str, Callable[..., Result]] = {}

_C = TypeVar("_C", bound=Callable[..., Result])


def checker(fn: _C) -> _C:
    """Decorator: register ``fn`` in :data:`CHECKERS` under its function name, which is also
    the default ``name`` of its result (what a ``CHECK FAILED`` line names)."""
    name = fn.__name__
    if CHECKERS.get(name, fn) is not fn:
        raise ValueError(f"two checkers named {name!r}: {CHECKERS[name].__module__} and "
                         f"{fn.__module__}")
    CHECKERS[name] = fn
    return fn


def named_check(name: str, **params: Any) -> Callable[..., Result]:
    """The checker registered as ``name`` with ``params`` bound: a check named as data
    (``named_check("downtime", bound=5.0)``; no params: the bare function). An unknown name
    or parameter raises at once (``KeyError`` naming the known checkers, ``TypeError``)."""
    try:
        fn = CHECKERS[name]
    except KeyError:
        raise KeyError(f"no checker named {name!r}; known: {', '.join(sorted(CHECKERS))}") \
            from None
    if not params:
        return fn
    try:
        inspect.signature(fn).bind_partial(None, **params)
    except TypeError as e:
        raise TypeError(f"checker {name!r}: {e}") from None
    return partial(fn, **params)


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


def health_snapshots(events: Sequence[Event]) -> list[tuple[Event, dict[str, Mapping[str, Any]]]]:
    """Every ``health`` ok event with its node entries (keyed by node name, see
    :func:`harness.cluster.api_client.health_nodes`; entries that are not objects are left out).

    The time of a snapshot is its completion time (when the harness knew it). Shared through
    the prepared history's memo: do not mutate."""
    prep = prepare(events)
    return prep.memo("health_snapshots", lambda: _snapshots(prep.select("health")))


def _snapshots(events: list[Event]) -> list[tuple[Event, dict[str, Mapping[str, Any]]]]:
    out = []
    for e in events:
        if e.type != "ok":
            continue
        nodes = health_nodes(e.value)
        if nodes is None:
            continue
        out.append((e, {k: v for k, v in nodes.items() if isinstance(v, Mapping)}))
    return out


# -- fault windows ------------------------------------------------------------------------

class FaultWindow(NamedTuple):
    """One fault, from its nemesis ``start`` to its ``heal`` (``None``: never healed)."""

    id: str
    kind: str
    targets: tuple[str, ...]
    start: float
    heal: float | None

    @property
    def healed(self) -> bool:
        return self.heal is not None

    def end(self, default: float) -> float:
        """The heal time, or ``default`` (the history's end) if the fault was never healed."""
        return self.heal if self.heal is not None else default

    def around(self, before: float = 0.0, after: float = 0.0,
               default_end: float = float("inf")) -> tuple[float, float]:
        """``(start - before, heal + after)``: a time window for ``downtime(window=…)``."""
        return (self.start - before, self.end(default_end) + after)


def fault_windows(events: Sequence[Event]) -> list[FaultWindow]:
    """Every fault as ``(id, kind, targets, start, heal)``, in start order: the one reading
    of the nemesis's events, for checkers, the timeline and scenarios alike.

    Model. The nemesis (process ``nemesis``; any process so prefixed counts) records ``start``
    and ``heal`` info events ``{"fault": kind, "id": "f3", "targets": [...], ...}``, taken
    here in history order ``(time, index)`` whatever order they are given in. A start opens
    a window under its ``id``. A heal closes the earliest window still open under the same
    key; a heal with nothing open under its key is ignored, and a start never healed keeps
    ``heal=None`` (its window runs to the end of the history). The nemesis numbers faults
    once per history, so real histories pair by id alone. Events without an id (hand-written
    histories) use ``(kind, targets)`` as the key and the window is named ``#n`` (n: its
    position): both events of a fault carry its resolved targets, so a heal never closes a
    fault of other targets, and faults that cannot be told apart are healed first in, first
    out. ``targets`` may be one string. Returns a new list (the windows are shared through
    the prepared history's memo)."""
    prep = prepare(events)
    return list(prep.memo("fault_windows", lambda: _fault_windows(prep.select("start", "heal"))))


def _fault_windows(events: list[Event]) -> list[FaultWindow]:
    windows: list[FaultWindow] = []
    open_: dict[Hashable, list[int]] = {}  # key -> indexes into windows, oldest first
    for e in events:
        if not e.process.startswith("nemesis"):
            continue
        v = e.value
        kind = str(v.get("fault", "?"))
        raw = v.get("targets") or ()
        targets = (str(raw),) if isinstance(raw, str) else tuple(str(x) for x in raw)
        fid = v.get("id")
        key: Hashable = ("id", str(fid)) if fid is not None else ("kind", kind, targets)
        if e.f == "start":
            open_.setdefault(key, []).append(len(windows))
            windows.append(FaultWindow(str(fid) if fid is not None else f"#{len(windows)}",
                                       kind, targets, e.time, None))
        elif open_.get(key):
            i = open_[key].pop(0)
            windows[i] = windows[i]._replace(heal=e.time)
    return windows


def find_fault(events: Sequence[Event], fault: str | None = None) -> FaultWindow | None:
    """The fault with id ``fault`` (else the first of kind ``fault``); ``None`` → the first."""
    windows = fault_windows(events)
    if fault is None:
        return windows[0] if windows else None
    for w in windows:
        if w.id == fault:
            return w
    for w in windows:
        if w.kind == fault:
            return w
    return None


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
    """A bound given as a number or as a ``harness.judge.bounds.Bound``."""
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
