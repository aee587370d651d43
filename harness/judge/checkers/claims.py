"""Never two nodes acting on one lease at once, judged from what every node says of itself.

Model. The claim sampler (:class:`harness.run.observers.claims.ClaimSampler`, process
``claims``) asks every master and coreapp for its own status several times a heartbeat,
directly (not through the webapp or a proxy), and records each answer as ``claim`` ``ok
{"node", "kind", "group", "epoch", "valid_for", "sent"}``: ``kind`` ``master`` (group
``lease``) when the master says it is primary, ``coreapp`` (group ``shard-<n>``) when the
coreapp holds a confirmed ownership of shard n; ``valid_for`` is how much longer the node
believes it may act, on its own monotonic clock; ``sent`` is the history time the request left.
The node spoke at some instant between ``sent`` and the answer's time ``time``, so it certainly
claimed the whole window ``[time, sent + valid_for]`` — without any assumption about sampling
delay. Two claims in one group by different nodes whose windows overlap are a violation: two
masters acting as primary, or two coreapps acting as owner of one shard, at the same instant.
The lease and ownership rules forbid it with a margin (a master acts for 0.9·T of a lease the
database grants for T; a new owner may act only after the old validity plus the gateway
keepalive), so a legitimate hand-over never overlaps; a double claim of any length is caught as
long as each side was sampled once while it claimed, which a health snapshot of the webapp
(every 0.3 s, both answers needed in one snapshot) may miss.

One claim ends early by design: a master that stops gracefully gives its lease up in the
database (``release_lease``). When the database's record (``db-lease``, see
:mod:`harness.judge.checkers.db_record`) shows that node releasing that epoch, its lease claims of
that epoch end at the release (a claim answered after it is dropped: only what the node
does then matters, and ``db_record`` judges that).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.history import Event
from harness.judge.checkers.base import Figure, Result, checker, prepare, t


@dataclass(frozen=True)
class Claim:
    node: str
    group: str
    epoch: int | None
    start: float  # the answer's time: the node claimed from then (at the latest) ...
    end: float  # ... until sent + valid_for (at the earliest)


def releases(events: Sequence[Event]) -> dict[tuple[str, int], float]:
    """(master, epoch) -> when the database recorded that master giving that lease up."""
    out: dict[tuple[str, int], float] = {}
    for e in prepare(events).select("db-lease"):
        old, new = e.value.get("old") or {}, e.value.get("new") or {}
        if (new.get("holder") is None and old.get("holder") is not None
                and e.value.get("account") == old["holder"]):
            out.setdefault((str(old["holder"]), int(old["epoch"])), e.time)
    return out


def claims(events: Sequence[Event]) -> list[Claim]:
    """The certain windows of every ``claim`` answer (empty windows dropped), by start; a
    lease claim ends at its recorded release."""
    out = []
    released = releases(events)
    for e in prepare(events).select("claim"):
        v = e.value
        if e.type != "ok" or not v.get("group") or (v.get("valid_for") or 0) <= 0:
            continue
        end = float(v["sent"]) + float(v["valid_for"])
        if v["group"] == "lease" and v.get("epoch") is not None:
            end = min(end, released.get((str(v["node"]), int(v["epoch"])), end))
        if end > e.time:
            out.append(Claim(str(v["node"]), str(v["group"]), v.get("epoch"), e.time, end))
    return sorted(out, key=lambda c: (c.start, c.node))


@checker
def exclusive_claims(events: Sequence[Event], *, name: str = "exclusive_claims") -> Result:
    """Valid iff no two nodes' claim windows of one group (the master lease, a shard)
    overlap."""
    cs = claims(events)
    clashes: list[tuple[Claim, Claim]] = []
    latest: dict[str, dict[str, Claim]] = {}  # group -> node -> its claim ending last so far
    for c in cs:  # by start: an earlier claim overlaps c iff it ends after c starts
        seen = latest.setdefault(c.group, {})
        clashes.extend((o, c) for node, o in seen.items() if node != c.node and o.end > c.start)
        if c.node not in seen or c.end > seen[c.node].end:
            seen[c.node] = c
    groups = sorted({c.group for c in cs})
    figures: dict[str, Figure] = {
        "claims": len(cs),
        "groups": len(groups),
        "overlaps": len(clashes),
        "max_overlap": round(max((min(a.end, b.end) - b.start for a, b in clashes),
                                 default=0.0), 3),
    }
    summary = (f"{len(cs)} claim(s) over {len(groups)} group(s) "
               f"({', '.join(groups) or 'none sampled'}).")
    if clashes:
        a, b = clashes[0]
        return Result(name, False, figures, (
            f"INVALID: {len(clashes)} overlapping claim(s); first in {b.group}: {a.node} "
            f"(epoch {a.epoch}) claimed until at least {t(a.end)} and {b.node} (epoch {b.epoch}) "
            f"already from {t(b.start)}, {a.end - b.start:.3f} s together. " + summary))
    return Result(name, True, figures, summary)
