"""``promoted_live``: no promotion names a coreapp that a fault had taken down for longer
than a candidate may be silent (hand-written histories that must pass and must fail)."""

from __future__ import annotations

from harness.history import make
from harness.judge.checkers import promoted_live
from harness.verdict import ALWAYS

WINDOW = 2.5  # 2·h + 0.5 with h = 1
SETTINGS = (0.0, "db-record", "info", "db-record", {"answer_window": WINDOW})
_ids = iter(range(1, 1_000_000))


def promote(at: float, old: str, new: str, epoch: int = 2) -> tuple:
    return (at, "db-record", "info", "db-shard",
            {"id": next(_ids), "at": at, "account": "master-1", "table": "shard", "shard": 0,
             "old": {"host": old, "epoch": epoch - 1, "valid_until": at, "fence_until": None},
             "new": {"host": new, "epoch": epoch, "valid_until": None,
                     "fence_until": at + 2.5},
             "lease": {"holder": "master-1", "epoch": 1, "until": at + 5}})


def fault(at: float, kind: str, target: str, fid: str, heal: bool = False) -> tuple:
    return (at, "nemesis", "info", "heal" if heal else "start",
            {"fault": kind, "id": fid, "targets": [target], "params": {}})


def judge(*rows: tuple, **kw):
    return promoted_live(make([SETTINGS, *rows]), **kw)


def test_promoting_the_live_standby_passes():
    r = judge(fault(10.0, "kill", "coreapp-1", "f1"), fault(13.0, "kill", "coreapp-2", "f2"),
              promote(19.0, "coreapp-1", "coreapp-3"),
              fault(25.0, "kill", "coreapp-1", "f1", heal=True),
              fault(25.0, "kill", "coreapp-2", "f2", heal=True))
    assert r.valid, r.explanation
    assert r.figures["promotions"] == 1 and r.figures["violations"] == 0


def test_promoting_a_standby_killed_long_before_fails():
    r = judge(fault(10.0, "kill", "coreapp-1", "f1"), fault(13.0, "kill", "coreapp-2", "f2"),
              promote(19.0, "coreapp-1", "coreapp-2"),
              fault(25.0, "kill", "coreapp-2", "f2", heal=True))
    assert not r.valid
    assert "coreapp-2" in r.explanation and "kill f2" in r.explanation
    assert r.figures["violations"] == 1


def test_every_down_kind_counts_and_others_do_not():
    for kind in ("stop", "pause", "isolate"):
        r = judge(fault(10.0, kind, "coreapp-2", "f1"), promote(15.0, "coreapp-1", "coreapp-2"))
        assert not r.valid, kind
    # a standby slowed down (latency) still answers: not judged down
    assert judge(fault(10.0, "latency", "coreapp-2", "f1"),
                 promote(15.0, "coreapp-1", "coreapp-2")).valid


def test_within_the_answer_window_and_after_the_heal_pass():
    # the master cannot know yet: the standby answered a heartbeat under 2h + 0.5 s ago
    assert judge(fault(10.0, "kill", "coreapp-2", "f1"),
                 promote(13.4, "coreapp-1", "coreapp-2")).valid
    # ... but past the window and the margin it must know
    assert not judge(fault(10.0, "kill", "coreapp-2", "f1"),
                     promote(13.6, "coreapp-1", "coreapp-2")).valid
    # restarted and answering again
    assert judge(fault(10.0, "kill", "coreapp-2", "f1"),
                 fault(12.0, "kill", "coreapp-2", "f1", heal=True),
                 promote(16.0, "coreapp-1", "coreapp-2")).valid


def test_no_record_or_no_window_passes_and_it_is_always_judged():
    assert promoted_live(make([(1.0, "sender-0", "invoke", "send", {})])).valid
    r = promoted_live(make([fault(10.0, "kill", "coreapp-2", "f1"),
                            promote(15.0, "coreapp-1", "coreapp-2")]))
    assert r.valid and "not judged" in r.explanation
    assert not promoted_live(make([fault(10.0, "kill", "coreapp-2", "f1"),
                                   promote(15.0, "coreapp-1", "coreapp-2")]),
                             answer_window=WINDOW).valid
    assert promoted_live in ALWAYS
