"""Shrinking a failing fault schedule: the smallest subset of its steps that still fails.

Model. A schedule is identified by its seed and the indices of the steps kept (every step
keeps its original start time, so a subset replays exactly with ``--chaos-steps``). Given
``fails(indices) -> bool`` — run that subset on a real cluster and judge it — :func:`shrink`
tries, in order:

1. the prefix: only the steps that started before the first violation was observed;
2. halves, then quarters, … of what is left (ddmin's complement removal);
3. every single step, last first.

A candidate that still fails replaces the current set. Each trial is charged its estimated
cost; a trial that would overrun ``budget`` seconds is not started (best effort: the result
is the smallest failing set found in time, marked ``complete=False``). ``fails`` is never
called on the empty set or on a set already tried.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass
class Trial:
    indices: tuple[int, ...]
    failed: bool
    seconds: float


@dataclass
class ShrinkResult:
    indices: tuple[int, ...]
    complete: bool  # every candidate was tried (False: the budget ran out first)
    trials: list[Trial] = field(default_factory=list)

    def summary(self, original: int) -> str:
        state = "minimal for single-step removal" if self.complete else "budget exhausted"
        return (f"shrunk {original} → {len(self.indices)} step(s) in {len(self.trials)} "
                f"trial(s) ({state}): steps {list(self.indices)}")


def _candidates(current: tuple[int, ...]) -> list[tuple[int, ...]]:
    """ddmin complements: drop one chunk of size n/2, n/4, … 2, then single steps, last
    first."""
    out: list[tuple[int, ...]] = []
    n = len(current)
    chunk = n // 2
    while chunk >= 2:
        for start in range(0, n, chunk):
            rest = current[:start] + current[start + chunk:]
            if rest:
                out.append(rest)
        chunk //= 2
    for i in reversed(range(n)):
        rest = current[:i] + current[i + 1:]
        if rest:
            out.append(rest)
    return out


def shrink(indices: Sequence[int], fails: Callable[[tuple[int, ...]], bool], *,
           starts: Sequence[float] | None = None, violation_at: float | None = None,
           cost: Callable[[tuple[int, ...]], float] = lambda _: 0.0,
           budget: float = 600.0, clock: Callable[[], float] = time.monotonic) -> ShrinkResult:
    """The smallest failing subset of ``indices`` found within ``budget`` seconds.

    ``starts[i]`` is step ``i``'s start time (schedule-relative) and ``violation_at`` when the
    first violation was seen, on the same clock: they give the prefix candidate. ``cost``
    estimates a trial's seconds (a trial is skipped when it would overrun the budget).
    """
    current = tuple(indices)
    result = ShrinkResult(current, complete=True)
    tried: set[tuple[int, ...]] = {current}
    t0 = clock()

    def attempt(candidate: tuple[int, ...]) -> bool | None:
        if not candidate or candidate in tried:
            return None
        if clock() - t0 + cost(candidate) > budget:
            result.complete = False
            return None
        tried.add(candidate)
        began = clock()
        failed = bool(fails(candidate))
        result.trials.append(Trial(candidate, failed, round(clock() - began, 3)))
        return failed

    if starts is not None and violation_at is not None:
        prefix = tuple(i for i in current if starts[i] < violation_at)
        if attempt(prefix):
            current = prefix
    progress = True
    while progress and len(current) > 1:
        progress = False
        for candidate in _candidates(current):
            if attempt(candidate):
                current = candidate
                progress = True
                break
        if not result.complete:
            break
    result.indices = current
    return result
