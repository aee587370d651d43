"""exclusive_claims on hand-written histories, claim_of on status answers, and the claim
sampler against a status endpoint on loopback."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from functools import partial

import pytest

from harness.history import Event, History
from harness.judge.checkers import (
    CHECKERS,
    claims,
    db_record,
    exclusive_claims,
    no_duplicates,
    promoted_live,
    refused_not_delivered,
)
from harness.run.observers.claims import ClaimSampler, claim_of
from harness.verdict import judge, with_always


def claim(i: int, at: float, node: str, group: str, valid_for: float, sent: float | None = None,
          epoch: int = 1, type: str = "ok") -> Event:
    return Event(i, at, 1000.0 + at, "claims", type, "claim",
                 {"node": node, "kind": "master" if group == "lease" else "coreapp",
                  "group": group, "epoch": epoch, "valid_for": valid_for,
                  "sent": at - 0.01 if sent is None else sent})


def test_a_master_handover_with_its_margin_is_valid() -> None:
    # master-1 renews every second for 4.5 s of validity; its last answer at 3.0 claims
    # until 2.99 + 4.5 = 7.49; master-2 takes over and first claims at 8.0
    evs = [claim(k, float(k), "master-1", "lease", 4.5) for k in range(4)]
    evs += [claim(10 + k, 8.0 + k, "master-2", "lease", 4.5, epoch=2) for k in range(3)]
    r = exclusive_claims(evs)
    assert r.valid, r.explanation
    assert r.figures["claims"] == 7 and r.figures["overlaps"] == 0


def test_two_masters_claiming_at_once_is_invalid_even_for_a_moment() -> None:
    evs = [claim(0, 1.0, "master-1", "lease", 0.3),            # claims [1.0, 1.29]
           claim(1, 1.2, "master-2", "lease", 4.5, epoch=2)]   # claims from 1.2
    r = exclusive_claims(evs)
    assert not r.valid
    assert "master-1 (epoch 1)" in r.explanation and "master-2 (epoch 2)" in r.explanation
    assert r.figures["overlaps"] == 1 and r.figures["max_overlap"] == pytest.approx(0.09)


def test_two_owners_of_one_shard_are_invalid_two_shards_are_not() -> None:
    ok = [claim(0, 1.0, "coreapp-1", "shard-0", 1.8), claim(1, 1.1, "coreapp-2", "shard-1", 1.8)]
    assert exclusive_claims(ok).valid
    bad = ok + [claim(2, 2.0, "coreapp-3", "shard-0", 1.8, epoch=5)]
    r = exclusive_claims(bad)
    assert not r.valid and "in shard-0: coreapp-1" in r.explanation


def test_one_node_renewing_overlaps_itself_legitimately() -> None:
    evs = [claim(k, 0.2 * k, "coreapp-1", "shard-0", 1.8) for k in range(20)]
    assert exclusive_claims(evs).valid


def test_only_the_certain_window_counts() -> None:
    # answered at 1.0 for a request sent at 0.5 with 0.4 s left: the claim may have ended at
    # 0.9, before the answer arrived, so it proves nothing
    evs = [claim(0, 1.0, "master-1", "lease", 0.4, sent=0.5),
           claim(1, 1.0, "master-2", "lease", 4.5, epoch=2),
           claim(2, 1.05, "master-1", "lease", 0.0, type="ok"),
           claim(3, 1.06, "master-1", "lease", 3.0, type="fail")]
    r = exclusive_claims(evs)
    assert r.valid, r.explanation
    assert [c.node for c in claims(evs)] == ["master-2"]


def test_no_claims_is_valid_and_says_so() -> None:
    r = exclusive_claims([])
    assert r.valid and "none sampled" in r.explanation
    assert CHECKERS["exclusive_claims"] is exclusive_claims


@pytest.mark.parametrize(("status", "expected"), [
    ({"role": "primary_master", "lease_epoch": 3, "lease_valid_for": 4.2},
     {"kind": "master", "group": "lease", "epoch": 3, "valid_for": 4.2}),
    ({"role": "secondary_master", "lease_epoch": None, "lease_valid_for": 0.0}, None),
    ({"role": "primary_master", "lease_epoch": 3}, None),  # an older node: no validity given
    ({"role": "coreapp", "shard": 2, "epoch": 7, "ownership_valid_for": 1.5},
     {"kind": "coreapp", "group": "shard-2", "epoch": 7, "valid_for": 1.5}),
    ({"role": "coreapp", "shard": 2, "epoch": 7, "ownership_valid_for": 0.0}, None),
    ({"role": "coreapp", "shard": None, "epoch": None, "ownership_valid_for": None}, None),
    (["not", "a", "dict"], None),
])
def test_claim_of(status: object, expected: dict | None) -> None:
    got = claim_of("n-1", status, 2.5)
    if expected is None:
        assert got is None
    else:
        assert got == {"node": "n-1", "sent": 2.5, **expected}


@pytest.fixture
def status_server() -> Iterator[tuple[str, list[dict]]]:
    answers: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            body = json.dumps(answers.pop(0) if answers else {"role": "secondary_master"})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/internal/status", answers
    finally:
        srv.shutdown()
        srv.server_close()


def test_the_sampler_records_claims_only(status_server: tuple[str, list[dict]]) -> None:
    url, answers = status_server
    answers += [{"role": "primary_master", "lease_epoch": 2, "lease_valid_for": 4.0},
                {"role": "secondary_master", "lease_epoch": None, "lease_valid_for": 0.0}]
    h = History()
    s = ClaimSampler("master-1", lambda: url, h, interval=0.05)
    s.poll()
    s.poll()
    evs = h.events()
    assert [(e.process, e.f, e.type) for e in evs] == [("claims", "claim", "ok")]
    assert evs[0].value["group"] == "lease" and evs[0].value["sent"] <= evs[0].time


def test_an_unreachable_node_is_counted_not_recorded() -> None:
    h = History()
    s = ClaimSampler("coreapp-1", lambda: "http://127.0.0.1:9/internal/status", h,
                     timeout=0.2)
    t0 = time.monotonic()
    s.poll()
    assert h.events() == [] and s.errors == 1 and time.monotonic() - t0 < 2.0


def test_every_judged_scenario_runs_the_always_checks(tmp_path) -> None:
    assert with_always([]) == [exclusive_claims, no_duplicates, refused_not_delivered, db_record,
                               promoted_live]
    bound = partial(exclusive_claims, name="claims again")
    assert with_always([bound]) == [bound, no_duplicates, refused_not_delivered, db_record,
                                    promoted_live]
    overlap = [claim(0, 1.0, "master-1", "lease", 0.3),
               claim(1, 1.2, "master-2", "lease", 4.5, epoch=2)]
    with pytest.raises(AssertionError, match="CHECK FAILED: exclusive_claims"):
        judge(overlap, [], artifacts=tmp_path)
    assert [r.name for r in judge(overlap[:1], [], artifacts=tmp_path)] == [
        "exclusive_claims", "no_duplicates", "refused_not_delivered", "db_record",
        "promoted_live"]


def released(i: int, at: float, node: str, epoch: int, account: str | None = None) -> Event:
    """The database's record of ``node`` giving its lease (``epoch``) up at ``at``."""
    return Event(i, at, 1000.0 + at, "db-record", "info", "db-lease",
                 {"id": i, "at": 1000.0 + at, "account": account or node, "table": "lease",
                  "old": {"holder": node, "epoch": epoch, "until": 1000.0 + at + 4.0},
                  "new": {"holder": None, "epoch": epoch, "until": 1000.0 + at}})


def test_a_released_lease_ends_its_claims() -> None:
    # a failover run's figures: master-1 (epoch 4) answered at 0.773 that it is primary for
    # another 4.087 s, released its lease at 0.809 (graceful stop); master-2 took epoch 5 and
    # claimed it from 0.977
    evs = [claim(1, 0.773, "master-1", "lease", 4.087, sent=0.769, epoch=4),
           claim(3, 0.977, "master-2", "lease", 4.463, sent=0.974, epoch=5)]
    assert not exclusive_claims(evs).valid  # without the record: an overlap of 3.9 s
    r = exclusive_claims(evs + [released(2, 0.809, "master-1", 4)])
    assert r.valid, r.explanation
    # a release of another epoch, or written by another account, ends nothing
    assert not exclusive_claims(evs + [released(2, 0.809, "master-1", 3)]).valid
    assert not exclusive_claims(evs + [released(2, 0.809, "master-1", 4, "root")]).valid
