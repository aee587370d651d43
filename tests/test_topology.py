"""The node-count rules shared by the Docker harness and the simulator (multiconnect.topology).

Model: masters 1–9, coreapps 1–40, webapps 1–9 (integers, bools refused), shards one of
``ALLOWED_SHARD_COUNTS``, coreapps ≥ shards; ``check_counts`` raises one ``TopologyError``
(a ``ValueError``) naming the first invalid field, its value and what is allowed.
``SimConfig.validate`` applies the same rules, and names the field of its own rules too.
"""

from __future__ import annotations

import pickle
from dataclasses import replace
from typing import Any

import pytest

from multiconnect import topology
from multiconnect.sharding import ALLOWED_SHARD_COUNTS
from multiconnect.sim import SimConfig
from multiconnect.sim.__main__ import main
from multiconnect.topology import TopologyError, check_counts

COUNTS = ("masters", "coreapps", "webapps", "shards")
BASE = {"masters": 2, "coreapps": 3, "webapps": 1, "shards": 2}

PASS = [
    {},                                                            # the simulator's default
    {"coreapps": 2, "shards": 1},                                  # the harness's default
    {"masters": 1, "coreapps": 1, "webapps": 1, "shards": 1},      # every lower bound
    {"masters": 9, "coreapps": 40, "webapps": 9, "shards": 32},    # every upper bound
    {"coreapps": 2, "shards": 2},                                  # coreapps == shards
    {"coreapps": 32, "shards": 32},
    *({"coreapps": n, "shards": n} for n in ALLOWED_SHARD_COUNTS),
]

# (changes to BASE, field, value, what the message says is allowed)
FAIL: list[tuple[dict[str, Any], str, Any, str]] = [
    ({"masters": 0}, "masters", 0, "an integer from 1 to 9"),
    ({"masters": 10}, "masters", 10, "an integer from 1 to 9"),
    ({"masters": -1}, "masters", -1, "an integer from 1 to 9"),
    ({"masters": True}, "masters", True, "an integer from 1 to 9"),
    ({"masters": 2.0}, "masters", 2.0, "an integer from 1 to 9"),
    ({"masters": "2"}, "masters", "2", "an integer from 1 to 9"),
    ({"masters": None}, "masters", None, "an integer from 1 to 9"),
    ({"coreapps": 0}, "coreapps", 0, "an integer from 1 to 40"),
    ({"coreapps": 41}, "coreapps", 41, "an integer from 1 to 40"),
    ({"coreapps": True, "shards": 1}, "coreapps", True, "an integer from 1 to 40"),
    ({"coreapps": 3.0}, "coreapps", 3.0, "an integer from 1 to 40"),
    ({"webapps": 0}, "webapps", 0, "an integer from 1 to 9"),
    ({"webapps": 10}, "webapps", 10, "an integer from 1 to 9"),
    ({"webapps": True}, "webapps", True, "an integer from 1 to 9"),
    ({"webapps": 1.0}, "webapps", 1.0, "an integer from 1 to 9"),
    ({"shards": 0}, "shards", 0, "one of 1, 2, 4, 8, 16, 32"),
    ({"shards": 3}, "shards", 3, "one of 1, 2, 4, 8, 16, 32"),
    ({"shards": 64, "coreapps": 40}, "shards", 64, "one of 1, 2, 4, 8, 16, 32"),
    ({"shards": True}, "shards", True, "one of 1, 2, 4, 8, 16, 32"),   # True == 1
    ({"shards": 2.0}, "shards", 2.0, "one of 1, 2, 4, 8, 16, 32"),     # 2.0 == 2
    ({"shards": "2"}, "shards", "2", "one of 1, 2, 4, 8, 16, 32"),
    ({"coreapps": 1, "shards": 2}, "coreapps", 1,
     "at least shards (2); for X failures run shards + X"),
    ({"coreapps": 3, "shards": 4}, "coreapps", 3,
     "at least shards (4); for X failures run shards + X"),
    ({"coreapps": 31, "shards": 32}, "coreapps", 31,
     "at least shards (32); for X failures run shards + X"),
]
FAIL_IDS = [f"{field}={value!r}-{'-'.join(f'{k}{v}' for k, v in kw.items())}"
            for kw, field, value, _ in FAIL]


def _counts(kw: dict[str, Any]) -> dict[str, Any]:
    return {**BASE, **kw}


# --------------------------------------------------------------------------- the error
def test_error_names_field_value_and_what_is_allowed() -> None:
    e = TopologyError("webapps", 0, "an integer from 1 to 9")
    assert isinstance(e, ValueError)
    assert (e.field, e.value, e.allowed) == ("webapps", 0, "an integer from 1 to 9")
    assert str(e) == "topology field 'webapps' = 0 is invalid: an integer from 1 to 9"
    assert TopologyError(field_name="x", value="y", allowed="z").field == "x"


def test_error_survives_pickling() -> None:
    """Worker processes (``--jobs``) hand exceptions back pickled."""
    e = pickle.loads(pickle.dumps(TopologyError("shards", 3, "one of 1, 2")))
    assert type(e) is TopologyError
    assert (e.field, e.value, e.allowed, str(e)) == (
        "shards", 3, "one of 1, 2", "topology field 'shards' = 3 is invalid: one of 1, 2")


def test_bounds_are_named_constants() -> None:
    assert (topology.MIN_MASTERS, topology.MAX_MASTERS) == (1, 9)
    assert (topology.MIN_COREAPPS, topology.MAX_COREAPPS) == (1, 40)
    assert (topology.MIN_WEBAPPS, topology.MAX_WEBAPPS) == (1, 9)


# --------------------------------------------------------------------------- check_counts
@pytest.mark.parametrize("kw", PASS)
def test_counts_within_the_rules_pass(kw: dict[str, Any]) -> None:
    assert check_counts(**_counts(kw)) is None
    c = _counts(kw)
    check_counts(c["masters"], c["coreapps"], c["webapps"], c["shards"])  # positional order


@pytest.mark.parametrize(("kw", "field", "value", "allowed"), FAIL, ids=FAIL_IDS)
def test_counts_outside_the_rules_name_the_field(kw: dict[str, Any], field: str, value: Any,
                                                 allowed: str) -> None:
    with pytest.raises(TopologyError) as info:
        check_counts(**_counts(kw))
    e = info.value
    assert (e.field, e.value, e.allowed) == (field, value, allowed)
    assert type(e.value) is type(value)  # True is reported as True, not as 1
    assert str(e) == f"topology field {field!r} = {value!r} is invalid: {allowed}"


def test_the_first_invalid_field_is_reported() -> None:
    """Order: masters, coreapps, webapps, shards, then coreapps against shards."""
    with pytest.raises(TopologyError, match="'masters'"):
        check_counts(0, 0, 0, 3)
    with pytest.raises(TopologyError, match="'coreapps' = 0"):
        check_counts(1, 0, 0, 3)
    with pytest.raises(TopologyError, match="'webapps'"):
        check_counts(1, 1, 0, 3)
    with pytest.raises(TopologyError, match="'shards'"):
        check_counts(1, 1, 1, 3)
    with pytest.raises(TopologyError, match="at least shards"):
        check_counts(1, 1, 1, 2)


# --------------------------------------------------------------------------- the simulator
@pytest.mark.parametrize("kw", PASS)
def test_simulator_accepts_what_the_rules_accept(kw: dict[str, Any]) -> None:
    cfg = replace(SimConfig(), **_counts(kw))
    assert cfg.validate() is cfg


@pytest.mark.parametrize(("kw", "field", "value", "allowed"), FAIL, ids=FAIL_IDS)
def test_simulator_refuses_what_the_rules_refuse(kw: dict[str, Any], field: str, value: Any,
                                                 allowed: str) -> None:
    with pytest.raises(TopologyError) as info:
        replace(SimConfig(), **_counts(kw)).validate()
    with pytest.raises(TopologyError) as direct:
        check_counts(**_counts(kw))
    assert (info.value.field, info.value.value, info.value.allowed) == (field, value, allowed)
    assert str(info.value) == str(direct.value)


@pytest.mark.parametrize(("kw", "field", "allowed"), [
    ({"timing_name": "fast"}, "timing", "one of "),
    ({"faults": ("kill", "meteor")}, "faults", "a fault kind"),
    ({"breaks": "everything"}, "breaks", "'' or one of "),
    ({"net": "udp"}, "net", "one of toxiproxy, tcp"),
    ({"drift": -0.1}, "drift", "[0, 1)"),
    ({"drift": 1.0}, "drift", "[0, 1)"),
    ({"minutes": 0.0}, "minutes", "> 0"),
    ({"send_rate": 0.0}, "send_rate", "> 0"),
    ({"fault_rate": -1.0}, "fault_rate", ">= 0"),
])
def test_simulator_names_the_field_of_its_own_rules(kw: dict[str, Any], field: str,
                                                    allowed: str) -> None:
    cfg = replace(SimConfig(), **kw)
    with pytest.raises(ValueError) as info:  # callers catching ValueError keep working
        cfg.validate()
    e = info.value
    assert isinstance(e, TopologyError)
    assert e.field == field and allowed in e.allowed
    expected = kw[next(iter(kw))]
    assert e.value == (expected[1] if field == "faults" else expected)


def test_simulator_accepts_its_own_edge_values() -> None:
    for kw in ({"drift": 0.0}, {"fault_rate": 0.0}, {"faults": ()}, {"breaks": ""},
               {"timing_name": "ci"}, {"net": "tcp"}):
        replace(SimConfig(), **kw).validate()


@pytest.mark.parametrize(("argv", "field"), [
    (["--webapps", "0"], "'webapps' = 0"),
    (["--coreapps", "1", "--shards", "2"], "'coreapps' = 1"),
    (["--masters", "10"], "'masters' = 10"),
])
def test_simulator_cli_refuses_with_exit_status_2(argv: list[str], field: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--seeds", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("multiconnect.sim: topology field ") and field in err
