"""The nemesis runner and fault schedules, on a fake cluster (no Docker)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import ClassVar

import pytest

from harness.history import History
from harness.nemesis import Nemesis
from harness.nemesis.base import Fault, FaultConflict, FaultSkipped, HealError
from harness.nemesis.blackhole import Blackhole
from harness.nemesis.bridge import Bridge
from harness.nemesis.clock_skew import ClockSkew, offset_text
from harness.nemesis.cut import Cut
from harness.nemesis.db_outage import DbOutage
from harness.nemesis.isolate import Isolate
from harness.nemesis.kill import Kill
from harness.nemesis.latency import Latency
from harness.nemesis.nfs_outage import NfsOutage
from harness.nemesis.oneway import Oneway
from harness.nemesis.pause import Pause
from harness.nemesis.registry import REGISTRY, fault_from_dict
from harness.nemesis.schedule import (
    ALL_KINDS,
    Schedule,
    Step,
    random_schedule,
    run_schedule,
    sequence,
)
from harness.nemesis.split import Split
from harness.nemesis.stop import Stop
from harness.spec import Topology
from tests.fakes_cluster import FakeCluster


def nemesis_events(h: History) -> list:
    return [e for e in h.events() if e.process == "nemesis"]


@pytest.fixture
def env():
    cluster = FakeCluster(Topology(masters=2, coreapps=3, webapps=2, shards=2),
                          owners={0: "coreapp-1", 1: "coreapp-2"})
    h = History()
    return cluster, h, Nemesis(cluster, h)


# -- selectors and recording -----------------------------------------------------------------

def test_selectors_resolve_at_fault_time(env):
    cluster, h, nem = env
    k = Kill("primary-coreapp:0")
    with nem.fault(k):
        assert cluster.container("coreapp-1").status == "exited"
    cluster.owners[0] = "coreapp-3"  # a promotion happened
    with nem.fault(Kill("primary-coreapp:0")) as k2:
        assert k2.targets == ["coreapp-3"]
    assert [e.value["targets"] for e in nemesis_events(h)] == [
        ["coreapp-1"], ["coreapp-1"], ["coreapp-3"], ["coreapp-3"]]
    assert cluster.container("coreapp-1").status == "running"  # healed = started again


@dataclass
class SlowFault(Fault):
    """A fault whose start and heal take a known time (a container start at a heal)."""

    kind: ClassVar[str] = "slow"
    chaos: ClassVar[bool] = False
    start_s: float = 0.0
    heal_s: float = 0.0

    def start(self, ctx: object) -> None:
        time.sleep(self.start_s)

    def heal(self, ctx: object) -> None:
        time.sleep(self.heal_s)


def test_start_and_heal_record_how_long_they_took(env):
    """Events are written when the operation ends; ``took`` says when it began."""
    _, h, nem = env
    with nem.fault(SlowFault(start_s=0.0, heal_s=0.2)):
        pass
    start, heal = nemesis_events(h)
    assert 0.0 <= start.value["took"] < 0.2
    assert heal.value["took"] >= 0.2
    assert heal.time - heal.value["took"] >= start.time


@pytest.mark.parametrize("selector,expected", [
    ("primary-master", "master-1"), ("secondary-master", "master-2"),
    ("primary-coreapp:1", "coreapp-2"), ("secondary-coreapp", "coreapp-3"),
    ("webapp:2", "webapp-2"), ("coreapp:3", "coreapp-3"), ("coreapp-2", "coreapp-2"),
    ("db", "db"),
])
def test_selector_resolution(env, selector, expected):
    _, _, nem = env
    assert nem.ctx.resolve(selector) == expected


def test_unknown_selector_is_skipped_and_recorded(env):
    _, h, nem = env
    with pytest.raises(FaultSkipped, match="names no node"):
        nem.start(Kill("coreapp-9"))
    (ev,) = nemesis_events(h)
    assert ev.f == "skip" and "coreapp-9" in ev.value["error"]
    assert nem.active == []


def test_start_and_heal_events_have_the_contract_shape(env):
    _, h, nem = env
    with nem.fault(Cut("client->webapp:1")):
        pass
    start, heal = nemesis_events(h)
    for ev, f in ((start, "start"), (heal, "heal")):
        assert (ev.type, ev.f) == ("info", f)
        assert set(ev.value) == {"fault", "id", "targets", "params", "took"}
        assert ev.value["fault"] == "cut" and ev.value["id"] == "f1"
        assert ev.value["targets"] == ["client->webapp-1"]
        assert ev.value["params"] == {"link": "client->webapp:1"}


def test_link_specs_wildcards_and_both_directions(env):
    _, _, nem = env
    ctx = nem.ctx
    assert sorted(ctx.resolve_links("*->db")) == sorted(
        f"{n}->db" for n in ["master-1", "master-2", "coreapp-1", "coreapp-2", "coreapp-3",
                             "webapp-1", "webapp-2"])
    assert ctx.resolve_links("primary-coreapp:0->*") == ["coreapp-1->db", "coreapp-1->gateway"]
    assert sorted(ctx.resolve_links("coreapp-1<->master-1")) == ["master-1->coreapp-1"]
    with pytest.raises(FaultSkipped, match="does not exist"):
        ctx.resolve_links("db->coreapp-1")


# -- heal guarantees -------------------------------------------------------------------------

def test_context_manager_heals_on_exception(env):
    cluster, h, nem = env
    with pytest.raises(ZeroDivisionError), nem.fault(Pause("webapp:1")):
        assert cluster.container("webapp-1").status == "paused"
        1 / 0  # noqa: B018
    assert cluster.container("webapp-1").status == "running"
    assert [e.f for e in nemesis_events(h)] == ["start", "heal"]


def test_heal_all_attempts_every_heal_records_errors_and_raises(env):
    cluster, h, nem = env
    nem.start(Kill("coreapp-3"))
    nem.start(Cut("webapp:1->db"))
    nem.start(Pause("master-2"))
    cluster.container("coreapp-3").fail_on.add("start")
    cluster.toxiproxy.fail_enable.add("webapp-1->db")
    with pytest.raises(HealError) as ei:
        nem.heal_all()
    assert {fid for fid, _ in ei.value.errors} == {"f1", "f2"}
    heals = {e.value["id"]: e.value for e in nemesis_events(h) if e.f == "heal"}
    assert set(heals) == {"f1", "f2", "f3"}
    assert "error" in heals["f1"] and "error" in heals["f2"] and "error" not in heals["f3"]
    assert cluster.container("master-2").status == "running"  # healed despite the others
    assert nem.active == []


def test_failed_start_is_recorded_and_rolled_back(env):
    cluster, h, nem = env
    cluster.toxiproxy.fail_enable.clear()
    real_add = cluster.toxiproxy.add_toxic
    calls = []

    def flaky(proxy, type_, **kw):
        calls.append(proxy)
        if len(calls) == 2:
            raise RuntimeError("toxiproxy hiccup")
        real_add(proxy, type_, **kw)

    cluster.toxiproxy.add_toxic = flaky
    with pytest.raises(RuntimeError, match="hiccup"):
        nem.start(Blackhole("webapp:1->*"))
    start, heal = nemesis_events(h)
    assert start.f == "start" and "hiccup" in start.value["error"] and heal.f == "heal"
    assert all(not t for t in cluster.toxiproxy.toxics.values())
    assert nem.active == []


# -- link state composes ---------------------------------------------------------------------

def test_overlapping_cuts_keep_a_link_down_until_the_last_heal(env):
    cluster, _, nem = env
    iso = nem.start(Isolate("primary-coreapp:0"))
    cut = nem.start(Cut("coreapp-1->db"))
    assert cluster.toxiproxy.enabled["coreapp-1->db"] is False
    nem.heal(iso)
    assert cluster.toxiproxy.enabled["coreapp-1->db"] is False
    assert cluster.toxiproxy.enabled["coreapp-1->gateway"] is True
    nem.heal(cut)
    assert all(cluster.toxiproxy.enabled.values())


def test_isolate_cuts_exactly_the_links_touching_the_node(env):
    cluster, h, nem = env
    with nem.fault(Isolate("webapp:2")):
        down = {n for n, on in cluster.toxiproxy.enabled.items() if not on}
        assert down == {lk.name for lk in cluster.links.touching("webapp-2")}
        assert "client->webapp-2" in down
    start = nemesis_events(h)[0]
    assert start.value["targets"] == ["webapp-2"]
    assert set(start.value["params"]["links"]) == down


def test_toxic_faults_use_their_own_names_and_streams(env):
    cluster, _, nem = env
    lat = nem.start(Latency("client->webapp:1", latency=300, jitter=10))
    one = nem.start(Oneway("client->webapp:1", drop="upstream"))
    hole = nem.start(Blackhole("coreapp-1->gateway"))
    tox = cluster.toxiproxy.toxics
    assert tox["client->webapp-1"] == {
        f"{lat.id}-latency-downstream": {"type": "latency", "stream": "downstream",
                                         "attributes": {"latency": 300, "jitter": 10}},
        f"{one.id}-timeout-upstream": {"type": "timeout", "stream": "upstream",
                                       "attributes": {"timeout": 0}}}
    assert {v["stream"] for v in tox["coreapp-1->gateway"].values()} == {"upstream",
                                                                          "downstream"}
    nem.heal(lat)
    assert list(tox["client->webapp-1"]) == [f"{one.id}-timeout-upstream"]
    nem.heal_all()
    assert not any(tox.values()) and hole.id not in str(tox)


def test_split_and_bridge_cut_only_between_halves(env):
    cluster, h, nem = env
    with nem.fault(Split(a=("primary-master", "primary-coreapp:0"))) as sp:
        a, b = sp.params()["a"], sp.params()["b"]
        assert a == ["master-1", "coreapp-1"] and "master-2" in b
        down = {n for n, on in cluster.toxiproxy.enabled.items() if not on}
        assert down == {lk.name for lk in cluster.links.between(a, b)}
        assert "coreapp-1->db" not in down  # infrastructure reachable from both
    with nem.fault(Bridge(bridge="primary-master", seed=7)) as br:
        p = br.params()
        assert br.targets == ["master-1"] and "master-1" not in p["a"] + p["b"]
        down = {n for n, on in cluster.toxiproxy.enabled.items() if not on}
        assert not any("master-1" in n for n in down)
        assert down == {lk.name for lk in cluster.links.between(p["a"], p["b"])}
    assert all(cluster.toxiproxy.enabled.values())


def test_split_halves_are_seeded():
    a1 = Split(seed=3)
    a2 = Split(seed=3)
    from harness.nemesis.split import halves
    nodes = Topology(masters=2, coreapps=4, webapps=2).all_nodes
    assert halves(nodes, 3) == halves(nodes, 3)
    assert halves(nodes, 3) != halves(nodes, 4)
    assert a1 == a2


# -- container and clock faults ---------------------------------------------------------------

def test_second_container_fault_on_the_same_node_is_refused(env):
    cluster, h, nem = env
    nem.start(Pause("primary-coreapp:0"))
    with pytest.raises(FaultConflict, match="f1"):
        nem.start(Kill("coreapp-1"))
    assert cluster.container("coreapp-1").calls == [("pause",)]
    assert [e.f for e in nemesis_events(h)] == ["start", "skip"]
    nem.heal_all()
    nem.start(Kill("coreapp-1"))  # free again after the heal
    nem.heal_all()


def test_stateful_infrastructure_cannot_be_killed_but_db_can_be_paused(env):
    cluster, _, nem = env
    for f in (Kill("db"), Stop("nfs"), Kill("toxiproxy"), DbOutage("stop"), NfsOutage("stop")):
        with pytest.raises(FaultSkipped):
            nem.start(f)
    assert cluster.container("db").calls == []
    with nem.fault(DbOutage("pause")):
        assert cluster.container("db").status == "paused"
    assert cluster.container("db").status == "running"


def test_db_outage_links_cuts_every_link_into_the_database(env):
    cluster, _, nem = env
    with nem.fault(DbOutage()) as f:
        assert f.targets == ["db"]
        down = sorted(n for n, on in cluster.toxiproxy.enabled.items() if not on)
        assert down == sorted(lk.name for lk in cluster.links.to("db"))
    assert all(cluster.toxiproxy.enabled.values())


def test_nfs_outage_skipped_without_nfs():
    cluster = FakeCluster(Topology(media="volume"))
    del cluster.nodes["nfs"]
    nem = Nemesis(cluster, History())
    with pytest.raises(FaultSkipped, match="no 'nfs'"):
        nem.start(NfsOutage())


@pytest.mark.parametrize("seconds,text", [(60, "+60"), (-120.5, "-120.5"), (0, "+0"),
                                          (0.25, "+0.25"), (100, "+100"), (-0.0001, "+0")])
def test_offset_text(seconds, text):
    assert offset_text(seconds) == text


def test_clock_skew_jump_writes_offset_and_heal_resets(env):
    cluster, h, nem = env
    c = cluster.container("coreapp-2")
    with nem.fault(ClockSkew("primary-coreapp:1", offset=-120)):
        assert c.files["/run/faketime/offset"] == "-120\n"
    assert c.files["/run/faketime/offset"] == "+0\n"
    with pytest.raises(FaultSkipped, match="libfaketime"):
        nem.start(ClockSkew("gateway"))


def test_clock_skew_drift_steps_up_and_heal_resets_even_when_stopped(env):
    cluster, _, nem = env
    c = cluster.container("master-2")
    written: list[str] = []
    done = threading.Event()
    real_exec = c.exec_run

    def spy(cmd):
        r = real_exec(cmd)
        written.append(c.files["/run/faketime/offset"].strip())
        if len(written) == 4:
            done.set()
        return r

    c.exec_run = spy
    f = nem.start(ClockSkew("secondary-master", offset=8, mode="drift", over=0.2, steps=4))
    assert done.wait(5), written
    assert written == ["+2", "+4", "+6", "+8"]
    c.status = "exited"  # killed meanwhile: heal writes through the archive API
    nem.heal(f)
    assert c.files["/run/faketime/offset"] == "+0\n"
    assert c.calls[-1] == ("put_archive", "/run/faketime")


# -- schedules ---------------------------------------------------------------------------------

TOPO = Topology(masters=2, coreapps=3, webapps=2, shards=2)


def test_same_seed_same_schedule_and_different_seed_different():
    a = random_schedule(42, 120, ALL_KINDS, TOPO)
    b = random_schedule(42, 120, ALL_KINDS, TOPO)
    c = random_schedule(43, 120, ALL_KINDS, TOPO)
    assert a == b and a.to_dicts() == b.to_dicts() and a.seed == 42
    assert a.to_dicts() != c.to_dicts()
    assert len(a) >= 3


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("max_overlap", [1, 2, 3])
def test_random_schedule_bounds(seed, max_overlap):
    steps = random_schedule(seed, 90, ALL_KINDS, TOPO, max_overlap=max_overlap,
                            min_fault=2, max_fault=12)
    for s in steps:
        assert s.at >= 0 and s.end <= 90 + 1e-9
        assert 2 <= s.duration <= 12 + 1e-9
    for s in steps:  # overlap at every start
        active = [o for o in steps if o.at <= s.at < o.end]
        assert len(active) <= max_overlap
    assert [s.at for s in steps] == sorted(s.at for s in steps)


def test_random_schedule_targets_are_role_selectors_and_kinds_respected():
    steps = random_schedule(5, 300, ("kill", "pause", "cut"), TOPO)
    assert {s.fault.kind for s in steps} <= {"kill", "pause", "cut"}
    for s in steps:
        spec = s.fault.spec()
        text = spec.get("target") or spec.get("link")
        assert "primary" in text or "secondary" in text or ":" in text or text in (
            "db", "gateway"), text
    vol = random_schedule(5, 300, ("nfs-outage", "kill"), Topology(media="volume"))
    assert {s.fault.kind for s in vol} == {"kill"}
    with pytest.raises(ValueError, match="not usable"):
        random_schedule(1, 60, ("nope",), TOPO)


def test_every_kind_can_be_drawn_and_rebuilt_from_its_dict():
    steps = random_schedule(11, 2000, ALL_KINDS, TOPO, max_overlap=3)
    chaos_kinds = {k for k, cls in REGISTRY.items() if cls.chaos}
    assert {s.fault.kind for s in steps} == set(ALL_KINDS) == chaos_kinds
    for s in steps:
        assert Step.from_dict(s.to_dict()) == s
    assert fault_from_dict({"fault": "cut", "link": ["a->b", "c->d"]}) == Cut(("a->b", "c->d"))


def test_sequence_places_faults_one_after_another():
    steps = sequence((Kill("primary-coreapp:0"), 10), Pause("db"), gap=5, start=2, duration=3)
    assert [(s.at, s.duration) for s in steps] == [(2, 10), (17, 3)]
    assert steps.seed is None


# -- running schedules -------------------------------------------------------------------------

def test_run_schedule_executes_in_time_order_records_seed_and_heals(env):
    cluster, h, nem = env
    steps = Schedule([Step(0.0, Cut("client->webapp:1"), 0.15),
                      Step(0.05, Pause("primary-coreapp:0"), 0.05),
                      Step(0.06, Kill("coreapp-1"), 0.05)], seed=99)
    outcomes = run_schedule(nem, steps)
    evs = nemesis_events(h)
    assert evs[0].f == "schedule" and evs[0].value["seed"] == 99
    assert evs[0].value["steps"] == steps.to_dicts()
    assert [(e.f, e.value["fault"]) for e in evs[1:]] == [
        ("start", "cut"), ("start", "pause"), ("skip", "kill"), ("heal", "pause"),
        ("heal", "cut")]
    assert [o.started for o in outcomes] == [True, True, False]
    assert "f2" in outcomes[2].error
    start_cut, heal_cut = evs[1], evs[-1]
    assert heal_cut.time - start_cut.time >= 0.15
    assert all(cluster.toxiproxy.enabled.values())
    assert cluster.container("coreapp-1").status == "running"


def test_run_schedule_stops_on_event_and_heals_what_it_started(env):
    cluster, h, nem = env
    stop = threading.Event()
    steps = Schedule([Step(0.0, Cut("*->db"), 30.0), Step(20.0, Kill("coreapp-2"), 5.0)])
    t = threading.Thread(target=run_schedule, args=(nem, steps, stop))
    t.start()
    try:
        for _ in range(500):
            if nem.active:
                break
            threading.Event().wait(0.01)
        assert not all(cluster.toxiproxy.enabled.values())
    finally:
        stop.set()
        t.join(5)
    assert not t.is_alive()
    assert all(cluster.toxiproxy.enabled.values())
    assert [e.f for e in nemesis_events(h)] == ["schedule", "start", "heal"]
    assert cluster.container("coreapp-2").calls == []


def test_run_schedule_max_time_bounds_the_run(env):
    _, h, nem = env
    steps = Schedule([Step(0.0, Cut("client->webapp:1"), 0.05),
                      Step(60.0, Cut("client->webapp:2"), 1.0)])
    run_schedule(nem, steps, max_time=0.5)
    assert [e.f for e in nemesis_events(h)] == ["schedule", "start", "heal"]
