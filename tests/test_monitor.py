"""Failure detection and promotion planning (multiconnect.core.monitor).

Model under test: a master calls a coreapp unhealthy once it has been silent towards that
master for ``unhealthy_interval`` (silence counted from the send time of the last answered
heartbeat, or from when the master first saw it); the primary master replaces a shard's owner
only on a two-sided heartbeat miss (its own view and ≥ 1 secondary's, with ≥ 2 live masters),
on database staleness strictly beyond ``stale_after``, or when the shard has no owner; a
replacement is a healthy, answering, fresh non-owner, each used at most once per plan.
"""

from __future__ import annotations

import itertools
import random

import pytest

from multiconnect.clock import FakeClock
from multiconnect.core.monitor import (
    ClusterView,
    CoreappState,
    DatabaseContact,
    HeartbeatTracker,
    NodeLiveness,
    Promotion,
    build_view,
    failure_reason,
    plan_promotions,
)

H = 5.0        # heartbeat_interval
U = 30.0       # unhealthy_interval
STALE = 120.0  # stale_after
EPS = 2.0 ** -10
START = 1000.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


def goto(clock: FakeClock, t: float) -> float:
    clock.advance(t - clock.now)
    assert clock.now == t
    return t


# -- HeartbeatTracker ----------------------------------------------------------------------------


def test_unknown_coreapp_is_not_silent_and_not_answering(clock):
    hb = HeartbeatTracker(started_at=clock.now)
    assert hb.silent_for("coreapp-1", clock.now) == 0
    assert not hb.unhealthy("coreapp-1", clock.now, U)
    assert not hb.answering("coreapp-1", clock.now, H), "never answered: not a candidate"


def test_silence_counts_from_first_sight_when_never_answered(clock):
    hb = HeartbeatTracker(started_at=clock.now)
    hb.seen("coreapp-1", clock.now)
    seen_at = clock.now
    goto(clock, seen_at + U - EPS)
    assert hb.silent_for("coreapp-1", clock.now) == U - EPS
    assert not hb.unhealthy("coreapp-1", clock.now, U)
    goto(clock, seen_at + U)
    assert hb.unhealthy("coreapp-1", clock.now, U), "exactly unhealthy_interval is unhealthy"


def test_seen_again_does_not_reset_the_silence(clock):
    hb = HeartbeatTracker(started_at=clock.now)
    hb.seen("coreapp-1", clock.now)
    clock.advance(20.0)
    hb.seen("coreapp-1", clock.now)
    assert hb.silent_for("coreapp-1", clock.now) == 20.0


def test_unhealthy_boundary_from_the_last_answer_send_time(clock):
    hb = HeartbeatTracker(started_at=clock.now)
    hb.seen("coreapp-1", clock.now)
    clock.advance(3.0)
    sent_at = clock.now
    clock.advance(2.0)  # the answer came back 2 s later: silence counts from the send
    hb.answered("coreapp-1", sent_at)
    assert hb.silent_for("coreapp-1", clock.now) == 2.0
    goto(clock, sent_at + U - EPS)
    assert not hb.unhealthy("coreapp-1", clock.now, U)
    goto(clock, sent_at + U)
    assert hb.unhealthy("coreapp-1", clock.now, U)
    goto(clock, sent_at + U + 100.0)
    assert hb.unhealthy("coreapp-1", clock.now, U)


def test_a_late_answer_to_an_old_heartbeat_never_moves_silence_back(clock):
    hb = HeartbeatTracker(started_at=clock.now)
    hb.answered("coreapp-1", START + 10.0)
    hb.answered("coreapp-1", START + 4.0)  # answer to an older heartbeat arrives last
    goto(clock, START + 10.0 + U - EPS)
    assert not hb.unhealthy("coreapp-1", clock.now, U)
    assert hb.silent_for("coreapp-1", clock.now) == U - EPS


def test_answering_means_one_of_the_last_two_heartbeats(clock):
    hb = HeartbeatTracker(started_at=clock.now)
    hb.answered("coreapp-1", clock.now)
    last = clock.now
    limit = 2 * H + 0.5
    goto(clock, last + limit)
    assert hb.answering("coreapp-1", clock.now, H)
    goto(clock, last + limit + EPS)
    assert not hb.answering("coreapp-1", clock.now, H)


def test_forget_except_drops_departed_coreapps(clock):
    hb = HeartbeatTracker(started_at=clock.now)
    for name in ("coreapp-1", "coreapp-2", "coreapp-3"):
        hb.seen(name, clock.now)
        hb.answered(name, clock.now)
    hb.forget_except(["coreapp-2"])
    assert set(hb.last_ok) == {"coreapp-2"} and set(hb.first_seen) == {"coreapp-2"}
    clock.advance(U)
    assert not hb.unhealthy("coreapp-1", clock.now, U), "forgotten: starts over"
    assert hb.unhealthy("coreapp-2", clock.now, U)


# -- failure_reason ------------------------------------------------------------------------------


def st(name: str, *, age: float = 1.0, unhealthy_here: bool = False,
       answering_here: bool = True, elsewhere: int = 0) -> CoreappState:
    return CoreappState(name=name, liveness_age=age, unhealthy_here=unhealthy_here,
                        answering_here=answering_here, unhealthy_elsewhere=elsewhere)


def view(shards: dict[int, str | None], coreapps: list[CoreappState], masters: int = 2,
         stale_after: float = STALE) -> ClusterView:
    return ClusterView(shards=shards, coreapps={c.name: c for c in coreapps},
                       live_masters=masters, stale_after=stale_after)


def test_healthy_owner_is_kept():
    v = view({0: "c1"}, [st("c1"), st("c2")])
    assert failure_reason("c1", v) is None


def test_miss_seen_by_the_primary_master_only_never_promotes():
    v = view({0: "c1"}, [st("c1", unhealthy_here=True, answering_here=False), st("c2")],
             masters=3)
    assert failure_reason("c1", v) is None
    assert plan_promotions(v) == []


def test_miss_seen_by_secondary_masters_only_never_promotes():
    v = view({0: "c1"}, [st("c1", elsewhere=2), st("c2")], masters=3)
    assert failure_reason("c1", v) is None
    assert plan_promotions(v) == []


@pytest.mark.parametrize("elsewhere", [1, 2])
def test_miss_seen_by_both_sides_promotes(elsewhere):
    v = view({0: "c1"}, [st("c1", unhealthy_here=True, elsewhere=elsewhere), st("c2")])
    reason = failure_reason("c1", v)
    assert reason is not None and "c1" in reason and "heartbeat" in reason
    assert plan_promotions(v) == [Promotion(0, "c1", "c2", reason)]


@pytest.mark.parametrize("masters", [0, 1])
def test_single_live_master_ignores_heartbeat_misses(masters):
    v = view({0: "c1"}, [st("c1", unhealthy_here=True, elsewhere=3), st("c2")],
             masters=masters)
    assert failure_reason("c1", v) is None
    assert plan_promotions(v) == []


@pytest.mark.parametrize("masters", [1, 2, 3])
def test_database_staleness_promotes_strictly_beyond_stale_after(masters):
    at = view({0: "c1"}, [st("c1", age=STALE), st("c2")], masters=masters)
    assert failure_reason("c1", at) is None, "exactly stale_after is not yet stale"
    beyond = view({0: "c1"}, [st("c1", age=STALE + EPS), st("c2")], masters=masters)
    reason = failure_reason("c1", beyond)
    assert reason is not None and "liveness" in reason
    assert plan_promotions(beyond) == [Promotion(0, "c1", "c2", reason)]


def test_staleness_counts_only_while_the_master_reached_the_database():
    # after an outage every row is old, but nobody could write it: not yet stale
    back = ClusterView({0: "c1"}, {"c1": st("c1", age=STALE * 3), "c2": st("c2")}, 1, STALE,
                       db_reachable_for=STALE)
    assert failure_reason("c1", back) is None
    assert plan_promotions(back) == []
    later = ClusterView({0: "c1"}, {"c1": st("c1", age=STALE * 3), "c2": st("c2")}, 1, STALE,
                        db_reachable_for=STALE + EPS)
    assert failure_reason("c1", later) is not None, "stale_after of contact later it is stale"
    assert [p.new for p in plan_promotions(later)] == ["c2"]


def test_database_contact_restarts_at_the_first_success_after_a_failure():
    c = DatabaseContact()
    assert c.reachable_for(5.0) == 0.0, "never reached: no evidence yet"
    c.ok(10.0)
    c.ok(11.0)
    assert c.reachable_for(16.0) == 6.0, "the run of successes started at 10"
    c.failed()
    assert c.reachable_for(17.0) == 0.0
    c.ok(20.0)
    assert c.reachable_for(21.5) == 1.5


def test_build_view_carries_the_database_contact():
    tr = HeartbeatTracker(started_at=0.0)
    v = build_view(shards={0: "c1"}, nodes=[NodeLiveness("c1", "coreapp", STALE * 2)],
                   reports={}, tracker=tr, now=1.0, heartbeat_interval=1.0,
                   unhealthy_interval=3.0, stale_after=STALE, db_reachable_for=2.0)
    assert v.db_reachable_for == 2.0
    assert failure_reason("c1", v) is None


def test_unassigned_shard_gets_an_owner():
    v = view({0: None}, [st("c1")], masters=1)
    reason = failure_reason(None, v)
    assert reason is not None
    assert plan_promotions(v) == [Promotion(0, None, "c1", reason)]


def test_unregistered_owner_is_replaced():
    v = view({0: "ghost"}, [st("c1")])
    assert failure_reason("ghost", v) is not None
    assert [p.new for p in plan_promotions(v)] == ["c1"]


# -- plan_promotions: candidate rules ------------------------------------------------------------


def test_no_candidate_no_promotion():
    v = view({0: None, 1: "c1"}, [st("c1", age=STALE * 2)])
    assert plan_promotions(v) == []


@pytest.mark.parametrize(
    "bad",
    [
        st("c9", age=STALE + EPS),                        # stale in the database
        st("c9", unhealthy_here=True),                    # unhealthy in our view
        st("c9", answering_here=False),                   # not answering us
        st("c9", unhealthy_here=True, answering_here=False),
    ],
    ids=["stale", "unhealthy", "not-answering", "silent"],
)
def test_never_picks_a_bad_candidate(bad):
    v = view({0: None}, [bad])
    assert plan_promotions(v) == []
    ok = st("c8")
    v2 = view({0: None}, [bad, ok])
    assert [p.new for p in plan_promotions(v2)] == ["c8"]


def test_fresh_candidate_at_exactly_stale_after_is_acceptable():
    v = view({0: None}, [st("c1", age=STALE)])
    assert [p.new for p in plan_promotions(v)] == ["c1"]


def test_never_picks_an_owner_even_of_a_failing_shard():
    # c1 owns shard 0 (dead), c2 owns shard 1 (healthy): neither may take shard 0
    v = view({0: "c1", 1: "c2"}, [st("c1", age=STALE * 2), st("c2")])
    assert plan_promotions(v) == []
    v2 = view({0: "c1", 1: "c2"}, [st("c1", age=STALE * 2), st("c2"), st("c3")])
    assert [(p.shard, p.new) for p in plan_promotions(v2)] == [(0, "c3")]


def test_one_coreapp_never_gets_two_shards():
    v = view({0: None, 1: None, 2: None}, [st("c1"), st("c2")])
    plan = plan_promotions(v)
    assert len(plan) == 2
    assert len({p.new for p in plan}) == 2
    assert [p.shard for p in plan] == [0, 1]


def test_choice_is_deterministic_whatever_the_input_order():
    names = ["c3", "c1", "c4", "c2"]
    plans = set()
    for perm in itertools.permutations(names):
        shards = dict(reversed(list({0: None, 1: "gone", 2: None}.items())))
        v = view(shards, [st(n) for n in perm])
        plans.add(tuple(plan_promotions(v)))
    assert len(plans) == 1
    (plan,) = plans
    assert [(p.shard, p.new) for p in plan] == [(0, "c1"), (1, "c2"), (2, "c3")]


@pytest.mark.parametrize("seed", range(40))
def test_random_views_respect_every_planning_rule(seed):
    rng = random.Random(seed)
    names = [f"coreapp-{i}" for i in range(rng.randint(1, 8))]
    coreapps = [
        st(n, age=rng.choice([0.0, 60.0, STALE, STALE + EPS, 500.0]),
           unhealthy_here=rng.random() < 0.3, answering_here=rng.random() < 0.7,
           elsewhere=rng.choice([0, 0, 1, 2]))
        for n in names
    ]
    shards = {s: rng.choice(names + [None, "ghost"]) for s in range(rng.choice([1, 2, 4, 8]))}
    v = view(shards, coreapps, masters=rng.choice([1, 2, 3]))
    plan = plan_promotions(v)
    owners = {o for o in shards.values() if o is not None}
    news = [p.new for p in plan]
    assert len(news) == len(set(news)), "a coreapp got two shards"
    assert len({p.shard for p in plan}) == len(plan)
    for p in plan:
        c = v.coreapps[p.new]
        assert p.new not in owners
        assert c.liveness_age <= STALE and c.answering_here and not c.unhealthy_here
        assert p.old == shards[p.shard]
        assert p.reason == failure_reason(p.old, v) is not None
    failing = [s for s in sorted(shards) if failure_reason(shards[s], v) is not None]
    eligible = [c for c in coreapps if c.name not in owners and c.liveness_age <= STALE
                and c.answering_here and not c.unhealthy_here]
    assert [p.shard for p in plan] == failing[: len(eligible)]
    assert plan_promotions(v) == plan
