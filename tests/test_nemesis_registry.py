"""Fault kinds register themselves; seeded schedules are pinned.

The literals below were computed with the schedule code as it was before the fault kinds
declared their own draws (one if/elif chain in ``schedule.make_fault``): the same seed and
arguments must keep drawing exactly these faults (same RNG calls in the same order), so a
recorded ``--chaos-seed`` replays the run it named.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import textwrap
from dataclasses import dataclass
from typing import Any

import pytest

import harness.nemesis as nemesis
from harness.nemesis import registry
from harness.nemesis.base import Fault
from harness.nemesis.draw import Draw, node_selectors
from harness.nemesis.registry import REGISTRY, fault_from_dict, register
from harness.nemesis.schedule import ALL_KINDS, make_fault, random_schedule
from harness.spec import Topology

TOPO = Topology(masters=2, coreapps=3, webapps=2, shards=2)
VOLUME = Topology(masters=1, coreapps=2, webapps=1, shards=1, media="volume")

#: seed -> (duration, kinds, topology, keyword arguments) of the pinned schedules
CASES: dict[int, tuple[float, tuple[str, ...], Topology, dict[str, Any]]] = {
    0: (60, ALL_KINDS, TOPO, {}),
    7: (60, ALL_KINDS, TOPO, {"max_overlap": 3}),
    42: (60, ALL_KINDS, TOPO, {}),
    1234: (40, ALL_KINDS, VOLUME, {"min_fault": 1, "max_fault": 8, "max_gap": 5}),
    99: (60, ("nfs-outage", "bridge", "clock-skew", "latency", "stop"), Topology(), {}),
}

#: seed -> steps ``(at, duration, kind, fields)`` drawn before the registry existed
PINNED: dict[int, list[tuple[float, float, str, dict[str, Any]]]] = {
    0: [
        (8.4, 11.9, "cut", {"link": "primary-coreapp:0->gateway"}),
        (11.0, 8.6, "cut", {"link": "secondary-master->primary-coreapp:1"}),
        (20.7, 6.7, "nfs-outage", {"variant": "links"}),
        (25.7, 5.7, "bridge", {"bridge": "primary-master", "a": [], "b": [], "seed": 1075916535}),
        (35.6, 8.9, "split", {"a": [], "b": [], "seed": 631194409}),
        (38.7, 11.5, "nfs-outage", {"variant": "pause"}),
        (44.6, 9.3, "clock-skew",
         {"target": "secondary-master", "offset": 30.0, "mode": "drift", "over": 9.3, "steps": 6}),
        (54.3, 5.7, "db-outage", {"variant": "pause"}),
        (56.9, 3.1, "latency",
         {"link": "primary-coreapp:0->db", "latency": 50, "jitter": 100, "stream": "both"}),
    ],
    7: [
        (3.2, 4.0, "oneway", {"link": "primary-coreapp:0->gateway", "drop": "upstream"}),
        (11.4, 3.2, "bandwidth",
         {"link": "primary-coreapp:0->gateway", "rate": 64, "stream": "both"}),
        (13.5, 3.1, "cut", {"link": "primary-master->primary-coreapp:0"}),
        (15.9, 9.2, "kill", {"target": "webapp:2", "signal": "SIGKILL"}),
        (21.6, 14.3, "oneway", {"link": "primary-coreapp:0->gateway", "drop": "downstream"}),
        (22.1, 4.9, "latency",
         {"link": "webapp:1->primary-coreapp:0", "latency": 500, "jitter": 20,
          "stream": "downstream"}),
        (27.5, 9.4, "latency",
         {"link": "webapp:2->primary-coreapp:0", "latency": 50, "jitter": 100,
          "stream": "downstream"}),
        (31.2, 9.1, "stop", {"target": "secondary-master", "grace": 1}),
        (37.4, 8.5, "latency",
         {"link": "client->webapp:1", "latency": 500, "jitter": 20, "stream": "both"}),
        (41.0, 5.2, "pause", {"target": "secondary-coreapp"}),
        (41.8, 5.9, "blackhole", {"link": "webapp:1->primary-coreapp:1", "stream": "downstream"}),
        (46.3, 9.9, "stop", {"target": "primary-coreapp:0", "grace": 10}),
        (50.5, 9.5, "pause", {"target": "db"}),
        (54.7, 5.3, "stop", {"target": "webapp:2", "grace": 10}),
    ],
    42: [
        (6.4, 2.3, "isolate", {"target": "primary-coreapp:1"}),
        (8.6, 11.6, "oneway", {"link": "primary-master->primary-coreapp:0", "drop": "downstream"}),
        (8.9, 3.2, "restart", {"target": "secondary-master", "grace": 10}),
        (12.2, 4.6, "oneway", {"link": "client->webapp:1", "drop": "upstream"}),
        (16.9, 5.6, "db-outage", {"variant": "links"}),
        (24.5, 4.1, "cut", {"link": "webapp:1->primary-coreapp:1"}),
        (27.3, 4.8, "bridge", {"bridge": "primary-coreapp:0", "a": [], "b": [], "seed": 438989805}),
        (28.7, 3.3, "db-outage", {"variant": "blackhole"}),
        (34.7, 12.5, "split", {"a": [], "b": [], "seed": 1973214822}),
        (40.1, 14.7, "cut", {"link": "primary-master->primary-coreapp:0"}),
        (47.3, 12.7, "bandwidth",
         {"link": "webapp:2->primary-coreapp:1", "rate": 64, "stream": "both"}),
        (54.9, 2.9, "oneway", {"link": "primary-coreapp:1->gateway", "drop": "downstream"}),
    ],
    1234: [
        (4.8, 4.1, "kill", {"target": "primary-coreapp:0", "signal": "SIGKILL"}),
        (9.4, 7.6, "bandwidth", {"link": "primary-coreapp:0->db", "rate": 64, "stream": "both"}),
        (12.9, 1.7, "clock-skew",
         {"target": "primary-coreapp:0", "offset": -300.0, "mode": "jump", "over": 1.7,
          "steps": 3}),
        (14.6, 5.4, "bandwidth",
         {"link": "webapp:1->primary-coreapp:0", "rate": 1, "stream": "both"}),
        (17.1, 6.0, "db-outage", {"variant": "links"}),
        (20.1, 7.2, "restart", {"target": "primary-coreapp:0", "grace": 10}),
        (23.2, 4.3, "bandwidth", {"link": "client->webapp:1", "rate": 1, "stream": "both"}),
        (27.4, 1.3, "db-outage", {"variant": "pause"}),
        (27.7, 3.1, "db-outage", {"variant": "blackhole"}),
        (29.0, 5.6, "restart", {"target": "webapp:1", "grace": 10}),
        (32.3, 7.6, "stop", {"target": "primary-coreapp:0", "grace": 5}),
        (34.7, 4.3, "cut", {"link": "primary-coreapp:0->gateway"}),
    ],
    99: [
        (4.0, 4.6, "bridge", {"bridge": "primary-master", "a": [], "b": [], "seed": 1067004398}),
        (5.3, 3.1, "latency",
         {"link": "primary-coreapp:0->gateway", "latency": 3000, "jitter": 20,
          "stream": "downstream"}),
        (9.5, 10.0, "bridge",
         {"bridge": "primary-coreapp:0", "a": [], "b": [], "seed": 1666927681}),
        (18.1, 4.8, "latency",
         {"link": "primary-master->primary-coreapp:0", "latency": 3000, "jitter": 20,
          "stream": "downstream"}),
        (27.6, 8.9, "nfs-outage", {"variant": "blackhole"}),
        (30.8, 2.6, "stop", {"target": "primary-coreapp:0", "grace": 5}),
        (33.5, 14.9, "stop", {"target": "primary-coreapp:0", "grace": 5}),
        (38.7, 4.6, "latency",
         {"link": "primary-coreapp:0->db", "latency": 500, "jitter": 0, "stream": "downstream"}),
        (48.2, 11.3, "latency",
         {"link": "primary-master->primary-coreapp:0", "latency": 3000, "jitter": 100,
          "stream": "downstream"}),
        (48.6, 2.3, "latency",
         {"link": "client->webapp:1", "latency": 50, "jitter": 20, "stream": "downstream"}),
        (51.0, 9.0, "latency",
         {"link": "primary-master->db", "latency": 200, "jitter": 100, "stream": "both"}),
    ],
}

#: (seed, topology, steps, sha256 of the schedule's JSON) of long schedules (2000 s)
DIGESTS = [
    (11, TOPO, 373, "3d093ff1f9be281a1faaab4a060e23c8ffb1f931b346da14a8e993398f7abb49"),
    (2024, TOPO, 374, "a44c78b9ed09a2e11aff7f8a64651d94bc0e528dc6ec31cbcf467bb7a79246b4"),
    (5, Topology(masters=3, coreapps=5, webapps=2, shards=4), 337,
     "38d9eae6d03e77475596eeda99dec04a04d96533e5de70e6b348cf0f82afe307"),
]


def test_chaos_kinds_keep_their_order():
    # rng.choice draws from the kinds in this order: reordering changes every seed
    assert ALL_KINDS == ("kill", "stop", "pause", "restart", "isolate", "clock-skew", "cut",
                         "blackhole", "latency", "bandwidth", "oneway", "split", "bridge",
                         "db-outage", "nfs-outage")


@pytest.mark.parametrize("seed", sorted(PINNED))
def test_seeded_schedules_draw_exactly_what_they_drew_before(seed):
    duration, kinds, topology, kw = CASES[seed]
    got = random_schedule(seed, duration, kinds, topology, **kw).to_dicts()
    assert got == [{"at": at, "duration": d, "fault": kind, **fields}
                   for at, d, kind, fields in PINNED[seed]]


def test_pinned_schedules_cover_every_chaos_kind():
    assert {kind for steps in PINNED.values() for _, _, kind, _ in steps} == set(ALL_KINDS)


@pytest.mark.parametrize(("seed", "topology", "n", "digest"), DIGESTS)
def test_long_seeded_schedules_are_unchanged(seed, topology, n, digest):
    steps = random_schedule(seed, 2000, ALL_KINDS, topology,
                            max_overlap=3 if topology == TOPO else 2)
    text = json.dumps(steps.to_dicts(), sort_keys=True)
    assert (len(steps), hashlib.sha256(text.encode()).hexdigest()) == (n, digest)


# -- the registry ------------------------------------------------------------------------------

def test_every_kind_is_one_module_of_the_package():
    for kind, cls in REGISTRY.items():
        module = sys.modules[cls.__module__]
        assert cls.__module__.startswith("harness.nemesis."), kind
        assert vars(module)[cls.__name__] is cls
        assert getattr(nemesis, cls.__name__) is cls  # harness.nemesis.<Class>
    assert {k for k, cls in REGISTRY.items() if cls.chaos} == set(ALL_KINDS)
    assert {k for k, cls in REGISTRY.items() if not cls.chaos} == {
        "engine-freeze", "lost-close", "reset"}
    with pytest.raises(AttributeError):
        _ = nemesis.Meteor


def test_a_new_fault_module_is_found_without_touching_any_other_file(tmp_path, monkeypatch):
    (tmp_path / "meteor.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass

        from harness.nemesis.base import Fault
        from harness.nemesis.draw import Draw
        from harness.nemesis.registry import register


        @register
        @dataclass
        class Meteor(Fault):
            target: str = "db"
            size: int = 1

            kind = "meteor"
            chaos = 10_000

            @classmethod
            def draw(cls, d: Draw) -> "Meteor":
                return cls(d.rng.choice(d.nodes), size=d.rng.choice((1, 2)))
    '''))
    monkeypatch.setattr(nemesis, "__path__", [*nemesis.__path__, str(tmp_path)])
    try:
        assert registry.chaos_kinds() == (*ALL_KINDS, "meteor")  # ranked after the others
        meteor = fault_from_dict({"fault": "meteor", "target": "coreapp-1", "size": 2})
        assert type(meteor).__name__ == "Meteor" and meteor.size == 2
        drawn = registry.fault_class("meteor").draw(Draw(random.Random(1), TOPO, 5.0))
        assert drawn.target in node_selectors(TOPO)
    finally:
        monkeypatch.undo()  # the package's own path again, then forget the module
        REGISTRY.pop("meteor", None)
        sys.modules.pop("harness.nemesis.meteor", None)
        vars(nemesis).pop("meteor", None)
    assert registry.chaos_kinds() == ALL_KINDS


def test_register_refuses_a_chaos_kind_it_cannot_draw():
    @dataclass
    class Undrawable(Fault):
        kind = "undrawable"
        chaos = 5

    @dataclass
    class Flagged(Fault):
        kind = "flagged"
        chaos = True

    for cls, match in ((Undrawable, "no draw"), (Flagged, "rank >= 1")):
        with pytest.raises(TypeError, match=match):
            register(cls)
        assert cls.kind not in REGISTRY


def test_draws_come_from_the_kinds_and_rebuild_from_their_dicts():
    rng = random.Random(3)
    for kind in ALL_KINDS:
        fault = make_fault(kind, rng, TOPO, 7.5)
        assert fault.kind == kind
        assert fault_from_dict(fault.spec()) == fault
    with pytest.raises(ValueError, match="unknown fault kind 'reset'"):
        make_fault("reset", rng, TOPO, 5.0)  # registered, but not drawn by chaos
    with pytest.raises(ValueError, match="unknown fault kind 'meteor'; known: bandwidth"):
        fault_from_dict({"fault": "meteor"})


def test_kinds_say_where_they_can_be_drawn():
    assert REGISTRY["nfs-outage"].usable(Topology(media="nfs"))
    assert not REGISTRY["nfs-outage"].usable(VOLUME)
    assert all(REGISTRY[k].usable(VOLUME) for k in ALL_KINDS if k != "nfs-outage")
