"""Shared pieces of the fault kinds: container control and toxics on links.

Container faults act on node containers through the Docker API; the infrastructure that keeps
state on tmpfs (``db``, ``nfs``) or holds every link (``toxiproxy``) can be paused but not
killed, stopped or restarted (its data or the link table would be gone; use ``DbOutage`` /
``NfsOutage`` / ``Isolate`` instead). Toxics are named ``<fault id>-<type>-<stream>`` so that
several faults on one link never collide and each heal removes only its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from harness.nemesis.base import FaultSkipped

if TYPE_CHECKING:
    from harness.nemesis.base import Fault, FaultContext

STATEFUL = ("db", "nfs", "toxiproxy")
STREAMS = ("upstream", "downstream")


def container(ctx: FaultContext, name: str) -> Any:
    try:
        return ctx.cluster.nodes[name].container
    except KeyError:
        raise FaultSkipped(f"{name} is not a container of this cluster") from None


def refuse_stateful(kind: str, name: str) -> None:
    if name in STATEFUL or name == "client":
        raise FaultSkipped(f"{kind} of {name!r} is not supported: it holds the run's state on "
                           "tmpfs or every link; use pause, DbOutage, NfsOutage or Isolate")


def status(c: Any) -> str:
    c.reload()
    return str(c.status)


def streams(stream: str) -> tuple[str, ...]:
    if stream == "both":
        return STREAMS
    if stream not in STREAMS:
        raise ValueError(f"stream must be upstream, downstream or both, got {stream!r}")
    return (stream,)


def add_toxics(ctx: FaultContext, fault: Any, links: Iterable[str], type_: str,
               stream: str, attributes: dict[str, Any]) -> None:
    """Add one toxic per link and stream; remember them on the fault for ``remove_toxics``."""
    added = fault.__dict__.setdefault("_toxics", [])
    for link in links:
        for st in streams(stream):
            name = f"{fault.id}-{type_}-{st}"
            ctx.toxiproxy.add_toxic(link, type_, name=name, stream=st, attributes=attributes)
            added.append((link, name))


def remove_toxics(ctx: FaultContext, fault: Any) -> None:
    errors = []
    for link, name in list(fault.__dict__.get("_toxics", [])):
        try:
            ctx.toxiproxy.remove_toxic(link, name)
        except Exception as e:  # noqa: BLE001 - remove every toxic, then raise
            errors.append(e)
        else:
            fault._toxics.remove((link, name))
    if errors:
        raise errors[0]


def take_node(ctx: FaultContext, fault: Fault, selector: str) -> str:
    """Resolve a container fault's target, refuse stateful infrastructure, claim the node
    for this fault and record it as the fault's target. Returns the node name."""
    name = ctx.resolve(selector)
    refuse_stateful(fault.kind, name)
    ctx.claim("container", name)
    fault.targets = [name]
    return name


def ensure_running(ctx: FaultContext, fault: Fault) -> None:
    """Heal of the container faults: start every target that is not running again."""
    for name in fault.targets:
        c = container(ctx, name)
        if status(c) != "running":
            c.start()
        ctx.refresh_ip(name)
