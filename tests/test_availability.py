"""availability and recovery checkers on hand-written histories."""

from harness.history import make
from harness.judge.bounds import db_recovery
from harness.judge.checkers import availability, recovery


def sends(rows):
    """rows: (invoke time, completion time, type, shard)."""
    out = []
    for i, (ti, tc, typ, shard) in enumerate(rows):
        p = f"sender-{i}"
        out.append((ti, p, "invoke", "send", {"to": f"1{i}", "shard": shard}))
        out.append((tc, p, typ, "send", {"to": f"1{i}", "shard": shard, "id": f"m{i}"}))
    return out


def fault(start, heal):
    v = {"fault": "db-outage", "id": "f1", "targets": ["db"], "params": {}}
    return [(start, "nemesis", "info", "start", v), (heal, "nemesis", "info", "heal", v)]


def test_availability_passes_at_exactly_the_threshold():
    rows = [(i, i + 0.1, "ok", 0) for i in range(99)] + [(99, 99.1, "fail", 0)]
    r = availability(make(sends(rows)), min_fraction=0.99)
    assert r.valid and r.figures["availability"] == 0.99


def test_availability_fails_below_threshold_and_counts_unknown_against_it():
    rows = [(i, i + 0.1, "ok", 0) for i in range(98)] + [(98, 99, "info", 0), (99, 99.1, "fail", 0)]
    r = availability(make(sends(rows)), min_fraction=0.99)
    assert not r.valid
    assert r.figures["info"] == 1 and r.figures["fail"] == 1


def test_availability_only_judges_the_window():
    rows = [(i, i + 0.1, "fail", 0) for i in range(10)] + [(i, i + 0.1, "ok", 0)
                                                           for i in range(10, 20)]
    assert availability(make(sends(rows)), min_fraction=1.0, window=(10, 20)).valid
    assert not availability(make(sends(rows)), min_fraction=1.0).valid


def test_availability_with_no_sends_is_invalid():
    assert not availability(make([]), min_fraction=0.5).valid


def test_recovery_measured_from_heal_per_shard():
    rows = [(1, 1.1, "ok", 0), (1, 1.1, "ok", 1), (5, 5.1, "fail", 0), (10.5, 10.6, "ok", 1),
            (11.5, 11.6, "ok", 0)]
    r = recovery(make(sends(rows) + fault(4, 10)), bound=1.5)
    assert r.valid, r.explanation
    assert r.figures["recovery"] == 1.5
    assert r.figures["recovery_shard_1"] == 0.5


def test_recovery_too_slow_fails():
    rows = [(1, 1.1, "ok", 0), (11.6, 11.7, "ok", 0)]
    r = recovery(make(sends(rows) + fault(4, 10)), bound=1.5)
    assert not r.valid and "1.600" in r.explanation


def test_recovery_fails_when_a_shard_never_serves_again():
    rows = [(1, 1.1, "ok", 0), (1, 1.1, "ok", 1), (10.2, 10.3, "ok", 0), (10.4, 12, "info", 1)]
    r = recovery(make(sends(rows) + fault(4, 10)), bound=5)
    assert not r.valid and "[1]" in r.explanation


def test_recovery_without_a_healed_fault_is_invalid():
    v = {"fault": "db-outage", "id": "f1", "targets": ["db"], "params": {}}
    events = make(sends([(1, 1.1, "ok", 0)]) + [(2, "nemesis", "info", "start", v)])
    assert not recovery(events, bound=5).valid


def test_db_recovery_bound():
    b = db_recovery(1, 1.0, margin=1.0)
    assert float(b) == 2.5 and "h/2" in b.formula
