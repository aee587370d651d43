"""One nightly chaos run: options, the run itself, its verdict inputs, shrinking, replay.

Model. A run is ``(seed, duration, kinds, topology[, steps])``: :func:`random_schedule`
draws the same schedule from the same arguments, and ``steps`` keeps a subset of its steps
(each at its original time) — that is all a replay needs. :class:`ChaosRunner` executes a
schedule (or a subset) under a fresh workload on every shard, heals everything, settles
(:func:`settle`, the one "after the faults" step of chaos runs and scenarios: liveness —
one primary master and one connected coreapp per shard — within ``settle`` s, then
conclusive health snapshots for the end-state check), and returns the history events of
that execution alone. The safety checks, named as data (:data:`SAFETY`, built from the
checkers' registry), then judge those events; :meth:`Execution.failures` names what failed
(``recovery`` when liveness was not regained). On a failure, :func:`harness.chaos.shrink.shrink`
re-executes subsets of the steps on the same cluster (best effort: the cluster is back to
the ready state before each trial) and the smallest subset that still fails the same way
gets its own replay command.
"""

from __future__ import annotations

import contextlib
import random
import shlex
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.chaos.shrink import ShrinkResult, shrink
from harness.cluster.api_client import health_nodes
from harness.history import Event, History
from harness.judge import bounds
from harness.judge.checkers import Result, named_check
from harness.nemesis.schedule import ALL_KINDS, Schedule, random_schedule, run_schedule
from harness.run.observers.soak import SoakSampler
from harness.run.workload import Workload
from harness.spec import Topology
from harness.verdict import run_checks
from harness.wait import WaitTimeout, wait_for
from multiconnect.timing import TIMINGS


class ChaosOptionError(ValueError):
    """A bad chaos option: names the flag, the value and what is allowed."""

    def __init__(self, flag: str, value: Any, allowed: str) -> None:
        super().__init__(f"--{flag}={value!r} is invalid: {allowed}")


def parse_kinds(raw: str) -> list[str]:
    kinds = [k.strip() for k in raw.split(",") if k.strip()] if raw else list(ALL_KINDS)
    bad = [k for k in kinds if k not in ALL_KINDS]
    if bad:
        raise ChaosOptionError("chaos-faults", ",".join(bad), "comma-separated kinds from: "
                        + ", ".join(ALL_KINDS))
    return kinds


def parse_steps(raw: str) -> tuple[int, ...] | None:
    if not raw:
        return None
    try:
        steps = tuple(sorted({int(x) for x in raw.split(",") if x.strip()}))
    except ValueError:
        raise ChaosOptionError("chaos-steps", raw,
                               "comma-separated step indices, e.g. 0,3,7") from None
    if not steps or steps[0] < 0:
        raise ChaosOptionError("chaos-steps", raw, "non-negative step indices, e.g. 0,3,7")
    return steps


@dataclass(frozen=True)
class ChaosOptions:
    seed: int
    duration: float
    kinds: tuple[str, ...]
    steps: tuple[int, ...] | None = None  # None: every step of the seed's schedule
    shrink_budget: float = 600.0  # seconds; 0 disables shrinking
    soak: bool = False
    soak_interval: float = 10.0

    @classmethod
    def from_config(cls, config: Any, run_index: int = 0) -> ChaosOptions:
        seed = config.getoption("chaos_seed")
        seed = random.SystemRandom().randrange(2**31) if seed is None else seed + run_index
        duration = float(config.getoption("chaos_duration"))
        if duration <= 0:
            raise ChaosOptionError("chaos-duration", duration, "seconds > 0")
        return cls(seed=seed, duration=duration,
                   kinds=tuple(parse_kinds(config.getoption("chaos_faults"))),
                   steps=parse_steps(config.getoption("chaos_steps")),
                   shrink_budget=float(config.getoption("chaos_shrink")),
                   soak=bool(config.getoption("chaos_soak")),
                   soak_interval=float(config.getoption("chaos_soak_interval")))

    def schedule(self, topology: Topology) -> Schedule:
        return random_schedule(self.seed, self.duration, self.kinds, topology)


def replay_command(test_id: str, opts: ChaosOptions, t: Topology,
                   steps: Sequence[int] | None = None) -> str:
    """One command that replays ``opts`` (restricted to ``steps`` if given)."""
    args = ["python", "-m", "pytest", test_id, "-m", "chaos", "--chaos-runs=1",
            f"--chaos-seed={opts.seed}", f"--chaos-duration={opts.duration:g}",
            f"--chaos-faults={','.join(opts.kinds)}", f"--mc-masters={t.masters}",
            f"--mc-coreapps={t.coreapps}", f"--mc-shards={t.shards}",
            f"--mc-webapps={t.webapps}"]
    preset = next((name for name, timing in TIMINGS.items() if timing == t.timing), None)
    if preset is None:
        raise ValueError(f"timing {t.timing} is not a preset ({', '.join(TIMINGS)}): a "
                         "replay command cannot set it")
    args.append(f"--mc-timing={preset}")
    if t.test_break:
        args.append(f"--mc-test-break={t.test_break}")
    steps = steps if steps is not None else opts.steps
    if steps is not None:
        args.append(f"--chaos-steps={','.join(map(str, steps))}")
    if opts.soak:
        args.append("--chaos-soak")
    return " ".join(shlex.quote(a) for a in args)


#: The safety checks of every chaos run, as data: (checker name, parameters).
SAFETY: tuple[tuple[str, dict[str, Any]], ...] = (
    ("single_connected", {}), ("no_lost_acks", {}), ("no_duplicates", {"allow": "indeterminate"}),
    ("primary_masters", {"last": 3}))
#: Added in soak mode.
SOAK: tuple[tuple[str, dict[str, Any]], ...] = (("no_steady_growth", {}),)


def safety_checks(soak: bool) -> list[Callable[[Sequence[Event]], Result]]:
    return [named_check(name, **params) for name, params in SAFETY + (SOAK if soak else ())]


# -- after the faults --------------------------------------------------------------------------

READY = "one primary master and one connected coreapp per shard"


def wait_ready(cluster: Any, timeout: float) -> Any:
    """Wait up to ``timeout`` s for the ready state (:data:`READY`); returns it, or raises
    :class:`WaitTimeout`."""
    return wait_for(cluster.ready_state, timeout=timeout, what=READY)


def conclusive(event: Event, masters: Iterable[str]) -> bool:
    """A health snapshot in which every master answered with its role (the end-state check of
    ``primary_masters`` judges only these)."""
    nodes = health_nodes(event.value) or {}
    return all(isinstance(nodes.get(m), Mapping) and "role" in nodes[m] for m in masters)


@dataclass(frozen=True)
class Settled:
    """The outcome of :func:`settle`: ``recovered`` s until the ready state (``None``: not
    within the timeout, ``error`` says so), ``snapshots`` conclusive ones recorded after it."""

    recovered: float | None
    error: str | None
    snapshots: int


def settle(cluster: Any, history: History, *, timeout: float = 30.0, snapshots: int = 3,
           snapshot_timeout: float = 15.0, strict: bool = True) -> Settled:
    """After the last heal: wait up to ``timeout`` s for the ready state, then up to
    ``snapshot_timeout`` s until the history holds ``snapshots`` more conclusive health
    snapshots (every master answered), so end-state checks judge a settled cluster.

    A ready state not reached raises :class:`WaitTimeout` if ``strict`` (a scenario stops
    there); else it is returned as ``error`` and the snapshots are still awaited (a chaos run
    judges all it recorded). Snapshots that do not come are no error: the checkers say so."""
    began = time.monotonic()
    recovered, error = None, None
    try:
        wait_ready(cluster, timeout)
        recovered = round(time.monotonic() - began, 2)
    except WaitTimeout as e:
        if strict:
            raise
        error = str(e)
    since = history.now()
    masters = cluster.spec.node_names("master")

    def count() -> int:
        return sum(1 for e in history.events() if e.f == "health" and e.type == "ok"
                   and e.time > since and conclusive(e, masters))

    with contextlib.suppress(WaitTimeout):
        wait_for(lambda: count() >= snapshots, timeout=snapshot_timeout,
                 what=f"{snapshots} conclusive health snapshots after settling", interval=0.2)
    return Settled(recovered, error, count())


@dataclass
class Execution:
    """The events of one execution and its liveness outcome."""

    events: list[Event]
    schedule_start: float | None
    recovered: float | None  # seconds from the last heal to the ready state
    live_error: str | None
    faults: int
    results: list[Result] = field(default_factory=list)

    def failures(self) -> list[str]:
        names = [r.name for r in self.results if not r.valid]
        return names + (["recovery"] if self.live_error else [])

    def first_violation(self) -> float | None:
        """Schedule-relative time of the first gateway conflict (the prefix for shrinking)."""
        if self.schedule_start is None:
            return None
        conflicts = [e.time for e in self.events if e.f == "gw-conflict"]
        return min(conflicts) - self.schedule_start if conflicts else None


class ChaosRunner:
    def __init__(self, cluster: Any, history: History, nemesis: Any, opts: ChaosOptions,
                 *, progress: Callable[[str], None] = print) -> None:
        self.cluster, self.history, self.nemesis, self.opts = cluster, history, nemesis, opts
        self.progress = progress
        # the gateway log's cursor: each execution records only new events
        self.gateway_since = getattr(cluster, "gateway_since", 0)
        self.settle = bounds.chaos_settle(cluster.spec.timing)

    def _sampler(self) -> SoakSampler:
        names = self.cluster.spec.all_nodes + ["gateway"]

        def containers() -> list[tuple[str, Any]]:
            out = []
            for n in names:
                try:
                    out.append((n, self.cluster.container(n)))
                except KeyError:
                    continue
            return out

        return SoakSampler(containers, self.history, interval=self.opts.soak_interval,
                           engine=self.cluster.engine_url)

    def execute(self, schedule: Schedule) -> Execution:
        mark = len(self.history.events())
        workload = Workload(self.cluster, self.history,
                            duration=schedule.end + self.settle + 120)
        if workload.gateway is not None:  # continue the gateway log where the last run ended
            workload.gateway.since = self.gateway_since
        sampler = self._sampler() if self.opts.soak else None
        if sampler:
            sampler.start()
        try:
            with workload.running():
                outcomes = run_schedule(self.nemesis, schedule, max_time=schedule.end + 30)
                # strict=False: judge whatever happened; 20 s: a loaded machine's polls are slow
                settled = settle(self.cluster, self.history, timeout=self.settle,
                                 snapshot_timeout=20.0, strict=False)
                recovered, live_error = settled.recovered, settled.error
        finally:
            if sampler:
                sampler.stop()
            if workload.gateway is not None:
                self.gateway_since = workload.gateway.since
        if sampler and sampler.polls and not sampler.samples:
            raise RuntimeError(f"soak mode: {sampler.polls} polls recorded no sample (docker "
                               "top / host /proc unreadable?); the growth check would be empty")
        events = [e for e in self.history.events() if e.index >= mark]
        start = next((e.time for e in events if e.f == "schedule"), None)
        ex = Execution(events, start, recovered, live_error,
                       faults=sum(o.started for o in outcomes))
        ex.results = run_checks(events, safety_checks(self.opts.soak))
        return ex

    def shrink(self, schedule: Schedule, kept: Sequence[int], first: Execution) -> ShrinkResult:
        """The smallest subset of ``kept`` whose execution fails one of ``first``'s checks."""
        wanted = set(first.failures())

        def fails(candidate: tuple[int, ...]) -> bool:
            # the trial starts anyway if the cluster is not ready: its own liveness check tells
            with contextlib.suppress(WaitTimeout):
                wait_for(self.cluster.ready_state, timeout=self.settle,
                         what="the ready state before a shrinking trial")
            ex = self.execute(schedule.subset(candidate))
            still = bool(wanted & set(ex.failures()))
            self.progress(f"[chaos] shrink trial steps {list(candidate)}: "
                          f"{'fails' if still else 'passes'} ({', '.join(ex.failures()) or 'ok'})")
            return still

        return shrink(kept, fails, starts=[s.at for s in schedule],
                      violation_at=first.first_violation(),
                      cost=lambda c: schedule.subset(c).end + self.settle + 15,
                      budget=self.opts.shrink_budget)
