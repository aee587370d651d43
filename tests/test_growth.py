"""harness.judge.checkers.growth and harness.run.observers.soak: steady growth of memory / fds
over a soak run."""

from __future__ import annotations

import os
import random

from harness.history import Event
from harness.judge.checkers import no_steady_growth
from harness.run.observers.soak import node_pid, read_proc

MiB = 2**20


def samples(values, *, node="coreapp-1", pid=40, fds=None, every=10.0, start=0.0):
    out = []
    for i, v in enumerate(values):
        out.append(Event(len(out), start + i * every, 0.0, "soak", "info", "sample",
                         {"node": node, "pid": pid, "rss": int(v),
                          "fds": fds[i] if fds else 20}))
    return out


def test_flat_noisy_memory_passes():
    rng = random.Random(3)
    r = no_steady_growth(samples([60 * MiB + rng.randint(-2, 2) * MiB for _ in range(60)]))
    assert r.valid, r.explanation
    assert r.figures["series_judged"] == 1


def test_linear_leak_is_flagged():
    r = no_steady_growth(samples([60 * MiB + i * MiB for i in range(60)]))
    assert not r.valid
    assert "coreapp-1 (pid 40) memory +" in r.explanation


def test_one_time_step_is_not_growth():
    values = [60 * MiB] * 25 + [90 * MiB] * 35  # a pool filled once, then flat
    r = no_steady_growth(samples(values))
    assert r.valid, r.explanation


def test_small_rise_below_the_thresholds_passes():
    r = no_steady_growth(samples([60 * MiB + i * 10_000 for i in range(60)]))
    assert r.valid, r.explanation


def test_fd_leak_is_flagged_even_with_flat_memory():
    r = no_steady_growth(samples([60 * MiB] * 60, fds=[20 + i for i in range(60)]))
    assert not r.valid
    assert "open fds +" in r.explanation


def test_a_restart_starts_a_new_series():
    # each incarnation is flat; joined they would look like growth
    a = samples([50 * MiB] * 30, pid=40)
    b = samples([80 * MiB] * 30, pid=77, start=300.0)
    r = no_steady_growth(a + [Event(e.index + 30, e.time, 0, e.process, e.type, e.f, e.value)
                              for e in b])
    assert r.valid, r.explanation
    assert r.figures["series"] == 2


def test_short_series_are_not_judged():
    r = no_steady_growth(samples([60 * MiB + i * 5 * MiB for i in range(5)]))
    assert r.valid and r.figures["series_judged"] == 0


def test_node_pid_picks_the_role_process_not_init():
    top = {"Titles": ["PID", "CMD"], "Processes": [
        ["1001", "/sbin/docker-init -- python3 -m multiconnect coreapp"],
        ["1017", "python3 -m multiconnect coreapp"]]}
    assert node_pid(top) == 1017
    assert node_pid({"Titles": ["PID", "CMD"], "Processes": []}) is None
    ps_args = {"Titles": ["PID", "COMMAND"], "Processes": [  # docker top -eo pid,args
        ["5274", "/sbin/docker-init -- python3 -m multiconnect gateway"],
        ["5302", "python3 -m multiconnect gateway"]]}
    assert node_pid(ps_args) == 5302


def test_read_proc_reads_this_process():
    rss, fds = read_proc(os.getpid())
    assert rss > 1 * MiB and fds >= 3
