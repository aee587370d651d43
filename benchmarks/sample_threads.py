"""Sampler: is a node stalled because it waits for a CPU, for the GIL, or for the network?

    python benchmarks/sample_threads.py --out FILE [--interval S] [--duration S]
                                        [--dump-busy DIR]

Runs beside any run of the harness on this machine (the engine must be local) and writes one
JSON line per sample: ``{"wall": t, "<node>": {"run": ms, "wait": ms, "busy": [...]}}`` for
every master, coreapp, webapp and gateway container of every run (``mc.run`` label). ``run``
is the CPU time the container's threads got since the last sample, ``wait`` the time they
spent runnable on a run queue without a CPU (``/proc/<tid>/schedstat``); ``busy`` lists the
threads that ran or waited more than 1 ms: ``[name, state, kernel wait channel, run ms, wait
ms]``. A thread in state R with a large ``wait`` is starved of CPU; one in S on
``futex_do_wait`` waits for a lock (the GIL); one on ``do_epoll_wait`` is idle.

``--dump-busy DIR``: when a node has two or more runnable Python threads, ``py-spy dump`` of
it goes to ``DIR/<node>-<time>.txt`` (at most one per node every 0.7 s; needs ``py-spy``).
Only reads ``/proc`` and ``/sys/fs/cgroup``; sends nothing anywhere. Stops after
``--duration`` seconds (default 600) or on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import time
from pathlib import Path

import docker

NODE_PREFIXES = ("coreapp", "webapp", "master", "gateway")
REFRESH_EVERY = 2.0  # seconds between looks for new or restarted containers


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def node_cgroups(client: docker.DockerClient) -> dict[str, Path]:
    """Node name -> the container's ``cgroup.threads`` file (cgroup v2)."""
    found: dict[str, Path] = {}
    for c in client.containers.list(filters={"label": "mc.run"}):
        name = c.name.split("-", 1)[-1]
        if not name.startswith(NODE_PREFIXES):
            continue
        hits = list(Path("/sys/fs/cgroup").glob(f"**/*{c.id}*/cgroup.threads"))
        if hits:
            found[name] = hits[0]
    return found


def sample_threads(threads_file: Path, last: dict[str, tuple[int, int]]) -> list[list]:
    """One row per thread: name, state, wait channel, run ms, run-queue wait ms, tid."""
    rows: list[list] = []
    for tid in _read(threads_file).split():
        stat = _read(f"/proc/{tid}/stat")
        sched = _read(f"/proc/{tid}/schedstat").split()
        if not stat or len(sched) < 2:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        state = stat[stat.rindex(")") + 2]
        run, wait = int(sched[0]), int(sched[1])
        prev_run, prev_wait = last.get(tid, (run, wait))
        last[tid] = (run, wait)
        rows.append([name, state, _read(f"/proc/{tid}/wchan"),
                     round((run - prev_run) / 1e6, 1), round((wait - prev_wait) / 1e6, 1), tid])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="JSON-lines file to append samples to")
    ap.add_argument("--interval", type=float, default=0.1, help="seconds between samples")
    ap.add_argument("--duration", type=float, default=600.0, help="stop after this long")
    ap.add_argument("--dump-busy", default="", help="directory for py-spy dumps of nodes "
                    "with two or more runnable Python threads")
    args = ap.parse_args()
    if args.dump_busy and not shutil.which("py-spy"):
        ap.error("--dump-busy needs py-spy on the PATH (pip install py-spy)")
    dump_dir = Path(args.dump_busy) if args.dump_busy else None
    if dump_dir:
        dump_dir.mkdir(parents=True, exist_ok=True)
    client = docker.from_env()
    last: dict[str, tuple[int, int]] = {}
    dumped: dict[str, float] = {}
    cgroups: dict[str, Path] = {}
    refreshed = 0.0
    end = time.monotonic() + args.duration
    with open(args.out, "a") as out:
        while time.monotonic() < end:
            if time.monotonic() - refreshed > REFRESH_EVERY:
                cgroups, refreshed = node_cgroups(client), time.monotonic()
            record: dict[str, object] = {"wall": round(time.time(), 3)}
            for node, threads_file in cgroups.items():
                rows = sample_threads(threads_file, last)
                if not rows:
                    continue
                runnable = [r for r in rows if r[1] == "R" and r[0].startswith("python")]
                if dump_dir and len(runnable) >= 2 and time.time() - dumped.get(node, 0) > 0.7:
                    dumped[node] = time.time()
                    tgid = _read(f"/proc/{runnable[0][5]}/status").split("Tgid:")[1].split()[0]
                    target = dump_dir / f"{node}-{time.time():.2f}.txt"
                    subprocess.Popen(["py-spy", "dump", "--pid", tgid],
                                     stdout=target.open("w"), stderr=subprocess.STDOUT)
                record[node] = {"run": round(sum(r[3] for r in rows), 1),
                                "wait": round(sum(r[4] for r in rows), 1),
                                "busy": [r[:5] for r in rows if r[3] > 1 or r[4] > 1]}
            out.write(json.dumps(record) + "\n")
            out.flush()
            time.sleep(args.interval)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
