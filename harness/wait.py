"""Measure, don't sleep: poll a condition with a deadline; on timeout say what was awaited
and what was seen last."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class WaitTimeout(TimeoutError):
    def __init__(self, what: str, timeout: float, last: Any) -> None:
        super().__init__(f"timed out after {timeout:g}s waiting for {what}; last seen: "
                         f"{last!r}"[:4000])
        self.what, self.timeout, self.last = what, timeout, last


def wait_for(check: Callable[[], T], *, timeout: float, what: str,
             interval: float = 0.1) -> T:
    """Call ``check`` until it returns a truthy value. Exceptions count as "not yet" except
    those that say the wait is hopeless (``RuntimeError`` subclasses named ``*StartError``)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = check()
        except Exception as e:  # noqa: BLE001
            if type(e).__name__.endswith("StartError"):
                raise
            last = f"{type(e).__name__}: {e}"
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise WaitTimeout(what, timeout, last)
        time.sleep(interval)
