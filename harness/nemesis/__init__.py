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

Kinds. Each fault kind is one module of this package that registers its class (its kind, how
random schedules draw it, how it is rebuilt from data: :mod:`harness.nemesis.registry`);
importing this package imports them all, and ``harness.nemesis.<Class>`` names each class.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from harness.history import History
from harness.nemesis.registry import REGISTRY, Draw, discover, fault_from_dict, register

if TYPE_CHECKING:
    from harness.spec import Topology

PROCESS = "nemesis"


class FaultSkipped(RuntimeError):
    """The fault could not start and did nothing (recorded as ``skip``)."""


class ResolveError(FaultSkipped, LookupError):
    """A selector named nothing that exists right now."""


class FaultConflict(FaultSkipped):
    """Another active fault already holds the node this fault wants to claim."""


class HealError(RuntimeError):
    """One or more heals failed; every heal was attempted first. ``errors`` holds them."""

    def __init__(self, errors: list[tuple[str, BaseException]]) -> None:
        super().__init__("; ".join(f"heal of {fid} failed: {type(e).__name__}: {e}"
                                   for fid, e in errors))
        self.errors = errors


# -- the fault protocol ------------------------------------------------------------------------

@dataclass
class Fault:
    """Base of every fault kind. Subclasses are dataclasses whose fields are selectors and
    parameters (compared by value: same seed, same schedule); runtime state lives in
    attributes set by ``start``."""

    kind: ClassVar[str] = "fault"
    #: rank among the kinds random chaos schedules draw (``schedule.ALL_KINDS`` is in rank
    #: order, and a seed's schedule depends on it); None: a scenario-only kind
    chaos: ClassVar[int | None] = None

    @classmethod
    def draw(cls, d: Draw) -> Fault:
        """One fault of this kind for a random schedule: every random choice from ``d.rng``,
        in a fixed order (a seed must always draw the same fault)."""
        raise NotImplementedError(f"{cls.kind} is not drawn by random schedules")

    @classmethod
    def usable(cls, topology: Topology) -> bool:
        """Whether random schedules may draw this kind on ``topology``."""
        return True

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> Fault:
        """Rebuild from :meth:`spec` without its ``"fault"`` key: init fields only (others
        ignored), lists back to tuples."""
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        return cls(**{k: tuple(v) if isinstance(v, list) else v
                      for k, v in fields.items() if k in names})

    def start(self, ctx: FaultContext) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def heal(self, ctx: FaultContext) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # recorded state ---------------------------------------------------------------------
    @property
    def targets(self) -> list[str]:
        return list(getattr(self, "_targets", []))

    @targets.setter
    def targets(self, value: Iterable[str]) -> None:
        self._targets = list(value)

    @property
    def id(self) -> str | None:
        return getattr(self, "_id", None)

    def params(self) -> dict[str, Any]:
        """Parameters recorded with the events: the fields plus what ``start`` resolved."""
        out = {k: _jsonable(v) for k, v in self.spec().items() if k != "fault"}
        out.update(getattr(self, "_resolved", {}))
        return out

    def spec(self) -> dict[str, Any]:
        """``{"fault": kind, **fields}``: enough to rebuild the fault (``fault_from_dict``)."""
        return {"fault": self.kind, **{f.name: _jsonable(getattr(self, f.name))
                                       for f in dataclasses.fields(self) if f.init}}

    def note(self, **resolved: Any) -> None:
        """Add resolved facts (link lists, halves) to the recorded params."""
        self.__dict__.setdefault("_resolved", {}).update(
            {k: _jsonable(v) for k, v in resolved.items()})


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple | list):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


def as_tuple(x: str | Iterable[str]) -> tuple[str, ...]:
    return (x,) if isinstance(x, str) else tuple(x)


# -- the context: cluster access, selector resolution, shared link/claim state ---------------

_ROLE_K = re.compile(r"^(master|coreapp|webapp):(\d+)$")
INFRA = ("db", "nfs", "gateway", "toxiproxy", "client")


class FaultContext:
    """What a fault may use: the cluster, the history, selector resolution, and shared state
    (link disable counts, node claims) so overlapping faults compose."""

    def __init__(self, cluster: Any, history: History) -> None:
        self.cluster = cluster
        self.history = history
        self._lock = threading.RLock()
        self._disabled: dict[str, int] = {}
        self._claims: dict[tuple[str, str], str] = {}
        self.current: str | None = None  # id of the fault being started/healed

    # selectors -------------------------------------------------------------------------
    def node_names(self, role: str | None = None) -> list[str]:
        spec = self.cluster.spec
        if role is None:
            return list(spec.all_nodes)
        return list(spec.node_names(role))

    def resolve(self, selector: str) -> str:
        """One selector → one node name (see the module docstring)."""
        sel = selector.strip()
        base, _, arg = sel.partition(":")
        try:
            if base == "primary-master" and not arg:
                return str(self.cluster.primary_master())
            if base == "secondary-master":
                primary = self._quiet(self.cluster.primary_master)
                return self._pick([m for m in self.node_names("master") if m != primary],
                                  arg, sel)
            if base == "primary-coreapp":
                return self._primary_coreapp(int(arg or 0))
            if base == "secondary-coreapp":
                owners = self._owners()
                return self._pick([c for c in self.node_names("coreapp") if c not in owners],
                                  arg, sel)
        except ResolveError:
            raise
        except (LookupError, ValueError, OSError) as e:
            raise ResolveError(f"selector {sel!r}: {e}") from e
        except Exception as e:  # noqa: BLE001 - database errors and the like
            raise ResolveError(f"selector {sel!r}: {type(e).__name__}: {e}") from e
        m = _ROLE_K.match(sel)
        if m:
            sel = f"{m.group(1)}-{m.group(2)}"
        if sel in self.cluster.nodes or sel == "client":
            return sel
        raise ResolveError(f"selector {selector!r} names no node; nodes: "
                           + ", ".join(sorted(self.cluster.nodes)))

    def resolve_all(self, selectors: Iterable[str]) -> list[str]:
        out: list[str] = []
        for s in selectors:
            name = self.resolve(s)
            if name not in out:
                out.append(name)
        return out

    @staticmethod
    def _quiet(fn: Any) -> Any:
        try:
            return fn()
        except Exception:  # noqa: BLE001
            return None

    @staticmethod
    def _pick(candidates: list[str], arg: str, sel: str) -> str:
        i = int(arg or 0)
        if not 0 <= i < len(candidates):
            raise ResolveError(f"selector {sel!r}: {len(candidates)} candidate(s) "
                               f"({', '.join(candidates) or 'none'})")
        return candidates[i]

    def _owners(self) -> set[str]:
        try:
            return {r["hostname"] for r in self.cluster.shard_map().values() if r["hostname"]}
        except Exception:  # noqa: BLE001 - database unreachable: ask the gateway
            return {c.get("node") for c in self._gateway_connections()}

    def _gateway_connections(self) -> list[dict[str, Any]]:
        import requests
        r = requests.get(f"{self.cluster.gateway_url}/connections", timeout=2)
        r.raise_for_status()
        body = r.json()
        return list(body.get("connections", body) if isinstance(body, dict) else body)

    def _primary_coreapp(self, shard: int) -> str:
        try:
            return str(self.cluster.primary_coreapp(shard))
        except Exception as first:  # noqa: BLE001 - fall back to the gateway's view
            try:
                for c in self._gateway_connections():
                    if int(c.get("shard", -1)) == shard and c.get("node"):
                        return str(c["node"])
            except Exception:  # noqa: BLE001
                pass
            raise ResolveError(f"no primary coreapp for shard {shard}: {first}") from first

    def resolve_links(self, spec: str) -> list[str]:
        """``a->b`` / ``a->*`` / ``*->b`` / ``a<->b`` with selectors → existing link names."""
        links = self.cluster.links
        both = "<->" in spec
        left, _, right = spec.partition("<->" if both else "->")
        if not right:
            raise ResolveError(f"link {spec!r}: expected 'src->dst'")
        a = None if left.strip() == "*" else self.resolve(left)
        b = None if right.strip() == "*" else self.resolve(right)
        if a is None and b is None:
            raise ResolveError(f"link {spec!r}: at most one side may be '*'")
        found = []
        for lk in links:
            if (a in (None, lk.src) and b in (None, lk.dst)) or (
                    both and a in (None, lk.dst) and b in (None, lk.src)):
                found.append(lk.name)
        if not found:
            raise ResolveError(f"link {spec!r} (resolved {a or '*'} -> {b or '*'}) does not "
                               "exist in this topology")
        return found

    def resolve_link_specs(self, specs: Iterable[str]) -> list[str]:
        out: list[str] = []
        for s in specs:
            out.extend(x for x in self.resolve_links(s) if x not in out)
        return out

    # shared state ----------------------------------------------------------------------
    @property
    def toxiproxy(self) -> Any:
        return self.cluster.toxiproxy

    def disable_links(self, names: Iterable[str]) -> None:
        """Disable links (refused, open connections reset); reference-counted."""
        with self._lock:
            for n in names:
                if self._disabled.get(n, 0) == 0:
                    self.toxiproxy.set_enabled(n, False)
                self._disabled[n] = self._disabled.get(n, 0) + 1

    def enable_links(self, names: Iterable[str]) -> None:
        """Undo one ``disable_links``; a link comes back when no fault holds it."""
        with self._lock:
            errors = []
            for n in names:
                count = self._disabled.get(n, 0)
                if count <= 1:
                    try:
                        self.toxiproxy.set_enabled(n, True)
                    except Exception as e:  # noqa: BLE001 - try every link, then raise
                        errors.append(e)
                        continue
                    self._disabled.pop(n, None)
                else:
                    self._disabled[n] = count - 1
            if errors:
                raise errors[0]

    def claim(self, what: str, node: str) -> None:
        """Hold ``(what, node)`` for the current fault; refuse if another fault holds it."""
        with self._lock:
            holder = self._claims.get((what, node))
            if holder is not None and holder != self.current:
                raise FaultConflict(f"{node} is already under fault {holder} ({what})")
            self._claims[(what, node)] = self.current or "?"

    def release(self, fault_id: str) -> None:
        with self._lock:
            for key in [k for k, v in self._claims.items() if v == fault_id]:
                del self._claims[key]

    def refresh_ip(self, name: str) -> None:
        """After a container restart: its address may have changed."""
        node = self.cluster.nodes[name]
        node.container.reload()
        net = getattr(getattr(self.cluster, "network", None), "name", None)
        nets = node.container.attrs.get("NetworkSettings", {}).get("Networks", {})
        ip = (nets.get(net) or {}).get("IPAddress") if net else None
        if ip:
            node.ip = ip


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


__all__ = [
    "INFRA", "PROCESS", "REGISTRY", "Draw", "Fault", "FaultConflict", "FaultContext",
    "FaultSkipped", "HealError", "Nemesis", "ResolveError", "as_tuple", "discover",
    "fault_from_dict", "register",
]
