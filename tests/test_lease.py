"""The master lease core (multiconnect.core.lease), stepped across each boundary.

Model under test: an attempt sent at monotonic ``sent_at`` and granted makes the master
primary on ``[sent_at, sent_at + 0.9·ttl)``; renewals keep the epoch, re-acquisitions bump it;
a busy verdict or ``lost()`` ends primaryship at once; a failed attempt keeps the validity it
had (it was computed from an earlier send) and retries sooner than a renewal would.
"""

from __future__ import annotations

import heapq
import random

import pytest

from multiconnect.clock import FakeClock
from multiconnect.core.lease import LeaseCore, LeaseDecision, LeaseRow, decide

TTL = 30.0           # renew every 10 s, primary for 27 s after the send
RENEW = TTL / 3.0    # 10.0
WINDOW = 0.9 * TTL   # 27.0
EPS = 2.0 ** -10     # exactly representable: t - EPS < t holds with no rounding doubt
START = 1000.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def core() -> LeaseCore:
    return LeaseCore(name="master-1", ttl=TTL)


def goto(clock: FakeClock, t: float) -> float:
    """Move the fake clock to the absolute time ``t`` (never backwards)."""
    clock.advance(t - clock.now)
    assert clock.now == t
    return t


def grant(core: LeaseCore, clock: FakeClock, epoch: int, latency: float = 0.0) -> float:
    """One successful attempt sent now and answered ``latency`` later; returns the send time."""
    sent_at = clock.now
    core.begin(sent_at)
    clock.advance(latency)
    core.granted(sent_at, clock.now, epoch)
    return sent_at


# -- decide: the verdict on the locked row --------------------------------------------------

ME, OTHER = "master-1", "master-2"


@pytest.mark.parametrize(
    ("live", "holder", "row_epoch", "my_epoch", "expected"),
    [
        # live row, held by me
        (True, ME, 4, 4, LeaseDecision.RENEW),
        (True, ME, 4, 3, LeaseDecision.ACQUIRE),     # I hold it under an older belief
        (True, ME, 4, 5, LeaseDecision.ACQUIRE),
        (True, ME, 4, None, LeaseDecision.ACQUIRE),  # e.g. resumed after a pause
        # live row, held by someone else: never touch it, whatever epoch I believe in
        (True, OTHER, 4, 4, LeaseDecision.BUSY),
        (True, OTHER, 4, 3, LeaseDecision.BUSY),
        (True, OTHER, 4, None, LeaseDecision.BUSY),
        # live row, no holder: treated conservatively as busy until it expires
        (True, None, 4, 4, LeaseDecision.BUSY),
        (True, None, 4, None, LeaseDecision.BUSY),
        # expired row: always a fresh acquisition (new epoch), never a renewal
        (False, ME, 4, 4, LeaseDecision.ACQUIRE),
        (False, ME, 4, 3, LeaseDecision.ACQUIRE),
        (False, ME, 4, None, LeaseDecision.ACQUIRE),
        (False, OTHER, 4, 4, LeaseDecision.ACQUIRE),
        (False, OTHER, 4, None, LeaseDecision.ACQUIRE),
        (False, None, 0, None, LeaseDecision.ACQUIRE),
        (False, None, 4, 4, LeaseDecision.ACQUIRE),
    ],
)
def test_decide_every_row_case(live, holder, row_epoch, my_epoch, expected):
    assert decide(LeaseRow(holder=holder, epoch=row_epoch, live=live), ME, my_epoch) is expected


def test_decide_renews_only_the_exact_live_row_we_hold():
    """RENEW (keep epoch) needs all three: live, holder is me, same epoch."""
    renewals = [
        (live, holder, my_epoch)
        for live in (True, False)
        for holder in (ME, OTHER, None)
        for my_epoch in (None, 6, 7, 8)
        if decide(LeaseRow(holder, 7, live), ME, my_epoch) is LeaseDecision.RENEW
    ]
    assert renewals == [(True, ME, 7)]


# -- a fresh core -------------------------------------------------------------------------------


def test_fresh_core_is_secondary_and_due(core, clock):
    assert not core.is_primary(clock.now)
    assert core.due(clock.now)
    assert core.begin(clock.now) is None
    assert not core.due(clock.now), "an attempt is in flight"
    assert core.renew_period == RENEW


# -- grant: the primary window ------------------------------------------------------------------


def test_grant_makes_primary_until_exactly_sent_at_plus_safety_ttl(core, clock):
    sent_at = grant(core, clock, epoch=1)
    deadline = sent_at + WINDOW
    assert core.is_primary(clock.now)
    assert core.epoch == 1
    goto(clock, deadline - EPS)
    assert core.is_primary(clock.now)
    goto(clock, deadline)
    assert not core.is_primary(clock.now), "primary AT the deadline"
    goto(clock, deadline + EPS)
    assert not core.is_primary(clock.now)


def test_primary_window_counts_from_the_send_not_the_answer(core, clock):
    """A slow grant shortens the window: validity is sent_at + 0.9·ttl, not now + 0.9·ttl."""
    sent_at = grant(core, clock, epoch=1, latency=20.0)
    assert clock.now == sent_at + 20.0
    goto(clock, sent_at + WINDOW - EPS)
    assert core.is_primary(clock.now)
    goto(clock, sent_at + WINDOW)
    assert not core.is_primary(clock.now)
    # now + window would still have been primary here
    assert clock.now < sent_at + 20.0 + WINDOW


def test_grant_arriving_after_its_window_never_makes_primary(core, clock):
    sent_at = grant(core, clock, epoch=1, latency=WINDOW)
    assert clock.now == sent_at + WINDOW
    assert not core.is_primary(clock.now)
    assert core.begin(clock.now) is None


def test_next_attempt_exactly_one_renew_period_after_the_answer(core, clock):
    grant(core, clock, epoch=1, latency=2.0)
    answered = clock.now
    assert not core.due(clock.now)
    goto(clock, answered + RENEW - EPS)
    assert not core.due(clock.now)
    goto(clock, answered + RENEW)
    assert core.due(clock.now)


def test_not_due_while_an_attempt_is_in_flight(core, clock):
    began = clock.now
    core.begin(clock.now)
    assert core.in_flight and core.attempt_began == began  # the status's lease_attempt_for
    goto(clock, START + 10 * TTL)
    assert not core.due(clock.now)
    core.failed(clock.now)
    assert not core.in_flight


# -- renew keeps the epoch ------------------------------------------------------------------


def test_renew_cycle_keeps_epoch_and_slides_the_window(core, clock):
    grant(core, clock, epoch=7)
    for _ in range(5):
        goto(clock, core.next_attempt)
        assert core.due(clock.now)
        sent_at = clock.now
        mine = core.begin(sent_at)
        assert mine == 7
        assert decide(LeaseRow(ME, 7, live=True), ME, mine) is LeaseDecision.RENEW
        clock.advance(0.5)
        core.granted(sent_at, clock.now, 7)
        assert core.epoch == 7
        assert core.valid_until == sent_at + WINDOW
        # continuously primary across the renewal
        assert core.is_primary(clock.now)


def test_reacquire_after_expiry_uses_the_new_epoch(core, clock):
    grant(core, clock, epoch=3)
    goto(clock, START + 5 * TTL)
    assert core.begin(clock.now) is None
    assert decide(LeaseRow(ME, 3, live=False), ME, None) is LeaseDecision.ACQUIRE
    core.granted(clock.now, clock.now, 4)
    assert core.epoch == 4
    assert core.begin(clock.now) == 4


# -- busy ----------------------------------------------------------------------------------------


def test_busy_is_secondary_and_retries_after_one_renew_period(core, clock):
    core.begin(clock.now)
    clock.advance(1.0)
    core.busy(clock.now, holder=OTHER)
    answered = clock.now
    assert not core.is_primary(clock.now)
    assert core.epoch is None
    assert core.holder_seen == OTHER
    goto(clock, answered + RENEW - EPS)
    assert not core.due(clock.now)
    goto(clock, answered + RENEW)
    assert core.due(clock.now)
    assert core.begin(clock.now) is None


def test_busy_while_primary_ends_primaryship_at_once(core, clock):
    sent_at = grant(core, clock, epoch=2)
    goto(clock, sent_at + RENEW)
    assert core.begin(clock.now) == 2
    core.busy(clock.now, holder=OTHER)
    assert not core.is_primary(clock.now)
    assert core.begin(clock.now) is None


# -- failed attempts ---------------------------------------------------------------------------


def test_failed_attempt_keeps_validity_until_the_old_deadline(core, clock):
    first = grant(core, clock, epoch=5)
    goto(clock, first + RENEW)
    assert core.begin(clock.now) == 5
    clock.advance(3.0)
    core.failed(clock.now)
    assert core.epoch == 5
    goto(clock, first + WINDOW - EPS)
    assert core.is_primary(clock.now)
    goto(clock, first + WINDOW)
    assert not core.is_primary(clock.now), "a failed attempt must never extend validity"


def test_failed_attempt_retries_sooner_than_a_renewal(core, clock):
    core.begin(clock.now)
    clock.advance(1.0)
    core.failed(clock.now)
    failed_at = clock.now
    retry = core.next_attempt - failed_at
    assert 0 < retry < RENEW
    goto(clock, failed_at + retry - EPS)
    assert not core.due(clock.now)
    goto(clock, failed_at + retry)
    assert core.due(clock.now)


@pytest.mark.parametrize("ttl", [0.3, 1.5, 3.0, 10.0, 60.0])
def test_failed_retry_delay_is_shorter_than_the_renew_period_for_any_ttl(ttl):
    core = LeaseCore(name=ME, ttl=ttl)
    core.begin(0.0)
    core.failed(0.0)
    assert 0 < core.next_attempt < core.renew_period


def test_failed_then_granted_renews_from_the_retry_send_time(core, clock):
    first = grant(core, clock, epoch=5)
    goto(clock, first + RENEW)
    core.begin(clock.now)
    core.failed(clock.now)
    goto(clock, core.next_attempt)
    retry_sent = clock.now
    assert core.begin(retry_sent) == 5
    clock.advance(0.25)
    core.granted(retry_sent, clock.now, 5)
    assert core.valid_until == retry_sent + WINDOW


# -- pauses ------------------------------------------------------------------------------------


def test_master_paused_past_its_deadline_is_not_primary_when_it_resumes(core, clock):
    sent_at = grant(core, clock, epoch=9)
    goto(clock, sent_at + 1.0)
    assert core.is_primary(clock.now)
    clock.advance(60.0)  # SIGSTOP / GC pause / VM freeze: no code ran
    assert not core.is_primary(clock.now)
    mine = core.begin(clock.now)
    assert mine is None
    # even if the database row still names us (it outlives our local window) we must not
    # renew under the old epoch: a re-acquisition bumps it and fences writes from before
    assert decide(LeaseRow(ME, 9, live=True), ME, mine) is LeaseDecision.ACQUIRE


def test_master_paused_inside_an_attempt_gets_the_window_of_the_send(core, clock):
    """The answer to an attempt sent before a pause cannot make the master primary late."""
    sent_at = clock.now
    core.begin(sent_at)
    clock.advance(WINDOW + 5.0)  # paused between the send and handling the answer
    core.granted(sent_at, clock.now, 1)
    assert not core.is_primary(clock.now)


# -- lost() and begin() ------------------------------------------------------------------------


def test_lost_stops_primaryship_immediately(core, clock):
    grant(core, clock, epoch=4)
    clock.advance(1.0)
    assert core.is_primary(clock.now)
    core.lost()
    assert not core.is_primary(clock.now)
    assert core.epoch is None
    assert core.begin(clock.now) is None


def test_begin_returns_the_epoch_only_while_primary(core, clock):
    sent_at = grant(core, clock, epoch=12)
    goto(clock, sent_at + WINDOW - EPS)
    assert core.begin(clock.now) == 12
    core.failed(clock.now)
    goto(clock, sent_at + WINDOW)
    assert core.begin(clock.now) is None


# -- two masters, one database row: never two primaries ---------------------------------------


class _LeaseTable:
    """The ``master_lease`` row, judged by the database clock (offset from ours)."""

    def __init__(self, ttl: float, db_offset: float) -> None:
        self.ttl = ttl
        self.db_offset = db_offset
        self.holder: str | None = None
        self.epoch = 0
        self.expires_at = -1.0

    def db_now(self, t: float) -> float:
        return t + self.db_offset

    def live(self, t: float) -> bool:
        return self.expires_at > self.db_now(t)

    def attempt(self, t: float, me: str, my_epoch: int | None) -> tuple[str, int | None]:
        verdict = decide(LeaseRow(self.holder, self.epoch, self.live(t)), me, my_epoch)
        if verdict is LeaseDecision.BUSY:
            return "busy", None
        if verdict is LeaseDecision.ACQUIRE:
            self.holder, self.epoch = me, self.epoch + 1
        self.expires_at = self.db_now(t) + self.ttl
        return "granted", self.epoch


@pytest.mark.parametrize("seed", range(12))
def test_two_masters_with_pauses_and_slow_links_are_never_both_primary(seed):
    """Seeded event simulation: random latency, lost requests/answers, pauses on both masters.

    Safety checked every 0.125 s: whoever believes it is primary holds the live row under the
    epoch it believes in; hence at most one primary at any instant.
    """
    rng = random.Random(seed)
    table = _LeaseTable(ttl=TTL, db_offset=rng.uniform(-500.0, 500.0))
    cores = {n: LeaseCore(name=n, ttl=TTL) for n in ("master-1", "master-2")}
    paused_until = dict.fromkeys(cores, 0.0)
    events: list[tuple[float, int, str, str, tuple]] = []
    seq = 0

    def push(t: float, kind: str, name: str, payload: tuple = ()) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, name, payload))

    horizon = 600.0
    for name in cores:
        push(0.0, "poll", name)
    for step in range(int(horizon * 8)):
        push(step / 8.0, "check", "")
    for _ in range(8):
        who = rng.choice(sorted(cores))
        push(rng.uniform(0.0, horizon), "pause", who, (rng.uniform(5.0, 80.0),))

    primaries_seen = 0
    handled = 0
    while events and handled < 100_000:
        handled += 1
        t, _, kind, name, payload = heapq.heappop(events)
        if t > horizon:
            break
        if kind == "check":
            primaries = [n for n, c in cores.items() if c.is_primary(t)]
            assert len(primaries) <= 1, f"two primaries at t={t}: {primaries}"
            for n in primaries:
                assert table.holder == n and table.epoch == cores[n].epoch and table.live(t)
            primaries_seen += bool(primaries)
            continue
        if kind == "pause":
            paused_until[name] = max(paused_until[name], t + payload[0])
            continue
        if kind != "tx" and t < paused_until[name]:
            # a paused master runs no code; the database still executes what it was sent
            push(paused_until[name], kind, name, payload)
            continue
        core = cores[name]
        if kind == "poll":
            if core.due(t):
                sent_at, mine = t, core.begin(t)
                push(t + rng.uniform(0.0, 3.0), "tx", name, (sent_at, mine))
            push(t + 0.25, "poll", name)
        elif kind == "tx":
            sent_at, mine = payload
            fate = rng.random()
            if fate < 0.1:  # never reached the database
                push(t + rng.uniform(0.0, 3.0), "reply", name, (sent_at, "failed", None))
                continue
            verdict, epoch = table.attempt(t, name, mine)
            if fate < 0.2:  # committed, but the answer was lost
                verdict, epoch = "failed", None
            push(t + rng.uniform(0.0, 3.0), "reply", name, (sent_at, verdict, epoch))
        elif kind == "reply":
            sent_at, verdict, epoch = payload
            if verdict == "granted":
                core.granted(sent_at, t, epoch)
            elif verdict == "busy":
                core.busy(t, table.holder)
            else:
                core.failed(t)
    assert handled < 100_000
    assert primaries_seen > horizon, "the simulation must actually elect primaries"
