"""The gateway stand-in's event log (process ``gateway``).

Pulled with ``/events?since=N``; every event becomes ``info`` ``gw-<type>`` placed on the
history's clock at the event's own unix time (``at_wall``). A gateway restart (``next <
since``) restarts from 0. ``stop()`` pulls once more so nothing logged before it is missed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import requests

from harness.history import History
from harness.run.observers.poller import Poller


class GatewayRecorder(Poller):
    name = "gateway"
    pull_at_stop = True

    def __init__(self, gateway_url: str | Callable[[], str], history: History,
                 interval: float = 0.2, timeout: float = 2.0,
                 http: Any = None, since: int = 0, **kw: Any) -> None:
        super().__init__(interval, **kw)
        self._url = gateway_url
        self.history = history
        self.timeout = timeout
        self.http = http or requests.Session()
        self.since = since  # the log's cursor (a reused cluster's test starts past 0)
        self.recorded = 0
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return self._url() if callable(self._url) else self._url

    def poll(self) -> None:
        """Pull every event logged since the last pull (several pages if needed)."""
        with self._lock:
            for _ in range(1000):  # bounded: 1000 pages
                r = self.http.get(f"{self.url}/events", params={"since": self.since},
                                  timeout=self.timeout)
                r.raise_for_status()
                body = r.json()
                events, nxt = body.get("events") or [], int(body.get("next", self.since))
                if nxt < self.since:  # the gateway restarted: its log starts again
                    self.since = 0
                    continue
                for ev in events:
                    at = ev.get("time")
                    self.history.append("gateway", "info", f"gw-{ev.get('type', '?')}",
                                        ev, at_wall=float(at) if at is not None else None)
                    self.recorded += 1
                self.since = nxt
                if not events:
                    return
