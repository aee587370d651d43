"""Failover scenarios as data: a :class:`Failover` record and one runner, :func:`run_failover`.

Model. Most failover scenarios share one shape. With the workload running: warm up (traffic
flows, so downtime is measured from a working state); name the primary of ``target`` (a
shard's primary coreapp, or the primary master); ``aim`` (wait for the moment to strike);
start the fault(s) built from that name; ``then``; wait for a successor (a new gateway
connect for the shard, or a health snapshot naming another primary master) for at most the
bound + 5 s — giving up is no error, the checkers judge; ``after_wait``; let traffic flow
``hold`` s; heal the faults (the last started first); ``after_heal``; settle (one primary
master and one connected coreapp per shard, then 3 conclusive health snapshots). Then, the
workload stopped: ``verify``, and :func:`harness.verdict.judge` (the record's checks plus the
safety list :data:`harness.verdict.ALWAYS`).

A :class:`Failover` holds only what varies: the fault, its target, how the bound follows from
the cluster's own :class:`~multiconnect.timing.Timing`, the shard, the hold, the checks by
their registered name (:data:`harness.judge.checkers.CHECKERS`) with parameters — :data:`BOUND`,
:data:`SHARD`, :data:`MARGIN` and :data:`FAULT` stand for values known only when it runs —
extra figures, and the hooks (each gets the :class:`Run`). It is checked when it is built: a
bad field raises :class:`InvalidFailover` naming it.

Also here: the steps the runner is made of (:func:`phase`, :func:`warm_up`,
:func:`wait_history`, :func:`hold`, :func:`settle`, the successor lookups), which scenarios
share.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.chaos import runner as chaos
from harness.cluster.api_client import health_nodes
from harness.history import Event, History
from harness.judge import bounds
from harness.judge.bounds import Bound
from harness.judge.checkers import Result, named_check
from harness.nemesis.base import Fault
from harness.verdict import Check, judge
from multiconnect.timing import Timing

# -- steps ------------------------------------------------------------------------------


@contextlib.contextmanager
def phase(title: str) -> Iterator[None]:
    """An Allure step when allure is there; a progress line either way."""
    print(f"[scenario] {title}", flush=True)
    try:
        import allure
    except ImportError:
        yield
        return
    with allure.step(title):
        yield


def ok_sends(history: History, since: float = 0.0) -> int:
    """Acknowledged sends since ``since``."""
    return sum(1 for e in history.events()
               if e.f == "send" and e.type == "ok" and e.time >= since)


def wait_history(history: History, predicate: Callable[[History], Any], timeout: float,
                 what: str) -> Any:
    """Poll the history until ``predicate`` holds; a timeout is not an error here — the
    checkers judge what happened — so return None and let them explain."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate(history)
        if value:
            return value
        time.sleep(0.1)
    print(f"[scenario] gave up waiting for {what} after {timeout:g}s (the checkers will judge)")
    return None


def warm_up(history: History, count: int = 10, timeout: float = 20.0) -> None:
    """Traffic flows before the fault, so downtime is measured from a working state."""
    if not wait_history(history, lambda h: ok_sends(h) >= count, timeout,
                        f"{count} acknowledged messages"):
        raise AssertionError(f"workload never reached {count} acknowledged messages before "
                             "the fault: the cluster was not serving")


def hold(seconds: float) -> None:
    """Keep a fault in place for a fixed time (the scenario's definition, not a wait for
    the system: what happens meanwhile is judged from the history)."""
    time.sleep(seconds)


def settle(cluster: Any, history: History, timeout: float = 30.0, snapshots: int = 3) -> None:
    """After the last heal: :func:`harness.chaos.runner.settle` (ready within ``timeout`` s, else
    ``WaitTimeout``; then ``snapshots`` more conclusive health snapshots, so end-state checks
    judge a settled cluster)."""
    done = chaos.settle(cluster, history, timeout=timeout, snapshots=snapshots,
                        snapshot_timeout=15.0)
    if done.snapshots < snapshots:
        print(f"[scenario] gave up waiting for {snapshots} conclusive health snapshots after "
              "settling after 15s (the checkers will judge)")


def new_connect(history: History, shard: int, old: str, since: float) -> Any:
    """The first gateway connect for ``shard`` by a node other than ``old`` after ``since``."""
    for e in history.events():
        if (e.f == "gw-connect" and e.time >= since and e.value.get("shard") == shard
                and e.value.get("node") != old):
            return e
    return None


def new_primary_master(history: History, old: str, since: float) -> Any:
    """The first health snapshot after ``since`` naming a primary master, ``old`` not among
    them."""
    for e in history.events():
        if e.f == "health" and e.type == "ok" and e.time >= since:
            prim = [n for n, r in (health_nodes(e.value) or {}).items()
                    if r.get("role") == "primary_master"]
            if prim and old not in prim:
                return e
    return None


# -- the record -------------------------------------------------------------------------


class InvalidFailover(ValueError):
    """A :class:`Failover` field that cannot work; ``field`` names it."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"Failover.{name}: {problem}")
        self.field = name


@dataclass(frozen=True)
class Ref:
    """A check parameter known only when the failover runs: :data:`BOUND`, :data:`SHARD`,
    :data:`MARGIN`, :data:`FAULT`."""

    name: str

    def __repr__(self) -> str:
        return self.name.upper()


#: The record's bound, computed from the cluster's timing.
BOUND = Ref("bound")
#: The record's shard.
SHARD = Ref("shard")
#: ``harness.judge.bounds.MARGIN``, read when the checks are built (as the bounds read it).
MARGIN = Ref("margin")
#: The id the nemesis gave the record's (first) fault.
FAULT = Ref("fault")

#: A check as data: a registered checker's name, bare or with its parameters.
CheckSpec = str | tuple[str, Mapping[str, Any]]


def check_parts(spec: Any) -> tuple[str, dict[str, Any]]:
    """``(name, params)`` of a :data:`CheckSpec` (``TypeError`` if it is neither form)."""
    if isinstance(spec, str):
        return spec, {}
    if (isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str)
            and isinstance(spec[1], Mapping)):
        return spec[0], dict(spec[1])
    raise TypeError(f"{spec!r} is neither a checker name nor (name, {{param: value}})")


def resolve(value: Any, values: Mapping[str, Any]) -> Any:
    """``value``, or what ``values`` holds for it if it is a :class:`Ref`."""
    if not isinstance(value, Ref):
        return value
    try:
        return values[value.name]
    except KeyError:
        raise KeyError(f"no value for {value!r} (known: {', '.join(sorted(values))})") \
            from None


def build_checks(specs: Sequence[CheckSpec], values: Mapping[str, Any]) -> list[Check]:
    """The checks named by ``specs`` (:func:`harness.judge.checkers.named_check`: a bare checker
    without parameters, else a ``functools.partial``), each :class:`Ref` replaced from
    ``values``, in the given order."""
    out: list[Check] = []
    for spec in specs:
        name, params = check_parts(spec)
        out.append(named_check(name, **{k: resolve(v, values) for k, v in params.items()}))
    return out


@dataclass(frozen=True)
class Role:
    """Whose failure a failover provokes. ``pick(cluster, shard)`` names that node (at fault
    time); ``successor(history, shard, old, since)`` is the first event since ``since`` that
    shows another node in its place (None: not yet); ``awaited`` says what that is."""

    name: str
    pick: Callable[[Any, int], str]
    successor: Callable[[History, int, str, float], Any]
    awaited: str
    per_shard: bool = True

    def describe(self, shard: int) -> str:
        return f"{self.name} of shard {shard}" if self.per_shard else self.name


def _primary_coreapp(cluster: Any, shard: int) -> str:
    return cluster.primary_coreapp(shard)  # type: ignore[no-any-return]


def _primary_master(cluster: Any, shard: int) -> str:
    return cluster.primary_master()  # type: ignore[no-any-return]


def _new_primary_master(history: History, shard: int, old: str, since: float) -> Any:
    return new_primary_master(history, old, since)


#: A shard's primary coreapp (the shard map's owner); its successor connects at the gateway.
PRIMARY_COREAPP = Role("primary coreapp", _primary_coreapp, new_connect,
                       "a new primary coreapp at the gateway")
#: The primary master (the live lease's holder); its successor shows in a health snapshot.
PRIMARY_MASTER = Role("primary master", _primary_master, _new_primary_master,
                      "another primary master", per_shard=False)

#: A step of the scenario's own, run by :func:`run_failover` at its place in the template.
Hook = Callable[["Run"], None]


def heartbeat_bound(t: Timing) -> Bound:
    """:func:`harness.judge.bounds.heartbeat_failover` of ``t`` (the primary coreapp is dead)."""
    return bounds.heartbeat_failover(t.heartbeat_interval, t.unhealthy_interval,
                                     t.gateway_ping_timeout)


def partition_bound(t: Timing) -> Bound:
    """:func:`harness.judge.bounds.partition_failover` of ``t`` (alive, cut from the masters)."""
    return bounds.partition_failover(t.heartbeat_interval, t.unhealthy_interval,
                                     t.gateway_ping_timeout)


def db_bound(t: Timing) -> Bound:
    """:func:`harness.judge.bounds.db_failover` of ``t`` (database liveness detection)."""
    return bounds.db_failover(t.liveness_interval, t.stale_after)


def lease_bound(t: Timing) -> Bound:
    """:func:`harness.judge.bounds.lease_takeover` of ``t`` (the primary master is gone)."""
    return bounds.lease_takeover(t.lease_ttl)


def master_and_coreapp_bound(t: Timing) -> Bound:
    """:func:`harness.judge.bounds.master_and_coreapp_failover` of ``t`` (both primaries gone)."""
    return bounds.master_and_coreapp_failover(t.lease_ttl, t.liveness_interval, t.stale_after)


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class Failover:
    """One failover scenario as data (the template: this module's docstring).

    ``fault(target)`` builds the fault, or several (started in order, healed in reverse),
    from the target's name; ``bound(timing)`` the promotion bound; ``checks`` name the
    checks (:data:`CheckSpec`); ``figures`` are extra figures for the report; ``hold`` the
    seconds of traffic after the successor shows (or the wait gives up), before the heal."""

    title: str
    fault: Callable[[str], Fault | Sequence[Fault]]
    bound: Callable[[Timing], Bound | float]
    checks: tuple[CheckSpec, ...]
    target: Role = PRIMARY_COREAPP
    shard: int = 0
    hold: float = 2.0
    figures: Mapping[str, Any] = field(default_factory=dict)
    aim: Hook | None = None
    then: Hook | None = None
    after_wait: Hook | None = None
    after_heal: Hook | None = None
    verify: Hook | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.title, str) or not self.title.strip():
            raise InvalidFailover("title", f"a non-empty text is needed, got {self.title!r}")
        for name in ("fault", "bound"):
            if not callable(getattr(self, name)):
                raise InvalidFailover(name, f"a callable is needed, got "
                                            f"{getattr(self, name)!r}")
        if not isinstance(self.target, Role):
            raise InvalidFailover("target", f"a Role (PRIMARY_COREAPP, PRIMARY_MASTER) is "
                                            f"needed, got {self.target!r}")
        if isinstance(self.shard, bool) or not isinstance(self.shard, int) or self.shard < 0:
            raise InvalidFailover("shard", f"a shard number >= 0 is needed, got {self.shard!r}")
        if not _number(self.hold) or self.hold < 0:
            raise InvalidFailover("hold", f"finite seconds >= 0 are needed, got {self.hold!r}")
        if not isinstance(self.figures, Mapping):
            raise InvalidFailover("figures", f"a mapping is needed, got {self.figures!r}")
        for name in ("aim", "then", "after_wait", "after_heal", "verify"):
            hook = getattr(self, name)
            if hook is not None and not callable(hook):
                raise InvalidFailover(name, f"a callable of the Run or None is needed, got "
                                            f"{hook!r}")
        object.__setattr__(self, "checks", _valid_checks(self.checks))
        object.__setattr__(self, "figures", dict(self.figures))

    def bound_for(self, timing: Timing) -> Bound | float:
        """The bound for a cluster with ``timing`` (a ``Bound`` or finite seconds >= 0)."""
        value = self.bound(timing)
        seconds = value.value if isinstance(value, Bound) else value
        if not _number(seconds) or seconds < 0:
            raise InvalidFailover("bound", f"{self.bound!r} gave {value!r}, not a Bound or "
                                           "finite seconds >= 0")
        return value

    def faults_for(self, target: str) -> tuple[Fault, ...]:
        """The fault(s) for ``target``, in start order."""
        made = self.fault(target)
        if isinstance(made, Fault):
            faults: tuple[Any, ...] = (made,)
        elif isinstance(made, Sequence) and not isinstance(made, str):
            faults = tuple(made)
        else:
            faults = ()
        if not faults or not all(isinstance(f, Fault) for f in faults):
            raise InvalidFailover("fault", f"{self.fault!r} gave {made!r}, not a Fault or a "
                                           "non-empty sequence of Faults")
        return faults

    def checks_for(self, values: Mapping[str, Any]) -> list[Check]:
        """:func:`build_checks` of the record's checks."""
        return build_checks(self.checks, values)


def _valid_checks(checks: Any) -> tuple[CheckSpec, ...]:
    if isinstance(checks, str) or not isinstance(checks, Sequence) or not checks:
        raise InvalidFailover("checks", f"a non-empty sequence of checks is needed, got "
                                        f"{checks!r}")
    for i, spec in enumerate(checks):
        try:
            name, params = check_parts(spec)
            named_check(name, **params)
        except (KeyError, TypeError) as e:
            raise InvalidFailover("checks", f"[{i}] {e.args[0] if e.args else e}") from None
    return tuple(checks)


# -- the runner -------------------------------------------------------------------------


@dataclass
class Run:
    """One execution of a :class:`Failover`: what the hooks see and what the runner found.
    ``start`` is the history time right after the fault(s) started, ``seen`` the successor's
    first event (None if the wait gave up); hooks may add report ``figures``."""

    failover: Failover
    cluster: Any
    history: History
    nemesis: Any
    bound: Bound | float
    target: str = ""
    faults: tuple[Fault, ...] = ()
    start: float = 0.0
    seen: Event | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    results: list[Result] = field(default_factory=list)

    @property
    def timing(self) -> Timing:
        return self.cluster.spec.timing

    def values(self) -> dict[str, Any]:
        """What the :class:`Ref` parameters of the checks stand for in this run."""
        return {"bound": self.bound, "shard": self.failover.shard, "margin": bounds.MARGIN,
                "fault": self.faults[0].id if self.faults else None}


def run_failover(failover: Failover, cluster: Any, history: History, nemesis: Any,
                 workload: Any, artifacts: Any,
                 record_figures: Callable[..., None] | None = None) -> Run:
    """Run ``failover`` with the test's fixtures (``cluster``, ``history``, ``nemesis``,
    ``workload``, ``mc_artifacts``, ``record_figures``) and judge it; returns the
    :class:`Run` (``results``: the judged checks). Raises ``AssertionError`` (``CHECK
    FAILED: …``) when a check fails."""
    fo = failover
    run = Run(fo, cluster, history, nemesis, fo.bound_for(cluster.spec.timing))
    with workload.running():
        with phase("workload: warm up"):
            warm_up(history)
        run.target = fo.target.pick(cluster, fo.shard)
        if fo.aim is not None:
            fo.aim(run)
        run.faults = fo.faults_for(run.target)
        kinds = "+".join(f.kind for f in run.faults)
        with phase(f"fault: {kinds} {run.target} ({fo.target.describe(fo.shard)})"):
            for f in run.faults:
                nemesis.start(f)
            run.start = history.now()
            if fo.then is not None:
                fo.then(run)
            run.seen = wait_history(
                history, lambda h: fo.target.successor(h, fo.shard, run.target, run.start),
                float(run.bound) + 5, fo.target.awaited)
            if fo.after_wait is not None:
                fo.after_wait(run)
        with phase("traffic after the promotion"):
            hold(fo.hold)
        with phase(f"heal: {kinds} {run.target}"):
            for f in reversed(run.faults):
                nemesis.heal(f)
            if fo.after_heal is not None:
                fo.after_heal(run)
            settle(cluster, history)
    if fo.verify is not None:
        fo.verify(run)
    with phase("check"):
        run.results = judge(history.events(), fo.checks_for(run.values()),
                            artifacts=artifacts, secrets=cluster.secrets(),
                            record=record_figures, title=fo.title,
                            extra_figures={**fo.figures, **run.figures} or None)
    return run


def takeover_within_bound(action: str) -> Hook:
    """A ``verify`` hook for :data:`PRIMARY_MASTER`: another primary master was seen, within
    the bound of the fault's start (``action``, e.g. ``"killing"``, names the fault in the
    message); adds the figures ``promotion`` (that time, rounded to 1 ms) and ``bound``."""
    def verify(run: Run) -> None:
        takeover = round(run.seen.time - run.start, 3) if run.seen else None
        assert takeover is not None, (
            f"CHECK FAILED: no other primary master within {run.bound} after {action} "
            f"{run.target}")
        assert takeover <= float(run.bound), (
            f"CHECK FAILED: lease takeover took {takeover:.3f}s > bound {run.bound}")
        run.figures.update(promotion=takeover, bound=float(run.bound))
    return verify
