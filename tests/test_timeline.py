"""The timeline model on hand-written histories, and the PNG it renders."""

from __future__ import annotations

import pytest

from harness.history import make
from harness.report.timeline import (
    CONNECTED,
    NOT_CONNECTED,
    PRIMARY,
    SECONDARY,
    UNREACHABLE,
    build_model,
    choose_bucket,
    fault_spans,
    lane_state,
    render_timeline,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _health(t, *, c1, c2, m1="primary_master"):
    return (t, "health", "ok", "health", {"nodes": {
        "master-1:0f3a9c": {"role": m1, "gateway_status": "uninitialized"},
        "coreapp-1": c1,
        "coreapp-2": c2,
    }})


CONN = {"role": "coreapp", "gateway_status": "connected"}
DISC = {"role": "coreapp", "gateway_status": "disconnected"}
DOWN = {"error": "connection refused"}


def failover_history():
    """Shard 0 fails over from coreapp-1 to coreapp-2 after coreapp-1 is killed at 5 s."""
    rows = [
        (0.0, "gateway", "info", "gw-connect", {"node": "coreapp-1", "shard": 0, "conn": 1}),
        (0.1, "gateway", "info", "gw-connect", {"node": "coreapp-9", "shard": 1, "conn": 2}),
        _health(1.0, c1=CONN, c2=DISC),
        (5.0, "nemesis", "info", "start",
         {"fault": "kill", "id": "f1", "targets": ["coreapp-1"], "params": {}}),
        (5.1, "gateway", "info", "gw-disconnect", {"node": "coreapp-1", "shard": 0, "conn": 1}),
        _health(6.0, c1=DOWN, c2=DISC),
        (8.0, "health", "fail", "health", {"error": "webapp timeout"}),
        _health(9.0, c1=DOWN, c2=DISC),
        (11.5, "gateway", "info", "gw-connect", {"node": "coreapp-2", "shard": 0, "conn": 3}),
        _health(12.0, c1=DOWN, c2=CONN, m1="secondary_master"),
        (14.0, "nemesis", "info", "heal", {"fault": "kill", "id": "f1", "targets": ["coreapp-1"]}),
        (15.0, "nemesis", "info", "start",
         {"fault": "partition", "id": "f2", "targets": ["master-1", "db"], "params": {}}),
        (16.0, "gateway", "info", "gw-connect", {"node": "coreapp-1", "shard": 0, "conn": 4}),
        (16.0, "gateway", "info", "gw-conflict",
         {"node": "coreapp-2", "shard": 0, "conn": 3, "by": 4, "by_node": "coreapp-1"}),
        (16.5, "gateway", "info", "gw-connect", {"node": "coreapp-1", "shard": 0, "conn": 5}),
    ]
    # client ops: shard 0 ok, then fail/info during the outage; shard 1 ok throughout
    rows += [
        (0.2, "sender-0", "invoke", "send", {"to": "a", "shard": 0}),
        (0.3, "sender-0", "ok", "send", {"to": "a", "shard": 0, "id": "g1", "latency": 0.1}),
        (6.0, "sender-0", "invoke", "send", {"to": "b", "shard": 0}),
        (6.2, "sender-0", "fail", "send", {"to": "b", "shard": 0, "status": 503, "error": "x"}),
        (7.0, "sender-0", "invoke", "send", {"to": "c", "shard": 0}),
        (9.0, "sender-0", "info", "send", {"to": "c", "error": "timeout"}),  # shard from invoke
        (6.1, "sender-1", "invoke", "send", {"to": "d", "shard": 1}),
        (6.15, "sender-1", "ok", "send", {"to": "d", "shard": 1, "id": "g2", "latency": 0.05}),
        (3.0, "media-0", "invoke", "upload", {"id": "m1", "size": 3, "sha256": "x", "via": "w"}),
        (3.4, "media-0", "ok", "upload", {"id": "m1", "size": 3, "sha256": "x", "via": "w"}),
        (20.0, "health", "ok", "health", {"nodes": {}}),
    ]
    return make(rows)


def test_png_is_rendered():
    png = render_timeline(failover_history(), bounds={"downtime": 6.5, "bound": 10.0},
                          title="kill coreapp-1")
    assert png.startswith(PNG_MAGIC)
    assert len(png) > 20_000


def test_svg_output_is_supported():
    svg = render_timeline(failover_history(), fmt="svg")
    assert b"<svg" in svg[:2000]


def test_fault_windows_are_paired_by_id_and_open_fault_runs_to_the_end():
    m = build_model(failover_history())
    assert [(f.id, f.kind, f.targets, f.start, f.end, f.healed) for f in m.faults] == [
        ("f1", "kill", ("coreapp-1",), 5.0, 14.0, True),
        ("f2", "partition", ("master-1", "db"), 15.0, 20.0, False),
    ]
    assert m.faults[0].label == "kill coreapp-1"
    assert m.faults[1].label == "partition master-1,db (not healed)"


def test_fault_windows_without_ids_pair_first_in_first_out():
    evs = make([
        (1, "nemesis", "info", "start", {"fault": "pause", "targets": ["m1"]}),
        (2, "nemesis", "info", "start", {"fault": "pause", "targets": ["m1"]}),
        (3, "nemesis", "info", "heal", {"fault": "pause", "targets": ["m1"]}),
        (4, "nemesis", "info", "heal", {"fault": "pause", "targets": ["m1"]}),
        (5, "nemesis", "info", "heal", {"fault": "pause", "targets": ["other"]}),  # no start
    ])
    assert [(f.start, f.end) for f in fault_spans(evs)] == [(1.0, 3.0), (2.0, 4.0)]


def test_promotion_is_a_connect_by_a_different_node_for_the_shard():
    m = build_model(failover_history())
    assert [(p.time, p.node, p.shard) for p in m.promotions] == [
        (11.5, "coreapp-2", "0"), (16.0, "coreapp-1", "0")]
    # the reconnect of the same node at 16.5 s and the first connects are not promotions
    kinds = [(mk.time, mk.kind) for mk in m.markers]
    assert (16.0, "conflict") in kinds
    assert (5.1, "disconnect") in kinds
    assert sum(1 for k in kinds if k[1] == "connect") == 5
    conflict = next(mk for mk in m.markers if mk.kind == "conflict")
    assert conflict.label == "CONFLICT shard 0: coreapp-1 vs coreapp-2"


def test_role_lanes_follow_health_observations():
    m = build_model(failover_history())
    assert list(m.lanes) == ["master-1", "coreapp-1", "coreapp-2"]
    lane = [(s.state, s.start, s.end) for s in m.lanes["coreapp-1"]]
    # a failed health poll (8.0) ends every segment; an empty observation (20.0) too
    assert lane == [(CONNECTED, 1.0, 6.0), (UNREACHABLE, 6.0, 8.0), (UNREACHABLE, 9.0, 20.0)]
    assert [(s.state, s.start, s.end) for s in m.lanes["coreapp-2"]] == [
        (NOT_CONNECTED, 1.0, 8.0), (NOT_CONNECTED, 9.0, 12.0), (CONNECTED, 12.0, 20.0)]
    assert [(s.state, s.start, s.end) for s in m.lanes["master-1"]] == [
        (PRIMARY, 1.0, 8.0), (PRIMARY, 9.0, 12.0), (SECONDARY, 12.0, 20.0)]


def test_lane_state_mapping():
    assert lane_state({"role": "primary_master"}) == PRIMARY
    assert lane_state({"role": "coreapp", "gateway_status": "connecting"}) == NOT_CONNECTED
    assert lane_state({"errors": [{"code": 1}]}) == UNREACHABLE
    assert lane_state("garbage") == UNREACHABLE


def test_operations_are_bucketed_per_shard():
    m = build_model(failover_history(), bucket=1.0)
    assert m.bucket == 1.0
    assert m.n_buckets == 20
    by = {s.group: s for s in m.ops}
    assert list(by) == ["shard 0", "shard 1", "media"]
    s0 = by["shard 0"]
    assert (sum(s0.ok), sum(s0.fail), sum(s0.info)) == (1, 1, 1)
    assert s0.ok[0] == 1 and s0.fail[6] == 1 and s0.info[9] == 1
    assert by["shard 1"].ok[6] == 1
    assert sum(by["media"].ok) == 1


def test_bound_deadline_is_first_fault_plus_bound():
    m = build_model(failover_history(), bounds={"downtime": 6.5, "bound": 10.0, "x": "n/a"})
    assert m.bound_deadline == pytest.approx(15.0)
    assert m.bounds == {"downtime": 6.5, "bound": 10.0}


def test_history_without_faults():
    evs = make([(0.1 * i, "sender-0", "ok", "send", {"shard": 0}) for i in range(40)])
    m = build_model(evs, bounds={"bound": 5.0})
    assert m.faults == () and m.promotions == () and m.lanes == {}
    assert m.bound_deadline is None
    assert sum(m.ops[0].ok) == 40
    assert render_timeline(evs, bounds={"bound": 5.0}).startswith(PNG_MAGIC)


def test_empty_history():
    m = build_model([])
    assert (m.t0, m.t1) == (0.0, 1.0)
    assert m.ops == () and m.faults == () and m.markers == () and m.lanes == {}
    png = render_timeline([], title="empty")
    assert png.startswith(PNG_MAGIC) and len(png) > 5_000


@pytest.mark.parametrize(("duration", "width"), [
    (10, 0.25), (30, 0.5), (90, 1.0), (150, 2.0), (900, 10.0), (60_000, 600.0)])
def test_bucket_grows_with_duration(duration, width):
    assert choose_bucket(duration) == width
