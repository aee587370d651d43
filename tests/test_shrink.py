"""harness.chaos.shrink: the smallest failing subset of a schedule's steps, within a budget."""

from __future__ import annotations

import itertools

from harness.chaos.shrink import shrink


def needs(*culprits: int):
    """A failure that happens iff every culprit step is kept; records each call."""
    calls: list[tuple[int, ...]] = []

    def fails(kept: tuple[int, ...]) -> bool:
        calls.append(kept)
        return set(culprits) <= set(kept)

    return fails, calls


def test_single_culprit_is_isolated():
    fails, calls = needs(6)
    r = shrink(range(10), fails)
    assert r.indices == (6,)
    assert r.complete
    assert () not in calls
    assert len(calls) == len(set(calls)), "no subset is tried twice"


def test_two_interacting_faults_are_both_kept():
    fails, _ = needs(1, 8)
    r = shrink(range(12), fails)
    assert r.indices == (1, 8)
    assert r.complete


def test_result_is_one_minimal_for_every_culprit_pair():
    for a, b in itertools.combinations(range(7), 2):
        fails, _ = needs(a, b)
        assert shrink(range(7), fails).indices == (a, b)


def test_prefix_cut_at_the_violation_is_tried_first():
    fails, calls = needs(2)
    starts = [0, 5, 10, 15, 20, 25]
    r = shrink(range(6), fails, starts=starts, violation_at=12.0)
    assert calls[0] == (0, 1, 2)
    assert r.indices == (2,)


def test_a_failure_that_does_not_reproduce_keeps_the_original():
    calls: list = []
    r = shrink(range(5), lambda kept: calls.append(kept) and False)
    assert r.indices == (0, 1, 2, 3, 4)
    assert r.complete and calls, "every candidate was tried and none failed"


def test_budget_stops_trials_and_marks_the_result_incomplete():
    now = [0.0]
    culprit, calls = needs(3)

    def fails(kept):  # each trial takes 30 s of the budget
        now[0] += 30.0
        return culprit(kept)

    r = shrink(range(8), fails, cost=lambda kept: 30.0, budget=100.0, clock=lambda: now[0])
    assert not r.complete
    assert len(calls) == 3, "a fourth 30 s trial would overrun 100 s"
    assert 3 in r.indices


def test_summary_names_the_steps_kept():
    fails, _ = needs(4)
    r = shrink(range(6), fails)
    assert "6 → 1 step(s)" in r.summary(6) and "[4]" in r.summary(6)
