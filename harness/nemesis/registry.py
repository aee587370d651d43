"""The fault kinds: each fault module registers its own, the registry finds them all.

Model. A fault kind is one module of this package holding a :class:`~harness.nemesis.base.Fault`
subclass decorated with :func:`register`. The class declares all that the rest of the
harness needs to know about it:

- ``kind``: its name in schedules, histories and ``--chaos-faults``;
- ``chaos``: its rank among the kinds random chaos schedules draw (``None``: a scenario-only
  kind). :func:`chaos_kinds` lists them by rank, and ``rng.choice`` draws from that list, so
  a seed's schedule depends on the order: a new kind takes a rank after the existing ones;
- ``draw(d)``: one fault of the kind with its parameters drawn from ``d.rng`` (the schedule's
  seeded RNG; nothing else may be random) and the selectors of ``d.topology``;
- ``usable(topology)``: whether schedules may draw it there (NFS outage: NFS media only);
- ``from_dict(fields)``: the fault rebuilt from its ``spec()`` (replay, ``--chaos-steps``).

:func:`discover` imports every module of the package (``pkgutil``), so a kind exists as soon
as its file does. ``harness.nemesis`` runs it on import, and every look-up here runs it
first, so none depends on which module was imported first. This module imports no fault
module statically; fault modules import it, :mod:`harness.nemesis.base` (the fault model) and
:mod:`harness.nemesis.draw` (what a schedule hands them).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from typing import Any

from harness.nemesis.base import Fault

PACKAGE = __name__.rpartition(".")[0]

#: every registered fault class by kind (complete once :func:`discover` has run)
REGISTRY: dict[str, type[Fault]] = {}


def register(cls: type[Fault]) -> type[Fault]:
    """Class decorator: make a fault kind known by name (schedules, replay, chaos runs).

    A kind with a ``chaos`` rank must define ``draw``; a rank is a positive int."""
    rank = cls.chaos
    if rank is not None and rank is not False:
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise TypeError(f"{cls.__name__}.chaos must be None or a rank >= 1, got {rank!r}")
        if "draw" not in vars(cls):
            raise TypeError(f"{cls.__name__} has chaos rank {rank} but no draw()")
    REGISTRY[cls.kind] = cls
    return cls


def discover() -> dict[str, type[Fault]]:
    """Import every module of the package (each fault module registers its kind on import);
    idempotent. Returns :data:`REGISTRY`."""
    package = sys.modules.get(PACKAGE) or importlib.import_module(PACKAGE)
    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{PACKAGE}.{info.name}")
    return REGISTRY


def chaos_kinds() -> tuple[str, ...]:
    """The kinds random chaos schedules draw from, in rank order."""
    chaos = sorted((cls.chaos, kind) for kind, cls in discover().items() if cls.chaos)
    ranks = [rank for rank, _ in chaos]
    if len(set(ranks)) != len(ranks):
        raise TypeError("two fault kinds share a chaos rank: "
                        + ", ".join(f"{k}={r}" for r, k in chaos))
    return tuple(kind for _, kind in chaos)


def fault_class(kind: str) -> type[Fault]:
    """The class registered for ``kind``; ``ValueError`` naming the known kinds if none."""
    try:
        return discover()[kind]
    except KeyError:
        raise ValueError(f"unknown fault kind {kind!r}; known: {', '.join(sorted(REGISTRY))}") \
            from None


def fault_from_dict(d: dict[str, Any]) -> Fault:
    """Rebuild a fault from :meth:`Fault.spec` (``{"fault": kind, **fields}``)."""
    d = dict(d)
    return fault_class(d.pop("fault")).from_dict(d)
