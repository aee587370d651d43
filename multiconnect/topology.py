"""How many nodes of each role a cluster may have: one definition for the Docker harness
(``harness.spec``) and the simulator (``multiconnect.sim.simconfig.SimConfig``).

Model. masters, coreapps and webapps are integers (``bool`` refused) within
``[MIN_*, MAX_*]``; shards is one of :data:`multiconnect.sharding.ALLOWED_SHARD_COUNTS`;
there are at least as many coreapps as shards (every shard needs an owner; to survive X
coreapp failures run shards + X). An invalid field raises :class:`TopologyError`.

Imported by the simulator, which also runs on PyPy 3.9: no 3.10+ syntax at runtime.
"""

from __future__ import annotations

from typing import Any

from .sharding import ALLOWED_SHARD_COUNTS

MIN_MASTERS, MAX_MASTERS = 1, 9
MIN_COREAPPS, MAX_COREAPPS = 1, 40
MIN_WEBAPPS, MAX_WEBAPPS = 1, 9


class TopologyError(ValueError):
    """One invalid field: names it, the value, and what is allowed."""

    def __init__(self, field_name: str, value: Any, allowed: str) -> None:
        super().__init__(f"topology field {field_name!r} = {value!r} is invalid: {allowed}")
        self.field = field_name
        self.value = value
        self.allowed = allowed

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle by the constructor's arguments (worker processes send errors back)."""
        return type(self), (self.field, self.value, self.allowed)


def check_int(field_name: str, value: Any, lo: int, hi: int) -> None:
    """``value`` is an integer (not a bool) from ``lo`` to ``hi``, else TopologyError."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise TopologyError(field_name, value, f"an integer from {lo} to {hi}")


def check_counts(masters: Any, coreapps: Any, webapps: Any, shards: Any) -> None:
    """The count rules (module docstring), in this order: masters, coreapps, webapps,
    shards, coreapps ≥ shards; raises TopologyError for the first field that breaks one."""
    check_int("masters", masters, MIN_MASTERS, MAX_MASTERS)
    check_int("coreapps", coreapps, MIN_COREAPPS, MAX_COREAPPS)
    check_int("webapps", webapps, MIN_WEBAPPS, MAX_WEBAPPS)
    if isinstance(shards, bool) or not isinstance(shards, int) \
            or shards not in ALLOWED_SHARD_COUNTS:
        raise TopologyError("shards", shards,
                            f"one of {', '.join(map(str, ALLOWED_SHARD_COUNTS))}")
    if coreapps < shards:
        raise TopologyError("coreapps", coreapps,
                            f"at least shards ({shards}); for X failures run shards + X")
