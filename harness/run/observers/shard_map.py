"""The shard map read directly from the database (process ``shardmap``).

→ ``shard-map`` ``ok {"shards": {"0": {"hostname","epoch"}}}``, or ``fail {"error"}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.history import History
from harness.run.observers.poller import Poller, describe_error


class ShardMapPoller(Poller):
    name = "shardmap"

    def __init__(self, read: Callable[[], dict[int, dict[str, Any]]], history: History,
                 interval: float = 0.5, **kw: Any) -> None:
        super().__init__(interval, **kw)
        self.read = read
        self.history = history

    def poll(self) -> None:
        try:
            rows = self.read()
        except Exception as e:  # noqa: BLE001
            self.history.append("shardmap", "fail", "shard-map", {"error": describe_error(e)})
            return
        shards = {str(s): {"hostname": r.get("hostname"), "epoch": r.get("epoch")}
                  for s, r in sorted(rows.items())}
        self.history.append("shardmap", "ok", "shard-map", {"shards": shards})
