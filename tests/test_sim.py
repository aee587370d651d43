"""The deterministic simulator (multiconnect.sim).

Model under test: one seed fixes a whole run (same seed → byte-identical trace); the real
decision cores inside simulated shells keep every invariant over a fixed CI seed range of
10-minute fault schedules and fail over within the documented bounds; each deliberate break
of a safety rule is caught within that range and the CLI prints a replay line that
reproduces it; a clock-rate drift beyond fencing.md's A1 is caught; wall-clock jumps change
nothing. The small component tests pin the models the invariants rely on (FIFO connections,
resets, the gateway's kick/keepalive rules, the fenced promotion).
"""

from __future__ import annotations

import math
import shlex
from dataclasses import replace

import pytest

from harness import bounds
from multiconnect.db import NotPrimary
from multiconnect.sim import SimConfig, failover_bound, replay_command, run_schedule
from multiconnect.sim.__main__ import main
from multiconnect.sim.cluster import TIMINGS, Cluster
from multiconnect.sim.net import EOF, Net
from multiconnect.sim.world import Endpoint, World

CI_SEEDS = range(0, 12)
BASE = SimConfig()


def _run(seed: int, **kw) -> object:
    return run_schedule(replace(BASE, seed=seed, **kw))


# ---------------------------------------------------------------------------- determinism
def test_same_seed_gives_byte_identical_trace():
    a, b = _run(7), _run(7)
    assert a.trace_lines() == b.trace_lines()
    assert a.digest() == b.digest()
    assert (a.events, a.sim_time) == (b.events, b.sim_time)
    assert len(a.trace) > 50  # a real run, not an empty one
    assert _run(8).digest() != a.digest()


# ---------------------------------------------------------------------------- CI seed range
@pytest.mark.parametrize("timing", ["documented"])
def test_ci_seed_range_keeps_every_invariant(timing):
    failover_limit, mode = failover_bound(replace(BASE, timing_name=timing))
    assert mode == "heartbeat"
    for seed in CI_SEEDS:
        r = _run(seed, timing_name=timing)
        assert r.ok, f"seed {seed}: {r.violation}\n{replay_command(r.cfg)}"
        assert r.faults_started >= 20, "a schedule must actually inject faults"
        assert r.sim_time >= 600.0
        assert r.recovery is not None
        assert r.failover is not None and 0 < r.failover <= failover_limit
        assert r.outcomes["ok"] > 0


def test_single_master_fails_over_by_the_database_detector():
    cfg = replace(BASE, masters=1, coreapps=2, shards=1, minutes=4)
    limit, mode = failover_bound(cfg)
    assert mode == "database"
    t = cfg.timing
    for seed in range(3):
        r = run_schedule(replace(cfg, seed=seed))
        assert r.ok, f"seed {seed}: {r.violation}\n{replay_command(r.cfg)}"
        # database detection cannot be faster than the row going stale
        assert t.stale_after - t.heartbeat_interval - 1 <= r.failover <= limit


def test_bounds_are_the_harness_bounds():
    for name, t in TIMINGS.items():
        cfg = replace(BASE, timing_name=name)
        hb = bounds.heartbeat_failover(t.heartbeat_interval, t.unhealthy_interval,
                                       t.gateway_ping_timeout)
        assert failover_bound(cfg) == (pytest.approx(hb.value), "heartbeat")
        db = bounds.db_failover(t.liveness_interval, t.stale_after)
        assert failover_bound(replace(cfg, masters=1)) == (pytest.approx(db.value), "database")


# ---------------------------------------------------------------------------- mutation checks
@pytest.mark.parametrize("brk,kind", [("never-self-fence", "no-self-fence"),
                                      ("promote-on-primary-miss", "spurious-promotion")])
def test_each_break_is_found_in_the_ci_range_with_a_replay_line(brk, kind, capsys):
    rc = main(["--seeds", str(len(CI_SEEDS)), "--first", str(CI_SEEDS[0]), "--break", brk])
    out = capsys.readouterr().out
    assert rc == 1
    assert "violations: " in out and kind in out
    replay = [ln for ln in out.splitlines() if ln.startswith("python -m multiconnect.sim ")]
    assert len(replay) == 1
    argv = shlex.split(replay[0])[3:]
    assert "--break" in argv and brk in argv
    rc2 = main(argv + ["--no-shrink"])
    out2 = capsys.readouterr().out
    assert rc2 == 1
    fail = [ln for ln in out2.splitlines() if ln.startswith("FAIL seed")]
    assert fail and kind in fail[0]


def test_clock_drift_beyond_a1_is_caught():
    found = []
    for seed in range(4):
        r = _run(seed, drift=0.3, minutes=3)
        if not r.ok:
            found.append(r.violation.kind)
    assert found, "a 30 % clock-rate spread must break local-deadline ⊆ database-deadline"
    assert set(found) <= {"lease-validity", "acts-after-deadline", "two-primaries"}


def test_wall_clock_jumps_change_nothing():
    """Only clock-skew faults, injected or not: the same history apart from nemesis lines."""
    cfg = replace(BASE, seed=3, faults=("clock-skew",), minutes=3, fault_rate=6)
    skewed = run_schedule(cfg)
    plain = run_schedule(replace(cfg, only_faults=()))
    assert skewed.faults_started >= 10 and plain.faults_started == 0
    assert skewed.ok and plain.ok

    def history(r):
        return [ln for ln in r.trace_lines() if " nemesis " not in ln]

    assert history(skewed) == history(plain)


# ---------------------------------------------------------------------------- regressions
# Found by the simulator (see docs/simulator.md, "Findings"): a coreapp whose ownership lapses
# while a gateway connect is in flight reports the gateway down at once and may start a second
# connect; the gateway then sees two connections of that coreapp for its shard (a conflict).
@pytest.mark.xfail(strict=True, reason="coreapp.py allows a second connect while one is in "
                   "flight (same-node conflict); fix pending in the roles")
@pytest.mark.parametrize("seed,net", [(404, "toxiproxy"), (535, "toxiproxy"), (209, "tcp")])
def test_regression_concurrent_connects(seed, net):
    r = _run(seed, net=net)
    assert r.ok, str(r.violation)


# ---------------------------------------------------------------------------- components
def _endpoints(world: World) -> tuple[Endpoint, Endpoint]:
    a, b = Endpoint(world, "a"), Endpoint(world, "b")
    return a, b


def test_connections_are_fifo_and_cut_resets_both_ends():
    w = World(1)
    net = Net(w)
    a, b = _endpoints(w)
    link = net.add_link("a", "b")
    got_b: list = []
    got_a: list = []
    conn = net.open(link, a, b, lambda c, m: got_a.append(m), lambda c, m: got_b.append(m))
    net.add_effect(link, 1, "latency", {"stream": "both", "latency": 0.5, "jitter": 0.4})
    for i in range(20):
        net.send(conn, True, i)
    w.run(10.0)
    assert got_b == list(range(20))  # jitter never reorders one connection
    net.remove_effect(link, 1)
    net.add_effect(link, 2, "cut", {})
    assert net.open(link, a, b, lambda c, m: None, lambda c, m: None) is None  # refused
    w.run(11.0)
    assert got_a == [EOF] and got_b[-1] is EOF


def test_toxiproxy_blackhole_passes_close_and_heal_resets():
    w = World(1)
    net = Net(w, "toxiproxy")
    a, b = _endpoints(w)
    link = net.add_link("a", "b")
    got_b: list = []
    conn = net.open(link, a, b, lambda c, m: None, lambda c, m: got_b.append(m))
    net.add_effect(link, 1, "drop", {"stream": "both"})
    net.send(conn, True, "data")
    w.run(1.0)
    assert got_b == []
    conn2 = net.open(link, a, b, lambda c, m: None, lambda c, m: got_b.append(("2", m)))
    net.remove_effect(link, 1)  # toxiproxy closes what went through the toxic
    w.run(2.0)
    assert got_b == [EOF, ("2", EOF)]
    assert not conn.s_open and not conn2.s_open


def test_gateway_kicks_the_older_connection_and_times_out_silent_ones():
    cl = Cluster(replace(BASE, seed=1))
    w, net, gw = cl.world, cl.net, cl.gateway
    conflicts = []
    gw.on_conflict = lambda old, new: conflicts.append((old.id, new.id))
    host = Endpoint(w, "coreapp-1")  # a bare client endpoint (always up)
    link = cl.gw_links["coreapp-1"]
    inbox: list = []
    c1 = net.open(link, host, gw, lambda c, m: inbox.append((1, m)), gw.on_message)
    net.send(c1, True, ("connect", 0, "coreapp-1", 5))
    w.run(1.0)
    c2 = net.open(link, host, gw, lambda c, m: inbox.append((2, m)), gw.on_message)
    net.send(c2, True, ("connect", 0, "coreapp-2", 6))
    w.run(2.0)
    assert conflicts == [(1, 2)]
    assert (1, ("kicked", 2)) in inbox
    assert [e[1] for e in gw.events] == ["connect", "conflict", "kick", "connect"]
    k = cl.cfg.timing.gateway_ping_timeout
    w.run(1.0 + k + 0.5)  # conn 2 was silent since ~1.0 s
    assert gw.events[-1][1] == "timeout" and 0 not in gw.by_shard


def test_promotion_fence_is_old_validity_plus_keepalive_and_margin():
    cl = Cluster(replace(BASE, seed=1))
    db, w = cl.db, cl.world
    w.now = 100.0
    assert db.lease_attempt("master-1", None, 10.0)[2] == 1
    db.shard_rows[0].hostname = "coreapp-1"
    assert db.confirm_ownership("coreapp-1", 10.0).fenced is False
    w.now = 101.0
    epoch = db.promote("master-1", 1, 0, "coreapp-1", "coreapp-2", 10.5)
    row = db.shard_rows[0]
    assert row.fence_until == pytest.approx(100.0 + 10.0 + 10.5)
    assert db.confirm_ownership("coreapp-1", 10.0) is None
    owned = db.confirm_ownership("coreapp-2", 10.0)
    assert owned.fenced and owned.epoch == epoch
    w.now = 121.0
    assert db.confirm_ownership("coreapp-2", 10.0).fenced is False
    assert math.isclose(db.own_valid[("coreapp-2", epoch)], 131.0)
    w.now = 125.0  # the lease (expires 110) is gone: a deposed master cannot promote
    with pytest.raises(NotPrimary):
        db.promote("master-1", 1, 0, "coreapp-2", "coreapp-3", 10.5)


# ---------------------------------------------------------------------------- nightly
KNOWN = {("base", 404), ("base", 535)}  # test_regression_concurrent_connects


@pytest.mark.nightly
@pytest.mark.parametrize("name,cfg,seeds", [
    ("base", BASE, range(0, 1000)),
    ("ci-timing", replace(BASE, timing_name="ci"), range(0, 100)),
    ("one-master", replace(BASE, masters=1, coreapps=2, shards=1), range(0, 100)),
    ("big", replace(BASE, masters=3, coreapps=5, shards=4, webapps=2), range(0, 100)),
])
def test_nightly_seed_ranges(name, cfg, seeds, request):
    if "nightly" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("nightly range: run with -m nightly")
    bad = []
    for seed in seeds:
        r = run_schedule(replace(cfg, seed=seed))
        if not r.ok and (name, seed) not in KNOWN:
            bad.append(f"seed {seed}: {r.violation}\n  {replay_command(r.cfg)}")
    assert not bad, "\n".join(bad)
