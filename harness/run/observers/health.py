"""The cluster's own view of its roles (process ``health``).

``GET /v1/health`` every ``interval`` s → ``ok {"nodes": {name: {"role","gateway_status"} |
{"error"}}}``, or ``fail {"error"}`` when the API itself did not answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.cluster.api_client import roles_from_health
from harness.history import History
from harness.run.observers.poller import Poller, describe_error


class HealthPoller(Poller):
    name = "health"

    def __init__(self, api_factory: Callable[[], Any], history: History,
                 interval: float = 0.3, timeout: float = 2.0, **kw: Any) -> None:
        super().__init__(interval, **kw)
        self.api_factory = api_factory
        self.history = history
        self.timeout = timeout
        self._api: Any = None

    def poll(self) -> None:
        try:
            if self._api is None:
                self._api = self.api_factory()
            body = self._api.health(timeout=self.timeout)
            nodes = roles_from_health(body)
        except Exception as e:  # noqa: BLE001
            self.history.append("health", "fail", "health", {"error": describe_error(e)})
            return
        self.history.append("health", "ok", "health", {"nodes": nodes})
