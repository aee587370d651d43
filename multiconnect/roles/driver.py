"""What every role asks of its driver (see :mod:`multiconnect.roles`), declared once.

A role's generators reach these with ``yield from`` (the waits) or call them (the rest); the
containers' shells and the simulator's processes implement them.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any

from ..api_errors import error_body

INFO, WARNING, ERROR = logging.INFO, logging.WARNING, logging.ERROR
Gen = Generator[Any, Any, Any]
Reply = tuple[int, dict[str, Any]]   # an HTTP handler's (status, JSON body)


def envelope(status: int, code: int, details: str, title: str | None = None) -> Reply:
    """An error answer in the API's envelope (:func:`multiconnect.api_errors.error_body`;
    ``title`` defaults to the code's there)."""
    return status, error_body(code, details, title)


class Driver:
    def mono(self) -> float:
        """The node's monotonic clock."""
        raise NotImplementedError

    def wall(self) -> float:
        """The node's wall clock (status pages only; no decision reads it)."""
        raise NotImplementedError

    def log(self, level: int, fmt: str, *args: Any) -> None:
        raise NotImplementedError

    def spawn(self, gen: Gen, name: str) -> None:
        """Run ``gen`` as a task of this node."""
        raise NotImplementedError

    def unexpected(self, what: str) -> None:
        """Called in an ``except Exception`` that keeps a loop alive: log it (containers) or
        re-raise it (the simulator stops at a bug)."""
        raise NotImplementedError

    def sleep(self, seconds: float) -> Gen:
        raise NotImplementedError

    def db(self, conn: Any, fn: str, *args: Any) -> Gen:
        """``multiconnect.db.<fn>(cursor, *args)`` on the connection ``conn``; raises
        ``DatabaseError`` or ``NotPrimary``."""
        raise NotImplementedError
