"""What libfaketime costs the nodes: two Python threads contending for the GIL in the node image.

Every node container preloads libfaketime for the clock-skew faults. libfaketime 0.9.10
intercepts ``pthread_cond_timedwait``, which CPython's GIL waits with whenever two threads want
it; unless ``FAKETIME_FORCE_MONOTONIC_FIX=0`` it runs ``getenv`` and ``sscanf`` of the glibc
version inside every such wait (docs/engine-stalls.md, "Fourth look"). The same pure-Python
work (``--loops`` additions in each of two threads, then in one) runs in a fresh node
container, ``--runs`` times, under three environments:

- ``image``: the node image as built (``FAKETIME_FORCE_MONOTONIC_FIX=0``);
- ``fix-on``: the same with that variable removed (``env -u``), i.e. the image before the fix;
- ``no-preload``: ``LD_PRELOAD`` emptied, the work without libfaketime.

Prints the median wall and CPU seconds of each and the CPU ratio against ``no-preload``.
Containers run with no network, carry a run label and are removed after each run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.cluster import cleanup, images  # noqa: E402
from harness.cluster.engine import ensure_engine  # noqa: E402

WORK = """
import json, threading, time
def work(n):
    x = 0
    for i in range(n):
        x += i
def timed(threads, n):
    t, c = time.perf_counter(), time.process_time()
    ts = [threading.Thread(target=work, args=(n,)) for _ in range(threads)]
    [t_.start() for t_ in ts]
    [t_.join() for t_ in ts]
    return time.perf_counter() - t, time.process_time() - c
n = {loops}
one, two = timed(1, n), timed(2, n)
print(json.dumps({{"one_wall": one[0], "one_cpu": one[1], "two_wall": two[0], "two_cpu": two[1]}}))
"""

MODES = {
    "image": (["python3"], {}),
    "fix-on": (["env", "-u", "FAKETIME_FORCE_MONOTONIC_FIX", "python3"], {}),
    "no-preload": (["python3"], {"LD_PRELOAD": ""}),
}


def run_once(client, ref: str, mode: str, loops: int, run_id: str) -> dict[str, float]:
    entry, env = MODES[mode]
    out = client.containers.run(
        ref, entrypoint=entry, command=["-c", WORK.format(loops=loops)], environment=env,
        network_mode="none", remove=True, stdout=True, stderr=False,
        labels={cleanup.LABEL_RUN: run_id, cleanup.LABEL_OWNER: cleanup.owner_label()})
    return json.loads(out.decode().strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="containers per environment (default 5)")
    ap.add_argument("--loops", type=int, default=3_000_000,
                    help="additions per thread (default 3,000,000)")
    args = ap.parse_args(argv)
    if args.runs < 1 or args.loops < 1:
        ap.error("--runs and --loops must be at least 1")
    client = ensure_engine()
    ref = images.ensure_images(client, ["node"])["node"]
    run_id = f"bench-faketime-{uuid.uuid4().hex[:8]}"
    results: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    try:
        for k in range(args.runs):
            for mode in MODES:  # interleaved, so a busy moment hits every mode alike
                results[mode].append(run_once(client, ref, mode, args.loops, run_id))
            print(f"[bench] run {k + 1} of {args.runs} done", file=sys.stderr, flush=True)
    finally:
        cleanup.remove_run(client, run_id)

    def med(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in results[mode])

    base = med("no-preload", "two_cpu")
    print(f"node image {ref}; {args.loops:,} additions per thread; median of {args.runs}")
    print(f"{'environment':<12} {'1 thread cpu s':>15} {'2 threads wall s':>17} "
          f"{'2 threads cpu s':>16} {'cpu vs no-preload':>18}")
    for mode in MODES:
        print(f"{mode:<12} {med(mode, 'one_cpu'):>15.2f} {med(mode, 'two_wall'):>17.2f} "
              f"{med(mode, 'two_cpu'):>16.2f} {med(mode, 'two_cpu') / base:>17.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
