"""Checkers: pure functions ``check(events, **params) -> Result`` over a history.

Each module states its model in its docstring. Bind parameters with ``functools.partial`` and
combine with ``compose``::

    from functools import partial
    from harness.judge.checkers import compose, downtime, single_connected
    check = compose(partial(downtime, bound=31.0), single_connected)
    result = check(history.events())

Every checker registers itself by name (``@checker``): :data:`CHECKERS` holds them all once
this package is imported (every module of the package is imported, so a new checker is one
new file), and ``named_check("downtime", bound=31.0)`` builds a check from data.
"""

import importlib
import pkgutil

from harness.judge.checkers.availability import availability, recovery
from harness.judge.checkers.base import (
    CHECKERS,
    Checker,
    FaultWindow,
    Figure,
    Op,
    Prepared,
    Result,
    checker,
    compose,
    fault_windows,
    find_fault,
    named_check,
    pair_ops,
    prepare,
)
from harness.judge.checkers.candidates import promoted_live
from harness.judge.checkers.claims import Claim, claims, exclusive_claims
from harness.judge.checkers.connections import (
    Connection,
    connections,
    connections_kept,
    single_connected,
)
from harness.judge.checkers.db_record import db_record
from harness.judge.checkers.downtime import Outage, downtime, outages
from harness.judge.checkers.growth import no_steady_growth
from harness.judge.checkers.masters import primary_masters
from harness.judge.checkers.media import media
from harness.judge.checkers.messages import no_duplicates, no_lost_acks, refused_not_delivered
from harness.judge.checkers.promotion import no_promotion, promotion

for _module in pkgutil.iter_modules(__path__):  # a checker module not named above registers too
    importlib.import_module(f"{__name__}.{_module.name}")
del _module

__all__ = [
    "CHECKERS", "Checker", "Claim", "Connection", "FaultWindow", "Figure", "Op", "Outage",
    "Prepared",
    "availability", "checker", "claims", "connections_kept", "exclusive_claims", "recovery",
    "Result", "compose", "connections", "db_record", "downtime", "fault_windows", "find_fault",
    "media", "named_check",
    "no_duplicates", "no_lost_acks", "no_steady_growth", "no_promotion", "outages",
    "pair_ops", "prepare",
    "primary_masters", "promoted_live", "promotion", "refused_not_delivered", "single_connected",
]
