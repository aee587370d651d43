"""The failover record and its runner (``harness.failover``), without Docker.

Model: a ``Failover`` is data — checks by registered name with parameters (``BOUND``,
``SHARD``, ``MARGIN``, ``FAULT`` resolved when it runs), the bound as a function of the
cluster's ``Timing`` — validated when it is built (``InvalidFailover`` names the field).
``run_failover`` runs the template's steps in a fixed order; here the steps that touch a
cluster (warm-up, waits, holds, settling, judging) are replaced by recorders, so the order,
the waits' timeouts and what is judged are checked on a fake cluster, nemesis and workload.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from types import SimpleNamespace
from typing import Any

import pytest

from harness import failover
from harness.failover import (
    BOUND,
    FAULT,
    MARGIN,
    PRIMARY_COREAPP,
    PRIMARY_MASTER,
    SHARD,
    Failover,
    InvalidFailover,
    Run,
    build_checks,
    check_parts,
    db_bound,
    heartbeat_bound,
    lease_bound,
    master_and_coreapp_bound,
    new_connect,
    new_primary_master,
    partition_bound,
    resolve,
    run_failover,
    takeover_within_bound,
)
from harness.history import Event, make
from harness.judge import bounds
from harness.judge.checkers import (
    CHECKERS,
    downtime,
    no_lost_acks,
    no_promotion,
    primary_masters,
    promotion,
    single_connected,
)
from harness.nemesis.cut import Cut
from harness.nemesis.kill import Kill
from harness.verdict import ALWAYS, with_always
from multiconnect.timing import TIMINGS, Timing

COREAPP_CHECKS = (
    ("promotion", {"shard": SHARD, "bound": BOUND}),
    ("downtime", {"bound": BOUND, "shards": None, "others_bound": None}),
    "single_connected",
    "no_lost_acks",
    ("primary_masters", {"last": 3}),
)


def record(**changes: Any) -> Failover:
    fields: dict[str, Any] = {"title": "kill primary coreapp", "fault": Kill,
                              "bound": heartbeat_bound, "checks": COREAPP_CHECKS}
    return Failover(**{**fields, **changes})


def same(a: Any, b: Any) -> bool:
    """Two checks are the same: the same function, bound with the same parameters."""
    if isinstance(a, partial) or isinstance(b, partial):
        return (isinstance(a, partial) and isinstance(b, partial) and a.func is b.func
                and a.args == b.args and a.keywords == b.keywords)
    return a is b


# ------------------------------------------------------------------ checks from names

def test_check_parts_takes_a_bare_name_or_a_name_with_parameters() -> None:
    assert check_parts("single_connected") == ("single_connected", {})
    assert check_parts(("primary_masters", {"last": 3})) == ("primary_masters", {"last": 3})
    for bad in (3, ("promotion",), ("promotion", 3), (1, {}), ["promotion", {}]):
        with pytest.raises(TypeError, match="neither a checker name"):
            check_parts(bad)


def test_build_checks_names_registered_checkers_in_order_with_refs_resolved() -> None:
    b = bounds.heartbeat_failover(1, 3, 2)
    checks = build_checks(COREAPP_CHECKS, {"bound": b, "shard": 0, "margin": 1.5,
                                           "fault": None})
    # exactly what the scenario passed to judge before it was data
    before = [partial(promotion, shard=0, bound=b),
              partial(downtime, bound=b, shards=None, others_bound=None),
              single_connected, no_lost_acks, partial(primary_masters, last=3)]
    assert len(checks) == len(before)
    assert all(same(a, x) for a, x in zip(checks, before, strict=True))
    assert checks[2] is CHECKERS["single_connected"]  # a bare name: the bare function
    # and judge adds the same safety list to both
    assert [getattr(c, "func", c) for c in with_always(checks)][len(before):] == list(ALWAYS)


def test_every_ref_is_resolved_and_a_missing_value_is_named() -> None:
    values = {"bound": 9.5, "shard": 2, "margin": 1.5, "fault": "f3"}
    assert [resolve(r, values) for r in (BOUND, SHARD, MARGIN, FAULT)] == [9.5, 2, 1.5, "f3"]
    assert resolve([2], values) == [2]  # anything else as it is
    with pytest.raises(KeyError, match="no value for FAULT"):
        resolve(FAULT, {"bound": 1.0})
    (check,) = build_checks([("promotion", {"shard": SHARD, "bound": BOUND,
                                            "fault": FAULT})], values)
    assert same(check, partial(promotion, shard=2, bound=9.5, fault="f3"))


def test_margin_is_read_when_the_checks_are_built(monkeypatch: pytest.MonkeyPatch) -> None:
    fo = record(checks=(("downtime", {"bound": MARGIN}),))
    run = Run(fo, SimpleNamespace(spec=SimpleNamespace(timing=Timing())), None, None, 5.0)
    monkeypatch.setattr(bounds, "MARGIN", 2.0)
    (check,) = fo.checks_for(run.values())
    assert same(check, partial(downtime, bound=2.0))


def test_run_values_name_the_first_fault_started() -> None:
    fo = record()
    first, second = Kill("coreapp-1"), Kill("master-1")
    first._id, second._id = "f4", "f5"  # as the nemesis numbers them at start
    run = Run(fo, None, None, None, 7.0, faults=(first, second))
    assert run.values() == {"bound": 7.0, "shard": 0, "margin": bounds.MARGIN, "fault": "f4"}
    assert Run(fo, None, None, None, 7.0).values()["fault"] is None


# ------------------------------------------------------------------ bounds from a Timing

@pytest.mark.parametrize("preset", sorted(TIMINGS))
def test_bounds_are_the_harness_bounds_of_the_timing(preset: str) -> None:
    t = TIMINGS[preset]
    h, u, k = t.heartbeat_interval, t.unhealthy_interval, t.gateway_ping_timeout
    assert heartbeat_bound(t) == bounds.heartbeat_failover(h, u, k)
    assert partition_bound(t) == bounds.partition_failover(h, u, k)
    assert db_bound(t) == bounds.db_failover(t.liveness_interval, t.stale_after)
    assert lease_bound(t) == bounds.lease_takeover(t.lease_ttl)
    assert master_and_coreapp_bound(t) == bounds.master_and_coreapp_failover(
        t.lease_ttl, t.liveness_interval, t.stale_after)


def test_ci_bounds_match_the_promise_matrix() -> None:
    t = TIMINGS["ci"]  # docs/promises.md, values in brackets
    assert heartbeat_bound(t).value == pytest.approx(6.0)
    assert partition_bound(t).value == pytest.approx(10.0)
    assert db_bound(t).value == pytest.approx(10.5)
    assert lease_bound(t).value == pytest.approx(8.2, abs=0.05)
    assert master_and_coreapp_bound(t).value == pytest.approx(11.2, abs=0.05)


def test_bound_for_computes_from_the_timing_and_rejects_nonsense() -> None:
    t = Timing(heartbeat_interval=2, unhealthy_interval=6)
    assert record().bound_for(t) == bounds.heartbeat_failover(2, 6, t.gateway_ping_timeout)
    assert record(bound=lambda t: 4).bound_for(t) == 4
    for bad in (math.nan, -1.0, "5", True, None, bounds.Bound(math.inf, "inf")):
        with pytest.raises(InvalidFailover, match=r"^Failover\.bound: ") as e:
            record(bound=lambda t, bad=bad: bad).bound_for(t)
        assert e.value.field == "bound"


# ------------------------------------------------------------------ validation

@pytest.mark.parametrize("field_, value, words", [
    ("title", "", "non-empty text"),
    ("title", None, "non-empty text"),
    ("fault", "kill", "a callable"),
    ("bound", 5.5, "a callable"),
    ("target", "primary coreapp", "a Role"),
    ("shard", -1, "shard number"),
    ("shard", True, "shard number"),
    ("shard", "0", "shard number"),
    ("hold", -2, "seconds >= 0"),
    ("hold", math.nan, "seconds >= 0"),
    ("hold", False, "seconds >= 0"),
    ("figures", [("a", 1)], "a mapping"),
    ("aim", "wait", "a callable of the Run"),
    ("then", 1, "a callable of the Run"),
    ("after_wait", 1, "a callable of the Run"),
    ("after_heal", 1, "a callable of the Run"),
    ("verify", 1, "a callable of the Run"),
    ("checks", (), "non-empty sequence"),
    ("checks", "downtime", "non-empty sequence"),
    ("checks", None, "non-empty sequence"),
    ("checks", ("single_connected", "no_such_check"),
     r"\[1\] no checker named 'no_such_check'; known: .*downtime"),
    ("checks", (("downtime", {"bund": BOUND}),), r"\[0\] checker 'downtime': .*bund"),
    ("checks", (("downtime", BOUND),), r"\[0\] .*neither a checker name"),
])
def test_a_bad_field_is_named(field_: str, value: Any, words: str) -> None:
    with pytest.raises(InvalidFailover, match=rf"^Failover\.{field_}: .*{words}") as e:
        record(**{field_: value})
    assert e.value.field == field_
    assert isinstance(e.value, ValueError)


def test_a_good_record_is_kept_as_given() -> None:
    figures = {"latency_ms": 4000}
    fo = record(checks=list(COREAPP_CHECKS), figures=figures, shard=2, hold=0)
    assert fo.checks == COREAPP_CHECKS  # a list becomes a tuple
    figures["latency_ms"] = 1  # the record keeps its own copy
    assert fo.figures == {"latency_ms": 4000}
    assert fo.target is PRIMARY_COREAPP and fo.hold == 0
    with pytest.raises(AttributeError):
        fo.shard = 3  # type: ignore[misc]


def test_faults_for_builds_one_or_several_faults_from_the_target() -> None:
    assert record().faults_for("coreapp-1") == (Kill("coreapp-1"),)
    both = record(fault=lambda pc: (Kill(pc), Kill("master-2")))
    assert both.faults_for("coreapp-1") == (Kill("coreapp-1"), Kill("master-2"))
    assert record(fault=lambda pc: [Cut(f"{pc}->db")]).faults_for("coreapp-1") == (
        Cut("coreapp-1->db"),)
    for bad in (lambda pc: (), lambda pc: "kill", lambda pc: None, lambda pc: (Kill(pc), 5)):
        with pytest.raises(InvalidFailover, match=r"^Failover\.fault: "):
            record(fault=bad).faults_for("coreapp-1")


# ------------------------------------------------------------------ successors

@dataclass
class Listed:
    """A history that is only a list of events."""

    rows: list[Event]

    def events(self) -> list[Event]:
        return self.rows


def health(t: float, roles: dict[str, str]) -> tuple:
    return (t, "health", "ok", "health", {"nodes": {n: {"role": r} for n, r in roles.items()}})


def test_a_coreapp_successor_is_another_nodes_connect_for_the_shard() -> None:
    h = Listed(make([
        (1.0, "gateway", "info", "gw-connect", {"shard": 0, "node": "coreapp-2"}),
        (3.0, "gateway", "info", "gw-connect", {"shard": 0, "node": "coreapp-1"}),
        (4.0, "gateway", "info", "gw-connect", {"shard": 1, "node": "coreapp-2"}),
        (5.0, "gateway", "info", "gw-connect", {"shard": 0, "node": "coreapp-2"}),
    ]))
    assert new_connect(h, 0, "coreapp-1", 2.0).time == 5.0  # not before, not the old one
    assert PRIMARY_COREAPP.successor(h, 1, "coreapp-1", 2.0).time == 4.0
    assert new_connect(h, 0, "coreapp-2", 2.0).time == 3.0
    assert new_connect(h, 2, "coreapp-1", 0.0) is None
    assert PRIMARY_COREAPP.describe(2) == "primary coreapp of shard 2"


def test_a_master_successor_is_a_health_snapshot_naming_another_primary() -> None:
    h = Listed(make([
        health(1.0, {"master-1": "secondary_master", "master-2": "primary_master"}),
        health(3.0, {"master-1": "secondary_master", "master-2": "primary_master"}),
        (4.0, "health", "fail", "health", {}),
        health(5.0, {"master-1": "primary_master", "master-2": "primary_master"}),
        health(6.0, {"master-1": "primary_master"}),
    ]))
    assert new_primary_master(h, "master-2", 2.0).time == 6.0
    assert PRIMARY_MASTER.successor(h, 0, "master-2", 2.0).time == 6.0
    assert new_primary_master(h, "master-1", 0.0).time == 1.0
    assert PRIMARY_MASTER.describe(0) == "primary master"


# ------------------------------------------------------------------ the master takeover

def test_takeover_within_bound_fails_like_a_check_and_adds_its_figures() -> None:
    fo = record(target=PRIMARY_MASTER, bound=lease_bound)
    b = bounds.lease_takeover(5.0)
    verify = takeover_within_bound("killing")

    def run(seen_at: float | None) -> Run:
        seen = None if seen_at is None else make([(seen_at, "health", "ok", "health")])[0]
        return Run(fo, None, None, None, b, target="master-1", start=10.0, seen=seen)

    with pytest.raises(AssertionError, match=r"^CHECK FAILED: no other primary master "
                                             r"within 8\.16667 s .* after killing master-1"):
        verify(run(None))
    with pytest.raises(AssertionError, match=r"^CHECK FAILED: lease takeover took 8\.200s "
                                             r"> bound 8\.16667 s"):
        verify(run(18.2))
    ok = run(14.2504)
    verify(ok)
    assert ok.figures == {"promotion": 4.25, "bound": b.value}


# ------------------------------------------------------------------ the runner's order

class FakeNemesis:
    def __init__(self, log: list[Any]) -> None:
        self.log = log
        self.n = 0

    def start(self, f: Any) -> None:
        self.n += 1
        f._id = f"f{self.n}"
        self.log.append(("start", f.id, f.kind))

    def heal(self, f: Any) -> None:
        self.log.append(("heal", f.id))


@dataclass
class FakeWorkload:
    log: list[Any]

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        self.log.append("workload on")
        try:
            yield
        finally:
            self.log.append("workload off")


@dataclass
class FakeCluster:
    log: list[Any]
    timing: Timing = field(default_factory=Timing)

    @property
    def spec(self) -> Any:
        return SimpleNamespace(timing=self.timing)

    def primary_coreapp(self, shard: int) -> str:
        self.log.append(("primary_coreapp", shard))
        return "coreapp-1"

    def primary_master(self) -> str:
        self.log.append("primary_master")
        return "master-1"

    def secrets(self) -> list[str]:
        return ["s3cret"]


class FakeHistory:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        self.t += 1.0
        return self.t

    def events(self) -> list[Event]:
        return []


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What the runner did, in order (its cluster-facing steps replaced by recorders)."""
    log: list[Any] = []
    monkeypatch.setattr(failover, "warm_up", lambda h: log.append("warm up"))
    monkeypatch.setattr(failover, "hold", lambda s: log.append(("hold", s)))
    monkeypatch.setattr(failover, "settle", lambda c, h: log.append("settle"))

    def wait_history(history: Any, predicate: Any, timeout: float, what: str) -> Any:
        log.append(("wait", timeout, what, predicate(history)))
        return None

    def judge(events: Any, checks: Any, **kw: Any) -> list[Any]:
        log.append(("judge", list(checks), kw))
        return ["results"]

    monkeypatch.setattr(failover, "wait_history", wait_history)
    monkeypatch.setattr(failover, "judge", judge)
    monkeypatch.setattr(failover, "phase", lambda title: contextlib.nullcontext())
    return log


def test_the_runner_runs_the_template_in_order(steps: list[Any]) -> None:
    def hook(name: str) -> Any:
        def step(run: Run) -> None:
            steps.append((name, run.target, run.start))
            if name == "verify":
                run.figures["seen"] = run.seen
        return step

    cluster = FakeCluster(steps)
    fo = Failover(title="both primaries", bound=master_and_coreapp_bound, hold=3,
                  fault=lambda pc: (Kill(pc), Kill(cluster.primary_master())),
                  checks=(("promotion", {"shard": SHARD, "bound": BOUND, "fault": FAULT}),
                          "single_connected"),
                  figures={"latency_ms": 1}, aim=hook("aim"), then=hook("then"),
                  after_wait=hook("after_wait"), after_heal=hook("after_heal"),
                  verify=hook("verify"))
    artifacts = object()
    recorder = object()
    run = run_failover(fo, cluster, FakeHistory(), FakeNemesis(steps), FakeWorkload(steps),
                       artifacts, recorder)
    b = master_and_coreapp_bound(cluster.timing)
    *done, judged = steps
    assert done == [
        "workload on", "warm up", ("primary_coreapp", 0), ("aim", "coreapp-1", 0.0),
        "primary_master", ("start", "f1", "kill"), ("start", "f2", "kill"),
        ("then", "coreapp-1", 1.0),
        ("wait", b.value + 5, "a new primary coreapp at the gateway", None),
        ("after_wait", "coreapp-1", 1.0), ("hold", 3),
        ("heal", "f2"), ("heal", "f1"), ("after_heal", "coreapp-1", 1.0), "settle",
        "workload off", ("verify", "coreapp-1", 1.0)]
    _, checks, kw = judged
    assert same(checks[0], partial(promotion, shard=0, bound=b, fault="f1"))
    assert checks[1] is single_connected
    assert kw == {"artifacts": artifacts, "secrets": ["s3cret"], "record": recorder,
                  "title": "both primaries",
                  "extra_figures": {"latency_ms": 1, "seen": None}}
    assert run.results == ["results"] and run.bound == b
    assert [f.target for f in run.faults] == ["coreapp-1", "master-1"]


def test_a_master_failover_waits_for_another_primary_master(steps: list[Any]) -> None:
    fo = Failover(title="kill primary master", fault=Kill, target=PRIMARY_MASTER,
                  bound=lease_bound, hold=1,
                  checks=(("downtime", {"bound": MARGIN}), ("no_promotion", {"shard": 0})))
    run_failover(fo, FakeCluster(steps), FakeHistory(), FakeNemesis(steps),
                 FakeWorkload(steps), None)
    b = lease_bound(Timing())
    assert steps[:-1] == [
        "workload on", "warm up", "primary_master", ("start", "f1", "kill"),
        ("wait", b.value + 5, "another primary master", None), ("hold", 1), ("heal", "f1"),
        "settle", "workload off"]
    _, checks, kw = steps[-1]
    assert same(checks[0], partial(downtime, bound=bounds.MARGIN))
    assert same(checks[1], partial(no_promotion, shard=0))
    assert kw["extra_figures"] is None and kw["record"] is None
