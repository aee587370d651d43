"""Fault schedules: explicit sequences and seeded random schedules, run on the wall clock.

Model. A schedule is a list of :class:`Step` ``(at, fault, duration)``: start ``fault`` at
``at`` seconds after the schedule begins, heal it ``duration`` seconds later. Steps may
overlap. :func:`random_schedule` draws kinds, role selectors (never fixed node names: they are
resolved when the fault starts), parameters, durations and gaps from ``random.Random(seed)``
alone, so the same seed and arguments give the identical schedule; each kind draws its own
fault (``draw`` in its module, see :mod:`harness.nemesis.registry`). :func:`run_schedule`
records the schedule (``nemesis`` ``info`` ``f: "schedule"`` with the seed and every step),
then executes it; a step that cannot start (its selector names nothing now, or its node is
under another fault) is recorded as ``skip`` and its heal dropped. Everything it started is
healed before it returns — on ``stop_event``, after ``max_time``, or on an exception.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.nemesis import PROCESS, Nemesis
from harness.nemesis.base import Fault, FaultSkipped
from harness.nemesis.draw import Draw, link_selectors, node_selectors
from harness.nemesis.registry import REGISTRY, chaos_kinds, fault_class, fault_from_dict
from harness.spec import Topology

__all__ = ["ALL_KINDS", "Schedule", "Step", "StepOutcome", "link_selectors", "make_fault",
           "node_selectors", "random_schedule", "run_schedule", "sequence"]


@dataclass(frozen=True)
class Step:
    at: float
    fault: Fault
    duration: float

    @property
    def end(self) -> float:
        return self.at + self.duration

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "duration": self.duration, **self.fault.spec()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Step:
        rest = {k: v for k, v in d.items() if k not in ("at", "duration")}
        return cls(float(d["at"]), fault_from_dict(rest), float(d["duration"]))


class Schedule(list):
    """A list of steps that remembers the seed it was drawn from (``None``: hand-written)."""

    def __init__(self, steps: Iterable[Step] = (), seed: int | None = None) -> None:
        super().__init__(steps)
        self.seed = seed

    @property
    def end(self) -> float:
        return max((s.end for s in self), default=0.0)

    def to_dicts(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self]

    def subset(self, indices: Iterable[int]) -> Schedule:
        """The steps at ``indices`` (each at its original time), same seed."""
        idx = sorted(set(indices))
        bad = [i for i in idx if not 0 <= i < len(self)]
        if bad:
            raise IndexError(f"steps {bad} not in this schedule of {len(self)} steps "
                             f"(0-{len(self) - 1})")
        return Schedule((self[i] for i in idx), seed=self.seed)


def sequence(*items: tuple[Fault, float] | Fault, gap: float = 5.0, start: float = 0.0,
             duration: float = 10.0) -> Schedule:
    """One fault after another: ``sequence((Kill("primary-coreapp:0"), 10), Pause("db"))``;
    each item is ``(fault, duration)`` or a bare fault (``duration``), ``gap`` s between the
    heal of one and the start of the next."""
    steps, t = [], start
    for item in items:
        fault, d = item if isinstance(item, tuple) else (item, duration)
        if d <= 0:
            raise ValueError(f"duration of {fault.kind} must be > 0, got {d}")
        steps.append(Step(round(t, 3), fault, float(d)))
        t += d + gap
    return Schedule(steps)


# -- random schedules --------------------------------------------------------------------------

#: the kinds random schedules draw from, in rank order (each fault module declares its own)
ALL_KINDS: tuple[str, ...] = chaos_kinds()


def make_fault(kind: str, rng: random.Random, t: Topology, duration: float) -> Fault:
    """Draw one fault of ``kind`` with targets and parameters from ``rng`` (the kind's own
    ``draw``)."""
    if kind not in ALL_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(ALL_KINDS)}")
    return fault_class(kind).draw(Draw(rng, t, duration))


def random_schedule(seed: int, duration: float, kinds: Sequence[str] = ALL_KINDS,
                    topology: Topology | None = None, max_overlap: int = 2, *,
                    min_fault: float = 2.0, max_fault: float = 15.0,
                    max_gap: float = 10.0) -> Schedule:
    """A seeded random schedule that ends within ``duration`` seconds.

    Repeatedly: wait a gap drawn from ``[0, max_gap]`` (short gaps overlap the previous
    fault), draw a kind, a fault and a duration in ``[min_fault, max_fault]`` clipped to what
    is left; never more than ``max_overlap`` faults at once (a start is pushed to the next
    heal). A kind that is not ``usable`` on the topology (``nfs-outage`` without NFS) is
    dropped from ``kinds``.
    """
    t = topology or Topology()
    if duration <= 0 or min_fault <= 0 or max_fault < min_fault or max_overlap < 1:
        raise ValueError("need duration > 0, 0 < min_fault <= max_fault, max_overlap >= 1")
    pool = [k for k in kinds if not (k in REGISTRY and not REGISTRY[k].usable(t))]
    unknown = [k for k in pool if k not in ALL_KINDS]
    if unknown or not pool:
        raise ValueError(f"kinds {unknown or list(kinds)} not usable; known: "
                         + ", ".join(ALL_KINDS))
    rng = random.Random(seed)
    steps: list[Step] = []
    now = round(rng.uniform(0, max_gap), 1)
    while now + min_fault <= duration:
        active = sorted(s.end for s in steps if s.end > now)
        if len(active) >= max_overlap:
            now = round(active[len(active) - max_overlap] + 0.1, 1)
            continue
        d = round(min(rng.uniform(min_fault, max_fault), duration - now), 1)
        if d < min_fault:
            break
        kind = rng.choice(pool)
        steps.append(Step(now, make_fault(kind, rng, t, d), d))
        now = round(now + rng.uniform(0, max_gap), 1)
    return Schedule(steps, seed=seed)


# -- running -----------------------------------------------------------------------------------

@dataclass
class StepOutcome:
    step: Step
    started: bool = False
    healed: bool = False
    error: str | None = None


def run_schedule(nemesis: Nemesis, steps: Sequence[Step],
                 stop_event: threading.Event | None = None, *, max_time: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> list[StepOutcome]:
    """Execute ``steps`` on the wall clock; returns one outcome per step.

    Bounded: stops at ``max_time`` seconds (default: the schedule's end + 30 s) or when
    ``stop_event`` is set; heals every fault it started before returning.
    """
    stop_event = stop_event or threading.Event()
    sched = steps if isinstance(steps, Schedule) else Schedule(steps)
    limit = max_time if max_time is not None else sched.end + 30.0
    nemesis.history.append(PROCESS, "info", "schedule",
                           {"seed": getattr(steps, "seed", None), "steps": sched.to_dicts()})
    outcomes = [StepOutcome(s) for s in sched]
    # (time, order, kind, index): heals before starts at equal times
    actions = sorted([(s.at, 1, "start", i) for i, s in enumerate(sched)]
                     + [(s.end, 0, "heal", i) for i, s in enumerate(sched)])
    t0 = clock()
    try:
        for at, _, what, i in actions:
            if at > limit:
                break
            if stop_event.wait(max(0.0, t0 + at - clock())):
                break
            out = outcomes[i]
            if what == "start":
                try:
                    nemesis.start(out.step.fault)
                    out.started = True
                except FaultSkipped as e:
                    out.error = str(e)
                except Exception as e:  # noqa: BLE001 - recorded; the schedule goes on
                    out.error = f"{type(e).__name__}: {e}"
            elif out.started and not out.healed:
                try:
                    nemesis.heal(out.step.fault)
                except Exception as e:  # noqa: BLE001 - recorded by the nemesis
                    out.error = f"heal: {type(e).__name__}: {e}"
                out.healed = True
    finally:
        errors = []
        for out in reversed(outcomes):
            if out.started and not out.healed:
                try:
                    nemesis.heal(out.step.fault)
                except Exception as e:  # noqa: BLE001 - heal the rest first
                    errors.append(e)
                    out.error = f"heal: {type(e).__name__}: {e}"
                out.healed = True
        if errors:
            raise errors[0]
    return outcomes
