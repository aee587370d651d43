"""The workload: clients that drive the public API at a fixed rate and record every operation.

Model (Jepsen clients). Every operation is an ``invoke`` followed by exactly one completion:
``ok`` (it happened), ``fail`` (it certainly did not: a definite error status with the error
envelope, or no connection at all) or ``info`` (unknown: a timeout, a reset after the request
was sent, or 502/504/500 which the webapp uses for "may have been sent"). A process never has
two operations in flight.

:class:`MessageSender` keeps its rate under faults: a dispatcher thread fires on absolute ticks
``t0 + k/rate`` (never sleep-after-send) and hands each tick to an idle worker of a bounded
pool; each worker is one process (``sender-K``, ``sender-K+1``, …: the number in ``process``
is the first worker's). By default the pool holds ``ceil(rate × timeout) + 2`` workers, so the
rate holds even when every request hangs until its timeout; a tick that finds no idle worker is
skipped and counted (``stats().skipped``), never queued. Recipients are unique (one per
message) and go round-robin over all shards (``multiconnect.sharding``).

:class:`MediaRoundTrip` uploads random bytes and reads each upload back — through another
webapp when there are several, else after ``download_delay`` — retrying failed reads on later
ticks and once more when stopped. :class:`Workload` runs a sender, the media loop and the
observers (:mod:`harness.run.observers`) as one: ``with workload.running():``.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import math
import queue
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from urllib3.exceptions import NewConnectionError

from harness.cluster.api_client import ApiClient
from harness.cluster.links import PORTS
from harness.history import History
from harness.run.observers.claims import ClaimSampler
from harness.run.observers.db_record import DbRecorder
from harness.run.observers.gateway import GatewayRecorder
from harness.run.observers.health import HealthPoller
from harness.run.observers.poller import Poller
from harness.run.observers.shard_map import ShardMapPoller
from multiconnect.sharding import shard_of

__all__ = [
    "MediaRoundTrip", "MessageSender", "RecipientStream", "SenderStats", "Workload",
    "classify_exception", "classify_response",
]


# -- outcome classification (pure) -------------------------------------------------------------

def _json(resp: Any) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _details(body: Any, text: str) -> str:
    if isinstance(body, Mapping) and isinstance(body.get("errors"), list) and body["errors"]:
        e = body["errors"][0]
        if isinstance(e, Mapping):
            return f"{e.get('code')} {e.get('title', '')}: {e.get('details', '')}".strip()
    return (text or "")[:300]


def classify_response(status: int, body: Any, text: str = "",
                      ok_status: int = 201) -> tuple[str, dict[str, Any]]:
    """An HTTP answer → ``(type, fields)``: ``ok`` on ``ok_status``; ``info`` on 500/502/504
    (outcome unknown: ``error`` says why); ``fail`` otherwise with ``status`` and ``error``
    (the envelope if the body is one, else the text)."""
    if status == ok_status:
        return "ok", {}
    if status in (500, 502, 504):
        return "info", {"error": f"HTTP {status}: {_details(body, text)}"}
    envelope = isinstance(body, Mapping) and isinstance(body.get("errors"), list)
    return "fail", {"status": status, "error": body if envelope else (text or "")[:300]}


def classify_exception(e: BaseException) -> tuple[str, dict[str, Any]]:
    """A client exception → ``fail`` if the request certainly never reached the server
    (refused, no route, connect timeout), else ``info`` (timeout or reset after sending)."""
    if isinstance(e, requests.ConnectTimeout):
        return "fail", {"status": None, "error": f"connect timeout: {e}"[:300]}
    if isinstance(e, requests.ConnectionError):
        reason = getattr(e.args[0], "reason", None) if e.args else None
        if isinstance(reason, NewConnectionError) or isinstance(
                e.__context__, ConnectionRefusedError):
            return "fail", {"status": None, "error": f"connection refused: {reason or e}"[:300]}
        return "info", {"error": f"connection lost: {e}"[:300]}
    if isinstance(e, requests.Timeout):
        return "info", {"error": f"timeout: {e}"[:300]}
    return "info", {"error": f"{type(e).__name__}: {e}"[:300]}


# -- recipients -----------------------------------------------------------------------------------

class RecipientStream:
    """Unique recipients per shard: ``<prefix><7-digit counter>``, sorted into shards by the
    same hash the webapp uses."""

    def __init__(self, shards: int, prefix: str = "1555") -> None:
        self.shards = shards
        self.prefix = prefix
        self._i = 0
        self._ready: list[deque[str]] = [deque() for _ in range(shards)]
        self._lock = threading.Lock()

    def next(self, shard: int) -> str:
        with self._lock:
            q = self._ready[shard]
            while not q:
                if self._i >= 10**7:
                    raise RuntimeError(f"recipient prefix {self.prefix} exhausted")
                cand = f"{self.prefix}{self._i:07d}"
                self._i += 1
                self._ready[shard_of(cand, self.shards)].append(cand)
            return q.popleft()


# -- the message sender ----------------------------------------------------------------------------

@dataclass
class SenderStats:
    rate: float
    ticks: int = 0
    invoked: int = 0
    skipped: int = 0
    ok: int = 0
    fail: int = 0
    info: int = 0
    first_invoke: float | None = None
    last_invoke: float | None = None
    lateness: list[float] = field(default_factory=list)  # invoke time - scheduled tick

    @property
    def achieved_rate(self) -> float | None:
        """Invokes per second between the first and the last invoke."""
        if self.invoked < 2 or self.first_invoke is None or self.last_invoke is None:
            return None
        span = self.last_invoke - self.first_invoke
        return (self.invoked - 1) / span if span > 0 else None

    def lateness_quantile(self, q: float) -> float | None:
        if not self.lateness:
            return None
        xs = sorted(self.lateness)
        return xs[min(len(xs) - 1, int(q * len(xs)))]

    def summary(self) -> dict[str, Any]:
        return {"rate": self.rate, "achieved_rate": self.achieved_rate, "ticks": self.ticks,
                "invoked": self.invoked, "skipped": self.skipped, "ok": self.ok,
                "fail": self.fail, "info": self.info,
                "lateness_p50": self.lateness_quantile(0.5),
                "lateness_p99": self.lateness_quantile(0.99),
                "lateness_max": max(self.lateness, default=None)}


def _split_process(process: str) -> tuple[str, int]:
    m = re.match(r"^(.*?)(\d+)$", process)
    return (m.group(1), int(m.group(2))) if m else (process + "-", 0)


class _Worker:
    def __init__(self, sender: MessageSender, process: str) -> None:
        self.sender = sender
        self.process = process
        self.api: Any = None
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, daemon=True, name=process)
        self.thread.start()

    def _run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            try:
                self.sender._send(self, *job)
            finally:
                self.sender._idle.put(self)


class MessageSender:
    """Sends text messages at a fixed ``rate`` until stopped, ``count`` messages were
    scheduled or ``duration`` s passed. ``api_factory()`` is called once per worker and must
    return a client with ``send_text(to, body, timeout=…)`` (an :class:`ApiClient`)."""

    def __init__(self, api_factory: Callable[[], Any], history: History, rate: float = 20.0,
                 shards: int = 1, process: str = "sender-0", timeout: float = 1.0, *,
                 count: int | None = None, duration: float = 600.0, workers: int | None = None,
                 prefix: str | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or timeout <= 0 or duration <= 0:
            raise ValueError("rate, timeout and duration must be > 0")
        self.api_factory = api_factory
        self.history = history
        self.rate = float(rate)
        self.shards = shards
        self.timeout = timeout
        self.count = count
        self.duration = duration
        self.clock = clock
        self.workers = workers or min(64, math.ceil(self.rate * timeout) + 2)
        base, n = _split_process(process)
        self.processes = [f"{base}{n + i}" for i in range(self.workers)]
        self.recipients = RecipientStream(shards, prefix or f"1555{n % 100:02d}")
        self._stats = SenderStats(self.rate)
        self._lock = threading.Lock()
        self._idle: queue.LifoQueue[_Worker] = queue.LifoQueue()
        self._pool: list[_Worker] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # public -------------------------------------------------------------------------------
    def start(self) -> MessageSender:
        if self._thread is not None:
            raise RuntimeError("sender already started")
        self._pool = [_Worker(self, p) for p in self.processes]
        for w in reversed(self._pool):  # LIFO: the first worker is used first
            self._idle.put(w)
        self._thread = threading.Thread(target=self._dispatch, daemon=True,
                                        name=f"{self.processes[0]}-ticks")
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> SenderStats:
        """Stop ticking, wait for requests in flight (bounded), return the stats."""
        self._stop.set()
        self.join(timeout)
        return self.stats()

    def join(self, timeout: float | None = None) -> None:
        """Wait until the dispatcher has finished and every request has completed."""
        limit = timeout if timeout is not None else 4 * self.timeout + 5.0
        deadline = self.clock() + limit + (0 if self._stop.is_set() else self.duration)
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - self.clock()))
        for w in self._pool:
            w.jobs.put(None)
        for w in self._pool:
            w.thread.join(max(0.0, deadline - self.clock()))

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stats(self) -> SenderStats:
        with self._lock:
            s = self._stats
            return SenderStats(s.rate, s.ticks, s.invoked, s.skipped, s.ok, s.fail, s.info,
                               s.first_invoke, s.last_invoke, list(s.lateness))

    # internals ------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        t0 = self.clock()
        period = 1.0 / self.rate
        for k in itertools.count():
            if self.count is not None and k >= self.count:
                return
            if k * period >= self.duration:
                return
            due = t0 + k * period
            if self._stop.wait(max(0.0, due - self.clock())):
                return
            shard = k % self.shards
            with self._lock:
                self._stats.ticks += 1
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                with self._lock:
                    self._stats.skipped += 1
                continue
            worker.jobs.put((k, due, shard))

    def _send(self, worker: _Worker, k: int, due: float, shard: int) -> None:
        to = self.recipients.next(shard)
        if worker.api is None:
            try:
                worker.api = self.api_factory()
            except Exception as e:  # noqa: BLE001 - recorded as a failed op
                self.history.append(worker.process, "invoke", "send", {"to": to, "shard": shard})
                self._complete(worker, "fail", {"to": to, "shard": shard, "status": None,
                                                "error": f"no client: {e}"[:300]})
                return
        self.history.append(worker.process, "invoke", "send", {"to": to, "shard": shard})
        t = self.clock()
        with self._lock:
            st = self._stats
            st.invoked += 1
            st.lateness.append(t - due)
            st.first_invoke = t if st.first_invoke is None else st.first_invoke
            st.last_invoke = t
        try:
            resp = worker.api.send_text(to, f"{worker.process} #{k}", timeout=self.timeout)
        except Exception as e:  # noqa: BLE001 - every client error is an outcome
            type_, extra = classify_exception(e)
            self._complete(worker, type_, {"to": to, "shard": shard, **extra})
            return
        latency = round(self.clock() - t, 6)
        body = _json(resp)
        type_, extra = classify_response(resp.status_code, body, getattr(resp, "text", ""))
        if type_ == "ok":
            try:
                mid = body["messages"][0]["id"]
            except (TypeError, KeyError, IndexError):
                type_, extra = "info", {"error": f"HTTP 201 without a message id: {body!r}"[:300]}
            else:
                extra = {"id": mid, "latency": latency}
        self._complete(worker, type_, {"to": to, "shard": shard, **extra})

    def _complete(self, worker: _Worker, type_: str, value: dict[str, Any]) -> None:
        self.history.append(worker.process, type_, "send", value)
        with self._lock:
            setattr(self._stats, type_, getattr(self._stats, type_) + 1)


# -- media round trips ------------------------------------------------------------------

@dataclass
class _Pending:
    id: str
    sha256: str
    size: int
    via: str
    at: float


class MediaRoundTrip:
    """One ``media-K`` process: every ``interval`` s upload ``size`` random bytes, then read
    back one earlier upload. ``apis`` maps a webapp name (``via``) to a client factory."""

    def __init__(self, apis: Mapping[str, Callable[[], Any]], history: History,
                 process: str = "media-0", interval: float = 1.0,
                 size: tuple[int, int] = (512, 8192), timeout: float = 3.0,
                 download_delay: float = 1.0, duration: float = 600.0,
                 count: int | None = None, seed: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not apis:
            raise ValueError("need at least one webapp")
        self.factories = dict(apis)
        self.vias = list(self.factories)
        self.history = history
        self.process = process
        self.interval = interval
        self.size = size
        self.timeout = timeout
        self.download_delay = download_delay
        self.duration = duration
        self.count = count
        self.clock = clock
        self.rng = random.Random(seed)
        self.pending: list[_Pending] = []
        self.counts = {"upload": 0, "download": 0, "verified": 0, "corrupt": 0}
        self._apis: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _api(self, via: str) -> Any:
        if via not in self._apis:
            self._apis[via] = self.factories[via]()
        return self._apis[via]

    def upload(self, via: str) -> _Pending | None:
        n = self.rng.randint(*self.size)
        data = self.rng.randbytes(n)
        sha = hashlib.sha256(data).hexdigest()
        base = {"size": n, "sha256": sha, "via": via}
        self.history.append(self.process, "invoke", "upload", base)
        self.counts["upload"] += 1
        try:
            resp = self._api(via).upload_media(data, timeout=self.timeout)
        except Exception as e:  # noqa: BLE001
            type_, extra = classify_exception(e)
            self.history.append(self.process, type_, "upload", {**base, **extra})
            return None
        body = _json(resp)
        type_, extra = classify_response(resp.status_code, body, getattr(resp, "text", ""))
        if type_ == "ok":
            try:
                mid = str(body["media"][0]["id"])
            except (TypeError, KeyError, IndexError):
                type_, extra = "info", {"error": f"HTTP 201 without a media id: {body!r}"[:300]}
            else:
                self.history.append(self.process, "ok", "upload", {"id": mid, **base})
                return _Pending(mid, sha, n, via, self.clock())
        self.history.append(self.process, type_, "upload", {**base, **extra})
        return None

    def download(self, item: _Pending, via: str) -> bool:
        """Read ``item`` back; True when the round trip is settled (intact or corrupt)."""
        self.history.append(self.process, "invoke", "download", {"id": item.id, "via": via})
        self.counts["download"] += 1
        try:
            resp = self._api(via).get_media(item.id, timeout=self.timeout)
        except Exception as e:  # noqa: BLE001
            type_, extra = classify_exception(e)
            self.history.append(self.process, type_, "download", {"id": item.id, "via": via,
                                                                   **extra})
            return False
        if resp.status_code == 200:
            data = resp.content
            sha = hashlib.sha256(data).hexdigest()
            self.history.append(self.process, "ok", "download", {
                "id": item.id, "size": len(data), "sha256": sha, "via": via})
            self.counts["verified" if sha == item.sha256 else "corrupt"] += 1
            return True
        type_, extra = classify_response(resp.status_code, _json(resp),
                                         getattr(resp, "text", ""), ok_status=200)
        self.history.append(self.process, type_, "download", {"id": item.id, "via": via,
                                                               **extra})
        return False

    def _download_one(self, final: bool = False) -> None:
        now = self.clock()
        for item in list(self.pending):
            others = [v for v in self.vias if v != item.via]
            if not others and not final and now - item.at < self.download_delay:
                continue
            via = self.rng.choice(others) if others else item.via
            if self.download(item, via):
                self.pending.remove(item)
            return

    def _run(self) -> None:
        t0 = self.clock()
        for k in itertools.count():
            if (self.count is not None and k >= self.count) or k * self.interval >= self.duration:
                break
            if self._stop.wait(max(0.0, t0 + k * self.interval - self.clock())):
                break
            item = self.upload(self.vias[k % len(self.vias)])
            if item is not None:
                self.pending.append(item)
            self._download_one()
        self.drain()

    def drain(self, budget: float | None = None) -> None:
        """Try each pending read once more (bounded by ``budget`` s)."""
        limit = self.clock() + (budget if budget is not None else 4 * self.timeout)
        wait = self.download_delay if len(self.vias) == 1 else 0.0
        for item in list(self.pending):
            if self.clock() >= limit:
                return
            rest = item.at + wait - self.clock()
            if rest > 0:
                threading.Event().wait(min(rest, max(0.0, limit - self.clock())))
            others = [v for v in self.vias if v != item.via]
            if self.download(item, others[0] if others else item.via):
                self.pending.remove(item)

    def start(self) -> MediaRoundTrip:
        if self._thread is not None:
            raise RuntimeError("media loop already started")
        self._thread = threading.Thread(target=self._run, daemon=True, name=self.process)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the current operation; pending reads are tried once more."""
        self._stop.set()
        self.join(timeout)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the loop to end by itself (``count``/``duration``) or after ``stop``."""
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else
                              (0 if self._stop.is_set() else self.duration)
                              + 8 * self.timeout + 5)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


# -- everything together ----------------------------------------------------------------

def api_factory(cluster: Any, k: int = 1, timeout: float = 1.0) -> Callable[[], ApiClient]:
    """Clients for ``webapp-k`` through its ``client->webapp-k`` link, sharing one login."""
    def make() -> ApiClient:
        token = cluster.api(k).token
        return ApiClient(cluster.webapp_url(k), "admin", cluster.admin_password,
                         timeout=timeout, token=token)
    return make


def status_url(cluster: Any, name: str) -> Callable[[], str]:
    """A node's own status endpoint (where the harness dials it: :meth:`Cluster.reach`)."""
    return lambda: f"{cluster.url(name, PORTS['internal'])}/internal/status"


class Workload:
    """A message sender, a media round trip and the observers, started and stopped together.

    ``rate`` messages/s through webapp 1 (``webapp`` picks another); ``media`` uploads per s
    (0 disables); ``duration`` bounds every loop. Observers: health (through the webapp),
    shard map (database), gateway log, the database's record of lease and shard-map changes
    (``db_record``), and every master's and coreapp's own status (claims, every
    ``claims_interval`` s). ``stop()`` stops the clients first, then pulls the
    gateway log one last time so every delivery acknowledged before is recorded.
    """

    def __init__(self, cluster: Any, history: History, rate: float = 20.0, *,
                 timeout: float = 1.0, media: float = 1.0, health: bool = True,
                 shardmap: bool = True, gateway: bool = True, webapp: int = 1,
                 duration: float = 600.0, count: int | None = None,
                 health_interval: float = 0.3, shardmap_interval: float = 0.5,
                 claims: bool = True, claims_interval: float = 0.2,
                 db_record: bool = True) -> None:
        self.cluster = cluster
        self.history = history
        webapps = cluster.spec.webapps
        self.sender = MessageSender(api_factory(cluster, webapp, timeout), history, rate=rate,
                                    shards=cluster.spec.shards, process="sender-0",
                                    timeout=timeout, duration=duration, count=count)
        self.parts: list[Any] = [self.sender]
        self.media: MediaRoundTrip | None = None
        if media > 0:
            apis = {f"webapp-{k}": api_factory(cluster, k, 3.0) for k in range(1, webapps + 1)}
            self.media = MediaRoundTrip(apis, history, interval=1.0 / media, duration=duration)
            self.parts.append(self.media)
        self.observers: list[Poller] = []
        if health:
            self.observers.append(HealthPoller(api_factory(cluster, webapp, 2.0), history,
                                               interval=health_interval, duration=duration + 60))
        if shardmap:
            self.observers.append(ShardMapPoller(cluster.shard_map, history,
                                                 interval=shardmap_interval,
                                                 duration=duration + 60))
        if claims:
            for name in sorted(getattr(cluster, "nodes", {})):
                if name.startswith(("master-", "coreapp-")):
                    self.observers.append(ClaimSampler(
                        name, status_url(cluster, name), history, interval=claims_interval,
                        duration=duration + 60))
        if db_record and hasattr(cluster, "db_record_rows"):
            self.observers.append(DbRecorder(cluster.db_record_rows, history,
                                             cluster.db_record_settings(),
                                             since=cluster.db_record_end(),
                                             duration=duration + 60))
        self.gateway: GatewayRecorder | None = None
        if gateway:
            self.gateway = GatewayRecorder(lambda: cluster.gateway_url, history,
                                           duration=duration + 60,
                                           since=getattr(cluster, "gateway_since", 0))
            self.observers.append(self.gateway)
        self.started = False

    def start(self) -> Workload:
        for k in range(1, self.cluster.spec.webapps + 1):
            with contextlib.suppress(Exception):  # a cut link at start: workers retry
                self.cluster.api(k)
        for o in self.observers:
            o.start()
        for p in self.parts:
            p.start()
        self.started = True
        return self

    def stop(self) -> SenderStats:
        if not self.started:
            return self.sender.stats()
        self.started = False
        stats = self.sender.stop()
        if self.media is not None:
            self.media.stop()
        for o in self.observers:
            o.stop()
        return stats

    @contextlib.contextmanager
    def running(self) -> Iterator[Workload]:
        self.start()
        try:
            yield self
        finally:
            self.stop()


def spread(shards: int, count: int, prefix: str = "1555") -> Sequence[str]:
    """``count`` unique recipients, round-robin over ``shards`` (for tests and scenarios)."""
    rs = RecipientStream(shards, prefix)
    return [rs.next(i % shards) for i in range(count)]
