"""Stress: how often does a cluster's teardown wedge the Docker engine?

    python benchmarks/stress_teardown.py [--cycles N] [--pattern harness|concurrent] [--crowd N]

Each cycle brings up the default cluster (10 containers on one network; with ``--crowd N``,
N idle containers instead, see :class:`Crowd`), puts faults in flight the way a failed
chaos test leaves them — a coreapp just killed (its exit and network
leave still being processed by the engine), the gateway and a master paused — and tears the
run down:

- ``harness``: :func:`harness.cluster.cleanup.remove_run` (one container at a time, unpaused first);
- ``concurrent``: what the harness did before — every container force-removed at once from
  16 threads, paused ones included.

After each teardown the engine must answer ``GET /networks`` within 10 s
(:func:`harness.cluster.engine.check_answering`). A teardown or probe without answer is a *wedge*:
the script asks dockerd for its goroutine dump (SIGUSR1; dockerd writes it under
/var/run/docker/), restarts the engine (only a dockerd this harness started;
:func:`harness.cluster.engine.restart_engine`), sweeps the leftovers and goes on. It prints the
wedges per 100 cycles, and the networks left "with active endpoints" after all their
containers were removed (another libnetwork fault of concurrent removals; swept once the
engine restarts). Everything created carries the run label and is removed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import docker.errors  # noqa: E402

from harness.cluster import cleanup  # noqa: E402
from harness.cluster.bringup import Cluster  # noqa: E402
from harness.cluster.engine import (  # noqa: E402
    EngineNotAnswering,
    answered,
    check_answering,
    ensure_engine,
    local_dockerd,
    restart_engine,
)
from harness.cluster.images import ensure_images  # noqa: E402
from harness.spec import topology  # noqa: E402

CALL_TIMEOUT = 60.0


def concurrent_teardown(client, run_id: str) -> None:
    """The old pattern: every container of the run force-removed at once."""
    flt = {"label": f"{cleanup.LABEL_RUN}={run_id}"}

    def remove(cid: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            client.api.remove_container(cid, force=True, v=True)

    def all_at_once() -> None:
        ids = [c["Id"] for c in client.api.containers(all=True, filters=flt)]
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(remove, ids))

    answered(f"concurrent teardown of {run_id}", all_at_once, CALL_TIMEOUT)


def faults_in_flight(cluster: Cluster) -> None:
    cluster.nodes["coreapp-1"].container.kill()
    cluster.nodes["gateway"].container.pause()
    cluster.nodes["master-2"].container.pause()


class Crowd:
    """``--crowd N``: instead of a cluster, N idle containers (the node image, sleeping) on
    one run network, started concurrently, two paused and one killed before the teardown:
    the same engine operations without the cluster's start-up time, so many more cycles."""

    def __init__(self, client, n: int) -> None:
        self.client, self.n = client, n
        self.run_id = f"mcstress{uuid.uuid4().hex[:6]}"

    def start(self) -> None:
        labels = {cleanup.LABEL_RUN: self.run_id, cleanup.LABEL_OWNER: cleanup.owner_label()}
        image = ensure_images(self.client, names=("base", "node"),
                              progress=lambda _line: None)["node"]
        net = self.client.networks.create(self.run_id, driver="bridge", internal=True,
                                          labels=labels)

        def one(i: int):
            c = self.client.containers.create(image, name=f"{self.run_id}-{i}", detach=True,
                                              entrypoint=["sleep", "600"], init=True,
                                              labels=labels, network=net.name)
            c.start()
            return c

        with ThreadPoolExecutor(max_workers=8) as pool:
            self.containers = list(pool.map(one, range(self.n)))

    def faults(self) -> None:
        self.containers[0].kill()
        for c in self.containers[1:3]:
            c.pause()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=100)
    ap.add_argument("--pattern", choices=("harness", "concurrent"), default="harness")
    ap.add_argument("--crowd", type=int, default=0,
                    help="N idle containers per cycle instead of a cluster (faster cycles)")
    args = ap.parse_args(argv)
    if not 1 <= args.cycles <= 1000:
        ap.error("--cycles: 1-1000")
    if not 0 <= args.crowd <= 100:
        ap.error("--crowd: 0-100")

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    client = ensure_engine(say)
    wedges: list[tuple[int, str]] = []
    stuck: list[int] = []
    t0 = time.monotonic()
    for i in range(1, args.cycles + 1):
        cluster: Cluster | Crowd = (Crowd(client, args.crowd) if args.crowd else
                                    Cluster(topology(), client=client, progress=lambda _l: None))
        try:
            cluster.start()
            if isinstance(cluster, Crowd):
                cluster.faults()
            else:
                faults_in_flight(cluster)
            if args.pattern == "concurrent":
                concurrent_teardown(client, cluster.run_id)
            cleanup.remove_run(client, cluster.run_id)  # harness: all; concurrent: the rest
            check_answering(client)
            if client.networks.list(filters={"label": f"{cleanup.LABEL_RUN}={cluster.run_id}"}):
                stuck.append(i)  # "has active endpoints" after its containers are gone
        except EngineNotAnswering as e:
            pid = local_dockerd(client)
            dump = ""
            if pid is not None:
                os.kill(pid, signal.SIGUSR1)
                time.sleep(2.0)
                dumps = sorted(Path("/var/run/docker").glob("goroutine-stacks-*.log"))
                dump = str(dumps[-1]) if dumps else ""
            wedges.append((i, dump))
            say(f"[stress] cycle {i}: WEDGE ({str(e)[:200]}); goroutine dump {dump or '-'}")
            client = restart_engine(say)
            cleanup.sweep(client, say)
            cleanup.remove_run(client, cluster.run_id)
        if i % 10 == 0 or wedges and wedges[-1][0] == i:
            say(f"[stress] {i}/{args.cycles} cycles, {len(wedges)} wedges, "
                f"{time.monotonic() - t0:.0f} s")
    rate = 100.0 * len(wedges) / args.cycles
    print(f"\npattern {args.pattern}{f', crowd {args.crowd}' if args.crowd else ''}: "
          f"{len(wedges)} wedges in {args.cycles} cycles = {rate:.1f} per 100 cycles "
          f"(at cycles {[c for c, _ in wedges] or '-'}); {len(stuck)} networks stuck with "
          f"'active endpoints' after their containers were removed (at cycles {stuck or '-'});"
          f" {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
