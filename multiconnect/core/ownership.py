"""A coreapp's ownership of its shard, sans-IO, and its self-fencing.

Model: the shard map row ``(shard, hostname, epoch, valid_until, fence_until)`` says who owns
a shard. The coreapp confirms ownership every ``confirm_period`` with a transaction that, if
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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum


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


Action = Confirm | Connect | Close | Ping


@dataclass
class OwnershipCore:
    node: str
    ttl: float
    confirm_period: float
    ping_period: float
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
    connect_not_before: float = -math.inf
    connect_backoff: float = 0.2
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
            actions.append(Confirm(self.ttl))
        if (
            self.valid(now)
            and self.gateway is Gateway.DOWN
            and now >= self.connect_not_before
            and self.shard is not None
            and self.epoch is not None
        ):
            self.gateway = Gateway.CONNECTING
            actions.append(Connect(self.shard, self.epoch))
        if self.gateway is Gateway.UP and self.valid(now) and now >= self.next_ping:
            self.next_ping = now + self.ping_period
            actions.append(Ping())
        return actions

    def next_deadline(self, now: float) -> float:
        """When ``tick`` should run next at the latest."""
        candidates = [math.inf if self.confirming else self.next_confirm]
        if self.gateway is Gateway.UP:
            candidates.append(self.next_ping)
        if self.gateway in (Gateway.UP, Gateway.CONNECTING):
            candidates.append(self.valid_until)
        elif self.gateway is Gateway.DOWN and self.valid(now):
            candidates.append(self.connect_not_before)
        return max(now, min(candidates + [now + 1.0]))

    # -- inputs --------------------------------------------------------------------------
    def confirmed(self, sent_at: float, now: float, row: OwnedRow | None) -> list[Action]:
        """Outcome of a confirmation transaction started at ``sent_at``."""
        self.confirming = False
        self.next_confirm = now + self.confirm_period
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

    def gateway_up(self, now: float, epoch: int) -> list[Action]:
        if self.gateway is not Gateway.CONNECTING or epoch != self.epoch or not self.valid(now):
            # ownership changed or lapsed while connecting: close at once
            self.gateway = Gateway.UP
            self.connected_epoch = epoch
            return [self._close("ownership changed while connecting")]
        self.gateway = Gateway.UP
        self.connected_epoch = epoch
        self.next_ping = now + self.ping_period
        return []

    def gateway_down(self, now: float, reason: str) -> list[Action]:
        """The connection ended or could not be opened; reconnect after a short backoff."""
        self.gateway = Gateway.DOWN
        self.connect_not_before = now + self.connect_backoff
        self.connected_epoch = None
        self.next_ping = math.inf
        self.log.append(f"gateway down: {reason}")
        return self.tick(now)

    def _close(self, reason: str) -> Close:
        self.gateway = Gateway.CLOSING
        self.log.append(f"closing gateway: {reason}")
        return Close(reason)
