"""The master lease, sans-IO.

Model: one row ``master_lease(holder, epoch, expires_at)``; expiry is judged by the
database's clock only. A master sends an acquire/renew attempt at local monotonic time
``sent_at``; if granted, the database set ``expires_at = db_now + ttl`` with
``db_now ≥`` the database time at ``sent_at``, so the master may act as primary until
``sent_at + safety·ttl`` on its own monotonic clock and never outlives the row (clock *rates*
are assumed to agree within ``1 - safety``). A paused master whose deadline passed is no longer
primary the moment it resumes. The epoch (fencing token) grows on every change of holder and
every re-acquisition after expiry; every primary-only write re-checks holder and epoch in the
same transaction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class LeaseRow:
    holder: str | None
    epoch: int
    live: bool  # expires_at > NOW(6), judged by the database


class LeaseDecision(Enum):
    BUSY = "busy"        # a live lease not ours (a released lease is not live: expiry = now)
    RENEW = "renew"      # we hold it with our epoch: extend, keep epoch
    ACQUIRE = "acquire"  # free, expired, or ours under an older epoch: take it, epoch + 1


def decide(row: LeaseRow, me: str, my_epoch: int | None) -> LeaseDecision:
    """What an attempt does with the locked lease row (pure; used inside the transaction)."""
    if row.live and row.holder != me:
        return LeaseDecision.BUSY
    if row.live and row.holder == me and my_epoch == row.epoch:
        return LeaseDecision.RENEW
    return LeaseDecision.ACQUIRE


def refused(row: LeaseRow, me: str, my_epoch: int | None
            ) -> tuple[LeaseDecision, str | None, int]:
    """What an attempt whose statements changed nothing reports, from the row as it is now:
    BUSY with its holder. The row may have changed between the statements (expired, or
    released); then ``decide`` would not say BUSY and the holder is reported only if the row
    is live — the attempt is retried at the next one."""
    if decide(row, me, my_epoch) is LeaseDecision.BUSY:
        return LeaseDecision.BUSY, row.holder, row.epoch
    return LeaseDecision.BUSY, row.holder if row.live else None, row.epoch


@dataclass
class LeaseCore:
    """One master's view of the lease. The shell runs attempts when ``due(now)``."""

    name: str
    ttl: float
    safety: float = 0.9
    epoch: int | None = None
    valid_until: float = -math.inf
    next_attempt: float = -math.inf
    in_flight: bool = False
    attempt_began: float = -math.inf  # when the attempt in flight was sent
    holder_seen: str | None = None

    @property
    def renew_period(self) -> float:
        return self.ttl / 3.0

    def is_primary(self, now: float) -> bool:
        return self.epoch is not None and now < self.valid_until

    def due(self, now: float) -> bool:
        return not self.in_flight and now >= self.next_attempt

    def begin(self, now: float) -> int | None:
        """Start an attempt; returns the epoch we believe we hold (for ``decide``)."""
        self.in_flight = True
        self.attempt_began = now
        return self.epoch if self.is_primary(now) else None

    def granted(self, sent_at: float, now: float, epoch: int) -> None:
        self.in_flight = False
        self.epoch = epoch
        self.holder_seen = self.name
        self.valid_until = sent_at + self.safety * self.ttl
        self.next_attempt = now + self.renew_period

    def busy(self, now: float, holder: str | None) -> None:
        self.in_flight = False
        self.epoch = None
        self.valid_until = -math.inf
        self.holder_seen = holder
        # a secondary retries often enough to take over soon after expiry
        self.next_attempt = now + self.renew_period

    def failed(self, now: float) -> None:
        """The attempt did not reach a verdict (database error or timeout).

        Keep whatever validity we had: it was computed from a past send time and still
        bounds us; retry sooner.
        """
        self.in_flight = False
        self.next_attempt = now + min(self.renew_period, 1.0) / 2.0

    def lost(self) -> None:
        """A fenced write found the lease gone: stop acting as primary at once."""
        self.epoch = None
        self.valid_until = -math.inf
