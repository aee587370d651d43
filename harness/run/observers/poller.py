"""The base of every observer: a daemon thread that polls on a fixed period.

Model. Ticks are absolute (a slow poll delays the next one, it never piles up) and ``stop()``
is a hard stop. Observers never invoke anything, so they record only completions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Poller:
    """A thread calling ``poll()`` every ``interval`` s (absolute ticks) until stopped or
    ``duration`` s have passed."""

    name = "poller"
    #: Poll once more at ``stop()``: a recorder of a log keeps nothing logged before it.
    pull_at_stop = False

    def __init__(self, interval: float, duration: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if interval <= 0:
            raise ValueError("interval must be > 0")
        self.interval = interval
        self.duration = duration
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.polls = 0
        self.errors = 0

    def poll(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _run(self) -> None:
        t0 = self.clock()
        k = 0
        while not self._stop.is_set() and self.clock() - t0 < self.duration:
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - a poller must survive anything
                self.errors += 1
            self.polls += 1
            k = max(k + 1, int((self.clock() - t0) / self.interval) + 1)  # skip missed ticks
            if self._stop.wait(max(0.0, t0 + k * self.interval - self.clock())):
                break

    def start(self) -> Poller:
        if self._thread is not None:
            raise RuntimeError(f"{self.name} already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True, name=self.name)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None
        if self.pull_at_stop:
            try:
                self.poll()
            except Exception:  # noqa: BLE001 - the source may be gone already
                self.errors += 1

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def describe_error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:500]
