"""Benchmark the Docker cluster layer: bring-up to ready, and teardown.

    python benchmarks/bench_cluster.py [--runs N] [--timeout S]
    python benchmarks/bench_cluster.py --cold [--cold-runs N] [--yes]

- warm (default): images cached. Each run starts the default topology (2 masters,
  2 coreapps, 1 webapp, 1 shard, CI timing) with ``Cluster.start()`` until ready (one primary
  master, one connected coreapp, a message delivered at the gateway), then ``stop()``. Prints
  the median (and min/max) of N runs for bring-up, its phases (images check, infrastructure,
  nodes to ready, the latter split into admin login / election+promotion / first delivery)
  and teardown. A run during which an image had to be rebuilt (others edit
  ``multiconnect/``) is reported and left out of the medians.
- ``--cold``: REMOVES THE PROJECT'S IMAGES (every ``mc-*`` tag) first, then times set-up from
  no images to the first ready cluster (``ensure_images`` builds everything, the base image
  with debootstrap included). The toxiproxy binary cache (built with Go) is kept. Refuses if
  any container uses an ``mc-*`` image. Use only on an otherwise idle machine.

Everything created carries ``mc.run=<run id>`` and is removed by ``stop()``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.cluster.bringup import Cluster  # noqa: E402
from harness.cluster.engine import ensure_engine  # noqa: E402
from harness.cluster.images import ensure_images  # noqa: E402
from harness.spec import topology  # noqa: E402

PHASES = (("images", "network created"), ("infrastructure", "infrastructure up"),
          ("nodes to ready", " ready in "))


STEPS = ("admin login done", "primary master + connected coreapp", "message delivered")


class Recorder:
    """Progress sink that timestamps the cluster's progress lines."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.lines: list[tuple[float, str]] = []

    def __call__(self, line: str) -> None:
        self.lines.append((time.monotonic() - self.t0, line))

    def at(self, fragment: str) -> float | None:
        return next((t for t, line in self.lines if fragment in line), None)

    def built(self) -> list[str]:
        return [line for _, line in self.lines if "[images]" in line and " built " in line]


class StampedCluster(Cluster):
    """A Cluster that notes when each readiness step first succeeded (same behaviour)."""

    def __init__(self, *a, rec: Recorder, **kw) -> None:
        super().__init__(*a, progress=rec, **kw)
        self.rec = rec
        self.stamps: dict[str, float] = {}

    def _stamp(self, name: str) -> None:
        self.stamps.setdefault(name, time.monotonic() - self.rec.t0)

    def ready_state(self):
        self._stamp("admin login done")  # called only after the first login succeeded
        state = super().ready_state()
        if state:
            self._stamp("primary master + connected coreapp")
        return state

    def round_trip(self) -> bool:
        ok = super().round_trip()
        if ok:
            self._stamp("message delivered")
        return ok


def one_run(client, timeout: float) -> dict[str, float | list[str]]:
    rec = Recorder()
    c = StampedCluster(topology(), client=client, rec=rec)
    try:
        c.start(timeout=timeout)
        ready = time.monotonic() - rec.t0
    finally:
        t1 = time.monotonic()
        c.stop()
        down = time.monotonic() - t1
    out: dict[str, float | list[str]] = {"bring-up": ready, "teardown": down,
                                         "built": rec.built()}
    prev = 0.0
    for name, fragment in PHASES:
        t = rec.at(fragment)
        if t is not None:
            out[name] = t - prev
            prev = t
    prev = rec.at("infrastructure up") or 0.0
    for name in STEPS:
        if name in c.stamps:
            out[name] = c.stamps[name] - prev
            prev = c.stamps[name]
    return out


def summary(name: str, values: list[float]) -> str:
    if not values:
        return f"  {name:<36} (no runs)"
    return (f"  {name:<36} median {statistics.median(values):6.2f} s   "
            f"min {min(values):6.2f}   max {max(values):6.2f}   (n={len(values)})")


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def warm(client, runs: int, timeout: float, say: Callable[[str], None]) -> None:
    say("[bench] warm-up: making sure every image is cached")
    ensure_images(client, names=("base", "db", "nfs", "toxiproxy", "node"),
                  progress=lambda _l: None)
    say(f"[bench] warm bring-up of the default topology, {runs} runs; load average {load()}")
    results = []
    for i in range(runs):
        r = one_run(client, timeout)
        note = f" (rebuilt: {'; '.join(r['built'])})" if r["built"] else ""
        steps = ", ".join(f"{k} +{float(r[k]):.2f}" for k in STEPS if k in r)
        say(f"[bench] run {i + 1}: bring-up {r['bring-up']:.2f} s ({steps}), teardown "
            f"{r['teardown']:.2f} s{note}")
        results.append(r)
    counted = [r for r in results if not r["built"]]
    print(f"\nwarm bring-up, default topology (2 masters, 2 coreapps, 1 webapp, 1 shard), "
          f"{len(counted)} of {runs} runs without an image rebuild; load average at end "
          f"{load()} on {os.cpu_count()} cores")
    for key in ("bring-up", *(p for p, _ in PHASES), "teardown"):
        print(summary(key, [float(r[key]) for r in counted if key in r]))
    print("  nodes to ready, by step (each from the previous one):")
    for key in STEPS:
        print("  " + summary(key, [float(r[key]) for r in counted if key in r]))


def cold(client, runs: int, timeout: float, yes: bool, say: Callable[[str], None]) -> int:
    banner = ("#" * 78 + "\n# --cold: THIS REMOVES EVERY mc-* IMAGE ON THIS MACHINE "
              "(docker rmi) and rebuilds\n# them from nothing (debootstrap included). Run it "
              "on an idle machine only.\n" + "#" * 78)
    print(banner, file=sys.stderr, flush=True)
    if not yes:
        print("add --yes to go ahead", file=sys.stderr)
        return 2
    times: list[float] = []
    for i in range(runs):
        tags = sorted({t for img in client.images.list() for t in img.tags
                       if t.split("/")[-1].startswith("mc-")})
        users = [c.name for c in client.containers.list(all=True)
                 if c.attrs["Config"]["Image"].split("/")[-1].startswith("mc-")]
        if users:
            print(f"refusing: containers use mc-* images: {', '.join(users)}", file=sys.stderr)
            return 1
        for tag in tags:
            client.images.remove(tag)
        say(f"[bench] cold run {i + 1}: removed {len(tags)} mc-* tags; load average {load()}")
        rec = Recorder()
        t0 = time.monotonic()
        c = Cluster(topology(), client=client, progress=rec)
        try:
            c.start(timeout=timeout)
            times.append(time.monotonic() - t0)
        finally:
            c.stop()
        say(f"[bench] cold run {i + 1}: {times[-1]:.1f} s from no images to ready "
            f"(images {rec.at('network created') or 0:.1f} s)")
    print("\ncold set-up (no mc-* images → first ready default cluster; toxiproxy binary "
          f"cache kept), load average at end {load()}")
    print(summary("no images → ready", times))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="warm runs (default 5)")
    ap.add_argument("--timeout", type=float, default=240.0, help="bring-up timeout per run")
    ap.add_argument("--cold", action="store_true",
                    help="REMOVE the mc-* images and time set-up from no images")
    ap.add_argument("--cold-runs", type=int, default=1, help="cold runs (default 1)")
    ap.add_argument("--yes", action="store_true", help="confirm --cold")
    args = ap.parse_args(argv)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    client = ensure_engine(say)
    if args.cold:
        return cold(client, args.cold_runs, args.timeout, args.yes, say)
    warm(client, args.runs, args.timeout, say)
    return 0


if __name__ == "__main__":
    sys.exit(main())
