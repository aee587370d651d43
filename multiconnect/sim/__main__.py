"""``python -m multiconnect.sim``: run seeded schedules, print a summary, replay failures.

Exit status: 0 if every schedule passed, 1 if any violated an invariant, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

from ..config import TEST_BREAKS
from ..timing import TIMINGS
from ._compat import reexec_with_gc_nursery
from .report import Summary
from .runner import Result, replay_command, run_schedule, shrink
from .simconfig import FAULT_KINDS, NET_MODELS, SimConfig


def _ints(text: str) -> tuple[int, ...]:
    if text in ("", "none"):
        return ()
    return tuple(int(x) for x in text.split(","))


def parser() -> argparse.ArgumentParser:
    d = SimConfig()
    p = argparse.ArgumentParser(
        prog="python -m multiconnect.sim",
        description="Deterministic simulation of the multiconnect cluster under seeded faults.")
    p.add_argument("--seeds", type=int, default=100, help="how many seeds to run (default 100)")
    p.add_argument("--first", type=int, default=0, help="first seed of the range (default 0)")
    p.add_argument("--seed", type=int, default=None, help="run this one seed only")
    p.add_argument("--minutes", type=float, default=d.minutes,
                   help=f"simulated minutes of faults per schedule (default {d.minutes:g})")
    p.add_argument("--faults", default=",".join(FAULT_KINDS),
                   help=f"fault kinds, comma-separated (default all: {','.join(FAULT_KINDS)})")
    p.add_argument("--fault-rate", type=float, default=d.fault_rate,
                   help=f"faults started per simulated minute (default {d.fault_rate:g})")
    p.add_argument("--masters", type=int, default=d.masters)
    p.add_argument("--coreapps", type=int, default=d.coreapps)
    p.add_argument("--shards", type=int, default=d.shards)
    p.add_argument("--webapps", type=int, default=d.webapps)
    p.add_argument("--timing", choices=sorted(TIMINGS), default=d.timing_name,
                   help="timing preset (harness/spec.py): documented 5/30 s, ci 1/3 s")
    p.add_argument("--break", dest="breaks", choices=TEST_BREAKS, default="",
                   help="deliberately break a safety rule (mutation check)")
    p.add_argument("--net", choices=NET_MODELS, default=d.net,
                   help="how a close travels through faults (see multiconnect/sim/net.py)")
    p.add_argument("--drift", type=float, default=d.drift,
                   help="clock rates within 1 ± drift (default 0.01, fencing.md A1; the "
                        "roles tolerate 0.1; larger values break A1 and are caught)")
    p.add_argument("--a3-cap", type=float, default=d.a3_cap,
                   help="max extra one-way delay on coreapp->gateway links (A3)")
    p.add_argument("--send-rate", type=float, default=d.send_rate,
                   help="messages per second per webapp")
    p.add_argument("--only-faults", type=_ints, default=None,
                   help="keep only these fault indices of the drawn schedule (replays)")
    p.add_argument("--no-failover", action="store_true", help="skip the measured failover")
    p.add_argument("--no-shrink", action="store_true", help="do not shrink a failing schedule")
    p.add_argument("--trace", action="store_true", help="print the whole trace (with --seed)")
    p.add_argument("--context", type=int, default=40,
                   help="trace lines shown before a violation (default 40)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--stop-at-first", action="store_true",
                   help="stop at the first seed that violates an invariant (one process); "
                        "the mutation runner's 'caught within K seeds'")
    return p


def _run_light(cfg: SimConfig) -> Result:
    """Worker entry: keep the trace only for failures (it is large)."""
    res = run_schedule(cfg)
    if res.ok:
        res.trace = []
    return res


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        base = SimConfig(
            minutes=args.minutes, masters=args.masters, coreapps=args.coreapps,
            shards=args.shards, webapps=args.webapps, timing_name=args.timing,
            faults=tuple(f for f in args.faults.split(",") if f), fault_rate=args.fault_rate,
            drift=args.drift, a3_cap=args.a3_cap, send_rate=args.send_rate, breaks=args.breaks,
            net=args.net, only_faults=args.only_faults, failover=not args.no_failover,
        ).validate()
    except ValueError as e:
        print(f"multiconnect.sim: {e}", file=sys.stderr)
        return 2
    seeds = [args.seed] if args.seed is not None else list(range(args.first,
                                                                 args.first + args.seeds))
    configs = [replace(base, seed=s) for s in seeds]
    summary = Summary(base)
    summary.jobs = args.jobs if len(configs) > 1 else 1
    started_wall, started_cpu = time.monotonic(), time.process_time()
    failures: list[Result] = []
    if args.stop_at_first and args.jobs > 1:
        print("multiconnect.sim: --stop-at-first runs in one process (drop --jobs)",
              file=sys.stderr)
        return 2
    if args.jobs > 1 and len(configs) > 1:
        import multiprocessing as mp
        with mp.get_context("fork").Pool(args.jobs) as pool:
            results = pool.imap(_run_light, configs, chunksize=4)
            for res in results:
                summary.add(res)
                if not res.ok:
                    failures.append(res)
    else:
        for cfg in configs:
            res = run_schedule(cfg)
            summary.add(res)
            if not res.ok:
                failures.append(res)
            elif args.seed is None:
                res.trace = []
            if args.trace and args.seed is not None:
                print("\n".join(res.trace_lines()))
            if failures and args.stop_at_first:
                break
    summary.wall = time.monotonic() - started_wall
    summary.cpu = time.process_time() - started_cpu
    print(summary.render())
    if failures:
        first = failures[0]
        if not args.no_shrink and first.cfg.only_faults is None:
            small = shrink(first)
            if small is not first:
                print(f"\nshrunk seed {first.cfg.seed}: {len(small.schedule)} of "
                      f"{len(first.schedule)} faults still give {small.violation.kind}")
            first = small
        print(f"\nFAIL seed {first.cfg.seed}: {first.violation}")
        print(f"--- trace: last {args.context} lines up to the violation ---")
        print("\n".join(first.trace_lines(args.context)))
        print(f"--- replay ---\n{replay_command(first.cfg)}")
        return 1
    return 0


if __name__ == "__main__":
    reexec_with_gc_nursery(["-m", "multiconnect.sim", *sys.argv[1:]])
    sys.exit(main())
