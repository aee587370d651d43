"""Checkers on hand-written histories: each must pass on a good one and fail on a bad one."""

from __future__ import annotations

import dataclasses
from functools import partial

import pytest

from harness.history import Event, make
from harness.judge.bounds import Bound
from harness.judge.checkers import (
    Result,
    compose,
    connections_kept,
    downtime,
    fault_windows,
    media,
    no_duplicates,
    no_lost_acks,
    no_promotion,
    primary_masters,
    promotion,
    refused_not_delivered,
    single_connected,
)

# -- row builders -------------------------------------------------------------------------


def send(t0: float, t1: float | None, shard: int, outcome: str, proc: str = "sender-0",
         mid: str | None = None, **extra) -> list[tuple]:
    rows: list[tuple] = [(t0, proc, "invoke", "send", {"to": "1555", "shard": shard})]
    if t1 is not None:
        v = {"to": "1555", "shard": shard, **extra}
        if outcome == "ok":
            v["id"] = mid or f"m{t0}-{shard}"
        elif outcome == "fail":
            v.setdefault("status", 503)
            v.setdefault("error", "unavailable")
        rows.append((t1, proc, outcome, "send", v))
    return rows


def sends(times: list[tuple[float, str]], shard: int = 0, proc: str = "sender-0",
          latency: float = 0.05) -> list[tuple]:
    rows: list[tuple] = []
    for t0, outcome in times:
        rows += send(t0, t0 + latency, shard, outcome, proc)
    return rows


def gw(t: float, type_: str, seq: int, conn: int, node: str, shard: int = 0,
       **extra) -> tuple:
    v = {"seq": seq, "time": 1_700_000_000.0 + t, "type": type_, "conn": conn,
         "phone": "15550000001", "shard": shard, "node": node, "epoch": extra.pop("epoch", 1),
         **extra}
    return (t, "gateway", "info", f"gw-{type_}", v)


def health(t: float, **nodes: tuple[str, str] | str) -> tuple:
    out = {}
    for name, spec in nodes.items():
        key = name.replace("_", "-")
        if spec == "error":
            out[key] = {"error": "unreachable"}
        else:
            role, status = spec  # type: ignore[misc]
            out[key] = {"role": role, "gateway_status": status}
    return (t, "health", "ok", "health", {"nodes": out})


def nemesis(t: float, f: str, fid: str, kind: str = "kill",
            targets: tuple[str, ...] = ("coreapp-1",)) -> tuple:
    return (t, "nemesis", "info", f, {"fault": kind, "id": fid, "targets": list(targets),
                                      "params": {}})


def shuffled(events: list[Event]) -> list[Event]:
    """The same events, appended out of time order."""
    return events[1::2][::-1] + events[0::2]


# -- downtime -----------------------------------------------------------------------------

OUTAGE = sends([(0, "ok"), (1, "ok"), (2, "fail"), (3, "info"), (7, "fail"), (12, "ok"),
                (13, "ok")])


def test_downtime_measures_from_last_ok_to_first_ok_by_invoke_time():
    r = downtime(make(OUTAGE))
    assert r.valid
    assert r.figures["max_downtime"] == 11.0  # invoke 1 (last ok) → invoke 12 (first ok)
    assert (r.figures["ok"], r.figures["fail"], r.figures["info"]) == (4, 2, 1)
    assert r.figures["availability"] == pytest.approx(4 / 7, abs=1e-6)
    assert r.figures["outages"] == 1
    assert "t=1.000" in r.explanation and "t=12.000" in r.explanation


def test_downtime_equal_to_bound_passes_just_above_fails():
    assert downtime(make(OUTAGE), bound=11.0).valid
    r = downtime(make(OUTAGE), bound=10.999999)
    assert not r.valid
    assert "exceeds the bound" in r.explanation
    later = sends([(1, "ok"), (2, "fail"), (12.000001, "ok")])
    assert not downtime(make(later), bound=11.0).valid


def test_downtime_float_noise_does_not_break_an_exact_bound():
    rows = sends([(0.2, "ok"), (5.1, "fail"), (10.3, "ok")])  # 10.3 - 0.2 = 10.100000000000001
    assert downtime(make(rows), bound=10.1).valid
    assert downtime(make(rows), bound=10.1, window=(0.0, 20.0)).valid
    assert not downtime(make(rows), bound=10.099999).valid


def test_downtime_accepts_a_bound_object_and_prints_its_formula():
    r = downtime(make(OUTAGE), bound=Bound(10.0, "u + h + margin"))
    assert not r.valid
    assert "u + h + margin" in r.explanation


def test_downtime_is_independent_of_append_order():
    evs = make(OUTAGE)
    a, b = downtime(evs), downtime(shuffled(evs))
    assert a.figures == b.figures
    assert a.valid == b.valid


def test_downtime_ok_from_another_process_splits_the_outage():
    rows = OUTAGE + send(5, 5.1, 0, "ok", proc="sender-1")
    r = downtime(make(rows))
    assert r.figures["max_downtime"] == 7.0  # 5 → 12
    assert r.figures["outages"] == 2


def test_downtime_window_clips_outages():
    r = downtime(make(OUTAGE), window=(5.0, 20.0))
    assert r.figures["max_downtime"] == 7.0
    assert r.figures["fail"] == 1  # only the op invoked at 7 is inside
    outside = downtime(make(OUTAGE), window=(12.5, 20.0))
    assert outside.figures["max_downtime"] == 0.0


def test_downtime_unrecovered_shard_fails_and_runs_to_the_end():
    rows = sends([(0, "ok"), (1, "fail"), (2, "fail")]) + [(30, "health", "ok", "health", {})]
    r = downtime(make(rows), bound=100)
    assert not r.valid
    assert "never recovered" in r.explanation
    assert r.figures["max_downtime"] == 30.0
    assert downtime(make(rows), require_recovery=False).valid


def test_downtime_never_completed_invoke_counts_as_info():
    rows = sends([(0, "ok")]) + send(1, None, 0, "info") + sends([(10, "ok")])
    r = downtime(make(rows), bound=9.0)
    assert not r.valid
    assert r.figures["info"] == 1
    assert r.figures["max_downtime"] == 10.0


def test_downtime_multiconnect_only_the_faulted_shard_may_be_down():
    other_ok = sends([(x * 0.5, "ok") for x in range(30)], shard=1, proc="sender-1")
    rows = OUTAGE + other_ok
    r = downtime(make(rows), bound=11, shards=[0], others_bound=1.0)
    assert r.valid
    assert r.figures["shard_1_max_downtime"] == 0.0
    hurt = rows + sends([(15, "ok"), (15.5, "fail"), (17.5, "ok")], shard=1, proc="sender-2")
    r = downtime(make(hurt), bound=11, shards=[0], others_bound=1.0)
    assert not r.valid
    assert r.figures["others_max_downtime"] == 2.5
    assert "shard 1" in r.explanation


def test_downtime_without_sends_cannot_pass():
    r = downtime(make([health(1.0, coreapp_1=("coreapp", "connected"))]), bound=10)
    assert not r.valid
    r = downtime(make(OUTAGE), bound=20, shards=[3])
    assert not r.valid and "shard(s) 3" in r.explanation


# -- gateway scenario shared by promotion / single_connected -----------------------------

BASE = [
    gw(0.0, "connect", 0, 1, "coreapp-1"),
    health(1.0, master_1=("primary_master", "disconnected"),
           coreapp_1=("coreapp", "connected"), coreapp_2=("coreapp", "disconnected")),
    nemesis(10.0, "start", "f1"),
    gw(10.2, "disconnect", 1, 1, "coreapp-1", reason="eof"),
    health(12.0, master_1=("primary_master", "disconnected"), coreapp_1="error",
           coreapp_2=("coreapp", "disconnected")),
    gw(40.0, "connect", 2, 2, "coreapp-2", epoch=2),
    health(41.0, master_1=("primary_master", "disconnected"), coreapp_1="error",
           coreapp_2=("coreapp", "connected")),
    nemesis(50.0, "heal", "f1"),
]


def test_promotion_from_gateway_and_health():
    r = promotion(make(BASE), bound=31.0)
    assert r.valid, r.explanation
    f = r.figures
    # the gateway stamps the connect itself: it is the promotion time
    assert (f["promotion_gateway"], f["promotion_health"], f["promotion"]) == (30.0, 31.0, 30.0)
    assert f["old_primary"] == "coreapp-1" and f["new_primary"] == "coreapp-2"
    # by default health must only agree on the new primary; with health_slack its lag is
    # bounded too
    assert promotion(make(BASE), bound=30.999).valid
    assert not promotion(make(BASE), bound=30.999, health_slack=0).valid
    assert promotion(make(BASE), bound=30.5, health_slack=0.5).valid
    assert not promotion(make(BASE), bound=30.5, health_slack=0.499).valid
    assert not promotion(make(BASE), bound=29.999, health_slack=5).valid


def test_promotion_sources_disagree():
    rows = BASE + [health(40.5, coreapp_3=("coreapp", "connected"))]
    r = promotion(make(rows))
    assert not r.valid
    assert "disagree" in r.explanation
    assert r.figures["new_primary_health"] == "coreapp-3"


def test_promotion_not_observed():
    rows = BASE[:5]
    r = promotion(make(rows))
    assert not r.valid
    assert r.figures["promotion"] is None
    assert "no promotion observed by gateway" in r.explanation


def test_promotion_gateway_only_source():
    rows = [x for x in BASE if x[1] != "health"]
    assert not promotion(make(rows)).valid
    r = promotion(make(rows), sources=("gateway",))
    assert r.valid and r.figures["promotion"] == 30.0


def test_promotion_old_primary_reconnecting_is_not_a_promotion():
    rows = BASE[:5] + [gw(20.0, "connect", 2, 3, "coreapp-1"),
                       health(21.0, coreapp_1=("coreapp", "connected"))]
    assert not promotion(make(rows)).valid


def test_promotion_multishard_ignores_other_shards_primaries():
    rows = [
        gw(0.0, "connect", 0, 1, "coreapp-1", shard=0),
        gw(0.1, "connect", 1, 2, "coreapp-2", shard=1),
        nemesis(10.0, "start", "f1", targets=("coreapp-1",)),
        gw(10.2, "disconnect", 2, 1, "coreapp-1", shard=0),
        health(11.0, coreapp_2=("coreapp", "connected"), coreapp_3=("coreapp", "disconnected")),
        gw(40.0, "connect", 3, 3, "coreapp-3", shard=0),
        health(41.0, coreapp_2=("coreapp", "connected"), coreapp_3=("coreapp", "connected")),
    ]
    r = promotion(make(rows))
    assert r.valid, r.explanation
    assert r.figures["shard"] == 0  # inferred from the fault's target
    assert r.figures["new_primary"] == "coreapp-3"
    assert r.figures["promotion"] == 30.0


def test_promotion_selects_fault_by_id():
    rows = BASE + [nemesis(60.0, "start", "f2", targets=("coreapp-2",)),
                   gw(60.1, "disconnect", 3, 2, "coreapp-2"),
                   gw(75.0, "connect", 4, 4, "coreapp-1", epoch=3),
                   health(76.0, coreapp_1=("coreapp", "connected"), coreapp_2="error")]
    r = promotion(make(rows), fault="f2")
    assert r.valid, r.explanation
    assert (r.figures["old_primary"], r.figures["new_primary"]) == ("coreapp-2", "coreapp-1")
    assert r.figures["promotion"] == 15.0
    assert not promotion(make(rows), fault="f9").valid


def test_no_promotion():
    rows = [
        gw(0.0, "connect", 0, 1, "coreapp-1"),
        nemesis(10.0, "start", "f1", kind="partition", targets=("master-1->coreapp-1",)),
        health(15.0, coreapp_1=("coreapp", "connected"), coreapp_2=("coreapp", "disconnected")),
        gw(20.0, "timeout", 1, 1, "coreapp-1"),  # the old primary may come back itself
        gw(20.5, "connect", 2, 2, "coreapp-1"),
        nemesis(40.0, "heal", "f1", kind="partition"),
    ]
    r = no_promotion(make(rows))
    assert r.valid, r.explanation
    assert r.figures["old_primary"] == "coreapp-1"
    bad = rows + [gw(45.0, "connect", 3, 3, "coreapp-2")]
    r = no_promotion(make(bad))
    assert not r.valid and "coreapp-2" in r.explanation
    assert no_promotion(make(bad), after=4.0).valid  # window ends at heal + 4 = 44
    health_only = rows + [health(30.0, coreapp_2=("coreapp", "connected"))]
    assert not no_promotion(make(health_only)).valid
    assert no_promotion(make(health_only), sources=("gateway",)).valid


# -- single_connected ---------------------------------------------------------------------


def test_single_connected_handover_passes():
    r = single_connected(make(BASE))
    assert r.valid, r.explanation
    assert r.figures["connections"] == 2 and r.figures["overlaps"] == 0


def test_back_to_back_at_equal_time_ordered_by_seq_is_not_overlap():
    rows = [gw(0.0, "connect", 0, 1, "coreapp-1"),
            gw(10.0, "disconnect", 1, 1, "coreapp-1"),
            gw(10.0, "connect", 2, 2, "coreapp-2")]
    r = single_connected(make(rows))
    assert r.valid, r.explanation
    # appended in the wrong order: (time, seq) still says disconnect first
    r = single_connected(make([rows[0], rows[2], rows[1]]))
    assert r.valid, r.explanation


def test_connect_before_disconnect_at_equal_time_is_overlap():
    rows = [gw(0.0, "connect", 0, 1, "coreapp-1"),
            gw(10.0, "connect", 1, 2, "coreapp-2"),
            gw(10.0, "disconnect", 2, 1, "coreapp-1")]
    r = single_connected(make(rows))
    assert not r.valid
    assert r.figures["overlaps"] == 1 and r.figures["max_overlap"] == 0.0


def test_overlapping_connections_fail_with_duration():
    rows = [gw(0.0, "connect", 0, 1, "coreapp-1"),
            gw(8.0, "connect", 1, 2, "coreapp-2"),
            gw(10.5, "timeout", 2, 1, "coreapp-1")]
    r = single_connected(make(rows))
    assert not r.valid
    assert r.figures["max_overlap"] == 2.5
    assert "t=8.000" in r.explanation and "timeout t=10.500" in r.explanation


def test_timeout_and_kick_end_intervals():
    rows = [gw(0.0, "connect", 0, 1, "coreapp-1"),
            gw(10.0, "timeout", 1, 1, "coreapp-1"),
            gw(10.5, "connect", 2, 2, "coreapp-2"),
            gw(20.0, "kick", 3, 2, "coreapp-2", by=9, by_node="coreapp-9"),
            gw(20.0, "connect", 4, 3, "coreapp-1")]
    assert single_connected(make(rows)).valid


def test_open_connection_overlaps_until_the_end():
    rows = [gw(0.0, "connect", 0, 1, "coreapp-1"),
            gw(5.0, "connect", 1, 2, "coreapp-2"),
            health(9.0)]
    r = single_connected(make(rows))
    assert not r.valid and r.figures["max_overlap"] == 4.0


def test_conflict_event_fails():
    rows = [gw(0.0, "connect", 0, 1, "coreapp-1"),
            gw(5.0, "conflict", 1, 1, "coreapp-1", by=2, by_node="coreapp-2"),
            gw(5.0, "kick", 2, 1, "coreapp-1", by=2, by_node="coreapp-2"),
            gw(5.0, "connect", 3, 2, "coreapp-2")]
    r = single_connected(make(rows))
    assert not r.valid
    assert r.figures["conflicts"] == 1 and r.figures["overlaps"] == 0
    assert "coreapp-2" in r.explanation and "t=5.000" in r.explanation


def _stall(start: float, heal: float) -> list[tuple]:
    v = {"fault": "pause", "id": "f1", "targets": ["gateway"], "params": {}}
    return [(start, "nemesis", "info", "start", v), (heal, "nemesis", "info", "heal", v)]


def _self_kick(at: float, old_conn: int = 1, new_conn: int = 2, node: str = "coreapp-1",
               by_node: str = "coreapp-1") -> list[tuple]:
    return [gw(at, "conflict", 10, old_conn, node, by=new_conn, by_node=by_node),
            gw(at, "kick", 11, old_conn, node, by=new_conn, by_node=by_node),
            gw(at, "connect", 12, new_conn, by_node)]


def test_own_connection_kicked_at_a_stalled_gateways_resume_is_an_a3_breach():
    """docs/fencing.md A3 (c): lines written during the stall refresh the old connection on
    resume; the queued reconnect kicks it. Counted, not judged."""
    rows = [gw(0.0, "connect", 0, 1, "coreapp-1"), *_stall(1.0, 7.0), *_self_kick(6.996)]
    r = single_connected(make(rows))
    assert r.valid, r.explanation
    assert r.figures["a3_breaches"] == 1 and r.figures["conflicts"] == 0
    assert "A3 breach" in r.explanation


def test_conflicts_a_stall_does_not_excuse_fail():
    base = [gw(0.0, "connect", 0, 1, "coreapp-1")]
    cases = {
        "another node kicks": base + _stall(1.0, 7.0) + _self_kick(7.0, by_node="coreapp-2"),
        "away from the resume": base + _stall(1.0, 7.0) + _self_kick(8.0),
        "no stall at all": base + _self_kick(7.0),
        # two connects queued during the stall: the second kicks the first (rule 5 broken)
        "kicked connection opened in the stall": [
            gw(0.0, "connect", 0, 1, "coreapp-1"), gw(0.5, "disconnect", 1, 1, "coreapp-1"),
            *_stall(1.0, 7.0), gw(7.0, "connect", 2, 3, "coreapp-1"),
            *_self_kick(7.01, old_conn=3, new_conn=4)],
    }
    for what, rows in cases.items():
        r = single_connected(make(rows))
        assert not r.valid and r.figures["conflicts"] == 1, what


def test_different_shards_may_be_connected_at_once():
    rows = [gw(0.0, "connect", 0, 1, "coreapp-1", shard=0),
            gw(1.0, "connect", 1, 2, "coreapp-2", shard=1),
            health(2.0, coreapp_1=("coreapp", "connected"), coreapp_2=("coreapp", "connected"))]
    r = single_connected(make(rows))
    assert r.valid
    assert r.figures["health_over_connected"] == 0


def test_health_double_connected_is_reported_not_failed():
    rows = BASE + [health(40.5, coreapp_1=("coreapp", "connected"),
                          coreapp_2=("coreapp", "connected"))]
    r = single_connected(make(rows))
    assert r.valid
    assert r.figures["health_over_connected"] == 1
    assert "t=40.500" in r.explanation


def test_single_connected_out_of_time_order_events():
    rows = [gw(0.0, "connect", 0, 1, "coreapp-1"),
            gw(8.0, "connect", 1, 2, "coreapp-2"),
            gw(10.5, "disconnect", 2, 1, "coreapp-1")]
    evs = make(rows)
    reordered = [dataclasses.replace(e, index=i) for i, e in enumerate(reversed(evs))]
    assert not single_connected(reordered).valid
    good = make([rows[0], (7.0, *gw(7.0, "disconnect", 1, 1, "coreapp-1")[1:]),
                 gw(8.0, "connect", 2, 2, "coreapp-2")])
    assert single_connected(list(reversed(good))).valid


# -- messages -----------------------------------------------------------------------------

def deliver(t: float, seq: int, mid: str, duplicate: bool = False) -> tuple:
    return gw(t, "deliver", seq, 1, "coreapp-1", id=mid, to="1555", duplicate=duplicate)


MSGS = (send(1, 1.1, 0, "ok", mid="a") + send(2, 2.1, 0, "ok", mid="b")
        + send(3, 4, 0, "info") + [deliver(1.05, 1, "a"), deliver(2.05, 2, "b")])


def test_no_lost_acks_passes_when_every_ack_is_delivered():
    r = no_lost_acks(make(MSGS))
    assert r.valid and r.figures["acked"] == 2 and r.figures["lost"] == 0


def test_ack_never_delivered_is_lost():
    rows = MSGS + send(5, 5.1, 2, "ok", mid="c")
    r = no_lost_acks(make(rows))
    assert not r.valid
    assert r.figures["lost"] == 1 and r.figures["lost_ids"] == "c"
    assert "t=5.100" in r.explanation and "shard 2" in r.explanation


def test_duplicates():
    assert no_duplicates(make(MSGS)).valid
    twice = MSGS + [deliver(3.0, 3, "a")]
    r = no_duplicates(make(twice))
    assert not r.valid and r.figures["duplicate_ids"] == "a"
    flagged = MSGS + [deliver(3.0, 3, "z", duplicate=True)]
    assert not no_duplicates(make(flagged)).valid


def test_duplicates_at_least_once_mode():
    # "x" was delivered twice but its send ended info: tolerated
    rows = MSGS + [deliver(3.5, 3, "x"), deliver(3.9, 4, "x", duplicate=True)]
    assert not no_duplicates(make(rows)).valid
    r = no_duplicates(make(rows), allow="indeterminate")
    assert r.valid and r.figures["tolerated"] == 1
    # a cleanly acknowledged id delivered twice is never tolerated
    acked_twice = MSGS + [deliver(3.0, 3, "a")]
    assert not no_duplicates(make(acked_twice), allow="indeterminate").valid
    # ... unless the client itself retried it
    retried = (send(1, 1.1, 0, "ok", mid="r", retried=True)
               + [deliver(1.0, 1, "r"), deliver(1.05, 2, "r", duplicate=True)])
    assert no_duplicates(make(retried), allow="indeterminate").valid
    with pytest.raises(ValueError):
        no_duplicates(make(MSGS), allow="some")  # type: ignore[arg-type]


def sent_to(t0: float, t1: float, to: str, outcome: str, status: int | None = None,
            proc: str = "sender-0") -> list[tuple]:
    v: dict = {"to": to, "shard": 0}
    if status is not None:
        v["status"] = status
    return [(t0, proc, "invoke", "send", {"to": to, "shard": 0}), (t1, proc, outcome, "send", v)]


def delivered_to(t: float, seq: int, to: str, mid: str) -> tuple:
    return gw(t, "deliver", seq, 1, "coreapp-1", id=mid, to=to, duplicate=False)


def test_refused_sends_never_delivered_pass():
    rows = (sent_to(1, 1.2, "15550000001", "fail", 503)     # refused, never delivered
            + sent_to(2, 4.0, "15550000002", "info")         # unknown outcome: may be delivered
            + sent_to(3, 3.1, "15550000003", "fail", 400)    # rejected, not a 503
            + [delivered_to(2.5, 1, "15550000002", "x"), delivered_to(3.05, 2, "15550000003", "y")])
    r = refused_not_delivered(make(rows))
    assert r.valid, r.explanation
    assert r.figures["refused"] == 1 and r.figures["delivered_anyway"] == 0


def test_refused_send_delivered_anyway_fails():
    rows = (sent_to(1, 3.2, "15550000001", "fail", 503, proc="sender-3")
            + sent_to(2, 2.1, "15550000002", "fail", 503)
            + [delivered_to(1.1, 1, "15550000001", "m1")])
    r = refused_not_delivered(make(rows))
    assert not r.valid
    assert r.figures["delivered_anyway"] == 1 and r.figures["recipients"] == "15550000001"
    assert "sender-3" in r.explanation and "id m1" in r.explanation


def test_refused_recipient_sent_twice_is_left_out():
    rows = (sent_to(1, 1.2, "15550000001", "fail", 503)
            + sent_to(2, 2.2, "15550000001", "ok", proc="sender-1")
            + [delivered_to(2.1, 1, "15550000001", "m2")])
    r = refused_not_delivered(make(rows))
    assert r.valid and r.figures["ambiguous"] == 1 and "left out" in r.explanation


def test_delivery_before_the_refused_send_is_another_message():
    # an earlier test on a reused cluster delivered to the same recipient before this history
    rows = sent_to(5, 5.2, "15550000001", "fail", 503) + [delivered_to(-12.0, 1, "15550000001",
                                                                       "old")]
    assert refused_not_delivered(make(rows)).valid
    later = rows + [delivered_to(5.1, 2, "15550000001", "new")]
    assert not refused_not_delivered(make(later)).valid


# -- media --------------------------------------------------------------------------------

def up(t0: float, t1: float, mid: str, sha: str = "s1", proc: str = "media-0") -> list[tuple]:
    return [(t0, proc, "invoke", "upload", {"size": 10, "sha256": sha, "via": "webapp-1"}),
            (t1, proc, "ok", "upload", {"id": mid, "size": 10, "sha256": sha,
                                        "via": "webapp-1"})]


def down(t0: float, t1: float, mid: str, outcome: str = "ok", sha: str = "s1",
         proc: str = "media-0", **value) -> list[tuple]:
    v = {"id": mid, "via": "webapp-1", **value}
    if outcome == "ok":
        v.update(size=10, sha256=sha)
    return [(t0, proc, "invoke", "download", {"id": mid, "via": "webapp-1"}),
            (t1, proc, outcome, "download", v)]


ENVELOPE = {"status": 503, "error": {"errors": [{"code": 1011, "title": "Media unavailable"}]}}


def test_media_round_trip_passes():
    r = media(make(up(0, 0.2, "m1") + down(1, 1.1, "m1")))
    assert r.valid and r.figures["verified"] == 1


def test_media_corruption_and_unverified_fail():
    r = media(make(up(0, 0.2, "m1") + down(1, 1.1, "m1", sha="s2")))
    assert not r.valid and r.figures["corrupt"] == 1 and "s2" in r.explanation
    r = media(make(up(0, 0.2, "m1")))
    assert not r.valid and r.figures["unverified"] == 1
    assert media(make(up(0, 0.2, "m1")), require_download=False).valid


def test_media_failure_outside_fault_fails_inside_fault_is_excused():
    rows = up(0, 0.2, "m1") + down(1, 1.1, "m1", "fail", status=500) + down(30, 30.1, "m1")
    r = media(make(rows))
    assert not r.valid and r.figures["unexcused_failures"] == 1
    faulted = rows + [nemesis(0.9, "start", "f1", kind="kill"),
                      nemesis(5.0, "heal", "f1", kind="kill")]
    assert media(make(faulted)).valid
    late = up(0, 0.2, "m1") + down(6, 6.1, "m1", "fail") + down(30, 30.1, "m1") + faulted[-2:]
    assert not media(make(late)).valid
    assert media(make(late), grace=1.5).valid


def test_media_outage_failures_must_be_fast_and_carry_an_envelope():
    base = up(0, 0.2, "m1") + down(30, 30.1, "m1") + [
        nemesis(5.0, "start", "n1", kind="nfs-outage", targets=("nfs",)),
        nemesis(15.0, "heal", "n1", kind="nfs-outage", targets=("nfs",))]
    fast = base + down(6, 6.5, "m1", "fail", **ENVELOPE)
    r = media(make(fast), outages=["nfs-outage"], fail_fast=3.0)
    assert r.valid, r.explanation
    assert r.figures["latency"] == 0.5
    slow = base + down(6, 9.5, "m1", "fail", **ENVELOPE)
    r = media(make(slow), outages=["n1"], fail_fast=3.0)
    assert not r.valid and r.figures["latency"] == 3.5
    assert media(make(base + down(6, 9.0, "m1", "fail", **ENVELOPE)), outages=["n1"],
                 fail_fast=3.0).valid  # exactly the bound
    bare = base + down(6, 6.5, "m1", "fail", status=500, error="boom")
    r = media(make(bare), outages=["n1"], fail_fast=3.0)
    assert not r.valid and r.figures["bare_failures"] == 1
    hung = base + down(6, 16, "m1", "info", error="timeout")
    assert not media(make(hung), outages=[(5.0, 15.0)], fail_fast=3.0).valid


# -- primary masters ----------------------------------------------------------------------

def masters(t: float, *roles: str) -> tuple:
    return health(t, **{f"master_{i + 1}": (r, "disconnected") for i, r in enumerate(roles)})


def test_primary_masters_passes_with_one_primary_and_a_gap():
    rows = [masters(1, "primary_master", "secondary_master"),
            masters(2, "secondary_master", "secondary_master"),  # hand-over gap: allowed
            masters(3, "secondary_master", "primary_master"),
            masters(4, "secondary_master", "primary_master"),
            masters(5, "secondary_master", "primary_master")]
    r = primary_masters(make(rows))
    assert r.valid, r.explanation
    assert r.figures["final_primary"] == "master-2" and r.figures["no_primary_snapshots"] == 1


def test_two_primaries_in_one_snapshot_fail():
    rows = [masters(1, "primary_master", "primary_master")] + [
        masters(t, "primary_master", "secondary_master") for t in (2, 3, 4)]
    r = primary_masters(make(rows))
    assert not r.valid and "t=1.000" in r.explanation
    assert r.figures["multi_primary_snapshots"] == 1


def test_primary_masters_end_state():
    no_primary = [masters(t, "primary_master", "secondary_master") for t in (1, 2)] + [
        masters(3, "secondary_master", "secondary_master")]
    assert not primary_masters(make(no_primary)).valid
    assert primary_masters(make(no_primary), last=0).valid
    flip = [masters(1, "primary_master", "secondary_master"),
            masters(2, "secondary_master", "primary_master"),
            masters(3, "secondary_master", "primary_master")]
    r = primary_masters(make(flip), last=3)
    assert not r.valid and "changed" in r.explanation
    assert primary_masters(make(flip), last=2).valid
    assert not primary_masters(make(flip[:1]), last=2).valid  # too few snapshots
    errored = [masters(1, "primary_master", "secondary_master"),
               health(2, master_1="error", master_2=("secondary_master", "disconnected"))]
    # a snapshot where a master did not answer is inconclusive: the end check uses the
    # conclusive ones, and there must be enough of them
    assert primary_masters(make(errored), last=1).valid
    assert not primary_masters(make(errored), last=2).valid


# -- fault windows and compose ------------------------------------------------------------

def test_fault_windows_pairs_by_id_and_leaves_unhealed_open():
    rows = [nemesis(1, "start", "f1"), nemesis(2, "start", "f2", kind="pause"),
            nemesis(3, "heal", "f2", kind="pause"), nemesis(4, "start", "f3", kind="skew"),
            nemesis(5, "heal", "f1"), (6, "nemesis", "info", "heal", {"fault": "zzz"})]
    ws = fault_windows(make(rows))
    assert [(w.id, w.kind, w.start, w.heal) for w in ws] == [
        ("f1", "kill", 1.0, 5.0), ("f2", "pause", 2.0, 3.0), ("f3", "skew", 4.0, None)]
    fid, kind, targets, start, heal = ws[0]
    assert targets == ("coreapp-1",)
    assert ws[2].end(100.0) == 100.0
    assert ws[0].around(2.0, 3.0) == (-1.0, 8.0)


def test_compose_combines_and_prefixes():
    check = compose(partial(downtime, bound=20.0), single_connected,
                    partial(downtime, bound=5.0, name="downtime"))
    r = check(make(OUTAGE + BASE))
    assert isinstance(r, Result) and not r.valid
    assert [x.valid for x in r.results] == [True, True, False]
    assert r.figures["downtime.max_downtime"] == 11.0
    assert r.figures["downtime#2.max_downtime"] == 11.0
    assert r.figures["single_connected.conflicts"] == 0
    assert "1 of 3 checks failed" in r.explanation
    ok = compose(partial(downtime, bound=20.0), single_connected)(make(OUTAGE + BASE))
    assert ok.valid and "All 2 checks passed" in ok.explanation


def test_compose_gives_the_same_figures_as_each_checker_alone():
    evs = shuffled(make(OUTAGE + BASE + MSGS + up(0, 0.2, "m1") + down(1, 1.1, "m1")))
    checkers = [downtime, promotion, single_connected, no_lost_acks, no_duplicates, media,
                partial(primary_masters, last=1)]
    combined = compose(*checkers)(evs)
    for c, r in zip(checkers, combined.results, strict=True):
        alone = c(evs)
        assert (alone.name, alone.valid, alone.figures) == (r.name, r.valid, r.figures)


def test_an_invoke_superseded_by_the_next_invoke_counts_as_unknown():
    rows = (sends([(0, "ok")]) + [(1, "sender-0", "invoke", "send", {"shard": 0})]
            + sends([(2, "fail"), (3, "ok")]))
    r = downtime(make(rows))
    assert (r.figures["ok"], r.figures["fail"], r.figures["info"]) == (2, 1, 1)
    assert r.figures["max_downtime"] == 3.0


def test_primary_masters_end_check_skips_snapshots_where_a_master_did_not_answer():
    rows = [
        health(1.0, master_1=("primary_master", "connected"), master_2=("secondary_master", "x")),
        health(2.0, master_1=("primary_master", "connected"), master_2=("secondary_master", "x")),
        health(3.0, master_1=("primary_master", "connected"), master_2=("secondary_master", "x")),
        health(4.0, master_1="error", master_2=("secondary_master", "x")),
    ]
    r = primary_masters(make(rows), last=3)
    assert r.valid, r.explanation
    # but a conclusive snapshot with no primary still fails
    rows.append(health(5.0, master_1=("secondary_master", "x"), master_2=("secondary_master", "x")))
    assert not primary_masters(make(rows), last=3).valid


# -- connections_kept ----------------------------------------------------------------------


def test_connections_kept_passes_when_every_connection_stays_open():
    h = make([gw(-5.0, "connect", 1, 1, "coreapp-1", 0), gw(-4.0, "connect", 2, 2, "coreapp-2", 1),
              *sends([(0.1, "ok"), (0.3, "ok"), (5.0, "ok")]),
              gw(5.0, "deliver", 3, 1, "coreapp-1")])
    r = connections_kept(h)
    assert r.valid, r.explanation
    assert r.figures["ended"] == 0 and r.figures["opened"] == 0


def test_connections_kept_fails_on_a_self_fence_and_the_reconnect():
    h = make([gw(-5.0, "connect", 1, 1, "coreapp-1", 0), gw(-4.0, "connect", 2, 2, "coreapp-2", 1),
              *sends([(0.1, "ok")]),
              gw(2.0, "disconnect", 3, 2, "coreapp-2", 1, reason="eof"),
              gw(4.8, "connect", 4, 3, "coreapp-2", 1)])
    r = connections_kept(h)
    assert not r.valid
    assert r.figures["ended"] == 1 and r.figures["opened"] == 1
    assert "coreapp-2 shard 1 (conn 2)" in r.explanation and "eof" in r.explanation


def test_connections_kept_fails_on_a_keepalive_drop_and_ignores_ends_before_since():
    h = make([gw(-5.0, "connect", 1, 1, "coreapp-1", 0),
              gw(-1.0, "timeout", 2, 1, "coreapp-1", 0), gw(-0.5, "connect", 3, 2, "coreapp-1", 0),
              *sends([(0.1, "ok")]), gw(3.0, "timeout", 4, 2, "coreapp-1", 0)])
    assert not connections_kept(h).valid
    early = make([gw(-5.0, "connect", 1, 1, "coreapp-1", 0),
                  gw(-1.0, "timeout", 2, 1, "coreapp-1", 0),
                  gw(-0.5, "connect", 3, 2, "coreapp-1", 0), *sends([(0.1, "ok")])])
    assert connections_kept(early).valid
    assert not connections_kept(early, since=-2.0).valid


def test_connections_kept_judges_ends_of_connections_older_than_the_record_by_their_time():
    """A reused cluster's record starts at the oldest connection still open: a connection
    that ended just before the test (its connect not in the record) is not the test's."""
    before = make([gw(-3.0, "disconnect", 5, 1, "coreapp-1", 0),
                   gw(-5.0, "connect", 4, 2, "coreapp-2", 1),
                   gw(-0.2, "connect", 6, 3, "coreapp-1", 0), *sends([(0.1, "ok")])])
    assert connections_kept(before).valid
    during = make([gw(-5.0, "connect", 4, 2, "coreapp-2", 1), *sends([(0.1, "ok")]),
                   gw(1.0, "disconnect", 5, 1, "coreapp-1", 0)])
    r = connections_kept(during)
    assert not r.valid and "opened before the gateway's record began ended" in r.explanation
