"""The database's own record of lease and shard-map changes (process ``db-record``).

Pulled by id from :mod:`harness.cluster.db_record`; first ``info`` ``db-record`` with the
settings the record is judged by, then each change as ``info`` ``db-lease`` or ``db-shard``
placed at the database's own time of the change (``at``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from harness.history import History
from harness.run.observers.poller import Poller


class DbRecorder(Poller):
    """Pulls the database's record (``read(since) -> rows``) every ``interval`` s; the
    first event states ``settings`` (what :func:`harness.judge.checkers.db_record` judges by:
    ``lease_ttl``, ``lease_safety``, ``fence_extra``, ``accounts``). ``stop()`` pulls once
    more."""

    name = "db-record"
    pull_at_stop = True

    def __init__(self, read: Callable[[int], list[dict[str, Any]]], history: History,
                 settings: dict[str, Any], since: int = 0, interval: float = 1.0,
                 **kw: Any) -> None:
        super().__init__(interval, **kw)
        self.read = read
        self.history = history
        self.settings = settings
        self.since = since
        self.recorded = 0
        self._lock = threading.Lock()

    def start(self) -> DbRecorder:
        self.history.append("db-record", "info", "db-record", dict(self.settings))
        super().start()
        return self

    def poll(self) -> None:
        with self._lock:
            for _ in range(100):  # bounded: 100 pages
                rows = self.read(self.since)
                for row in rows:
                    f = "db-lease" if row["table"] == "lease" else "db-shard"
                    self.history.append("db-record", "info", f, row, at_wall=row["at"])
                    self.since = max(self.since, row["id"])
                    self.recorded += 1
                if not rows:
                    return
