"""Promotion after a fault: how long until a *different* coreapp is connected for the shard.

Model. The fault is a nemesis ``start`` (by id, else by kind, else the first). The *old
primary* is the node whose gateway connection for the shard was open at the fault's start
(else the ``hostname`` of the last shard-map observation before it; else given as
``old_primary``). The shard defaults to the one whose old primary is named in the fault's
targets (``"coreapp-1"`` or a link ``"coreapp-1->db"``), else the only shard, else 0.

Two independent observations of the new primary:
- gateway: the first ``gw-connect`` for the shard by another node at or after the start;
- health: the first ``health`` snapshot (at its completion time) at or after the start in
  which another coreapp reports ``gateway_status: connected``. Health carries no shard per
  node, so nodes that were connected for *other* shards at the fault's start are ignored.

``promotion`` is the later of the two (the moment both agree the hand-over happened).
Node names from health keys are cut at the first ``:`` (the real client keys entries
``<hostname>:<container-id>``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.cluster.api_client import node_name
from harness.history import Event
from harness.judge.checkers.base import (
    FaultWindow,
    Figure,
    Result,
    bound_text,
    bound_value,
    checker,
    dur,
    find_fault,
    health_snapshots,
    prepare,
    s,
    shard_of,
    t,
)
from harness.judge.checkers.connections import Connection, connections

SOURCES = ("gateway", "health")


@dataclass(frozen=True)
class _Context:
    fault: FaultWindow
    shard: int | str | None
    old: str | None
    old_from: str
    excluded: frozenset[str]
    conns: list[Connection]


def _targets_name(targets: Iterable[str], node: str | None) -> bool:
    if not node:
        return False
    for tg in targets:
        parts = tg.replace("<->", "->").replace("<-", "->").split("->")
        if node in (p.strip() for p in parts):
            return True
    return False


def _context(prep: Any, fault: str | None, shard: Any,
             old_primary: str | None) -> _Context | str:
    fw = find_fault(prep, fault)
    if fw is None:
        return (f"no nemesis start {'for ' + repr(fault) + ' ' if fault else ''}"
                "in the history")
    conns, _ = connections(prep)
    open_at = [c for c in conns if c.open_at(fw.start)]
    holders: dict[Any, Connection] = {}
    for c in open_at:  # the latest connect wins if several are open
        holders[c.shard] = c
    if shard is None:
        named = [sh for sh, c in holders.items() if _targets_name(fw.targets, c.node)]
        all_shards = {c.shard for c in conns}
        shard = named[0] if named else (next(iter(all_shards)) if len(all_shards) == 1 else 0)
    shard = shard_of(shard)
    old, old_from = old_primary, "given"
    if old is None and shard in holders:
        old, old_from = holders[shard].node, "gateway"
    if old is None:
        for e in prep.select("shard-map"):
            if e.type != "ok" or e.time > fw.start:
                continue
            row = (e.value.get("shards") or {}).get(str(shard))
            if isinstance(row, dict) and row.get("hostname"):
                old, old_from = node_name(row["hostname"]), "shard-map"
    excluded = frozenset(c.node for sh, c in holders.items() if sh != shard and c.node)
    return _Context(fw, shard, old, old_from if old else "unknown", excluded - {old}, conns)


def _gateway_new(ctx: _Context, until: float) -> Connection | None:
    for c in ctx.conns:
        if (c.shard == ctx.shard and ctx.fault.start <= c.start.time <= until
                and c.node != ctx.old):
            return c
    return None


def _health_new(prep: Any, ctx: _Context, until: float) -> tuple[Event, str] | None:
    for ev, nodes in health_snapshots(prep):
        if ev.time < ctx.fault.start or ev.time > until:
            continue
        for n in sorted(nodes):
            v = nodes[n]
            if (v.get("gateway_status") == "connected" and n != ctx.old
                    and n not in ctx.excluded and "master" not in str(v.get("role", ""))):
                return ev, n
    return None


def _check_sources(sources: Iterable[str]) -> tuple[str, ...]:
    out = tuple(sources)
    bad = [x for x in out if x not in SOURCES]
    if bad or not out:
        raise ValueError(f"sources must be a non-empty subset of {SOURCES}, got {out}")
    return out


@checker
def promotion(events: Sequence[Event], *, fault: str | None = None,
              shard: int | str | None = None, bound: Any = None,
              old_primary: str | None = None, sources: Iterable[str] = SOURCES,
              health_slack: float | None = None, name: str = "promotion") -> Result:
    """Time from the fault's start to a different coreapp connected for the shard.

    The gateway's log is authoritative (it stamps the connect itself); ``/v1/health`` is a
    polled, non-atomic view whose lag is the webapp's response time (this machine's speed,
    not the system's settings), so with both sources the promotion time is the gateway's and
    health must name the same new primary; ``health_slack`` (seconds), if given, also bounds
    health's observation to ``bound + health_slack``. Its lag is reported as a figure.
    Invalid if a required source never saw one, if a source exceeds its bound, or if the
    sources name different new primaries."""
    srcs = _check_sources(sources)
    prep = prepare(events)
    ctx = _context(prep, fault, shard, old_primary)
    if isinstance(ctx, str):
        return Result(name, False, {"promotion": None}, f"INVALID: {ctx}.")
    lim = bound_value(bound)
    fw = ctx.fault
    gw = _gateway_new(ctx, prep.end)
    hl = _health_new(prep, ctx, prep.end)
    p_gw = dur(gw.start.time - fw.start) if gw else None
    p_hl = dur(hl[0].time - fw.start) if hl else None
    used = [p for src, p in (("gateway", p_gw), ("health", p_hl)) if src in srcs]
    # the gateway's own stamp is authoritative when it is a source
    promo = p_gw if "gateway" in srcs else (
        max(used) if used and None not in used else None)  # type: ignore[type-var]
    figures: dict[str, Figure] = {
        "fault": fw.id, "fault_kind": fw.kind, "fault_start": fw.start, "shard": ctx.shard,
        "old_primary": ctx.old,
        "promotion_gateway": p_gw, "promotion_health": p_hl, "promotion": promo,
        "new_primary": gw.node if gw else (hl[1] if hl else None),
        "new_primary_health": hl[1] if hl else None, "bound": lim,
    }
    seen_gw = (f"gateway: {gw.describe()} (+{s(p_gw)})" if gw
               else "gateway: no other node connected for the shard")
    seen_hl = (f"health: {hl[1]} reported connected {t(hl[0].time)} (+{s(p_hl)})" if hl
               else "health: no other coreapp reported connected")
    head = (f"Fault {fw.id} ({fw.kind} {', '.join(fw.targets) or '-'}) started "
            f"{t(fw.start)}; shard {ctx.shard}, old primary {ctx.old or 'unknown'} "
            f"(from {ctx.old_from}). {seen_gw}; {seen_hl}.")
    problems = []
    for src, p in (("gateway", p_gw), ("health", p_hl)):
        if src in srcs and p is None:
            problems.append(f"no promotion observed by {src} up to {t(prep.end)}")
    if "gateway" in srcs and "health" in srcs and gw and hl and gw.node != hl[1]:
        problems.append(f"the sources disagree on the new primary: gateway says {gw.node}, "
                        f"health says {hl[1]}")
    if lim is not None and promo is not None and promo > lim:
        problems.append(f"promotion took {s(promo)}, above the bound {bound_text(bound)}")
    if (lim is not None and health_slack is not None and "health" in srcs and p_hl is not None
            and p_hl > lim + health_slack and promo is not None and promo <= lim):
        problems.append(f"health showed the new primary only after {s(p_hl)}, above the bound "
                        f"{bound_text(bound)} + health lag {health_slack:g} s")
    if problems:
        return Result(name, False, figures, "INVALID: " + "; ".join(problems) + ". " + head)
    text = (f"Promotion in {s(promo)}"
            + (f" (bound {bound_text(bound)})" if lim is not None else "") + ". " + head)
    return Result(name, True, figures, text)


@checker
def no_promotion(events: Sequence[Event], *, fault: str | None = None,
                 shard: int | str | None = None, until: float | None = None,
                 after: float | None = None, old_primary: str | None = None,
                 sources: Iterable[str] = SOURCES, name: str = "no_promotion") -> Result:
    """Valid iff no different coreapp connected for the shard from the fault's start to
    ``until`` (default: heal + ``after`` if ``after`` is given, else the history's end)."""
    srcs = _check_sources(sources)
    prep = prepare(events)
    ctx = _context(prep, fault, shard, old_primary)
    if isinstance(ctx, str):
        return Result(name, False, {"promotions": None}, f"INVALID: {ctx}.")
    fw = ctx.fault
    if until is None:
        until = fw.end(prep.end) + after if after is not None else prep.end
    gw = _gateway_new(ctx, until) if "gateway" in srcs else None
    hl = _health_new(prep, ctx, until) if "health" in srcs else None
    figures: dict[str, Figure] = {
        "fault": fw.id, "fault_start": fw.start, "until": until, "shard": ctx.shard,
        "old_primary": ctx.old,
        "other_connected_gateway": gw.node if gw else None,
        "other_connected_health": hl[1] if hl else None,
        "first_other_at": min((x for x in (gw.start.time if gw else None,
                                           hl[0].time if hl else None) if x is not None),
                              default=None),
    }
    head = (f"Fault {fw.id} ({fw.kind} {', '.join(fw.targets) or '-'}) from {t(fw.start)}, "
            f"window to {t(until)}; shard {ctx.shard}, primary {ctx.old or 'unknown'} "
            f"(from {ctx.old_from}).")
    problems = []
    if gw:
        problems.append(f"gateway: {gw.describe()} for shard {ctx.shard}")
    if hl:
        problems.append(f"health: {hl[1]} reported connected {t(hl[0].time)}")
    if problems:
        return Result(name, False, figures,
                      "INVALID: another coreapp took over — " + "; ".join(problems)
                      + ". " + head)
    return Result(name, True, figures,
                  f"No other coreapp connected for the shard ({', '.join(srcs)}). " + head)
