"""The nemesis: faults with start/heal, recorded in the history, always healed.

Model (Jepsen's nemesis, Toxiproxy's one-toxic-per-file). A :class:`Fault` is a small
dataclass holding *selectors* (what to hit, e.g. ``"primary-coreapp:0"``) and parameters.
``start(ctx)`` resolves the selectors **at fault time** into node or link names, stores them in
``self.targets`` and acts; ``heal(ctx)`` undoes exactly what ``start`` did. The
:class:`Nemesis` numbers faults (``f1``, ``f2`` …), records one ``nemesis`` ``info`` event per
start and per heal (``{"fault", "id", "targets", "params"}``, targets resolved; a failed heal
adds ``"error"``), and guarantees heal: ``with nemesis.fault(f):`` heals in ``finally``,
``heal_all()`` heals whatever is still active (the pytest fixture calls it in teardown, also
after Ctrl-C). Events are appended when the action has returned, so a ``start`` event marks
the moment from which the fault certainly holds, a ``heal`` event the moment it certainly no
longer does.

Selectors: ``primary-coreapp[:shard]`` (the shard map's owner, falling back to the gateway's
open connection for the shard), ``secondary-coreapp[:i]`` (i-th coreapp owning no shard),
``primary-master`` (the live master lease's holder), ``secondary-master[:i]``,
``<role>:<k>`` (``webapp:1`` → ``webapp-1``), or a plain name (``coreapp-2``, ``db``, ``nfs``,
``gateway``, ``client``). Links are named ``src->dst`` with a selector on each side; ``*`` on
one side means every link from/to the other side, ``a<->b`` both directions.

Shared state kept by the context so that overlapping faults compose: a link is disabled while
at least one fault holds it disabled (reference count); toxics are named after their fault's
id; container and clock faults *claim* their node, and a second fault claiming the same node
is refused (:class:`FaultConflict`, recorded as ``f: "skip"``) before it acts.

Where things are: the fault model (:class:`Fault`, :class:`FaultContext`, the skip and heal
errors) in :mod:`harness.nemesis.base`; what a random schedule hands a kind in
:mod:`harness.nemesis.draw`; the registry in :mod:`harness.nemesis.registry`; this module holds
the :class:`Nemesis`. Each fault kind is one module of this package that registers its class
(its kind, how random schedules draw it, how it is rebuilt from data); importing this package
imports them all, and ``harness.nemesis.<Class>`` names each class.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from harness.history import History
from harness.nemesis.base import Fault, FaultContext, FaultSkipped, HealError
from harness.nemesis.registry import REGISTRY, discover

PROCESS = "nemesis"




# -- the runner ------------------------------------------------------------------------------

class Nemesis:
    """Starts and heals faults on one cluster, recording each in the history."""

    def __init__(self, cluster: Any, history: History) -> None:
        self.ctx = FaultContext(cluster, history)
        self.history = history
        self._lock = threading.RLock()
        self._active: dict[str, Fault] = {}
        self._n = 0

    @property
    def active(self) -> list[Fault]:
        with self._lock:
            return list(self._active.values())

    def _record(self, f: str, fault: Fault, began: float, **extra: Any) -> None:
        """Record ``f`` when the operation ended; ``took`` is how long it ran, so it began at
        the event's time minus ``took`` (a heal's container start can take a second, and the
        cluster feels it from its beginning)."""
        value = {"fault": fault.kind, "id": fault.id, "targets": fault.targets,
                 "params": fault.params(), "took": round(time.monotonic() - began, 3), **extra}
        self.history.append(PROCESS, "info", f, value)

    def start(self, fault: Fault) -> Fault:
        """Start ``fault``. A fault that could not start records ``skip`` and raises
        :class:`FaultSkipped`; one that failed half-way records ``start`` (with ``error``),
        is healed at once and the error is raised."""
        with self._lock:
            if fault.id is not None and fault.id in self._active:
                raise RuntimeError(f"fault {fault.id} ({fault.kind}) is already active")
            self._n += 1
            fault._id = f"f{self._n}"
            fault._targets, fault._resolved = [], {}
            self.ctx.current = fault.id
            began = time.monotonic()
            try:
                fault.start(self.ctx)
            except FaultSkipped as e:
                self.ctx.release(fault.id)
                self._record("skip", fault, began, error=f"{type(e).__name__}: {e}")
                raise
            except BaseException as e:
                self._record("start", fault, began, error=f"{type(e).__name__}: {e}")
                self._active[fault.id] = fault
                with contextlib.suppress(Exception):
                    self.heal(fault)
                raise
            finally:
                self.ctx.current = None
            self._active[fault.id] = fault
            self._record("start", fault, began)
            return fault

    def heal(self, fault: Fault) -> None:
        """Heal one active fault (no-op if it is not active); a failure is recorded as the
        heal event's ``error`` and raised."""
        with self._lock:
            if fault.id not in self._active:
                return
            self.ctx.current = fault.id
            began = time.monotonic()
            try:
                fault.heal(self.ctx)
            except BaseException as e:
                self._record("heal", fault, began, error=f"{type(e).__name__}: {e}")
                raise
            else:
                self._record("heal", fault, began)
            finally:
                self._active.pop(fault.id, None)
                self.ctx.release(fault.id)
                self.ctx.current = None

    def heal_all(self) -> None:
        """Heal every active fault, latest first; raise :class:`HealError` afterwards if any
        heal failed."""
        errors: list[tuple[str, BaseException]] = []
        for fault in reversed(self.active):
            try:
                self.heal(fault)
            except BaseException as e:  # noqa: BLE001 - attempt every heal first
                errors.append((fault.id or "?", e))
        if errors:
            raise HealError(errors) from errors[0][1]

    @contextlib.contextmanager
    def fault(self, fault: Fault) -> Iterator[Fault]:
        """``with nemesis.fault(Kill("primary-coreapp:0")) as f:`` — healed in ``finally``."""
        self.start(fault)
        try:
            yield fault
        finally:
            self.heal(fault)


# every fault module of the package registers its kind on import (harness.nemesis.registry)
discover()


def __getattr__(name: str) -> type[Fault]:
    """``harness.nemesis.Kill`` and the like: a registered fault class by its class name."""
    for cls in REGISTRY.values():
        if cls.__name__ == name:
            return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["PROCESS", "Nemesis"]
