"""Workload clients and observers against fake APIs and loopback sockets (no Docker)."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from typing import Any

import pytest
import requests

from harness.history import History
from harness.judge.checkers import media as media_checker
from harness.judge.checkers import pair_ops
from harness.run.observers.db_record import DbRecorder
from harness.run.observers.gateway import GatewayRecorder
from harness.run.observers.health import HealthPoller
from harness.run.observers.shard_map import ShardMapPoller
from harness.run.workload import (
    MediaRoundTrip,
    MessageSender,
    RecipientStream,
    classify_exception,
    classify_response,
)
from multiconnect.sharding import shard_of
from tests.loopback import listening

ENVELOPE = {"errors": [{"code": 1011, "title": "Service not ready", "details": "no owner"}]}


class Resp:
    def __init__(self, status: int, body: Any = None, content: bytes = b"") -> None:
        self.status_code = status
        self._body = body
        self.content = content
        self.text = json.dumps(body) if body is not None else content.decode(errors="replace")

    def json(self) -> Any:
        if self._body is None:
            raise ValueError("not json")
        return self._body


def ok_resp(i: int = 0) -> Resp:
    return Resp(201, {"messages": [{"id": f"gBEG{i}"}]})


class FakeApi:
    """send_text returns (or raises) what ``behave(n, to)`` gives for the n-th call overall
    (``calls`` and ``lock`` are shared by every worker's client)."""

    def __init__(self, behave, calls: list, lock: threading.Lock) -> None:
        self.behave, self.calls, self.lock = behave, calls, lock

    def send_text(self, to: str, body: str, timeout: float | None = None) -> Resp:
        with self.lock:
            n = len(self.calls)
            self.calls.append((to, body, timeout))
        out = self.behave(n, to)
        if isinstance(out, BaseException):
            raise out
        return out


def sender_with(behave, **kw) -> tuple[MessageSender, History, list]:
    h, calls, lock = History(), [], threading.Lock()
    return MessageSender(lambda: FakeApi(behave, calls, lock), h, **kw), h, calls


def sends(h: History) -> list:
    return [e for e in h.events() if e.f == "send"]


# -- classification ----------------------------------------------------------------------------

@pytest.mark.parametrize("status,body,expected", [
    (201, {"messages": [{"id": "x"}]}, ("ok", {})),
    (503, ENVELOPE, ("fail", {"status": 503, "error": ENVELOPE})),
    (400, ENVELOPE, ("fail", {"status": 400, "error": ENVELOPE})),
    (401, None, ("fail", {"status": 401, "error": "denied"})),
    (504, ENVELOPE, ("info", {"error": "HTTP 504: 1011 Service not ready: no owner"})),
    (502, None, ("info", {"error": "HTTP 502: denied"})),
    (500, None, ("info", {"error": "HTTP 500: denied"})),
])
def test_classify_response(status, body, expected):
    assert classify_response(status, body, "denied") == expected


@pytest.fixture
def listener():
    """A loopback server socket (:func:`tests.loopback.listening`)."""
    with listening() as served:
        yield served


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_refused_connection_is_a_definite_failure():
    with pytest.raises(requests.RequestException) as ei:
        requests.post(f"http://127.0.0.1:{closed_port()}/v1/messages", timeout=1)
    type_, extra = classify_exception(ei.value)
    assert type_ == "fail" and extra["status"] is None and "refused" in extra["error"]


def test_timeout_after_sending_is_unknown(listener):
    port, state = listener
    state["mode"] = "hang"
    with pytest.raises(requests.RequestException) as ei:
        requests.post(f"http://127.0.0.1:{port}/v1/messages", json={}, timeout=0.2)
    assert classify_exception(ei.value)[0] == "info"
    assert "timeout" in classify_exception(ei.value)[1]["error"]


def test_connection_lost_after_sending_is_unknown(listener):
    port, state = listener
    state["mode"] = "reset-after-read"
    with pytest.raises(requests.RequestException) as ei:
        requests.post(f"http://127.0.0.1:{port}/v1/messages", json={}, timeout=2)
    assert classify_exception(ei.value)[0] == "info"


# -- recipients --------------------------------------------------------------------------------

def test_recipients_unique_and_on_their_shard():
    rs = RecipientStream(4, prefix="155501")
    got = [(s, rs.next(s)) for s in [0, 1, 2, 3] * 50]
    assert len({to for _, to in got}) == 200
    assert all(shard_of(to, 4) == s for s, to in got)
    assert all(to.startswith("155501") and 5 <= len(to) <= 20 for _, to in got)


# -- the sender ----------------------------------------------------------------------------------

def test_sender_records_each_outcome_with_the_contract_shapes():
    script = [ok_resp(0), Resp(503, ENVELOPE), Resp(504, ENVELOPE),
              requests.ReadTimeout("read timed out"), Resp(201, {"oops": 1})]
    sender, h, _ = sender_with(lambda n, to: script[n], rate=100, count=5, shards=2,
                               workers=1)
    sender.start()
    sender.join(5)
    evs = sends(h)
    assert [e.type for e in evs] == ["invoke", "ok", "invoke", "fail", "invoke", "info",
                                     "invoke", "info", "invoke", "info"]
    invokes = [e for e in evs if e.type == "invoke"]
    assert all(set(e.value) == {"to", "shard"} for e in invokes)
    assert [e.value["shard"] for e in invokes] == [0, 1, 0, 1, 0]
    ok, fail, info504 = evs[1], evs[3], evs[5]
    assert set(ok.value) == {"to", "shard", "id", "latency"} and ok.value["id"] == "gBEG0"
    assert set(fail.value) == {"to", "shard", "status", "error"}
    assert fail.value["status"] == 503 and fail.value["error"] == ENVELOPE
    assert set(info504.value) == {"to", "shard", "error"} and "504" in info504.value["error"]
    st = sender.stats()
    assert (st.ok, st.fail, st.info, st.invoked, st.ticks) == (1, 1, 3, 5, 5)


def test_recipients_are_unique_and_spread_over_all_shards():
    sender, h, calls = sender_with(lambda n, to: ok_resp(n), rate=200, count=16, shards=4)
    sender.start()
    sender.join(5)
    invokes = [e for e in sends(h) if e.type == "invoke"]
    assert len({e.value["to"] for e in invokes}) == 16
    assert sorted(e.value["shard"] for e in invokes) == [0] * 4 + [1] * 4 + [2] * 4 + [3] * 4
    assert all(shard_of(e.value["to"], 4) == e.value["shard"] for e in invokes)


def test_ticks_are_absolute_and_never_early():
    sender, h, _ = sender_with(lambda n, to: ok_resp(n), rate=40, count=12)
    sender.start()
    sender.join(5)
    st = sender.stats()
    assert st.ticks == st.invoked == 12 and st.skipped == 0
    assert min(st.lateness) >= 0.0
    inv = [e.time for e in sends(h) if e.type == "invoke"]
    assert inv[-1] - inv[0] >= 11 / 40 - 1e-3


def test_slow_requests_do_not_lower_the_rate():
    """Each request takes 120 ms and ticks come every 50 ms: a sleep-after-send loop would
    manage 5 in 0.6 s; the pool keeps all 12 ticks."""
    def slow(n, to):
        threading.Event().wait(0.12)
        return ok_resp(n)

    sender, h, _ = sender_with(slow, rate=20, duration=0.6, workers=8)
    sender.start()
    sender.join(5)
    st = sender.stats()
    assert st.ticks == 12 and st.invoked == 12 and st.ok == 12 and st.skipped == 0
    ops, orphans = pair_ops(h.events(), "send")
    assert orphans == 0 and all(op.complete is not None for op in ops)
    assert len({op.process for op in ops}) >= 3  # concurrent requests, distinct processes


def test_a_hung_request_does_not_stop_the_others():
    release = threading.Event()

    def behave(n, to):
        if n == 0:
            release.wait(10)
            return requests.ReadTimeout("hung")
        return ok_resp(n)

    sender, h, _ = sender_with(behave, rate=50, count=6, workers=3)
    sender.start()
    try:
        for _ in range(500):
            if sum(1 for e in sends(h) if e.type == "ok") == 5:
                break
            threading.Event().wait(0.01)
        assert sum(1 for e in sends(h) if e.type == "ok") == 5
        assert not any(e.type == "info" for e in sends(h))
    finally:
        release.set()
        sender.join(5)
    ops, orphans = pair_ops(h.events(), "send")
    assert orphans == 0 and [op.type for op in ops].count("info") == 1
    hung = next(op for op in ops if op.type == "info")
    assert all(op.process != hung.process for op in ops if op.type == "ok"
               and op.invoke.time < hung.complete.time)


def test_ticks_without_an_idle_worker_are_skipped_not_queued():
    release = threading.Event()
    sender, h, calls = sender_with(lambda n, to: (release.wait(10), ok_resp(n))[1],
                                   rate=100, count=5, workers=1)
    sender.start()
    try:
        for _ in range(500):
            if sender.stats().ticks == 5:
                break
            threading.Event().wait(0.01)
        st = sender.stats()
        assert (st.ticks, st.invoked, st.skipped) == (5, 1, 4)
    finally:
        release.set()
        sender.join(5)
    assert len(calls) == 1


def test_worker_process_names_follow_the_given_number():
    sender, _, _ = sender_with(lambda n, to: ok_resp(n), process="sender-10", workers=3)
    assert sender.processes == ["sender-10", "sender-11", "sender-12"]
    sender, _, _ = sender_with(lambda n, to: ok_resp(n), rate=20, timeout=1.0)
    assert sender.workers == 22


def test_stop_ends_the_sender_early():
    sender, h, _ = sender_with(lambda n, to: ok_resp(n), rate=20, duration=60)
    sender.start()
    threading.Event().wait(0.2)
    st = sender.stop()
    assert not sender.running
    assert 1 <= st.ticks < 60 * 20
    n = len(h)
    threading.Event().wait(0.2)
    assert len(h) == n


# -- observers ----------------------------------------------------------------------------------

class FakeHealthApi:
    def __init__(self, answers: list) -> None:
        self.answers = answers

    def health(self, timeout: float | None = None) -> dict:
        a = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(a, BaseException):
            raise a
        return a


def test_health_poller_records_roles_and_failures_without_invokes():
    h = History()
    body = {"health": {"master-1:abc": {"role": "primary_master", "gateway_status": "x"},
                       "coreapp-1:def": {"role": "coreapp", "gateway_status": "connected"},
                       "coreapp-2:ghi": {"errors": [{"code": 1011, "details": "unreachable"}]}}}
    p = HealthPoller(lambda: FakeHealthApi([body, requests.ConnectionError("down"), body]), h,
                     interval=0.01)
    for _ in range(3):
        p.poll()
    evs = h.events()
    assert [(e.process, e.type, e.f) for e in evs] == [
        ("health", "ok", "health"), ("health", "fail", "health"), ("health", "ok", "health")]
    assert evs[0].value == {"nodes": {
        "master-1": {"role": "primary_master", "gateway_status": "x"},
        "coreapp-1": {"role": "coreapp", "gateway_status": "connected"},
        "coreapp-2": {"error": "unreachable"}}}
    assert "down" in evs[1].value["error"]


def test_poller_thread_polls_on_ticks_and_stops():
    h = History()
    p = ShardMapPoller(lambda: {1: {"hostname": None, "epoch": 2},
                                0: {"hostname": "coreapp-1", "epoch": 3}}, h, interval=0.02)
    p.start()
    threading.Event().wait(0.15)
    p.stop()
    n = len(h)
    assert n >= 2 and not p.running
    ev = h.events()[0]
    assert (ev.process, ev.type, ev.f) == ("shardmap", "ok", "shard-map")
    assert ev.value == {"shards": {"0": {"hostname": "coreapp-1", "epoch": 3},
                                   "1": {"hostname": None, "epoch": 2}}}
    threading.Event().wait(0.05)
    assert len(h) == n


class FakeGatewayHttp:
    """Serves /events from ``log`` in pages of ``page``; ``log`` may be replaced (restart)."""

    def __init__(self, log: list[dict], page: int = 2) -> None:
        self.log = log
        self.page = page
        self.requests: list[int] = []

    def get(self, url: str, params: dict, timeout: float) -> Resp:
        since = int(params["since"])
        self.requests.append(since)
        chunk = self.log[since:since + self.page]
        nxt = since + len(chunk) if since <= len(self.log) else len(self.log)
        r = Resp(200, {"events": chunk, "next": nxt})
        r.raise_for_status = lambda: None
        return r


def gw_event(seq: int, t: float, type_: str = "connect") -> dict:
    return {"seq": seq, "time": t, "type": type_, "conn": 1, "shard": 0, "node": "coreapp-1"}


def test_gateway_recorder_places_events_at_their_wall_time_and_handles_restarts():
    h = History()
    base = h.time_of_wall(0) * -1  # history's wall at start
    log = [gw_event(i, base + 10 + i, "connect" if i == 0 else "deliver") for i in range(5)]
    http = FakeGatewayHttp(log)
    rec = GatewayRecorder("http://gw", h, http=http)
    rec.poll()
    evs = h.events()
    assert [e.f for e in evs] == ["gw-connect"] + ["gw-deliver"] * 4
    assert all(e.process == "gateway" and e.type == "info" for e in evs)
    assert [e.value for e in evs] == log
    assert [round(e.time, 6) for e in evs] == [round(10.0 + i, 6) for i in range(5)]
    assert rec.since == 5
    http.log = [gw_event(0, base + 20)]  # the gateway restarted: its log is shorter
    rec.poll()
    assert rec.since == 1 and h.events()[-1].value["seq"] == 0 and len(h) == 6
    http.log.append(gw_event(1, base + 21, "disconnect"))
    rec.stop()  # never started: stop still pulls what is left
    assert h.events()[-1].f == "gw-disconnect"


def test_db_recorder_states_its_settings_then_places_changes_at_database_time():
    h = History()
    base = h.time_of_wall(0) * -1
    table = [{"id": i, "at": base + 5 + i, "table": "lease" if i % 2 else "shard"}
             for i in range(1, 6)]
    reads: list[int] = []

    def read(since: int) -> list[dict]:
        reads.append(since)
        return [r for r in table if r["id"] > since][:2]  # pages of two

    rec = DbRecorder(read, h, {"lease_ttl": 5.0}, since=1, interval=60)
    rec.start()
    rec.stop()  # the first tick and the final pull
    evs = h.events()
    assert evs[0].f == "db-record" and evs[0].value == {"lease_ttl": 5.0}
    assert [e.f for e in evs[1:]] == ["db-shard", "db-lease", "db-shard", "db-lease"]
    assert [round(e.time, 6) for e in evs[1:]] == [7.0, 8.0, 9.0, 10.0]
    assert rec.since == 5 and rec.recorded == 4 and reads[0] == 1


# -- media -------------------------------------------------------------------------------------

class FakeMediaApi:
    def __init__(self, store: dict, name: str, fail_get: list | None = None,
                 corrupt: bool = False) -> None:
        self.store, self.name = store, name
        self.fail_get = fail_get if fail_get is not None else []
        self.corrupt = corrupt
        self.gets: list[str] = []

    def upload_media(self, data: bytes, timeout: float | None = None) -> Resp:
        mid = hashlib.sha1(data).hexdigest()[:12]
        self.store[mid] = data
        return Resp(201, {"media": [{"id": mid}]})

    def get_media(self, mid: str, timeout: float | None = None) -> Resp:
        self.gets.append(mid)
        if self.fail_get:
            self.fail_get.pop(0)
            return Resp(503, ENVELOPE)
        if mid not in self.store:
            return Resp(404, {"errors": [{"code": 1006, "title": "not found"}]})
        data = self.store[mid]
        return Resp(200, None, data[:-1] + b"!" if self.corrupt else data)


def test_media_round_trip_reads_back_through_the_other_webapp():
    h, store = History(), {}
    apis = {"webapp-1": FakeMediaApi(store, "webapp-1"), "webapp-2": FakeMediaApi(store,
                                                                                   "webapp-2")}
    m = MediaRoundTrip({k: (lambda a=a: a) for k, a in apis.items()}, h, interval=0.01,
                       count=4, seed=1)
    m.start()
    m.join(10)
    ops, _ = pair_ops(h.events(), "upload", "download")
    ups = [op for op in ops if op.f == "upload"]
    downs = [op for op in ops if op.f == "download"]
    assert len(ups) == 4 and all(op.type == "ok" for op in ups)
    assert {op.get("id") for op in downs} == {op.get("id") for op in ups}
    for d in downs:
        up = next(u for u in ups if u.get("id") == d.get("id"))
        assert d.invoke.value["via"] != up.invoke.value["via"]
        assert d.get("sha256") == up.get("sha256") and d.get("size") == up.get("size")
    assert set(ups[0].complete.value) == {"id", "size", "sha256", "via"}
    assert media_checker(h.events()).valid


def test_media_single_webapp_reads_later_and_retries_failed_reads():
    h, store = History(), {}
    api = FakeMediaApi(store, "webapp-1", fail_get=[1])
    m = MediaRoundTrip({"webapp-1": lambda: api}, h, interval=0.02, count=3,
                       download_delay=0.03, seed=2)
    m.start()
    m.join(10)
    ops, _ = pair_ops(h.events(), "upload", "download")
    ups = [op for op in ops if op.f == "upload"]
    downs = [op for op in ops if op.f == "download"]
    assert all(op.type == "ok" for op in ups)
    for d in downs:  # never before the delay
        up = next(u for u in ups if u.get("id") == d.get("id"))
        assert d.invoke.time - up.complete.time >= 0.03 - 1e-3
    failed = [d for d in downs if d.type == "fail"]
    assert len(failed) == 1 and failed[0].complete.value["error"] == ENVELOPE
    assert {d.get("id") for d in downs if d.type == "ok"} == {u.get("id") for u in ups}
    assert not m.pending


def test_media_corruption_is_recorded_with_the_bytes_actually_read():
    h, store = History(), {}
    api = FakeMediaApi(store, "webapp-1", corrupt=True)
    m = MediaRoundTrip({"webapp-1": lambda: api}, h, count=1, download_delay=0.0, seed=3)
    up = m.upload("webapp-1")
    assert up is not None and m.download(up, "webapp-1")
    res = media_checker(h.events())
    assert not res.valid and res.figures["corrupt"] == 1
    assert m.counts["corrupt"] == 1
