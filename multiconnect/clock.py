"""Clocks. Decision cores never read time themselves: shells pass ``now`` from a Clock.

Local deadlines use the monotonic clock (skew-proof: libfaketime is configured not to fake
it); anything compared between nodes uses the database clock instead.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock that moves only when told to (unit tests, the simulator)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a monotonic clock never goes back")
        self.now += seconds
        return self.now
