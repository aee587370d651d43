"""Fault windows from the nemesis's events.

Model. The nemesis records ``start`` and ``heal`` (process ``nemesis…``, type ``info``) with
``{"fault": kind, "id": "f3", "targets": [...], "params": {...}}``. A heal closes the open
window with the same ``id`` (without an id: the latest open window of the same kind). A start
never healed stays open: ``heal`` is ``None`` and the window runs to the end of the history.
A heal with nothing open is ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from harness.checkers.base import prepare
from harness.history import Event


class FaultWindow(NamedTuple):
    id: str
    kind: str
    targets: tuple[str, ...]
    start: float
    heal: float | None

    def end(self, default: float) -> float:
        """The heal time, or ``default`` (the history's end) if the fault was never healed."""
        return self.heal if self.heal is not None else default

    def around(self, before: float = 0.0, after: float = 0.0,
               default_end: float = float("inf")) -> tuple[float, float]:
        """``(start - before, heal + after)``: a time window for ``downtime(window=…)``."""
        return (self.start - before, self.end(default_end) + after)


def _nemesis(events: Sequence[Event]) -> list[Event]:
    prep = prepare(events)
    return [e for e in prep.select("start", "heal") if e.process.startswith("nemesis")]


def fault_windows(events: Sequence[Event]) -> list[FaultWindow]:
    """Every fault as ``(id, kind, targets, start, heal)``, in start order."""
    prep = prepare(events)
    return list(prep.memo("fault_windows", lambda: _windows(_nemesis(prep))))


def _windows(nemesis: list[Event]) -> list[FaultWindow]:
    windows: list[FaultWindow] = []
    open_: list[int] = []  # indexes into windows, still open
    for e in nemesis:
        v = e.value
        fid = v.get("id")
        kind = str(v.get("fault", "?"))
        if e.f == "start":
            targets = v.get("targets") or ()
            if isinstance(targets, str):
                targets = (targets,)
            fid = str(fid) if fid is not None else f"#{len(windows)}"
            windows.append(FaultWindow(fid, kind, tuple(str(x) for x in targets), e.time, None))
            open_.append(len(windows) - 1)
            continue
        match = None
        for i in reversed(open_):
            w = windows[i]
            if (fid is not None and w.id == str(fid)) or (fid is None and w.kind == kind):
                match = i
                break
        if match is not None:
            open_.remove(match)
            windows[match] = windows[match]._replace(heal=e.time)
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
