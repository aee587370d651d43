"""Every fault kind on a real cluster: its effect is observed while it holds, and heal
restores. Faults that do not disturb each other share one cluster (a start costs ~15 s).

Observations are the operator's: the public API through ``client->webapp-1``, plain TCP
connects to the proxies' listeners, container state, ``time.time()`` inside a container, the
database read directly, and the gateway stand-in's log.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from typing import Any

import pytest
import requests

from harness.judge.checkers import downtime, find_fault, media, no_lost_acks
from harness.nemesis.bandwidth import Bandwidth
from harness.nemesis.blackhole import Blackhole
from harness.nemesis.bridge import Bridge
from harness.nemesis.clock_skew import ClockSkew
from harness.nemesis.cut import Cut
from harness.nemesis.db_outage import DbOutage
from harness.nemesis.isolate import Isolate
from harness.nemesis.kill import Kill
from harness.nemesis.latency import Latency
from harness.nemesis.lost_close import LostClose
from harness.nemesis.nfs_outage import NfsOutage
from harness.nemesis.oneway import Oneway
from harness.nemesis.pause import Pause
from harness.nemesis.reset import Reset
from harness.nemesis.restart import Restart
from harness.nemesis.split import Split
from harness.nemesis.stop import Stop
from harness.run.workload import MediaRoundTrip, Workload, api_factory, classify_exception, spread
from harness.wait import wait_for

pytestmark = pytest.mark.integration

PROBE = "/v1/__probe__"  # any route: a 404 envelope proves the webapp answered


def probe(url: str, timeout: float = 1.0) -> tuple[Any, float]:
    """``(status code | exception, seconds)`` of one request."""
    t = time.monotonic()
    try:
        r = requests.get(url + PROBE, timeout=timeout)
        return r.status_code, time.monotonic() - t
    except requests.RequestException as e:
        return e, time.monotonic() - t


def answered(url: str) -> bool:
    return isinstance(probe(url, 2.0)[0], int)


LINK_PROBE = """
import socket, sys
try:
    socket.create_connection(("toxiproxy", int(sys.argv[1])), timeout=1.0).close()
    print("open")
except ConnectionRefusedError:
    print("refused")
except OSError as e:
    print(f"error: {e}")
"""


def link_state(cluster: Any, link: str) -> str:
    """toxiproxy's listener of ``link`` as the nodes see it: a connect from inside the run's
    network (in the gateway container), so it means the same on an engine elsewhere, where
    the harness reaches only its own endpoints (``harness.cluster.access``)."""
    code, out = cluster.exec("gateway", ["python3", "-c", LINK_PROBE,
                                         str(cluster.links[link].listen_port)])
    assert code == 0, out
    return out.strip()


def toxics(cluster: Any, link: str) -> list:
    return cluster.toxiproxy.proxies()[link]["toxics"]


def delivered_to(cluster: Any, to: str) -> bool:
    return any(e["type"] == "deliver" and e.get("to") == to for e in cluster.gateway_events())


def node_health(cluster: Any, name: str) -> dict:
    return cluster.health().get(name, {"error": "absent"})


def skew(cluster: Any, name: str) -> float:
    """Node wall clock minus host wall clock (midpoint of the exec)."""
    t1 = time.time()
    code, out = cluster.exec(name, ["python3", "-c", "import time; print(time.time())"])
    t2 = time.time()
    assert code == 0, out
    return float(out.strip().splitlines()[-1]) - (t1 + t2) / 2


def status(cluster: Any, name: str) -> str:
    c = cluster.container(name)
    c.reload()
    return c.status


# -- links -------------------------------------------------------------------------------------

def test_link_faults(cluster, nemesis, history):
    url = cluster.webapp_url(1)
    assert answered(url)
    api = cluster.api(1)

    # cut: refused at once, then answered again
    with nemesis.fault(Cut("client->webapp:1")) as f:
        assert f.targets == ["client->webapp-1"]
        res, took = probe(url, 2.0)
        assert isinstance(res, requests.ConnectionError), res
        # through an access container (an engine elsewhere) the connect is accepted and
        # then closed: the client cannot tell that the request never arrived, so it is
        # recorded as indeterminate, never as failed (harness.cluster.access)
        assert classify_exception(res)[0] == (
            "info" if cluster.reach.through_access else "fail") and took < 1.0
        assert link_state(cluster, "client->webapp-1") == "refused"
    assert answered(url)

    # black hole: the connection is accepted but nothing answers
    with nemesis.fault(Blackhole("client->webapp:1")):
        res, took = probe(url, 1.0)
        assert isinstance(res, requests.ReadTimeout), res
        assert took >= 1.0
        assert link_state(cluster, "client->webapp-1") == "open"
    assert toxics(cluster, "client->webapp-1") == [] and answered(url)

    # latency: every answer at least the configured delay later
    with nemesis.fault(Latency("client->webapp:1", latency=400)):
        for _ in range(3):
            res, took = probe(url, 3.0)
            assert isinstance(res, int) and took >= 0.4, (res, took)
    assert toxics(cluster, "client->webapp-1") == []
    assert max(probe(url, 3.0)[1] for _ in range(3)) < 0.4

    # bandwidth: 32 KiB at 16 KB/s upstream take about 2 s
    blob = os.urandom(32 * 1024)
    with nemesis.fault(Bandwidth("client->webapp:1", rate=16, stream="upstream")):
        t = time.monotonic()
        r = api.upload_media(blob, timeout=10)
        slow = time.monotonic() - t
        assert r.status_code == 201 and slow >= 1.5, (r.status_code, slow)
    t = time.monotonic()
    assert api.upload_media(blob, timeout=10).status_code == 201
    assert time.monotonic() - t < slow / 2

    # one-way: upstream dropped → never acted on; downstream dropped → acted on, not answered
    lost, unanswered = spread(1, 2, prefix="177701")
    with nemesis.fault(Oneway("client->webapp:1", drop="upstream")), \
            pytest.raises(requests.ReadTimeout):
        api.send_text(lost, "upstream dropped", timeout=1.0)
    with nemesis.fault(Oneway("client->webapp:1", drop="downstream")):
        with pytest.raises(requests.ReadTimeout):
            api.send_text(unanswered, "downstream dropped", timeout=1.0)
        wait_for(lambda: delivered_to(cluster, unanswered), timeout=5,
                 what="the unanswered message delivered at the gateway")
    assert not delivered_to(cluster, lost)
    assert toxics(cluster, "client->webapp-1") == [] and answered(url)

    # isolate a secondary coreapp: every link touching it refuses; the webapp loses it
    with nemesis.fault(Isolate("secondary-coreapp")) as f:
        (node,) = f.targets
        touching = [lk.name for lk in cluster.links.touching(node)]
        assert sorted(f.params()["links"]) == sorted(touching)
        assert {link_state(cluster, lk) for lk in touching} == {"refused"}
        wait_for(lambda: "error" in node_health(cluster, node), timeout=20,
                 what=f"health to report {node} unreachable")
    assert {link_state(cluster, lk) for lk in touching} == {"open"}
    wait_for(lambda: "error" not in node_health(cluster, node), timeout=60,
             what=f"{node} healthy again")

    # split: webapp-1 alone on one side; sends fail with the envelope; heal restores
    to = spread(1, 1, prefix="177702")[0]
    with nemesis.fault(Split(a=("webapp:1",))) as f:
        assert f.params()["a"] == ["webapp-1"]
        assert link_state(cluster, "webapp-1->coreapp-1") == "refused"
        assert link_state(cluster, "webapp-1->db") == "open"  # infrastructure stays
        r = api.send_text(to, "split", timeout=3)
        assert r.status_code == 503 and r.json()["errors"][0]["code"] in (1011, 1018), r.text
    wait_for(lambda: api.send_text(to, "after split", timeout=3).status_code == 201,
             timeout=60, what="a send after the split healed")

    # bridge: the bridge keeps every link, the halves lose theirs (checked last: it churns)
    with nemesis.fault(Bridge(bridge="webapp:1", a=("master:1", "master:2"))) as f:
        p = f.params()
        assert f.targets == ["webapp-1"] and sorted(p["b"]) == ["coreapp-1", "coreapp-2"]
        assert {link_state(cluster, lk) for lk in p["links"]} == {"refused"}
        assert {link_state(cluster, lk.name) for lk in cluster.links.touching("webapp-1")} \
            == {"open"}
    assert {link_state(cluster, lk) for lk in p["links"]} == {"open"}
    wait_for(cluster.ready_state, timeout=60, what="cluster ready after the bridge")

    starts = [e for e in history.events() if e.process == "nemesis" and e.f == "start"]
    heals = [e for e in history.events() if e.process == "nemesis" and e.f == "heal"]
    assert len(starts) == len(heals) == 9
    assert not any("error" in e.value for e in starts + heals)


def gateway_probe(cluster: Any, link: str, shard: int) -> int:
    """Through ``link``'s listener: connect for a shard nobody owns, read the answer, close.
    Returns the gateway's ``conn`` id of it."""
    where = cluster.reach("toxiproxy", cluster.links[link].listen_port)
    with socket.create_connection(where, timeout=5) as s:
        s.sendall(json.dumps({"op": "connect", "phone": "probe", "shard": shard,
                              "node": "probe", "epoch": 0}).encode() + b"\n")
        answer = json.loads(s.makefile().readline())
    assert answer.get("op") == "connected", answer
    return int(answer["conn"])


def gateway_end(cluster: Any, conn: int) -> dict | None:
    return next((e for e in cluster.gateway_events()
                 if e.get("conn") == conn and e["type"] in ("disconnect", "timeout", "kick")),
                None)


def test_lost_close_and_reset(cluster, nemesis):
    """lost-close: a connection closed by its client is held by the gateway until its
    keepalive drops it (``timeout``, not ``disconnect``); reset: the request reaches the
    server, the client gets a reset instead of the answer. Heal restores both."""
    link = "coreapp-2->gateway"
    k = cluster.spec.timing.gateway_ping_timeout
    with nemesis.fault(LostClose()) as f:
        assert f.targets == ["toxiproxy->gateway"]
        conn = gateway_probe(cluster, link, 90)
        time.sleep(k / 2)
        assert gateway_end(cluster, conn) is None  # still held: the close never arrived
        ended = wait_for(lambda: gateway_end(cluster, conn), timeout=k + 5,
                         what="the gateway dropping the closed connection")
        assert ended["type"] == "timeout", ended
    conn = gateway_probe(cluster, link, 91)
    ended = wait_for(lambda: gateway_end(cluster, conn), timeout=5, what="the close arriving")
    assert ended["type"] == "disconnect", ended

    url = cluster.webapp_url(1)
    with nemesis.fault(Reset("client->webapp:1")):
        res, _ = probe(url, 2.0)
        assert isinstance(res, requests.ConnectionError) and "reset" in str(res).lower(), res
    assert toxics(cluster, "client->webapp-1") == [] and answered(url)


# -- containers --------------------------------------------------------------------------------

def test_node_faults(cluster, nemesis, history):
    url = cluster.webapp_url(1)

    # pause freezes: the proxy connects, the webapp never answers
    with nemesis.fault(Pause("webapp:1")):
        assert status(cluster, "webapp-1") == "paused"
        res, took = probe(url, 1.0)
        assert isinstance(res, requests.ReadTimeout), res
    assert status(cluster, "webapp-1") == "running" and answered(url)

    # kill a secondary coreapp: gone until heal, then back as a secondary
    with nemesis.fault(Kill("secondary-coreapp")) as f:
        (sec,) = f.targets
        assert status(cluster, sec) == "exited"
        wait_for(lambda: "error" in node_health(cluster, sec), timeout=20,
                 what=f"health to report the killed {sec}")
    assert status(cluster, sec) == "running"
    wait_for(lambda: node_health(cluster, sec).get("role") == "coreapp", timeout=60,
             what=f"{sec} back in health")

    # stop (graceful) the secondary master, then start it again
    with nemesis.fault(Stop("secondary-master", grace=5)) as f:
        (m,) = f.targets
        assert status(cluster, m) == "exited"
    assert status(cluster, m) == "running"
    wait_for(lambda: node_health(cluster, m).get("role") == "secondary_master", timeout=60,
             what=f"{m} back as secondary master")

    # restart the webapp: a new process, the API answers again
    started = cluster.container("webapp-1").attrs["State"]["StartedAt"]
    with nemesis.fault(Restart("webapp:1", grace=5)):
        cluster.container("webapp-1").reload()
        assert cluster.container("webapp-1").attrs["State"]["StartedAt"] != started
    wait_for(lambda: answered(url), timeout=60, what="webapp answering after restart")
    wait_for(lambda: cluster.api(1).health(), timeout=60, what="health after restart")

    # kill the primary coreapp: resolved at fault time; another takes over; it rejoins
    old = cluster.primary_coreapp(0)
    with nemesis.fault(Kill("primary-coreapp:0")) as f:
        assert f.targets == [old]
        assert status(cluster, old) == "exited"
        new = wait_for(lambda: cluster.primary_coreapp(0) != old and cluster.primary_coreapp(0),
                       timeout=60, what="promotion of another coreapp")
        wait_for(lambda: node_health(cluster, new).get("gateway_status") == "connected",
                 timeout=60, what=f"{new} connected")
    wait_for(lambda: node_health(cluster, old).get("role") == "coreapp", timeout=60,
             what=f"{old} rejoining")
    assert node_health(cluster, old).get("gateway_status") != "connected"
    assert cluster.primary_coreapp(0) == new
    heals = [e for e in history.events() if e.process == "nemesis" and e.f == "heal"]
    assert len(heals) == 5 and not any("error" in e.value for e in heals)


# -- clocks ------------------------------------------------------------------------------------

def test_clock_skew(cluster, nemesis):
    node = cluster.primary_coreapp(0)
    assert abs(skew(cluster, node)) < 0.5
    with nemesis.fault(ClockSkew("primary-coreapp:0", offset=60)):
        assert abs(skew(cluster, node) - 60) < 0.5
        # the monotonic clock is untouched (the nodes' deadlines rely on it)
        t1 = time.monotonic()
        code, out = cluster.exec(node, ["python3", "-c", "import time; print(time.monotonic())"])
        t2 = time.monotonic()
        assert t1 - 0.5 < float(out.strip().splitlines()[-1]) < t2 + 0.5
    assert abs(skew(cluster, node)) < 0.5

    with nemesis.fault(ClockSkew("secondary-master", offset=-120)) as f:
        (m,) = f.targets
        assert abs(skew(cluster, m) + 120) < 0.5
    assert abs(skew(cluster, m)) < 0.5

    # drift: +30 s in 3 steps over 3 s (+10 at once, +20 after 1 s, +30 after 2 s)
    with nemesis.fault(ClockSkew("webapp:1", offset=30, mode="drift", over=3, steps=3)):
        first = skew(cluster, "webapp-1")
        threading.Event().wait(2.6)
        last = skew(cluster, "webapp-1")
        assert 9.4 < first < 20.6 and abs(last - 30) < 0.5, (first, last)
    assert abs(skew(cluster, "webapp-1")) < 0.5
    code, out = cluster.exec(node, ["sh", "-c", "cat /run/faketime/offset"])
    assert out.strip() == "+0"
    assert cluster.ready_state()


# -- database and media store ------------------------------------------------------------------

def last_seen(cluster: Any) -> dict[str, Any]:
    with contextlib.closing(cluster.db_connect()) as conn, conn.cursor() as cur:
        cur.execute("SELECT name, last_seen FROM waent.nodes WHERE role = 'coreapp'")
        return dict(cur.fetchall())


def test_nfs_and_db_outages(cluster, nemesis, history):
    api = cluster.api(1)
    blob = os.urandom(4096)
    assert api.upload_media(blob, timeout=5).status_code == 201

    # NFS outages: uploads fail fast with the envelope, under a media round-trip workload
    loop = MediaRoundTrip({"webapp-1": api_factory(cluster, 1, 5.0)}, history, interval=0.5,
                          timeout=5.0, duration=60, seed=1).start()
    try:
        for variant, fast in (("links", 1.5), ("blackhole", 4.0)):
            threading.Event().wait(1.0)
            with nemesis.fault(NfsOutage(variant)):
                t = time.monotonic()
                r = api.upload_media(blob, timeout=10)
                took = time.monotonic() - t
                assert r.status_code == 503 and r.json()["errors"][0]["code"] == 1011, r.text
                assert took < fast, (variant, took)
                threading.Event().wait(2.0)
            wait_for(lambda: api.upload_media(blob, timeout=5).status_code == 201, timeout=30,
                     what=f"uploads after the {variant} NFS outage")
        threading.Event().wait(1.5)
    finally:
        loop.stop()
    # grace: connections that lost data inside the black hole are desynchronised after the
    # heal; the media store needs a few seconds (its timeouts) to replace them
    res = media(history.events(), outages=["nfs-outage"], fail_fast=4.5, grace=10.0)
    assert res.valid, res.explanation
    assert res.figures["outage_failures"] >= 2 and res.figures["verified"] >= 3, res.figures

    # database links cut: the coreapps' liveness rows stop advancing, then resume
    interval = cluster.spec.timing.liveness_interval
    with nemesis.fault(DbOutage("links")) as f:
        assert sorted(f.params()["links"]) == sorted(lk.name for lk in cluster.links.to("db"))
        frozen = last_seen(cluster)
        threading.Event().wait(2 * interval + 0.5)
        assert last_seen(cluster) == frozen
    wait_for(lambda: all(v > frozen[k] for k, v in last_seen(cluster).items()),
             timeout=4 * interval + 10, what="coreapp liveness rows advancing after heal")

    # database paused: nobody, the harness included, gets an answer
    with nemesis.fault(DbOutage("pause")):
        assert status(cluster, "db") == "paused"
        with pytest.raises(Exception):  # noqa: B017 - pymysql timeout or OperationalError
            last_seen(cluster)
    assert last_seen(cluster)
    wait_for(cluster.ready_state, timeout=60, what="cluster ready after the database outage")


# -- control test: the downtime checker against a known outage ---------------------------------

def steady(history: Any, n: int) -> bool:
    done = [e.type for e in history.events() if e.f == "send" and e.type != "invoke"]
    return len(done) >= n and set(done[-n:]) == {"ok"}


@pytest.mark.parametrize("n", [3.0])
def test_control_cut_ingress_downtime(cluster, nemesis, history, record_figures, n):
    """Cut the webapp's ingress for exactly N s; the downtime checker must report N ± 0.2 s."""
    # media off: on this 2-core machine NFS round trips through the same webapp add
    # latency noise to the sends that the ±0.2 s check is not about
    w = Workload(cluster, history, rate=20, media=0)
    with w.running():
        # precondition: a steady state (the last 40 sends, 2 s at 20/s, all ok)
        wait_for(lambda: steady(history, 40), timeout=60, what="40 consecutive ok sends")
        with nemesis.fault(Cut("client->webapp:1")):
            threading.Event().wait(n)
        threading.Event().wait(4.0)
    stats = w.sender.stats()
    events = history.events()
    fw = find_fault(events, "cut")
    window = fw.heal - fw.start
    res = downtime(events, window=fw.around(before=1.0, after=3.0))
    measured = res.figures["max_downtime"]
    record_figures(downtime=measured, bound=n + 0.2, window=round(window, 3),
                   error=round(measured - n, 3), rate=stats.achieved_rate,
                   lateness_p99=stats.lateness_quantile(0.99),
                   lateness_max=max(stats.lateness), skipped=stats.skipped,
                   verdict="ok" if abs(measured - n) <= 0.2 else "off")
    assert abs(measured - n) <= 0.2, res.explanation
    assert abs(measured - window) <= 0.2, res.explanation
    # the workload as a whole: the rate held (ticks skipped only if every worker hung),
    # every acknowledged message delivered, observers recorded
    assert stats.ticks == stats.invoked + stats.skipped
    assert stats.achieved_rate >= 0.9 * 20, stats.summary()
    assert no_lost_acks(events).valid
    assert any(e.f == "health" and e.type == "ok" for e in events)
    assert any(e.f == "shard-map" and e.type == "ok" for e in events)


# -- a seeded random schedule ----------------------------------------------------------------

def test_random_schedule_runs_and_heals_everything(cluster, nemesis, history):
    from harness.judge.checkers import fault_windows
    from harness.nemesis.schedule import random_schedule, run_schedule

    kinds = ("cut", "blackhole", "latency", "oneway", "pause", "isolate", "clock-skew")
    steps = random_schedule(7, 25, kinds, cluster.spec, max_overlap=2, min_fault=2,
                            max_fault=6, max_gap=4)
    assert len(steps) >= 3
    outcomes = run_schedule(nemesis, steps, max_time=40)
    events = history.events()
    (sched,) = [e for e in events if e.f == "schedule"]
    assert sched.value["seed"] == 7 and sched.value["steps"] == steps.to_dicts()
    started = [o for o in outcomes if o.started]
    assert started and all(o.healed for o in outcomes if o.started)
    windows = fault_windows(events)
    assert len(windows) == len(started) and all(w.heal is not None for w in windows)
    assert not any("error" in e.value for e in events if e.f == "heal")
    # nothing left behind: proxies enabled without toxics, containers running, clocks true
    proxies = cluster.toxiproxy.proxies()
    assert all(p["enabled"] and not p["toxics"] for p in proxies.values())
    for name in cluster.spec.all_nodes:
        assert status(cluster, name) == "running"
        assert cluster.exec(name, ["cat", "/run/faketime/offset"])[1].strip() == "+0"
    wait_for(cluster.ready_state, timeout=60, what="cluster ready after the schedule")
