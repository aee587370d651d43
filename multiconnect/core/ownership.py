"""A coreapp's ownership of its shard, sans-IO, and its self-fencing.

Model: the shard map row ``(shard, hostname, epoch, valid_until, fence_until)`` says who owns
a shard. The coreapp confirms ownership every ``confirm_period`` (counted from the previous
confirmation's send, so a slow answer is followed at once) with a transaction that, if
the row is still ours and not fenced, sets ``valid_until = db_now + ttl``. Locally it may act
(keep its gateway connection, ping, send) until ``sent_at + ttl`` on its monotonic clock,
times ``rate_safety`` (0.9), which ends no later than the row's ``valid_until`` even if this
node's clock runs 10 % slow against the database's. When that passes without a fresh
confirmation, or a confirmation shows the row is no longer ours, it closes its gateway
connection itself (self-fencing) and sends nothing until a new confirmation. A new owner
connects only after a confirmation at database time ≥ ``fence_until``, which promotion sets to
``old valid_until + gateway keepalive + margin``: by then the old owner has closed its
connection, or — if it was paused or cut off — the gateway has dropped it for missing pings
(it pings only while valid). See docs/fencing.md.

One connect attempt, ended only by what the gateway or the network says. A ``Connect`` is
one attempt (``connect_pending``): the shell opens a TCP connection — giving up after
``connect_timeout`` is safe, nothing is written yet — and writes the connect line. From then
on the gateway may register it at any later time: a paused or stalled gateway still accepts
and queues, and handles its queue when it resumes, in no order across connections (a
connect given up and closed can still be registered, and the next one kicks it: issue 19,
docs/simulator.md finding 8). So there is no timer on the answer: the shell waits, the core
stays CONNECTING (health "connecting") and issues no other Connect for as long as the
ownership is valid. The attempt ends with:

- ``connected``, however late → ``gateway_up`` (UP, or Close if the ownership changed);
- a definite refusal — connection refused or not established in ``connect_timeout``, the
  gateway's own ``error``/``timeout`` answer → ``gateway_down(gateway_ended=True)``: nothing
  of it is left there, reconnect after the short backoff (failover is not lengthened);
- an end without an answer — EOF or reset (from the link or a proxy: the connect may still
  be queued at the gateway), or the kernel giving up on a peer that acknowledged nothing for
  ``dead_peer_after`` (TCP keepalive and user timeout: a dead host or path; a paused
  gateway's kernel still acknowledges) → ``gateway_down``: the ghost wait below, counted
  from this end;
- a Close (self-fence, shard lost or reassigned) while it waits is applied when it ends:
  the shell keeps the attempt until then (closing it would not take a queued connect back,
  and our next attempt could queue behind it), closes what opens, and the ghost wait
  follows.

However long the gateway stalls, one coreapp thus never has two attempts queued there,
except after an end without an answer or a restart (the new process knows nothing of the old
one's attempt): the ghost wait then assumes, like every other, that the gateway handles what
we wrote within the margin (fencing.md A3, which a stall longer than that breaks).

Reconnecting over a ghost. The gateway forgets a connection only when it ends it itself
(kick, keepalive timeout, or the close reaching it). A connection that ended on our side for
any other reason — our own close, a failed ping, a connect that ended without an answer —
may still be registered there: in a real network a blackhole eats the FIN as well as the
data. A new connect for that shard would then kick our own ghost (a conflict). So after such
an end the core does not connect to *that shard* again before ``last write + (K +
ghost_margin) / rate_safety`` on its own clock: by then the gateway's keepalive (K since the
last traffic it received, the write's transit being within the margin, A3) has dropped the
ghost, even if this clock runs 10 % fast (A1). Ends the gateway made itself
(``GATEWAY_ENDED``: kicked, timeout, EOF from its side) and refused connects leave no ghost.
A coreapp that never wrote on a shard's connection (a new owner) is not delayed, so failover
bounds are unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Union

#: m, the fence margin (docs/fencing.md), in seconds: a promotion fences the new owner until
#: the old owner's ``valid_until`` + K (gateway keepalive) + m, and a coreapp waits
#: (K + m) / ``rate_safety`` after its last write before it reconnects over a possible ghost
#: (``OwnershipCore.ghost_margin``). It covers the transit of a last write to the gateway
#: (A3) and scheduling slack. Defined once: the master role, the simulator and the harness's
#: bounds import it.
FENCE_MARGIN = 0.5


class Gateway(Enum):
    DOWN = "down"
    CONNECTING = "connecting"
    UP = "up"
    CLOSING = "closing"


@dataclass(frozen=True)
class OwnedRow:
    """Result of a confirmation: the shard map row naming us, if any."""

    shard: int
    epoch: int
    fenced: bool  # fence_until > db now: owned, but not yet allowed to connect


@dataclass(frozen=True)
class Confirm:
    ttl: float  # the TTL this confirmation asks the database to record


@dataclass(frozen=True)
class Connect:
    shard: int
    epoch: int


@dataclass(frozen=True)
class Close:
    reason: str


@dataclass(frozen=True)
class Ping:
    pass


# Union, not ``|``: the simulator also runs under Debian's pypy3 (Python 3.9)
Action = Union[Confirm, Connect, Close, Ping]  # noqa: UP007

# close reasons of a gateway connection (``GatewayConnection.close_reason``) that mean the
# gateway itself ended it, so it holds no ghost of it
GATEWAY_ENDED = frozenset({"kicked", "timeout", "eof"})


@dataclass
class OwnershipCore:
    node: str
    ttl: float
    confirm_period: float
    ping_period: float
    keepalive: float  # K: the gateway drops a connection it has heard nothing on for K
    rate_safety: float = 0.9  # clock rates may differ by 10 % (fencing.md, A1)
    shard: int | None = None
    epoch: int | None = None
    valid_until: float = -math.inf
    gateway: Gateway = Gateway.DOWN
    connected_epoch: int | None = None
    next_confirm: float = -math.inf
    next_ping: float = math.inf
    confirming: bool = False
    confirm_ttl: float = 0.0
    confirm_began: float = -math.inf  # when the confirmation in flight was issued
    connect_not_before: float = -math.inf
    connect_backoff: float = 0.2
    connect_timeout: float = 2.0  # opening the TCP connection; no timer once the line is out
    ghost_margin: float = FENCE_MARGIN  # transit of our last write (A3), scheduling slack
    conn_shard: int | None = None  # shard of the current (or last) connection attempt
    connect_pending: bool = False  # a Connect issued, not yet answered or ended (one at a time)
    last_write: float = -math.inf  # last write known on the current connection (local)
    ghost_until: dict[int, float] = field(default_factory=dict)  # shard -> no connect before
    log: list[str] = field(default_factory=list)

    # -- queries -----------------------------------------------------------------------
    def valid(self, now: float) -> bool:
        return self.shard is not None and now < self.valid_until

    def may_send(self, shard: int, now: float) -> bool:
        """Only a validly owned, connected shard may send; otherwise re-confirm first."""
        return (
            self.shard == shard
            and self.valid(now)
            and self.gateway is Gateway.UP
            and self.connected_epoch == self.epoch
        )

    def reconnect_at(self) -> float:
        """Earliest local time a connect for the current shard may start (backoff, ghost)."""
        ghost = -math.inf if self.shard is None else self.ghost_until.get(self.shard, -math.inf)
        return max(self.connect_not_before, ghost)

    @property
    def dead_peer_after(self) -> float:
        """2·K: the shells ask the kernel to end a gateway connection whose peer acknowledges
        nothing for this long (the only end of an unanswered attempt on a dead path; liveness
        only, it is an end without an answer)."""
        return 2.0 * self.keepalive

    def gateway_status(self) -> str:
        return {Gateway.UP: "connected", Gateway.CONNECTING: "connecting"}.get(
            self.gateway, "disconnected"
        )

    # -- time ----------------------------------------------------------------------------
    def tick(self, now: float) -> list[Action]:
        actions: list[Action] = []
        live_gateway = self.gateway in (Gateway.UP, Gateway.CONNECTING)
        if live_gateway and not self.valid(now):
            actions.append(self._close("ownership not confirmed in time (self-fence)"))
        if not self.confirming and now >= self.next_confirm:
            self.confirming = True
            self.confirm_ttl = self.ttl
            self.confirm_began = now
            # the database may execute this confirmation and its answer never come: from then
            # on its valid_until is (execution + ttl), which a TTL shortened by a settings
            # change puts before the deadline an earlier, longer confirmation gave us
            self.valid_until = min(self.valid_until, now + self.rate_safety * self.ttl)
            actions.append(Confirm(self.ttl))
        if (
            self.valid(now)
            and self.gateway is Gateway.DOWN
            and now >= self.connect_not_before
            and self.shard is not None
            and self.epoch is not None
            and now >= self.ghost_until.get(self.shard, -math.inf)
        ):
            self.gateway = Gateway.CONNECTING
            self.conn_shard = self.shard
            self.connect_pending = True
            self.last_write = now
            actions.append(Connect(self.shard, self.epoch))
        if self.gateway is Gateway.UP and self.valid(now) and now >= self.next_ping:
            self.next_ping = now + self.ping_period
            self.last_write = max(self.last_write, now)
            actions.append(Ping())
        return actions

    def next_deadline(self, now: float) -> float:
        """When ``tick`` should run next at the latest. With nothing due (a confirmation in
        flight, no connection to keep) that is one confirmation period away: every input
        (``confirmed``, ``gateway_up`` …) makes the shell re-plan at once, so no deadline
        is missed by sleeping longer; the bound only keeps the loop re-planning."""
        candidates = [math.inf if self.confirming else self.next_confirm]
        if self.gateway is Gateway.UP:
            candidates.append(self.next_ping)
        if self.gateway in (Gateway.UP, Gateway.CONNECTING):
            candidates.append(self.valid_until)
        elif self.gateway is Gateway.DOWN and self.valid(now):
            candidates.append(self.reconnect_at())
        return max(now, min(candidates + [now + self.confirm_period]))

    # -- inputs --------------------------------------------------------------------------
    def confirmed(self, sent_at: float, now: float, row: OwnedRow | None) -> list[Action]:
        """Outcome of a confirmation transaction started at ``sent_at``."""
        self.confirming = False
        # one period after the *send*: a slow answer must not push the next confirmation past
        # the validity it bought (answered 1.3 s late with F = 2 s, now + h/2 came after it)
        self.next_confirm = sent_at + self.confirm_period
        actions: list[Action] = []
        if row is None:
            if self.shard is not None:
                self.log.append(f"lost shard {self.shard} (epoch {self.epoch})")
            self.shard = self.epoch = None
            self.valid_until = -math.inf
            if self.gateway in (Gateway.UP, Gateway.CONNECTING):
                actions.append(self._close("shard no longer ours"))
            return actions
        if (row.shard, row.epoch) != (self.shard, self.epoch):
            if self.gateway in (Gateway.UP, Gateway.CONNECTING):
                actions.append(self._close(f"reassigned to shard {row.shard} epoch {row.epoch}"))
            self.log.append(f"assigned shard {row.shard} (epoch {row.epoch})")
            self.shard, self.epoch = row.shard, row.epoch
            self.valid_until = -math.inf
        if not row.fenced:
            # the TTL the database recorded; a TTL changed meanwhile can only shorten it
            self.valid_until = sent_at + self.rate_safety * min(self.confirm_ttl, self.ttl)
        return actions + self.tick(now)

    def confirm_failed(self, now: float) -> list[Action]:
        """The database did not answer: keep the old deadline, retry soon."""
        self.confirming = False
        self.next_confirm = now + min(self.confirm_period, 0.5)
        return self.tick(now)

    def wrote(self, now: float) -> None:
        """The shell wrote on the gateway connection (a ping, a send) at ``now``."""
        if now > self.last_write:
            self.last_write = now

    def gateway_up(self, now: float, epoch: int) -> list[Action]:
        """The gateway answered ``connected`` (however late: the attempt had no timer)."""
        self.connect_pending = False
        self.last_write = max(self.last_write, now)  # the connect went out before its reply
        if self.gateway is not Gateway.CONNECTING or epoch != self.epoch or not self.valid(now):
            # ownership changed or lapsed while connecting: close at once
            self.gateway = Gateway.UP
            self.connected_epoch = epoch
            return [self._close("ownership changed while connecting")]
        self.gateway = Gateway.UP
        self.connected_epoch = epoch
        self.next_ping = now + self.ping_period
        return []

    def gateway_down(self, now: float, reason: str, gateway_ended: bool = False) -> list[Action]:
        """The connection or the connect attempt ended; reconnect after a short backoff.

        ``reason`` in ``GATEWAY_ENDED`` (the gateway ended it itself) or ``gateway_ended``
        (the shell knows it: the connect was refused, or the gateway answered it with an
        error): nothing of it is left there. Otherwise the gateway may still hold it (a
        ghost): no new connect for its shard before the last write + the keepalive (module
        docstring). An attempt that ended without an answer counts as written now."""
        self.gateway = Gateway.DOWN
        self.connect_not_before = now + self.connect_backoff
        self.connected_epoch = None
        self.next_ping = math.inf
        note = ""
        if not (gateway_ended or reason in GATEWAY_ENDED) and self.conn_shard is not None:
            written = now if self.connect_pending else self.last_write
            until = written + (self.keepalive + self.ghost_margin) / self.rate_safety
            shard = self.conn_shard
            if until > max(now, self.ghost_until.get(shard, -math.inf)):
                self.ghost_until[shard] = until
                note = f"; no connect for shard {shard} for {until - now:.3f}s (ghost)"
        self.connect_pending = False
        self.log.append(f"gateway down: {reason}{note}")
        return self.tick(now)

    def _close(self, reason: str) -> Close:
        self.gateway = Gateway.CLOSING
        self.log.append(f"closing gateway: {reason}")
        return Close(reason)
