"""Checkers: pure functions ``check(events, **params) -> Result`` over a history.

Each module states its model in its docstring. Bind parameters with ``functools.partial`` and
combine with ``compose``::

    from functools import partial
    from harness.checkers import compose, downtime, single_connected
    check = compose(partial(downtime, bound=31.0), single_connected)
    result = check(history.events())
"""

from harness.checkers.availability import availability, recovery
from harness.checkers.base import Checker, Figure, Op, Prepared, Result, compose, pair_ops, prepare
from harness.checkers.candidates import promoted_live
from harness.checkers.claims import Claim, claims, exclusive_claims
from harness.checkers.connections import (
    Connection,
    connections,
    connections_kept,
    single_connected,
)
from harness.checkers.db_record import db_record
from harness.checkers.downtime import Outage, downtime, outages
from harness.checkers.faults import FaultWindow, fault_windows, find_fault
from harness.checkers.growth import no_steady_growth
from harness.checkers.masters import primary_masters
from harness.checkers.media import media
from harness.checkers.messages import no_duplicates, no_lost_acks, refused_not_delivered
from harness.checkers.promotion import no_promotion, promotion

#: Every checker by name (each is also importable directly).
CHECKERS = {
    "downtime": downtime,
    "promotion": promotion,
    "no_promotion": no_promotion,
    "single_connected": single_connected,
    "connections_kept": connections_kept,
    "no_lost_acks": no_lost_acks,
    "no_duplicates": no_duplicates,
    "refused_not_delivered": refused_not_delivered,
    "db_record": db_record,
    "promoted_live": promoted_live,
    "media": media,
    "primary_masters": primary_masters,
    "exclusive_claims": exclusive_claims,
    "availability": availability,
    "recovery": recovery,
    "no_steady_growth": no_steady_growth,
}

__all__ = [
    "CHECKERS", "Checker", "Claim", "Connection", "FaultWindow", "Figure", "Op", "Outage",
    "Prepared",
    "availability", "claims", "connections_kept", "exclusive_claims", "recovery",
    "Result", "compose", "connections", "db_record", "downtime", "fault_windows", "find_fault",
    "media",
    "no_duplicates", "no_lost_acks", "no_steady_growth", "no_promotion", "outages",
    "pair_ops", "prepare",
    "primary_masters", "promoted_live", "promotion", "refused_not_delivered", "single_connected",
]
