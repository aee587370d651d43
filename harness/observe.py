"""Observers: pollers that put what the cluster says about itself into the history.

Model. Each observer is a daemon thread with a fixed period scheduled on absolute ticks (a
slow poll delays the next one, it never piles up) and a hard stop. They never invoke
anything, so they record only completions:

- :class:`HealthPoller` (process ``health``): ``GET /v1/health`` every ``interval`` s →
  ``ok {"nodes": {name: {"role","gateway_status"} | {"error"}}}``, or ``fail {"error"}``
  when the API itself did not answer;
- :class:`ShardMapPoller` (``shardmap``): the shard map read directly from the database →
  ``shard-map`` ``ok {"shards": {"0": {"hostname","epoch"}}}``, or ``fail {"error"}``;
- :class:`ClaimSampler` (``claims``, one per master and coreapp): the node's own ``GET
  /internal/status``, directly (not through the webapp or a proxy), every ``interval`` s →
  ``claim`` ``ok {"node","kind","group","epoch","valid_for","sent"}`` when the node says it
  holds the master lease or a confirmed shard ownership (:func:`claim_of`); answers that
  claim nothing and failed requests are not recorded (``exclusive_claims`` judges them);
- :class:`DbRecorder` (``db-record``): the database's own record of lease and shard-map
  changes (:mod:`harness.db_record`), pulled by id; first ``info`` ``db-record`` with the
  settings the record is judged by, then each change as ``info`` ``db-lease`` or ``db-shard``
  placed at the database's own time of the change (``at``);
- :class:`GatewayRecorder` (``gateway``): the gateway stand-in's event log, pulled with
  ``/events?since=N``; every event becomes ``info`` ``gw-<type>`` placed on the history's
  clock at the event's own unix time (``at_wall``). A gateway restart (``next < since``)
  restarts from 0. ``stop()`` pulls once more so nothing logged before it is missed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from harness.api import roles_from_health
from harness.history import History


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


def _err(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:500]


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
            self.history.append("health", "fail", "health", {"error": _err(e)})
            return
        self.history.append("health", "ok", "health", {"nodes": nodes})


def claim_of(node: str, status: Any, sent: float) -> dict[str, Any] | None:
    """What one status answer claims: the master lease (group ``lease``) or a shard's
    ownership (group ``shard-<n>``), with how long the node believes it may act; None if
    nothing (a secondary, a coreapp without a valid ownership, an unreadable answer)."""
    if not isinstance(status, dict):
        return None
    if status.get("role") == "primary_master":
        kind, group, epoch = "master", "lease", status.get("lease_epoch")
        valid_for = status.get("lease_valid_for")
    elif status.get("role") == "coreapp" and status.get("shard") is not None:
        kind, group, epoch = "coreapp", f"shard-{status['shard']}", status.get("epoch")
        valid_for = status.get("ownership_valid_for")
    else:
        return None
    if not isinstance(valid_for, int | float) or valid_for <= 0:
        return None
    return {"node": node, "kind": kind, "group": group, "epoch": epoch,
            "valid_for": float(valid_for), "sent": round(sent, 6)}


class ClaimSampler(Poller):
    name = "claims"

    def __init__(self, node: str, url: Callable[[], str], history: History,
                 interval: float = 0.2, timeout: float = 0.25, **kw: Any) -> None:
        super().__init__(interval, **kw)
        self.node = node
        self.url = url
        self.history = history
        self.timeout = timeout
        self._session = requests.Session()

    def poll(self) -> None:
        sent = self.history.now()
        try:
            status = self._session.get(self.url(), timeout=self.timeout).json()
        except (requests.RequestException, ValueError):
            self.errors += 1
            return
        claim = claim_of(self.node, status, sent)
        if claim is not None:
            self.history.append("claims", "ok", "claim", claim)


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
            self.history.append("shardmap", "fail", "shard-map", {"error": _err(e)})
            return
        shards = {str(s): {"hostname": r.get("hostname"), "epoch": r.get("epoch")}
                  for s, r in sorted(rows.items())}
        self.history.append("shardmap", "ok", "shard-map", {"shards": shards})


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



class DbRecorder(Poller):
    """Pulls the database's record (``read(since) -> rows``) every ``interval`` s; the
    first event states ``settings`` (what :func:`harness.checkers.db_record` judges by:
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

