"""The summary of many schedules: counts, violations and latency distributions."""

from __future__ import annotations

import math
from collections import Counter

from ..core.ownership import FENCE_MARGIN
from ..timing import BOUND_MARGIN
from .runner import Result, failover_bound, recovery_bound
from .simconfig import SimConfig


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def dist(values: list[float]) -> str:
    if not values:
        return "n=0"
    return (f"p50 {percentile(values, 50):.2f} s, p99 {percentile(values, 99):.2f} s, "
            f"max {max(values):.2f} s (n={len(values)})")


class Summary:
    def __init__(self, base: SimConfig) -> None:
        self.base = base
        self.runs = 0
        self.sim_time = 0.0
        self.events = 0
        self.faults = 0
        self.skipped = 0
        self.kinds: Counter[str] = Counter()
        self.failed: list[tuple[int, str]] = []
        self.failover: list[float] = []
        self.promotion: list[float] = []
        self.recovery: list[float] = []
        self.overshoot = -math.inf
        self.outcomes: Counter[str] = Counter()
        self.breaches: Counter[str] = Counter()  # assumption -> schedules that broke it
        self.promotions = 0
        self.wall = 0.0
        self.cpu = 0.0
        self.jobs = 1
        self.seeds: list[int] = []

    def add(self, r: Result) -> None:
        self.runs += 1
        self.seeds.append(r.cfg.seed)
        self.sim_time += r.sim_time
        self.events += r.events
        self.faults += r.faults_started
        self.skipped += r.faults_skipped
        self.promotions += r.promotions
        self.outcomes.update(r.outcomes)
        self.breaches.update(r.breaches.keys())
        self.overshoot = max(self.overshoot, r.max_overshoot)
        if r.violation is not None:
            self.kinds[r.violation.kind] += 1
            self.failed.append((r.cfg.seed, str(r.violation)))
        if r.failover is not None:
            self.failover.append(r.failover)
        if r.promotion is not None:
            self.promotion.append(r.promotion)
        if r.recovery is not None:
            self.recovery.append(r.recovery)

    def render(self) -> str:
        c = self.base
        t = c.timing
        seeds = (f"seed {self.seeds[0]}" if self.runs == 1 else
                 f"seeds {min(self.seeds)}-{max(self.seeds)}" if self.seeds else "none")
        bound, mode = failover_bound(c)
        if mode == "heartbeat":
            formula = f"max(u + h, F + K + {FENCE_MARGIN:g}) + {BOUND_MARGIN:g}"
        else:
            formula = f"stale_after + liveness_interval + {BOUND_MARGIN:g}"
        lines = [
            f"multiconnect.sim: {self.runs} schedules ({seeds}), timing {c.timing_name} "
            f"(h={t.heartbeat_interval} u={t.unhealthy_interval} K={t.gateway_ping_timeout:g} "
            f"T={t.lease_ttl:g}), {c.masters} masters / {c.coreapps} coreapps / {c.shards} "
            f"shards / {c.webapps} webapps, net {c.net}, drift ±{c.drift:g}"
            + (f", BREAK {c.breaks}" if c.breaks else ""),
            f"simulated: {self.sim_time / 3600:.2f} h ({self.sim_time / max(1, self.runs):.1f} s "
            f"per schedule, {c.minutes:g} min of faults), {self.events} events, "
            f"{self.faults} faults started ({self.skipped} skipped)",
        ]
        if self.jobs > 1 and self.wall > 0:
            lines.append(f"time: {self.wall:.1f} s wall with {self.jobs} worker processes "
                         f"({60 * self.runs / self.wall:.0f} schedules/min in all)")
        elif self.cpu > 0.5:
            lines.append(f"time: {self.wall:.1f} s wall, {self.cpu:.1f} s CPU in this process "
                         f"({60 * self.runs / self.cpu:.0f} schedules/min per core, "
                         f"simulated/real {self.sim_time / self.cpu:.0f}×)")
        else:
            lines.append(f"time: {self.wall:.1f} s wall")
        lines.append(f"violations: {sum(self.kinds.values())}"
                     + (" (" + ", ".join(f"{k} {n}" for k, n in sorted(self.kinds.items()))
                        + ")" if self.kinds else ""))
        for seed, what in self.failed[:10]:
            lines.append(f"  seed {seed}: {what}")
        if len(self.failed) > 10:
            lines.append(f"  … {len(self.failed) - 10} more")
        if self.breaches:
            lines.append("outside the model (not violations): " + ", ".join(
                f"{k} broken in {n} schedules" for k, n in sorted(self.breaches.items()))
                + f" (A3: a conflict after the gateway handled a line > {FENCE_MARGIN:g} s "
                  "late)")
        lines += [
            f"failover latency, kill of the shard-0 owner → new owner connected ({mode} "
            f"detection, bound {bound:g} s = {formula}): {dist(self.failover)}",
            f"promotion latency (kill → promotion committed): {dist(self.promotion)}",
            f"recovery after the faults stop (bound {recovery_bound(t):.1f} s): "
            f"{dist(self.recovery)}",
            "latest coreapp ping/send relative to the database's valid_until: "
            + (f"{self.overshoot:+.3f} s" if self.overshoot > -math.inf else "n/a")
            + " (must stay < 0)",
            f"messages: acknowledged {self.outcomes['ok']}, not sent "
            f"{self.outcomes['not_sent']}, unknown {self.outcomes['unknown']}; promotions "
            f"{self.promotions}",
        ]
        return "\n".join(lines)
