"""Checkers register by name; checks can be named as data."""

from __future__ import annotations

import inspect
from functools import partial

import pytest

import harness.judge.checkers as checkers
from harness.chaos.runner import SAFETY, SOAK, safety_checks
from harness.history import make
from harness.judge.checkers import CHECKERS, Result, checker, named_check


def test_every_checker_is_registered_under_the_name_it_reports():
    assert set(CHECKERS) == {
        "availability", "connections_kept", "db_record", "downtime", "exclusive_claims",
        "media", "no_duplicates", "no_lost_acks", "no_promotion", "no_steady_growth",
        "primary_masters", "promoted_live", "promotion", "recovery", "refused_not_delivered",
        "single_connected"}
    for name, fn in CHECKERS.items():
        assert fn.__name__ == name
        param = inspect.signature(fn).parameters.get("name")
        if param is not None:
            assert param.default == name
        assert getattr(checkers, name) is fn  # also importable from the package
    assert CHECKERS["no_steady_growth"](make([])).name == "no_steady_growth"  # no name param


def test_named_check_binds_parameters_and_validates_them():
    assert named_check("single_connected") is CHECKERS["single_connected"]
    bound = named_check("downtime", bound=5.0)
    assert isinstance(bound, partial) and bound.func is CHECKERS["downtime"]
    assert bound.keywords == {"bound": 5.0}
    assert isinstance(bound(make([])), Result)
    with pytest.raises(KeyError, match="no checker named 'meteor'; known: availability"):
        named_check("meteor")
    with pytest.raises(TypeError, match="downtime"):
        named_check("downtime", bund=5.0)


def test_a_second_checker_under_a_taken_name_is_refused():
    def downtime(events, *, name: str = "downtime") -> Result:
        raise AssertionError("never called")

    with pytest.raises(ValueError, match="two checkers named 'downtime'"):
        checker(downtime)
    assert CHECKERS["downtime"] is checkers.downtime


def test_chaos_safety_checks_are_named_as_data():
    assert [name for name, _ in SAFETY] == ["single_connected", "no_lost_acks",
                                            "no_duplicates", "primary_masters"]
    checks = safety_checks(soak=False)
    assert checks[0] is checkers.single_connected and checks[1] is checkers.no_lost_acks
    assert (checks[2].func, checks[2].keywords) == (checkers.no_duplicates,
                                                    {"allow": "indeterminate"})
    assert (checks[3].func, checks[3].keywords) == (checkers.primary_masters, {"last": 3})
    soak = safety_checks(soak=True)
    assert len(soak) == len(SAFETY) + len(SOAK) and soak[-1] is checkers.no_steady_growth
