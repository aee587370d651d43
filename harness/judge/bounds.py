"""Expected bounds, computed from the cluster's own settings plus one margin.

Model (docs/contracts.md, "Timing model"): h = ``heartbeat_interval``, u =
``unhealthy_interval``, K = gateway ping timeout, F = 2·h (coreapp ownership TTL), T = master
lease TTL. A promotion writes ``fence_until = max(now, valid_until + K + 0.5 s)`` and the new
owner connects only after the fence. Every bound below is the protocol's worst case plus
``MARGIN`` seconds — the ONE allowance for what the model leaves out (request latency, one
scheduling tick, the new owner's first confirm). Override it per call (``margin=``) or for the
whole process (``harness.judge.bounds.MARGIN = 2.0``); the module value is read at call time.

Every function returns a ``Bound(value, formula)``; the checkers accept it wherever they take
a bound and print the formula in their explanations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from multiconnect.core.lease import LeaseCore
from multiconnect.core.ownership import FENCE_MARGIN, OwnershipCore
from multiconnect.timing import BOUND_MARGIN, Timing

#: Seconds added to every protocol worst case (``multiconnect.timing.BOUND_MARGIN``, shared
#: with the simulator). The only tuning knob of this module; rebinding it here changes the
#: harness's bounds only.
MARGIN: float = BOUND_MARGIN

#: How far ``/v1/health`` may lag the gateway's own log: one poll interval of the harness's
#: health poller (0.3 s) plus one status round of the webapp (its per-node timeout, 0.5 s),
#: plus scheduling; health is a polled view, the gateway stamps connects itself.
HEALTH_SLACK: float = 1.5

#: Extra wait after the old owner's validity before a new owner may connect (contracts.md):
#: the fence margin m of the roles (``multiconnect.core.ownership.FENCE_MARGIN``).
FENCE_SLACK: float = FENCE_MARGIN

#: The fraction of the lease TTL a primary master trusts its lease for, counted from when it
#: sent the renewal (``LeaseCore.safety``; contracts.md): the database's expiry must not end
#: before it.
LEASE_SAFETY: float = LeaseCore.safety

#: A coreapp's clock-rate allowance (fencing.md A1): its waits on its own clock are divided by
#: this (``OwnershipCore.rate_safety``).
RATE_SAFETY: float = OwnershipCore.rate_safety


@dataclass(frozen=True)
class Bound:
    """A bound in seconds and how it was computed (for reports)."""

    value: float
    formula: str

    def __float__(self) -> float:
        return self.value

    def __str__(self) -> str:
        return f"{self.value:g} s ({self.formula})"


def _num(name: str, x: float) -> float:
    if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x) or x < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {x!r}")
    return float(x)


def _margin(margin: float | None) -> float:
    return _num("margin", MARGIN if margin is None else margin)


def _g(x: float) -> str:
    return f"{x:g}"


def heartbeat_failover(heartbeat_interval: float, unhealthy_interval: float,
                       gateway_ping_timeout: float, margin: float | None = None) -> Bound:
    """Promotion bound when the primary coreapp is dead (killed, stopped, or cut from
    everything): ``max(u + h, F + K + 0.5) + margin``.

    Detection takes up to u (unhealthy) + h (one heartbeat period). The dead primary's last
    confirm was at or before the fault, so its fence ends at most F + K + 0.5 after the fault;
    whenever u >= h + K + 0.5 (defaults: 30 >= 15.5) that is already past when the promotion
    happens, and the bound is simply u + h + margin.
    """
    h = _num("heartbeat_interval", heartbeat_interval)
    u = _num("unhealthy_interval", unhealthy_interval)
    k = _num("gateway_ping_timeout", gateway_ping_timeout)
    m = _margin(margin)
    f = _g(FENCE_SLACK)
    detect, fence = u + h, 2 * h + k + FENCE_SLACK
    if detect >= fence:
        formula = (f"u + h + margin = {_g(u)} + {_g(h)} + {_g(m)} (fence F + K + {f} = "
                   f"{_g(fence)} ends before detection)")
    else:
        formula = (f"F + K + {f} + margin = 2*{_g(h)} + {_g(k)} + {f} + {_g(m)} (the fence "
                   f"outlasts detection u + h = {_g(detect)})")
    return Bound(max(detect, fence) + m, formula)


def partition_failover(heartbeat_interval: float, unhealthy_interval: float,
                       gateway_ping_timeout: float, margin: float | None = None) -> Bound:
    """Promotion bound when the old primary is alive but cut from the masters: it keeps
    confirming its ownership until the promotion, so its validity runs up to F past the
    promotion and the new owner waits that plus K + 0.5: ``u + h + F + K + 0.5 + margin``
    with F = 2·h."""
    h = _num("heartbeat_interval", heartbeat_interval)
    u = _num("unhealthy_interval", unhealthy_interval)
    k = _num("gateway_ping_timeout", gateway_ping_timeout)
    m = _margin(margin)
    f = _g(FENCE_SLACK)
    value = u + h + 2 * h + k + FENCE_SLACK + m
    return Bound(value, f"u + h + F + K + {f} + margin = {_g(u)} + {_g(h)} + 2*{_g(h)} + "
                        f"{_g(k)} + {f} + {_g(m)}")


def chaos_settle(timing: Timing) -> float:
    """Seconds a chaos run waits for the cluster to be live again after healing everything:
    the partition failover bound (the slowest recovery any fault kind asks for) plus one lease
    TTL (a master may have to take the lease first) plus 10 s."""
    return float(partition_failover(timing.heartbeat_interval, timing.unhealthy_interval,
                                    timing.gateway_ping_timeout)) + timing.lease_ttl + 10


def db_failover(liveness_interval: float, stale_after: float,
                margin: float | None = None) -> Bound:
    """Promotion bound of the database-based detector: ``stale_after + liveness_interval +
    margin``. The last liveness write may land just before the fault, so the row turns stale
    ``stale_after`` later, and the primary master notices within one more check period
    (assumed to be at most ``liveness_interval``). Defaults 60 s / 120 s, scaled by
    ``WA_DB_MONITOR_SCALE``."""
    li = _num("liveness_interval", liveness_interval)
    st = _num("stale_after", stale_after)
    m = _margin(margin)
    return Bound(st + li + m, f"stale_after + liveness_interval + margin = {_g(st)} + "
                              f"{_g(li)} + {_g(m)}")


def lease_takeover(lease_ttl: float, margin: float | None = None) -> Bound:
    """Bound for a secondary master to take over the lease after the primary dies:
    ``T + T/3 + margin`` — the lease expires at most T after its last renewal, and the
    secondaries retry every T/3."""
    ttl = _num("lease_ttl", lease_ttl)
    m = _margin(margin)
    return Bound(ttl + ttl / 3 + m, f"T + T/3 + margin = {_g(ttl)} + {_g(ttl)}/3 + {_g(m)}")


def db_recovery(heartbeat_interval: float, db_timeout: float,
                margin: float | None = None) -> Bound:
    """Bound for service to return after a database outage ends: each coreapp's next
    ownership confirmation comes within h/2, after at most one failed reconnect attempt
    (``db_timeout``); then it reconnects to the gateway: ``h/2 + db_timeout + margin``."""
    h = _num("heartbeat_interval", heartbeat_interval)
    d = _num("db_timeout", db_timeout)
    m = _margin(margin)
    return Bound(h / 2 + d + m, f"h/2 + db_timeout + margin = {_g(h)}/2 + {_g(d)} + {_g(m)}")


def master_and_coreapp_failover(lease_ttl: float, liveness_interval: float, stale_after: float,
                                margin: float | None = None) -> Bound:
    """Promotion bound when the primary master and the primary coreapp die together and one
    master is left: only database-based detection applies, and only once a master holds the
    lease. The dead coreapp's row is stale ``stale_after`` after its last write, a secondary
    holds the lease within ``T + T/3``; from the later of the two, the new primary notices
    within one check period: ``max(T + T/3, stale_after) + liveness_interval + margin``."""
    ttl = _num("lease_ttl", lease_ttl)
    li = _num("liveness_interval", liveness_interval)
    st = _num("stale_after", stale_after)
    m = _margin(margin)
    return Bound(max(ttl + ttl / 3, st) + li + m,
                 f"max(T + T/3, stale_after) + liveness_interval + margin = max({_g(ttl)} + "
                 f"{_g(ttl)}/3, {_g(st)}) + {_g(li)} + {_g(m)}")


def gateway_reconnect(heartbeat_interval: float, gateway_ping_timeout: float,
                      connect_timeout: float = 2.0, margin: float | None = None) -> Bound:
    """Bound for the owner to deliver again after its gateway link heals: the ghost of its
    old connection is gone K + 0.5 after its last write (the gateway's keepalive, or
    toxiproxy closing blackholed connections at the heal), the owner's next attempt comes
    within one ownership tick (h/2) and may spend one connect timeout on an attempt that
    started just before the heal: ``K + 0.5 + h/2 + connect_timeout + margin``. Since issue
    19 an attempt sent during the fault is not given up on a timer: the heal ends it
    (toxiproxy closes what crossed the toxic) and the next one follows the ghost wait from
    the heal, (K + 0.5)/0.9 (fencing.md rule 5) — inside this bound while (K + 0.5)/0.9 ≤
    K + 0.5 + connect_timeout, i.e. K ≤ 17.5 s with the 2 s default (both presets)."""
    h = _num("heartbeat_interval", heartbeat_interval)
    k = _num("gateway_ping_timeout", gateway_ping_timeout)
    c = _num("connect_timeout", connect_timeout)
    m = _margin(margin)
    f = _g(FENCE_SLACK)
    return Bound(k + FENCE_SLACK + h / 2 + c + m,
                 f"K + {f} + h/2 + connect timeout + margin = {_g(k)} + {f} + {_g(h)}/2 + "
                 f"{_g(c)} + {_g(m)}")


def gateway_stall_recovery(heartbeat_interval: float, gateway_ping_timeout: float,
                           margin: float | None = None) -> Bound:
    """Bound for the owners to deliver again after the gateway resumes from a stall (paused;
    the ownership does not change), whatever its length. A connect sent during the stall is
    answered on resume: the coreapp keeps that one attempt (fencing.md rule 5). An owner whose
    ping failed meanwhile reconnects when its ghost wait ends, (K + 0.5)/0.9 after its last
    write (0.9: the clock-rate allowance, A1) — which came before the resume — on its next
    ownership tick (h/2): ``(K + 0.5)/0.9 + h/2 + margin``."""
    h = _num("heartbeat_interval", heartbeat_interval)
    k = _num("gateway_ping_timeout", gateway_ping_timeout)
    m = _margin(margin)
    f, r = _g(FENCE_SLACK), _g(RATE_SAFETY)
    return Bound((k + FENCE_SLACK) / RATE_SAFETY + h / 2 + m,
                 f"(K + {f})/{r} + h/2 + margin = ({_g(k)} + {f})/{r} + {_g(h)}/2 + {_g(m)}")
