"""Time every checker on a synthetic one-hour history (goal: < 2 s, median of 5 runs).

The history: 4 shards, 20 sends/s (invoke + completion, each ok one delivered at the
gateway), a health snapshot every second (2 masters, 6 coreapps), a shard-map observation
every 5 s, one media upload + download every 10 s, and three faults: a coreapp kill with a
promotion (shard 0), a partition of the primary master (no promotion, shard 1), and an NFS
outage. Run: ``python benchmarks/bench_checkers.py [--runs 5] [--seconds 3600]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.history import Event  # noqa: E402
from harness.judge.bounds import heartbeat_failover  # noqa: E402
from harness.judge.checkers import (  # noqa: E402
    compose,
    downtime,
    media,
    no_duplicates,
    no_lost_acks,
    no_promotion,
    primary_masters,
    promotion,
    single_connected,
)

SHARDS = 4
RATE = 20  # sends per second, all shards together
SENDERS = 8
WALL0 = 1_700_000_000.0

KILL = (600.0, 700.0)  # coreapp-1 (shard 0) killed; coreapp-5 takes over at +35 s
PARTITION = (1800.0, 1900.0)  # master-1 cut from coreapp-2: no promotion
NFS = (2700.0, 2760.0)  # media fails fast with an envelope


def build(seconds: int = 3600) -> list[Event]:
    rows: list[tuple[float, str, str, str, dict]] = []
    add = rows.append
    owner = {0: "coreapp-1", 1: "coreapp-2", 2: "coreapp-3", 3: "coreapp-4"}
    seq = 0

    def gw(t: float, type_: str, conn: int, node: str, shard: int, **extra) -> None:
        nonlocal seq
        add((t, "gateway", "info", f"gw-{type_}",
             {"seq": seq, "time": WALL0 + t, "type": type_, "conn": conn,
              "phone": "15550000001", "shard": shard, "node": node, "epoch": 1, **extra}))
        seq += 1

    for sh, node in owner.items():
        gw(0.01 * sh, "connect", sh + 1, node, sh)
    conn_of = {sh: sh + 1 for sh in owner}

    for i in range(seconds * RATE):
        t0 = i / RATE
        sh = i % SHARDS
        proc = f"sender-{i % SENDERS}"
        add((t0, proc, "invoke", "send", {"to": f"1555{i % 1000:04d}", "shard": sh}))
        down = sh == 0 and KILL[0] <= t0 < KILL[0] + 35.0
        if down:
            add((t0 + 0.5, proc, "fail", "send", {"to": "x", "shard": sh, "status": 503,
                                                  "error": "no coreapp for shard"}))
        else:
            mid = f"gBEG{i:08d}"
            gw(t0 + 0.02, "deliver", conn_of[sh], owner[sh], sh, id=mid, to="x",
               duplicate=False)
            add((t0 + 0.03, proc, "ok", "send", {"to": "x", "shard": sh, "id": mid,
                                                 "latency": 0.03}))
        if sh == 0 and t0 == KILL[0]:
            gw(KILL[0] + 0.1, "disconnect", conn_of[0], owner[0], 0, reason="eof")
        if sh == 0 and t0 == KILL[0] + 35.0 - 0.6:
            owner[0], conn_of[0] = "coreapp-5", 10
            gw(KILL[0] + 34.5, "connect", 10, "coreapp-5", 0)

    for s in range(seconds):
        t = s + 0.5
        connected = set(owner.values()) if not (KILL[0] <= t < KILL[0] + 35) else (
            set(owner.values()) - {"coreapp-1"})
        nodes = {"master-1": {"role": "primary_master", "gateway_status": "disconnected"},
                 "master-2": {"role": "secondary_master", "gateway_status": "disconnected"}}
        for k in range(1, 7):
            name = f"coreapp-{k}"
            if name == "coreapp-1" and t >= KILL[0]:
                nodes[name] = {"error": "unreachable"}
            else:
                nodes[name] = {"role": "coreapp", "gateway_status":
                               "connected" if name in connected else "disconnected"}
        add((t, "health", "invoke", "health", {}))
        add((t + 0.01, "health", "ok", "health", {"nodes": nodes}))
        if s % 5 == 0:
            add((t + 0.02, "shardmap", "ok", "shard-map",
                 {"shards": {str(k): {"hostname": v, "epoch": 1} for k, v in owner.items()}}))

    for s in range(0, seconds, 10):
        t = s + 0.7
        sha = f"{s:064x}"
        in_nfs = NFS[0] <= t < NFS[1]
        add((t, "media-0", "invoke", "upload", {"size": 1000, "sha256": sha, "via": "webapp-1"}))
        if in_nfs:
            add((t + 0.3, "media-0", "fail", "upload",
                 {"status": 503, "error": {"errors": [{"code": 1011, "title": "media"}]}}))
        else:
            add((t + 0.1, "media-0", "ok", "upload",
                 {"id": f"media{s}", "size": 1000, "sha256": sha, "via": "webapp-1"}))
            add((t + 5, "media-1", "invoke", "download", {"id": f"media{s}", "via": "webapp-1"}))
            add((t + 5.1, "media-1", "ok", "download",
                 {"id": f"media{s}", "size": 1000, "sha256": sha, "via": "webapp-1"}))

    for (a, b), fid, kind, targets in ((KILL, "f1", "kill", ["coreapp-1"]),
                                       (PARTITION, "f2", "partition", ["master-1->coreapp-2"]),
                                       (NFS, "f3", "nfs-outage", ["nfs"])):
        for t, f in ((a, "start"), (b, "heal")):
            add((t, "nemesis", "info", f, {"fault": kind, "id": fid, "targets": targets,
                                           "params": {}}))

    # appended in arrival order, which is not time order (completions land late)
    return [Event(i, round(r[0], 6), WALL0 + r[0], r[1], r[2], r[3], r[4])
            for i, r in enumerate(rows)]


def all_checkers():
    bound = heartbeat_failover(5, 30, 10)
    return compose(
        partial(downtime, bound=bound, window=(KILL[0] - 30, KILL[1] + 30), shards=[0],
                others_bound=1.0),
        partial(promotion, fault="f1", bound=bound),
        partial(no_promotion, fault="f2"),
        single_connected,
        no_lost_acks,
        no_duplicates,
        partial(media, outages=["f3"], fail_fast=3.0),
        primary_masters,
        name="all",
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=3600)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    events = build(args.seconds)
    built = time.perf_counter() - t0
    check = all_checkers()
    times, result = [], None
    for _ in range(args.runs):
        t1 = time.perf_counter()
        result = check(events)
        times.append(time.perf_counter() - t1)
    assert result is not None
    med = statistics.median(times)
    print(f"events: {len(events)} (built in {built:.2f} s)")
    print(f"all checkers: median {med:.3f} s over {args.runs} runs "
          f"(min {min(times):.3f}, max {max(times):.3f}); goal < 2 s")
    for r in result.results:
        print(f"  {r.name:17s} valid={r.valid}")
    if not result.valid:
        print(result.explanation)
    return 0 if result.valid else 1


if __name__ == "__main__":
    raise SystemExit(main())
