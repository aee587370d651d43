"""The fault model: a :class:`Fault` (selectors and parameters; ``start``/``heal``) and the
:class:`FaultContext` it acts through (the cluster, the history, selector resolution, and the
shared state that lets overlapping faults compose). The package's docstring states the model;
each fault kind is one module of the package built on these.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.history import History
from harness.nemesis.draw import Draw
from harness.spec import Topology


class FaultSkipped(RuntimeError):
    """The fault could not start and did nothing (recorded as ``skip``)."""


class ResolveError(FaultSkipped, LookupError):
    """A selector named nothing that exists right now."""


class FaultConflict(FaultSkipped):
    """Another active fault already holds the node this fault wants to claim."""


class NeedsEngineHost(FaultSkipped):
    """The fault acts on the engine's own host (its dockerd, a container's network namespace),
    and this run's engine is not reached through a socket on this machine. A scenario built
    on such a fault is skipped with this reason (``harness.pytest_plugin.plugin``), never
    passed."""


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
