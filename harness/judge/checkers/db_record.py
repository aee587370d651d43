"""The database's own record (``db-lease``, ``db-shard``): every fenced change was allowed.

Model. :mod:`harness.cluster.db_record` records each change of the lease row and of a shard-map row
at the database's clock, with the account (= node) that made it. Each change is judged on
its own, against the row it replaced, at the instant the database judged it (so node clocks,
pauses and lost answers do not matter):

- **lease taken over while live**: a change that gives the lease to another holder while
  the row it replaced was live (``old.until > at``), or that takes it (a new holder or
  epoch) without raising the epoch (a restarted master may take its own live row over: its
  previous run is gone);
- **expired lease renewed**: same holder and epoch, but the replaced row had expired;
- **lease shorter than trusted**: a holder trusts its lease for ``lease_safety``·T from when
  it sent the renewal (contracts.md), so the recorded expiry must be at least that far after
  the change (``new.until - at``), else a secondary may take it while the old primary still
  acts;
- **lease written by another node**: a node account wrote a holder other than itself, or
  released a lease it did not hold;
- **promotion without the lease**: a shard handed to another host or epoch by a master
  account that was not the live lease holder at that instant (the lease row as the database
  held it; promotions fence in their own statement, so this fails only if the fence does),
  or by a coreapp account;
- **fence shorter than the keepalive**: a promotion must set ``fence_until`` at least
  ``fence_extra`` (gateway keepalive + margin) after the old owner's ``valid_until``: the new
  owner connects at the fence, and the gateway may keep an old owner that can no longer
  close its connection until its keepalive runs out;
- **confirmed before the fence**: a coreapp extended ``valid_until`` of a row whose fence was
  still in the future, or of a row not naming it.

Parameters come from the ``db-record`` event the recorder writes first (``lease_ttl``,
``lease_safety``, ``fence_extra``, ``accounts``: account -> node, ``masters``); arguments
override them.
Changes by accounts that are not nodes (the harness's root, an operator) are counted, not
judged. No record in the history: nothing to judge (valid).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.history import Event
from harness.judge.checkers.base import Figure, Result, checker, prepare

#: Database times are microseconds; allow one for the float round trip.
EPS = 1e-6


def record_settings(events: Sequence[Event]) -> dict[str, Any]:
    for e in events:
        if e.f == "db-record" and isinstance(e.value, dict):
            return e.value
    return {}


def shard_change(r: dict[str, Any]) -> str:
    """What a shard-map change was: ``promotion`` (another host or epoch), ``confirmation``
    (a new ``valid_until``) or ``other``."""
    old, new = r["old"], r["new"]
    if new["host"] != old["host"] or new["epoch"] != old["epoch"]:
        return "promotion"
    if new["valid_until"] is not None and new["valid_until"] != old["valid_until"]:
        return "confirmation"
    return "other"


def _lease_problems(r: dict[str, Any], node: str, trusted: float | None) -> list[str]:
    at, old, new = r["at"], r["old"], r["new"]
    out = []
    if new["holder"] is None:
        if old["holder"] != node:
            out.append(f"{node} released the lease held by {old['holder']}")
        return out
    renewal = new["holder"] == old["holder"] and new["epoch"] == old["epoch"]
    live = old["holder"] is not None and old["until"] is not None and old["until"] > at + EPS
    if renewal and not live:
        out.append(f"{new['holder']} renewed epoch {new['epoch']} after it expired "
                   f"({old['until'] - at:+.6f} s)" if old["until"] is not None else
                   f"{new['holder']} renewed epoch {new['epoch']} of an empty row")
    if not renewal:
        if live and new["holder"] != old["holder"]:
            out.append(f"{new['holder']} took the lease (epoch {new['epoch']}) while "
                       f"{old['holder']} held epoch {old['epoch']} for another "
                       f"{old['until'] - at:.6f} s")
        if (new["epoch"] or 0) <= (old["epoch"] or 0):
            out.append(f"{new['holder']} took the lease without a new epoch "
                       f"({old['epoch']} -> {new['epoch']})")
    if trusted is not None and new["until"] is not None and new["until"] - at < trusted - EPS:
        out.append(f"{new['holder']}'s lease (epoch {new['epoch']}) was written to expire "
                   f"{new['until'] - at:.6f} s after the change; the holder trusts it for "
                   f"{trusted:g} s")
    if new["holder"] != node:
        out.append(f"account of {node} wrote {new['holder']} into the lease")
    return out


def _shard_problems(r: dict[str, Any], node: str, fence_extra: float | None,
                    masters: set[str]) -> list[str]:
    at, old, new, lease, s = r["at"], r["old"], r["new"], r["lease"], r["shard"]
    out = []
    kind = shard_change(r)
    if kind == "promotion":
        held = (lease["holder"] == node and lease["until"] is not None
                and lease["until"] > at + EPS)
        if node not in masters:
            out.append(f"{node} (not a master) handed shard {s} from {old['host']} to "
                       f"{new['host']}")
        elif not held:
            out.append(f"{node} handed shard {s} from {old['host']} to {new['host']} "
                       f"while the lease was {lease['holder']}'s (epoch {lease['epoch']}"
                       f", expiring {(lease['until'] or 0) - at:+.6f} s from then)")
        if fence_extra is not None and old["valid_until"] is not None:
            need = old["valid_until"] + fence_extra
            got = new["fence_until"]
            if got is None or got < need - EPS:
                short = "none" if got is None else f"{need - got:.6f} s short"
                out.append(f"promotion of shard {s} to {new['host']} fenced until "
                           f"{'nothing' if got is None else f'{got - at:+.6f} s'} from then; "
                           f"the old owner {old['host']} was valid until "
                           f"{old['valid_until'] - at:+.6f} s, so at least "
                           f"{need - at:+.6f} s was due ({short})")
        return out
    if kind == "confirmation":
        fence = old["fence_until"]
        if fence is not None and fence > at + EPS:
            out.append(f"{new['host']} confirmed shard {s} (epoch {new['epoch']}) "
                       f"{fence - at:.6f} s before its fence ended")
        if node != new["host"]:
            out.append(f"{node} extended the ownership of shard {s} held by {new['host']}")
    return out


@checker
def db_record(events: Sequence[Event], *, lease_ttl: float | None = None,
              lease_safety: float | None = None, fence_extra: float | None = None,
              accounts: dict[str, str] | None = None, masters: Sequence[str] | None = None,
              name: str = "db_record") -> Result:
    """Valid iff no recorded change of the lease or the shard map broke a rule above."""
    prepared = prepare(events)
    cfg = record_settings(prepared)
    ttl = lease_ttl if lease_ttl is not None else cfg.get("lease_ttl")
    safety = lease_safety if lease_safety is not None else cfg.get("lease_safety")
    extra = fence_extra if fence_extra is not None else cfg.get("fence_extra")
    nodes = accounts if accounts is not None else (cfg.get("accounts") or {})
    trusted = ttl * safety if ttl is not None and safety is not None else None
    records = sorted((e.value for e in prepared if e.f in ("db-lease", "db-shard")),
                     key=lambda v: v["id"])
    known = set(masters if masters is not None else (cfg.get("masters") or ()))
    known |= {v["new"]["holder"] for v in records
              if v["table"] == "lease" and v["new"]["holder"] is not None}
    problems: list[tuple[float, str]] = []
    counts = {"lease": 0, "promotion": 0, "confirmation": 0, "other": 0, "unjudged": 0}
    for r in records:
        node = nodes.get(r["account"])
        if node is None:
            counts["unjudged"] += 1
            continue
        if r["table"] == "lease":
            counts["lease"] += 1
            found = _lease_problems(r, node, trusted)
        else:
            counts[shard_change(r)] += 1
            found = _shard_problems(r, node, extra, known)
        problems.extend((r["at"], p) for p in found)
    figures: dict[str, Figure] = {
        "changes": len(records), "lease_changes": counts["lease"],
        "promotions": counts["promotion"], "confirmations": counts["confirmation"],
        "unjudged_changes": counts["unjudged"], "violations": len(problems),
        "lease_trusted_for": trusted, "fence_extra": extra,
    }
    summary = (f"{len(records)} recorded change(s): {counts['lease']} of the lease, "
               f"{counts['promotion']} promotion(s), {counts['confirmation']} "
               f"confirmation(s); {counts['unjudged']} by accounts that are not nodes.")
    if not records:
        return Result(name, True, figures, "no database record in this history.")
    if problems:
        first = "; ".join(p for _, p in problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        return Result(name, False, figures,
                      f"INVALID: {len(problems)} change(s) the database should not have "
                      f"allowed: {first}{more}. {summary}")
    return Result(name, True, figures, summary)
