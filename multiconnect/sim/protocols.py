"""What the simulated nodes, the fault injector and the checker see of a cluster.

Model. :class:`ClusterView` lists exactly the members of :class:`.cluster.Cluster` that
``master``, ``coreapp``, ``webapp``, ``faults`` and ``invariants`` use, so those modules
depend on this protocol and not on ``cluster`` (which imports them: no import cycle, not
even a type-only one). The checker appears as :class:`CheckHooks`, the hooks the roles call;
their process arguments are typed ``Any`` because ``master``/``coreapp`` import this module.
``tests/test_import_graph.py`` keeps the protocol equal to what those modules use.
"""

from __future__ import annotations

from typing import Any, Protocol

from .db import SimDatabase
from .gateway import SimGateway
from .net import Link, Net
from .nodes import DbServer, SimHost
from .simconfig import SimConfig
from .world import World


class CheckHooks(Protocol):
    """The invariant checker's hooks (``invariants.Checker``) the node processes call."""

    def lease_granted(self, m: Any, decision: object, epoch: int) -> None: ...

    def acting_primary(self, m: Any) -> None: ...

    def views_published(self, m: Any, views: dict[str, bool]) -> None: ...

    def coreapp_acts(self, c: Any, op: str) -> None: ...

    def after_ownership_step(self, c: Any) -> None: ...

    def send_done(self, msg_id: str, shard: int, outcome: str, owner: str | None) -> None: ...


class ClusterView(Protocol):
    """One simulated cluster as its parts use it (implemented by ``cluster.Cluster``)."""

    cfg: SimConfig
    world: World
    net: Net
    db: SimDatabase
    db_server: DbServer
    gateway: SimGateway
    hosts: dict[str, SimHost]
    masters: list[SimHost]
    gw_links: dict[str, Link]
    sending: bool

    @property
    def check(self) -> CheckHooks:
        """Read-only here, so that ``Cluster.check`` (a ``Checker``) conforms."""
        ...

    def new_message_id(self) -> str: ...

    def gateway_clear(self, coreapp: str) -> bool: ...

    def patch_settings(self, body: dict) -> None: ...

    def promoted(self, shard: int, old: str | None, new: str) -> None: ...
