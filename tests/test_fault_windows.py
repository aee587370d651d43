"""One reading of the nemesis's events: ``harness.judge.checkers.base.fault_windows``.

The checkers and the timeline used to pair starts and heals each their own way; the cases
below are where the two disagreed (checkers: a heal without id closed the latest open window
of its kind; timeline: by kind and targets, first in first out, nemesis process only, input
taken in the order given). The timeline now draws the checkers' windows (``fault_spans``).
"""

from __future__ import annotations

from harness.history import make
from harness.judge.checkers import fault_windows, find_fault
from harness.report.timeline import build_model, fault_spans


def nem(t: float, f: str, kind: str = "pause", targets=("m1",), fid: str | None = None,
        process: str = "nemesis") -> tuple:
    v = {"fault": kind, "targets": list(targets) if not isinstance(targets, str) else targets}
    if fid is not None:
        v["id"] = fid
    return (t, process, "info", f, v)


def pairs(rows: list[tuple]) -> list[tuple[float, float | None]]:
    return [(w.start, w.heal) for w in fault_windows(make(rows))]


def spans(rows: list[tuple]) -> list[tuple[float, float, bool]]:
    return [(s.start, s.end, s.healed) for s in fault_spans(make(rows))]


def test_heals_without_id_close_the_same_kind_and_targets_first_in_first_out():
    rows = [nem(1, "start"), nem(2, "start"), nem(3, "heal"), nem(4, "heal")]
    # the checkers closed the latest first: (1, 4), (2, 3)
    assert pairs(rows) == [(1.0, 3.0), (2.0, 4.0)]
    assert spans(rows) == [(1.0, 3.0, True), (2.0, 4.0, True)]


def test_a_heal_without_id_never_closes_a_fault_of_other_targets():
    rows = [nem(1, "start", targets=["m1"]), nem(2, "start", targets=["m2"]),
            nem(3, "heal", targets=["m1"])]
    # the checkers closed the latest pause, the one on m2
    ws = fault_windows(make(rows))
    assert [(w.targets, w.heal) for w in ws] == [(("m1",), 3.0), (("m2",), None)]


def test_a_heal_without_id_does_not_close_a_fault_started_with_one():
    rows = [nem(1, "start", fid="f1"), nem(2, "heal")]
    assert pairs(rows) == [(1.0, None)]


def test_a_heal_with_an_id_closes_only_that_id():
    rows = [nem(1, "start", fid="f1"), nem(2, "start", fid="f2"), nem(3, "heal", fid="f9"),
            nem(4, "heal", fid="f1")]
    assert [(w.id, w.heal) for w in fault_windows(make(rows))] == [("f1", 4.0), ("f2", None)]


def test_ids_of_faults_started_without_one():
    ws = fault_windows(make([nem(1, "start"), nem(2, "start", fid="f7"), nem(3, "start")]))
    assert [w.id for w in ws] == ["#0", "f7", "#2"]


def test_targets_given_as_one_string_are_one_target():
    # the timeline split such a string into its characters
    rows = [nem(1, "start", kind="db-outage", targets="db", fid="f1"),
            nem(2, "heal", kind="db-outage", targets="db", fid="f1")]
    assert fault_windows(make(rows))[0].targets == ("db",)
    assert fault_spans(make(rows))[0].label == "db-outage db"


def test_every_process_named_nemesis_something_counts():
    # the timeline read only the process "nemesis"
    rows = [nem(1, "start", fid="f1", process="nemesis-2"),
            nem(2, "heal", fid="f1", process="nemesis-2"), nem(3, "start", process="client")]
    assert pairs(rows) == [(1.0, 2.0)]


def test_events_out_of_time_order_are_paired_in_time_order():
    # the timeline paired events in the order given (build_model sorted them first): heals
    # seen before their starts were dropped and both faults stayed open
    rows = [nem(1, "start"), nem(2, "start"), nem(3, "heal"), nem(4, "heal")]
    backwards = list(reversed(make(rows)))
    assert pairs(rows) == [(1.0, 3.0), (2.0, 4.0)]
    assert [(w.start, w.heal) for w in fault_windows(backwards)] == pairs(rows)
    assert [(s.start, s.end, s.healed) for s in fault_spans(backwards)] == spans(rows)


def test_windows_are_in_start_order_not_id_order():
    # the timeline sorted by (start, id): "f10" before "f9" at the same time
    rows = [nem(5, "start", fid="f9"), nem(5, "start", fid="f10", targets=["m2"])]
    assert [w.id for w in fault_windows(make(rows))] == ["f9", "f10"]
    assert [s.id for s in fault_spans(make(rows))] == ["f9", "f10"]


def test_an_unhealed_fault_stays_open_and_its_span_ends_with_the_picture():
    rows = [nem(1, "start", fid="f1"), (9, "health", "ok", "health", {"nodes": {}})]
    (w,) = fault_windows(make(rows))
    assert (w.heal, w.healed, w.end(20.0)) == (None, False, 20.0)
    assert spans(rows) == [(1.0, 9.0, False)]
    assert [(s.end, s.healed) for s in build_model(make(rows)).faults] == [(9.0, False)]
    # an end before the start never makes a negative span
    assert [s.end for s in fault_spans(make(rows), end=0.5)] == [1.0]


def test_find_fault_by_id_then_kind():
    rows = [nem(1, "start", kind="kill", fid="f1"), nem(2, "start", kind="cut", fid="f2")]
    assert find_fault(make(rows), "f2").kind == "cut"
    assert find_fault(make(rows), "kill").id == "f1"
    assert find_fault(make(rows)).id == "f1"
    assert find_fault(make(rows), "pause") is None
