"""A coreapp's shard ownership and self-fencing (multiconnect.core.ownership).

Model under test: a confirmation sent at ``sent_at`` that finds the row ours and unfenced
lets the coreapp act until ``sent_at + ttl``; it connects only while valid, pings every
``ping_period`` while connected and valid, closes its connection itself the instant validity
lapses (once), and never opens a new connection while an old one is still open.
"""

from __future__ import annotations

import math
import random

import pytest

from multiconnect.clock import FakeClock
from multiconnect.core.ownership import (
    GATEWAY_ENDED,
    Close,
    Confirm,
    Connect,
    Gateway,
    OwnedRow,
    OwnershipCore,
    Ping,
)

TTL = 10.0         # F = 2·h with h = 5
CONFIRM = 2.5      # h / 2
PING = 2.0         # K / 4 with a K of 8 (distinct from CONFIRM on purpose)
K = 8.0            # the gateway keepalive
BACKOFF = 0.25     # exact in binary; the default 0.2 is tested separately
EPS = 2.0 ** -10
START = 1000.0


def make_core(**kw) -> OwnershipCore:
    """Boundary tests use rate_safety 1 so deadlines are exact sums; the default (0.9, the
    clock-rate allowance) has its own test below."""
    params = {"node": "coreapp-1", "ttl": TTL, "confirm_period": CONFIRM,
              "ping_period": PING, "keepalive": K, "connect_backoff": BACKOFF, "rate_safety": 1.0}
    params.update(kw)
    return OwnershipCore(**params)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def core() -> OwnershipCore:
    return make_core()


def goto(clock: FakeClock, t: float) -> float:
    clock.advance(t - clock.now)
    assert clock.now == t
    return t


def of(actions: list, kind: type) -> list:
    return [a for a in actions if isinstance(a, kind)]


def connect(core: OwnershipCore, clock: FakeClock, shard: int = 0, epoch: int = 1) -> float:
    """Drive a fresh core to a connected gateway; returns the confirmation's send time."""
    assert of(core.tick(clock.now), Confirm)
    sent_at = clock.now
    clock.advance(0.25)
    assert core.confirmed(sent_at, clock.now, OwnedRow(shard, epoch, False)) == [
        Connect(shard, epoch)
    ]
    clock.advance(0.25)
    assert core.gateway_up(clock.now, epoch) == []
    assert core.may_send(shard, clock.now)
    return sent_at


# -- first steps ---------------------------------------------------------------------------------


def test_fresh_core_first_tick_confirms_and_nothing_else(core, clock):
    began = clock.now
    assert core.tick(clock.now) == [Confirm(core.ttl)]
    assert core.tick(clock.now) == [], "a confirmation is already in flight"
    clock.advance(100.0)
    assert core.confirming and core.confirm_began == began  # the status's confirm_attempt_for
    assert core.tick(clock.now) == [], "still in flight: no second confirmation"
    assert not core.valid(clock.now)
    assert not core.may_send(0, clock.now)
    assert core.gateway_status() == "disconnected"


def test_unfenced_confirmation_connects_at_once(core, clock):
    core.tick(clock.now)
    sent_at = clock.now
    clock.advance(0.5)
    actions = core.confirmed(sent_at, clock.now, OwnedRow(shard=3, epoch=8, fenced=False))
    assert actions == [Connect(3, 8)]
    assert core.gateway is Gateway.CONNECTING
    assert core.gateway_status() == "connecting"
    assert core.valid(clock.now)
    assert not core.may_send(3, clock.now), "not before the gateway says connected"


def test_gateway_up_allows_sending_on_that_shard_only(core, clock):
    connect(core, clock, shard=3, epoch=8)
    assert core.gateway_status() == "connected"
    assert core.may_send(3, clock.now)
    assert not core.may_send(0, clock.now)
    assert not core.may_send(4, clock.now)


def test_next_confirmation_exactly_one_period_after_the_send(core, clock):
    sent = connect(core, clock)
    goto(clock, sent + CONFIRM - EPS)
    assert not of(core.tick(clock.now), Confirm)
    goto(clock, sent + CONFIRM)
    assert of(core.tick(clock.now), Confirm) == [Confirm(core.ttl)]


def test_a_slow_confirmation_is_followed_at_once_and_never_lapses(clock):
    """Found by the failover suite: a confirmation answered 1.3 s late (F = 2 s, h/2 = 0.5 s)
    left 0.45 s of validity while the next one was due 0.5 s after the answer — the owner
    self-fenced right after connecting."""
    core = make_core(ttl=2.0, confirm_period=0.5, ping_period=0.5, keepalive=2.0,
                     rate_safety=0.9)
    assert of(core.tick(clock.now), Confirm)
    sent = clock.now
    goto(clock, sent + 1.3)
    actions = core.confirmed(sent, clock.now, OwnedRow(0, 1, False))
    assert of(actions, Connect) and of(actions, Confirm), "the next confirmation goes at once"
    again = clock.now
    goto(clock, again + 0.1)
    core.gateway_up(clock.now, 1)
    core.confirmed(again, clock.now, OwnedRow(0, 1, False))
    assert core.valid_until == again + 0.9 * 2.0
    assert core.may_send(0, clock.now)


# -- pings ---------------------------------------------------------------------------------------


def test_ping_cadence_while_connected_and_valid(clock):
    core = make_core(ttl=1000.0, confirm_period=500.0)  # keep confirmations out of the way
    connect(core, clock)
    up_at = clock.now
    for k in range(1, 6):
        goto(clock, up_at + k * PING - EPS)
        assert not of(core.tick(clock.now), Ping), f"ping {k} early"
        goto(clock, up_at + k * PING)
        assert of(core.tick(clock.now), Ping) == [Ping()], f"ping {k} missing"
        assert not of(core.tick(clock.now), Ping), "one ping per period"
        # the cadence is measured from the tick that pinged
        up_at = clock.now - k * PING


def test_no_ping_before_the_gateway_is_up(core, clock):
    core.tick(clock.now)
    core.confirmed(clock.now, clock.now, OwnedRow(0, 1, False))
    for _ in range(3):
        clock.advance(PING)
        assert not of(core.tick(clock.now), Ping)


# -- validity counts from the send time --------------------------------------------------------


def test_valid_until_is_send_time_plus_ttl_even_for_a_slow_confirmation(core, clock):
    core.tick(clock.now)
    sent_at = clock.now
    clock.advance(8.0)  # a slow transaction: answered 8 s after it was sent
    # the next confirmation was due one period after the send: it goes at once
    assert core.confirmed(sent_at, clock.now, OwnedRow(0, 1, False)) == [
        Confirm(TTL), Connect(0, 1)]
    assert core.valid_until == sent_at + TTL
    clock.advance(0.5)
    assert core.gateway_up(clock.now, 1) == []
    goto(clock, sent_at + TTL - EPS)
    assert core.may_send(0, clock.now)
    goto(clock, sent_at + TTL)
    assert not core.may_send(0, clock.now), "now + ttl would still allow sending here"
    assert of(core.tick(clock.now), Close)


def test_confirmation_answered_after_its_own_deadline_never_connects(core, clock):
    core.tick(clock.now)
    sent_at = clock.now
    goto(clock, sent_at + TTL)
    actions = core.confirmed(sent_at, clock.now, OwnedRow(0, 1, False))
    assert not of(actions, Connect)
    assert not core.valid(clock.now)
    clock.advance(1.0)
    assert not of(core.tick(clock.now), Connect)


def test_ttl_lowered_while_a_confirmation_is_in_flight_shortens_its_validity(core, clock):
    core.tick(clock.now)
    sent_at = clock.now
    core.ttl = 4.0  # heartbeat_interval lowered while the transaction ran
    clock.advance(0.5)
    core.confirmed(sent_at, clock.now, OwnedRow(0, 1, False))
    assert core.valid_until == sent_at + 4.0


def test_ttl_raised_while_a_confirmation_is_in_flight_does_not_lengthen_it(core, clock):
    assert core.tick(clock.now) == [Confirm(core.ttl)]
    sent_at = clock.now  # the database will record valid_until = db_now + TTL (10 s)
    core.ttl = 60.0      # PATCH heartbeat_interval 5 -> 30 applied by the settings loop
    clock.advance(0.5)
    core.confirmed(sent_at, clock.now, OwnedRow(0, 1, False))
    assert core.valid_until <= sent_at + TTL


def test_a_shorter_ttl_caps_the_deadline_when_its_confirmation_is_sent(core, clock):
    """Simulator finding 10: a confirmation with a TTL shortened by a settings change may be
    executed (valid_until = execution + new TTL) and its answer lost; the deadline an earlier,
    longer confirmation gave must not outlast it, so it is capped when the confirmation is
    sent — whatever happens to the answer."""
    sent_at = connect(core, clock)
    assert core.valid_until == sent_at + TTL
    goto(clock, sent_at + CONFIRM)
    core.ttl = 2.0  # PATCH heartbeat_interval 5 -> 1 applied by the settings loop
    assert of(core.tick(clock.now), Confirm) == [Confirm(2.0)]
    assert core.valid_until == clock.now + 2.0 < sent_at + TTL
    clock.advance(0.5)
    core.confirm_failed(clock.now)  # the database may have executed it: keep the cap
    assert core.valid_until == sent_at + CONFIRM + 2.0
    goto(clock, sent_at + CONFIRM + 2.0)
    assert of(core.tick(clock.now), Close), "self-fence at the capped deadline"


def test_an_unchanged_ttl_never_moves_the_deadline_when_a_confirmation_is_sent(core, clock):
    sent_at = connect(core, clock)
    goto(clock, sent_at + CONFIRM)
    assert of(core.tick(clock.now), Confirm)
    assert core.valid_until == sent_at + TTL  # now + TTL is later: the cap changes nothing


# -- self-fencing --------------------------------------------------------------------------------


def test_self_fence_exactly_at_valid_until_and_only_once(core, clock):
    sent_at = connect(core, clock)
    deadline = sent_at + TTL
    closes: list[Close] = []
    t = clock.now
    while t < deadline - EPS:  # the next confirmation hangs (database unreachable)
        t = min(core.next_deadline(clock.now), deadline - EPS)
        t = max(t, clock.now + EPS)
        goto(clock, t)
        closes += of(core.tick(clock.now), Close)
        assert core.may_send(0, clock.now) == (clock.now < deadline)
    assert core.confirming
    assert closes == []
    goto(clock, deadline - EPS)
    assert core.may_send(0, clock.now)
    goto(clock, deadline)
    assert not core.may_send(0, clock.now), "may_send must end at the deadline, tick or not"
    actions = core.tick(clock.now)
    assert len(of(actions, Close)) == 1
    assert not of(actions, Ping) and not of(actions, Connect)
    assert core.gateway_status() == "disconnected"
    for _ in range(20):
        clock.advance(0.5)
        later = core.tick(clock.now)
        assert not of(later, Close), "Close must be emitted once"
        assert not of(later, Ping) and not of(later, Connect)
        assert not core.may_send(0, clock.now)


def test_confirm_failed_keeps_validity_until_the_old_deadline_then_self_fences(core, clock):
    sent_at = connect(core, clock)
    deadline = sent_at + TTL
    failures = 0
    closes = 0
    while clock.now < deadline + 3.0:
        clock.advance(0.125)
        actions = core.tick(clock.now)
        closes += len(of(actions, Close))
        if of(actions, Confirm):
            clock.advance(0.125)
            after = core.confirm_failed(clock.now)
            failures += 1
            closes += len(of(after, Close))
            retry = core.next_confirm - clock.now
            assert 0 < retry <= min(CONFIRM, 0.5)
        assert core.valid_until == deadline, "a failed confirmation never moves the deadline"
        assert core.may_send(0, clock.now) == (clock.now < deadline)
        if clock.now >= deadline:
            assert closes == 1
        else:
            assert closes == 0
    assert failures >= 5


def test_successful_confirmation_slides_the_deadline(core, clock):
    connect(core, clock)
    for _ in range(10):
        goto(clock, core.next_confirm)
        assert of(core.tick(clock.now), Confirm)
        sent_at = clock.now
        clock.advance(0.5)
        actions = core.confirmed(sent_at, clock.now, OwnedRow(0, 1, False))
        assert not of(actions, Close) and not of(actions, Connect)
        assert core.valid_until == sent_at + TTL
        assert core.may_send(0, clock.now)


# -- losing the row ------------------------------------------------------------------------------


def test_row_gone_closes_and_drops_the_shard(core, clock):
    connect(core, clock)
    goto(clock, core.next_confirm)
    core.tick(clock.now)
    sent_at = clock.now
    clock.advance(0.25)
    actions = core.confirmed(sent_at, clock.now, None)
    assert len(of(actions, Close)) == 1
    assert core.shard is None and core.epoch is None
    assert not core.valid(clock.now)
    assert not core.may_send(0, clock.now)
    clock.advance(0.25)
    assert not of(core.gateway_down(clock.now, "closed"), Connect)
    clock.advance(BACKOFF * 4)
    assert not of(core.tick(clock.now), Connect)
    assert any("lost shard 0" in line for line in core.log)


def test_row_gone_while_disconnected_closes_nothing(core, clock):
    core.tick(clock.now)
    core.confirmed(clock.now, clock.now, OwnedRow(0, 1, True))  # owned but fenced
    goto(clock, core.next_confirm)
    core.tick(clock.now)
    assert core.confirmed(clock.now, clock.now, None) == []
    assert core.shard is None


# -- reassignment --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "new_row",
    [OwnedRow(0, 2, False), OwnedRow(5, 2, False), OwnedRow(5, 1, False)],
    ids=["same-shard-new-epoch", "other-shard-new-epoch", "other-shard-same-epoch"],
)
def test_reassignment_closes_before_any_new_connect(core, clock, new_row):
    connect(core, clock, shard=0, epoch=1)
    goto(clock, core.next_confirm)
    assert of(core.tick(clock.now), Ping)  # the last write on the old connection
    sent_at = last_write = clock.now
    clock.advance(0.25)
    actions = core.confirmed(sent_at, clock.now, new_row)
    assert len(of(actions, Close)) == 1 and not of(actions, Connect)
    assert not core.may_send(0, clock.now)
    assert not core.may_send(new_row.shard, clock.now)
    # the old connection is still closing: ticks (and further confirmations) never connect
    for _ in range(6):
        clock.advance(0.5)
        acts = core.tick(clock.now)
        if of(acts, Confirm):
            acts += core.confirmed(clock.now, clock.now, new_row)
        assert not of(acts, Connect)
        assert not of(acts, Close), "one Close per connection"
    down_at = clock.now
    assert not of(core.gateway_down(down_at, "closed by us"), Connect)
    # our own close may leave a ghost of the shard-0 connection at the gateway: another
    # shard connects after the backoff, shard 0 again only once the keepalive dropped it
    reconnect = down_at + BACKOFF if new_row.shard != 0 else last_write + K + 0.5
    goto(clock, reconnect - EPS)
    assert not of(core.tick(clock.now), Connect)
    goto(clock, reconnect)
    assert of(core.tick(clock.now), Connect) == [Connect(new_row.shard, new_row.epoch)]


def test_reassignment_while_connecting_closes_the_late_old_connection(core, clock):
    core.tick(clock.now)
    assert core.confirmed(clock.now, clock.now, OwnedRow(0, 1, False)) == [Connect(0, 1)]
    goto(clock, core.next_confirm)
    core.tick(clock.now)
    actions = core.confirmed(clock.now, clock.now, OwnedRow(0, 2, False))
    assert len(of(actions, Close)) == 1 and not of(actions, Connect)
    clock.advance(0.25)
    up_at = clock.now
    late = core.gateway_up(up_at, 1)  # the epoch-1 connection completes anyway
    assert len(of(late, Close)) == 1
    assert not core.may_send(0, clock.now)
    clock.advance(0.25)
    down_at = clock.now
    assert not of(core.gateway_down(down_at, "closed"), Connect)
    goto(clock, down_at + BACKOFF)
    assert not of(core.tick(clock.now), Connect)  # its connect may linger at the gateway
    goto(clock, up_at + K + 0.5)
    assert of(core.tick(clock.now), Connect) == [Connect(0, 2)]


# -- fencing on promotion ------------------------------------------------------------------------


def test_fenced_row_never_connects_until_an_unfenced_confirmation(core, clock):
    core.tick(clock.now)
    assert core.confirmed(clock.now, clock.now, OwnedRow(2, 4, True)) == []
    assert core.shard == 2 and core.epoch == 4
    assert not core.valid(clock.now)
    for _ in range(5):  # fence_until has not passed yet at the database
        goto(clock, core.next_confirm - EPS)
        assert core.tick(clock.now) == []
        goto(clock, core.next_confirm)
        assert core.tick(clock.now) == [Confirm(core.ttl)]
        clock.advance(0.125)
        assert core.confirmed(clock.now - 0.125, clock.now, OwnedRow(2, 4, True)) == []
        assert not core.valid(clock.now)
    goto(clock, core.next_confirm)
    core.tick(clock.now)
    sent_at = clock.now
    assert core.confirmed(sent_at, clock.now, OwnedRow(2, 4, False)) == [Connect(2, 4)]
    assert core.valid_until == sent_at + TTL


def test_fenced_reassignment_while_connected_closes_and_waits_for_the_fence(core, clock):
    connect(core, clock, shard=0, epoch=1)
    goto(clock, core.next_confirm)
    core.tick(clock.now)
    actions = core.confirmed(clock.now, clock.now, OwnedRow(1, 2, True))
    assert len(of(actions, Close)) == 1
    clock.advance(0.125)
    core.gateway_down(clock.now, "closed")
    goto(clock, clock.now + 4 * BACKOFF)
    assert not of(core.tick(clock.now), Connect), "fenced: no connection yet"
    goto(clock, core.next_confirm)
    core.tick(clock.now)
    assert core.confirmed(clock.now, clock.now, OwnedRow(1, 2, False)) == [Connect(1, 2)]


# -- gateway events ------------------------------------------------------------------------------


def test_gateway_up_after_ownership_lapsed_closes(core, clock):
    core.tick(clock.now)
    sent_at = clock.now
    assert core.confirmed(sent_at, clock.now, OwnedRow(0, 1, False)) == [Connect(0, 1)]
    goto(clock, sent_at + TTL)  # the connect took the whole validity; no tick ran meanwhile
    actions = core.gateway_up(clock.now, 1)
    assert len(of(actions, Close)) == 1
    assert not core.may_send(0, clock.now)
    assert core.gateway_status() == "disconnected"


def test_gateway_up_for_another_epoch_closes(core, clock):
    core.tick(clock.now)
    core.confirmed(clock.now, clock.now, OwnedRow(0, 2, False))
    clock.advance(0.25)
    assert len(of(core.gateway_up(clock.now, 1), Close)) == 1
    assert not core.may_send(0, clock.now)


def test_gateway_down_reconnects_only_after_backoff(core, clock):
    connect(core, clock)
    clock.advance(0.125)
    down_at = clock.now
    actions = core.gateway_down(down_at, "kicked")
    assert not of(actions, Connect)
    assert not core.may_send(0, clock.now)
    assert core.gateway_status() == "disconnected"
    goto(clock, down_at + BACKOFF - EPS)
    assert not of(core.tick(clock.now), Connect)
    goto(clock, down_at + BACKOFF)
    assert of(core.tick(clock.now), Connect) == [Connect(0, 1)]


def test_default_backoff_is_positive_and_respected(clock):
    core = OwnershipCore(node="coreapp-1", ttl=TTL, confirm_period=CONFIRM, ping_period=PING,
                         keepalive=K)
    connect(core, clock)
    down_at = clock.now
    core.gateway_down(down_at, "timeout")
    assert core.connect_backoff > 0
    goto(clock, down_at + core.connect_backoff - EPS)
    assert not of(core.tick(clock.now), Connect)
    goto(clock, down_at + core.connect_backoff)
    assert of(core.tick(clock.now), Connect)


def test_gateway_down_after_validity_lapsed_waits_for_a_confirmation(core, clock):
    sent_at = connect(core, clock)
    goto(clock, sent_at + TTL)
    core.tick(clock.now)  # self-fence (confirmation hanging)
    core.gateway_down(clock.now, "closed")
    clock.advance(4 * BACKOFF)
    assert not of(core.tick(clock.now), Connect)
    confirm_sent = clock.now
    core.confirmed(confirm_sent, clock.now, OwnedRow(0, 1, False))  # the hung one returns
    assert core.gateway is Gateway.CONNECTING
    assert core.valid_until == confirm_sent + TTL


# -- the ghost wait (docs/simulator.md finding 5) ---------------------------------------------

GHOST = K + 0.5    # K + ghost_margin, at rate_safety 1


ROW = OwnedRow(0, 1, False)


def hold(core: OwnershipCore, clock: FakeClock, t: float, row: OwnedRow = ROW) -> float:
    """Advance to ``t`` answering every confirmation at once with ``row`` (ownership stays
    valid); no Connect on the way."""
    for _ in range(100):
        if core.confirming:  # one issued by an earlier tick
            assert not of(core.confirmed(clock.now, clock.now, row), Connect)
        if core.next_confirm >= t:
            return goto(clock, t)
        goto(clock, max(clock.now, core.next_confirm))
        assert not of(core.tick(clock.now), Connect)
    raise AssertionError("hold: no progress")


def ping_once(core: OwnershipCore, clock: FakeClock) -> float:
    """Advance to the next ping; returns its (write) time."""
    goto(clock, core.next_ping)
    acts = core.tick(clock.now)
    assert of(acts, Ping)
    return clock.now


@pytest.mark.parametrize("reason", ["closed", "error: ConnectionResetError()"])
def test_an_end_we_caused_waits_for_the_keepalive_from_the_last_write(core, clock, reason):
    """A failed ping / our own close: the gateway may still hold the connection (the FIN can
    be lost), so no connect for that shard before last write + K + margin."""
    connect(core, clock)
    last = ping_once(core, clock)
    clock.advance(PING / 2)  # the ping fails; the shell closes
    down_at = clock.now
    assert not of(core.gateway_down(down_at, reason), Connect)
    assert core.next_deadline(down_at) <= last + GHOST  # never sleeps past the wait
    hold(core, clock, last + GHOST - EPS)
    assert down_at + BACKOFF < clock.now
    assert not of(core.tick(clock.now), Connect)
    goto(clock, last + GHOST)
    assert of(core.tick(clock.now), Connect) == [Connect(0, 1)]


@pytest.mark.parametrize("reason", sorted(GATEWAY_ENDED))
def test_an_end_by_the_gateway_reconnects_after_the_backoff(core, clock, reason):
    connect(core, clock)
    ping_once(core, clock)
    down_at = clock.now + 0.125
    assert not of(core.gateway_down(goto(clock, down_at), reason), Connect)
    goto(clock, down_at + BACKOFF)
    assert of(core.tick(clock.now), Connect) == [Connect(0, 1)]
    assert reason in ("kicked", "timeout", "eof")


def test_a_send_after_the_last_ping_moves_the_wait(core, clock):
    connect(core, clock)
    ping_once(core, clock)
    sent = clock.advance(0.5)
    core.wrote(sent)  # the shell sends a message
    core.wrote(sent - 0.25)  # an older write reported late changes nothing
    down_at = clock.advance(0.25)
    core.gateway_down(down_at, "closed")
    hold(core, clock, sent + GHOST - EPS)
    assert not of(core.tick(clock.now), Connect)
    goto(clock, sent + GHOST)
    assert of(core.tick(clock.now), Connect)


def test_a_connect_that_did_not_complete_waits_from_its_end_unless_refused(core, clock):
    """A connect that ended without an answer (EOF or reset from the link) may have been
    registered at any time until then; a refused one wrote nothing."""
    core.tick(clock.now)
    assert core.confirmed(clock.now, clock.now, OwnedRow(0, 1, False)) == [Connect(0, 1)]
    failed_at = clock.advance(2.0)
    core.gateway_down(failed_at, "connect failed: closed before 'connected'")
    hold(core, clock, failed_at + GHOST - EPS)
    assert not of(core.tick(clock.now), Connect)
    goto(clock, failed_at + GHOST)
    assert of(core.tick(clock.now), Connect) == [Connect(0, 1)]
    refused_at = clock.advance(0.125)
    core.gateway_down(refused_at, "connect failed: refused", gateway_ended=True)
    goto(clock, refused_at + BACKOFF)
    assert of(core.tick(clock.now), Connect) == [Connect(0, 1)]


def test_the_ghost_wait_holds_for_that_shard_only_and_survives_other_connections(core, clock):
    """Reassigned to another shard, the core connects there at once (a new owner never wrote
    on that shard's connection: failover is not delayed); back on the first shard before its
    ghost is gone, it waits for it."""
    connect(core, clock, shard=0, epoch=1)
    last = ping_once(core, clock)
    core.tick(goto(clock, core.next_confirm))
    actions = core.confirmed(clock.now, clock.now, OwnedRow(5, 2, False))
    assert of(actions, Close)
    down_at = clock.advance(0.125)
    core.gateway_down(down_at, "closed")
    goto(clock, down_at + BACKOFF)
    assert of(core.tick(clock.now), Connect) == [Connect(5, 2)]
    core.gateway_up(clock.advance(0.125), 2)
    core.tick(goto(clock, core.next_confirm))
    assert of(core.confirmed(clock.now, clock.now, OwnedRow(0, 3, False)), Close)
    core.gateway_down(clock.advance(0.125), "kicked")  # shard 5's end leaves no ghost...
    assert core.gateway is Gateway.DOWN and clock.now < last + GHOST
    hold(core, clock, last + GHOST - EPS, OwnedRow(0, 3, False))  # ...shard 0's ghost counts
    assert not of(core.tick(clock.now), Connect)
    goto(clock, last + GHOST)
    assert of(core.tick(clock.now), Connect) == [Connect(0, 3)]


def test_the_ghost_wait_allows_for_a_clock_running_10_percent_fast(clock):
    core = make_core(rate_safety=0.9)
    connect(core, clock)
    last = ping_once(core, clock)
    core.gateway_down(clock.advance(1.0), "closed")
    wait = (K + 0.5) / 0.9
    hold(core, clock, last + wait - EPS)
    assert not of(core.tick(clock.now), Connect)
    goto(clock, last + wait)
    assert of(core.tick(clock.now), Connect)
    assert wait / 1.1 > K + 0.5 - 0.01  # ≥ K + margin of gateway time at rate 1.1


# -- an unanswered connect (issue 19) ----------------------------------------------------------
# A connect that is out may be registered by a stalled gateway at any later time: the attempt
# has no timer and ends only when the shell reports an answer or an end.


def start_attempt(core: OwnershipCore, clock: FakeClock) -> float:
    """A fresh core's first Connect; returns the confirmation's send time."""
    assert of(core.tick(clock.now), Confirm)
    sent = clock.now
    assert core.confirmed(sent, clock.now, ROW) == [Connect(0, 1)]
    assert core.connect_pending and core.gateway_status() == "connecting"
    return sent


def test_a_pending_connect_past_the_old_2s_timeout_is_still_the_one_attempt(core, clock):
    started = clock.now
    start_attempt(core, clock)
    hold(core, clock, started + 2.0)  # the pre-fix shell gave up here and connected again
    hold(core, clock, started + 3 * K)  # confirmations keep it valid: no Connect, no Close
    assert not of(core.tick(clock.now), Connect)
    assert core.valid(clock.now) and core.connect_pending
    assert core.gateway is Gateway.CONNECTING and core.gateway_status() == "connecting"
    assert core.next_deadline(clock.now) > clock.now  # nothing to do but wait


def test_a_late_answer_makes_it_up(core, clock):
    started = clock.now
    start_attempt(core, clock)
    hold(core, clock, started + 30.0)
    assert core.gateway_up(clock.now, 1) == []
    assert core.gateway is Gateway.UP and not core.connect_pending
    assert core.may_send(0, clock.now)
    assert of(core.tick(goto(clock, core.next_ping)), Ping)


@pytest.mark.parametrize("end", ["answered, then closed by us", "closed before 'connected'"])
def test_a_lapse_while_pending_closes_it_at_its_end_then_the_ghost_wait(core, clock, end):
    """The confirmation hangs and the ownership lapses while the connect waits: Close, once.
    The shell applies it when the attempt ends — it keeps the attempt, since closing it
    would not take a queued connect back — so even valid again the core starts no second
    attempt; after the end, none before the ghost wait counted from that end."""
    sent = start_attempt(core, clock)
    hold_confirm = core.next_confirm
    goto(clock, hold_confirm)
    assert of(core.tick(clock.now), Confirm)  # this one hangs
    goto(clock, sent + TTL - EPS)
    assert not of(core.tick(clock.now), Close)
    goto(clock, sent + TTL)
    assert of(core.tick(clock.now), Close) == [Close("ownership not confirmed in time "
                                                     "(self-fence)")]
    assert core.gateway is Gateway.CLOSING and core.connect_pending
    assert not of(core.confirmed(hold_confirm, clock.now, ROW), Connect)  # valid again
    assert core.valid(clock.now) and core.gateway is Gateway.CLOSING
    hold(core, clock, sent + TTL + 3 * K)
    assert not of(core.tick(clock.now), Connect) and core.gateway is Gateway.CLOSING
    ended = clock.now
    if end.startswith("answered"):  # the shell closes what opened; the close is reported
        assert not of(core.gateway_down(ended, "closed"), Connect)
    else:
        assert not of(core.gateway_down(ended, f"connect failed: {end}"), Connect)
    assert not core.connect_pending
    hold(core, clock, ended + GHOST - EPS)
    assert not of(core.tick(clock.now), Connect)
    goto(clock, ended + GHOST)
    assert of(core.tick(clock.now), Connect) == [Connect(0, 1)]


def test_a_refusal_long_after_the_connect_reconnects_after_the_short_backoff(core, clock):
    """Refused (connection refused, no connection in ``connect_timeout``, the gateway's own
    error answer): nothing of it is at the gateway, so failover is not lengthened."""
    started = start_attempt(core, clock)
    hold(core, clock, started + 5.0)
    refused = clock.now
    assert not of(core.gateway_down(refused, "connect failed: refused", gateway_ended=True),
                  Connect)
    goto(clock, refused + BACKOFF - EPS)
    assert not of(core.tick(clock.now), Connect)
    goto(clock, refused + BACKOFF)
    assert of(core.tick(clock.now), Connect) == [Connect(0, 1)]


def test_the_attempt_timers_the_shells_take_from_the_core():
    core = make_core()
    assert core.connect_timeout == 2.0  # the TCP connection only: nothing is written before
    assert core.dead_peer_after == 2 * K  # the kernel's end of a dead path (liveness)


# -- gateway_status ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected"),
    [(Gateway.DOWN, "disconnected"), (Gateway.CONNECTING, "connecting"),
     (Gateway.UP, "connected"), (Gateway.CLOSING, "disconnected")],
)
def test_gateway_status_strings(state, expected):
    core = make_core()
    core.gateway = state
    assert core.gateway_status() == expected


# -- next_deadline -------------------------------------------------------------------------------


def test_next_deadline_is_valid_until_when_nothing_else_comes_first(clock):
    core = make_core(ping_period=100.0)
    sent_at = connect(core, clock)
    goto(clock, core.next_confirm)
    assert of(core.tick(clock.now), Confirm)  # hangs
    # the shell may sleep until valid_until but no later (the confirm is in flight)
    assert core.next_deadline(clock.now) <= sent_at + TTL


def test_next_deadline_while_waiting_for_backoff(core, clock):
    connect(core, clock)
    down_at = clock.now
    core.gateway_down(down_at, "kicked")
    assert core.next_deadline(clock.now) == down_at + BACKOFF


def test_next_deadline_never_in_the_past(core, clock):
    sent_at = connect(core, clock)
    goto(clock, sent_at + 5 * TTL)  # the shell overslept
    assert core.next_deadline(clock.now) == clock.now


def test_next_deadline_is_in_the_future_while_a_confirmation_is_in_flight(core, clock):
    connect(core, clock)
    goto(clock, core.next_confirm)
    assert of(core.tick(clock.now), Confirm)
    clock.advance(0.125)
    assert core.tick(clock.now) == []  # nothing is due now...
    assert core.next_deadline(clock.now) > clock.now  # ...so the shell may sleep


def test_next_deadline_is_in_the_future_while_closing(core, clock):
    connect(core, clock)
    goto(clock, core.next_confirm)
    core.tick(clock.now)
    core.confirmed(clock.now, clock.now, OwnedRow(0, 2, False))  # reassigned: Close
    assert core.gateway is Gateway.CLOSING
    clock.advance(PING + 0.125)  # the close takes a while (slow link)
    assert core.tick(clock.now) == []
    assert core.next_deadline(clock.now) > clock.now


# -- random walk: invariants under any interleaving ----------------------------------------------


@pytest.mark.parametrize("seed", range(25))
def test_random_walk_keeps_the_safety_invariants(seed):
    """A seeded shell that sleeps until next_deadline, with a random database and gateway.

    Invariants: a Connect only when no connection exists and only for the last confirmed
    (shard, epoch) within ``sent_at + ttl`` of an unfenced confirmation of it; a Close only
    for an existing connection; Ping and may_send only while validly owned and up; the shell
    never leaves a connection open past the deadline; next_deadline is never in the past and
    never beyond valid_until while connected.
    """
    rng = random.Random(seed)
    core = make_core(connect_backoff=rng.choice([0.2, 0.25, 1.0]))
    t = START
    row: OwnedRow | None = OwnedRow(0, 1, rng.random() < 0.5)
    epoch_counter = 1
    known: OwnedRow | None = None                # the row the last confirmation returned
    unfenced_sent: dict[tuple[int, int], float] = {}
    conn: str | None = None                      # None | "connecting" | "open" | "closing"
    conn_epoch: int | None = None
    confirm_due: float | None = None             # when the in-flight confirmation returns
    confirm_sent = 0.0
    gw_due: float | None = None                  # when the gateway resolves connect/close
    next_chaos = t + rng.expovariate(0.3)
    stats = {"connect": 0, "close": 0, "ping": 0, "sends": 0}

    def apply(actions: list, now: float) -> None:
        nonlocal conn, conn_epoch, confirm_due, confirm_sent, gw_due
        for a in actions:
            if isinstance(a, Confirm):
                assert confirm_due is None, "two confirmations in flight"
                confirm_sent = now
                hang = rng.random() < 0.05  # database unreachable: no answer at all
                confirm_due = math.inf if hang else now + rng.choice([0.01, 0.3, 1.0, 4.0, 12.0])
            elif isinstance(a, Connect):
                stats["connect"] += 1
                assert conn is None, f"Connect while a connection is {conn}"
                # the row as last confirmed (the database may have moved on since: the
                # promoter's fence_until covers that window, not the core)
                assert known is not None and (a.shard, a.epoch) == (known.shard, known.epoch)
                assert (a.shard, a.epoch) in unfenced_sent
                assert now < unfenced_sent[(a.shard, a.epoch)] + TTL
                conn, conn_epoch = "connecting", a.epoch
                gw_due = now + rng.choice([0.01, 0.5, 3.0, 11.0])
            elif isinstance(a, Close):
                stats["close"] += 1
                assert conn in ("connecting", "open"), f"Close with connection {conn}"
                conn = "closing"
                gw_due = now + rng.choice([0.01, 0.5, 3.0])
            elif isinstance(a, Ping):
                stats["ping"] += 1
                assert conn == "open" and core.valid(now)

    for _ in range(8000):
        nd = core.next_deadline(t)
        assert nd >= t
        live = core.gateway in (Gateway.UP, Gateway.CONNECTING)
        if live and t < core.valid_until:
            assert nd <= core.valid_until
        if nd > t:
            wake = nd
        else:
            # nothing was due at the tick just run, yet next_deadline says "now" (see the
            # xfail tests above): poll instead of spinning, never past the deadline
            wake = t + 0.05
            if live and core.valid_until > t:
                wake = min(wake, core.valid_until)
        t = min([wake, next_chaos] + [x for x in (confirm_due, gw_due) if x is not None])
        if confirm_due is not None and t >= confirm_due:
            confirm_due = None
            if rng.random() < 0.15:
                apply(core.confirm_failed(t), t)
            else:
                known = row
                if row is not None and not row.fenced:
                    unfenced_sent[(row.shard, row.epoch)] = confirm_sent
                apply(core.confirmed(confirm_sent, t, row), t)
        elif gw_due is not None and t >= gw_due:
            gw_due = None
            if conn == "connecting" and rng.random() < 0.8:
                conn = "open"
                apply(core.gateway_up(t, conn_epoch), t)
            else:
                conn, conn_epoch = None, None
                apply(core.gateway_down(t, "closed"), t)
        elif t >= next_chaos:
            next_chaos = t + rng.expovariate(0.3)
            roll = rng.random()
            if roll < 0.2 and conn == "open":
                conn, conn_epoch, gw_due = None, None, None
                apply(core.gateway_down(t, "kicked"), t)
            elif roll < 0.35:
                epoch_counter += 1
                row = OwnedRow(rng.randrange(4), epoch_counter, rng.random() < 0.5)
            elif roll < 0.45 and row is not None:
                row = OwnedRow(row.shard, row.epoch, False)  # fence_until passed
            elif roll < 0.5:
                row = None
            elif roll < 0.6 and confirm_due == math.inf:
                confirm_due = t  # the hung transaction finally answers
        # the shell ticks whenever it wakes
        apply(core.tick(t), t)
        for shard in range(4):
            if core.may_send(shard, t):
                stats["sends"] += 1
                assert conn == "open" and known is not None and shard == known.shard
                assert not known.fenced and core.epoch == known.epoch == conn_epoch
                assert t < unfenced_sent[(shard, core.epoch)] + TTL
        if not core.valid(t):
            assert core.gateway not in (Gateway.UP, Gateway.CONNECTING)
    assert stats["connect"] > 0 and stats["ping"] > 0 and stats["sends"] > 0


def test_default_rate_safety_keeps_the_local_deadline_inside_the_rows_validity():
    """fencing.md A1: clocks may run 10 % apart, so by default a confirmation lets the
    coreapp act for 0.9 × TTL of its own clock, never the full TTL the database records."""
    core = OwnershipCore(node="coreapp-1", ttl=10.0, confirm_period=2.5, ping_period=2.0,
                         keepalive=8.0)
    assert core.rate_safety == 0.9
    core.tick(1000.0)
    core.confirmed(1000.0, 1000.1, OwnedRow(0, 1, False))
    assert core.valid_until == pytest.approx(1009.0)
    assert core.valid(1008.999) and not core.valid(1009.0)
