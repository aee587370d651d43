"""Deterministic simulator of the reference cluster (FoundationDB / VOPR style).

One seeded ``random.Random``, a virtual clock and an event heap drive the roles' own code
(:mod:`multiconnect.roles` and the decision cores of :mod:`multiconnect.core`, the objects
the containers run) on simulated IO, against models of the database transactions, the
network (toxiproxy-like links), the gateway stand-in and a message workload, under seeded
fault schedules; invariants are checked as it runs. See docs/simulator.md and
``python -m multiconnect.sim --help``.
"""

from . import _compat  # noqa: F401 - first: lets Python 3.9 (pypy3) import the cores
from .invariants import Violation
from .runner import (
    Result,
    failover_bound,
    recovery_bound,
    replay_command,
    run_many,
    run_schedule,
    shrink,
)
from .simconfig import FAULT_KINDS, TEST_BREAKS, TIMINGS, SimConfig, Timing

__all__ = [
    "FAULT_KINDS", "TEST_BREAKS", "TIMINGS", "Result", "SimConfig", "Timing", "Violation",
    "failover_bound", "recovery_bound", "replay_command", "run_many", "run_schedule", "shrink",
]
