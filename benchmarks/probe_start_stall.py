"""Probe: does starting (or killing) a container stall the rest of a running cluster?

    python benchmarks/probe_start_stall.py [--cycles N] [--fault kill|spare|start-only]
                                           [--interval S] [--json FILE]

Brings up the multiconnect topology (2 masters, 5 coreapps, 4 shards, CI timings) under the
harness's normal workload (20 messages/s over every shard), then repeats ``--cycles`` times
what the multiconnect failover scenario does: kill the owner of shard 2, wait 7 s, start its
container again, watch 6 s. ``--fault spare`` kills and restarts a coreapp that owns nothing
(no failover at all); ``start-only`` creates and starts an unrelated container (the node
image, ``sleep``) on the run's network and removes it.

While it runs, samplers on the host measure every channel a stall could live in, each every
20 ms on its own thread (latency of one operation, or a failure):

- ``tcp-db``: a TCP handshake with the database container (kernel and bridge only);
- ``db-direct``: ``SELECT 1`` on a kept-open connection straight to the database;
- ``db-proxy``: ``SELECT 1`` through toxiproxy (the path every node's queries take);
- ``toxiproxy-api``: toxiproxy's HTTP API; ``gateway``: the gateway stand-in's ``/health``;
- ``engine``: ``GET /_ping`` to dockerd; ``harness``: lateness of a 10 ms sleep in this
  process (a stalled interpreter would show here);
- CPU: busy share of both cores and the processes that used it, per 100 ms.

Per cycle it prints, for each channel, the worst latency in the 3 s after the container
start against the worst in a quiet 3 s before the kill, plus the longest gap between
acknowledged sends on each shard not under the fault and any self-fence (a gateway
connection of a shard not under the fault ending). ``--json`` writes every sample.
Everything created carries the run label and is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pymysql  # noqa: E402
import requests  # noqa: E402

from harness.cluster.bringup import Cluster  # noqa: E402
from harness.cluster.links import PORTS  # noqa: E402
from harness.history import History  # noqa: E402
from harness.run.workload import Workload  # noqa: E402
from harness.spec import topology  # noqa: E402

Sample = tuple[float, float | None]  # (monotonic time, latency or None = failed)
PERIOD = 0.02
OP_TIMEOUT = 3.0


class Sampler:
    """Runs ``op`` every PERIOD on a thread; records (start time, latency | None)."""

    def __init__(self, name: str, op: Callable[[], None],
                 setup: Callable[[], None] | None = None) -> None:
        self.name, self.op, self.setup = name, op, setup
        self.samples: list[Sample] = []
        self.errors: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"probe-{name}", daemon=True)

    def _run(self) -> None:
        ready = self.setup is None
        while not self._stop.is_set():
            t = time.monotonic()
            try:
                if not ready:
                    assert self.setup is not None
                    self.setup()
                    ready = True
                self.op()
                self.samples.append((t, time.monotonic() - t))
            except Exception as e:  # noqa: BLE001 - a failure is a sample
                self.samples.append((t, None))
                self.errors.append((t, repr(e)[:200]))
                ready = self.setup is None
            self._stop.wait(max(0.0, PERIOD - (time.monotonic() - t)))

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(OP_TIMEOUT + 1)


class Sql:
    """A kept-open connection running ``SELECT 1``; reconnects after a failure."""

    def __init__(self, host: str, port: int, password: str) -> None:
        self.host, self.port, self.password = host, port, password
        self.conn: Any = None

    def connect(self) -> None:
        with contextlib.suppress(Exception):
            if self.conn is not None:
                self.conn.close()
        self.conn = pymysql.connect(host=self.host, port=self.port, user="root",
                                    password=self.password, connect_timeout=int(OP_TIMEOUT),
                                    read_timeout=OP_TIMEOUT, write_timeout=OP_TIMEOUT,
                                    autocommit=True)

    def select(self) -> None:
        with self.conn.cursor() as cur:
            cur.execute("SELECT 1")
            cur.fetchall()


DNS_PROBE = r"""
import socket, struct, sys, time
q = struct.pack(">HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"".join(
    bytes([len(p)]) + p.encode() for p in sys.argv[1].split(".")) + b"\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3.0)
while True:
    t = time.monotonic()
    try:
        s.sendto(q, ("127.0.0.11", 53))
        s.recvfrom(512)
        print(f"{t} {time.monotonic() - t}", flush=True)
    except OSError:
        print(f"{t} -", flush=True)
    time.sleep(max(0.0, 0.02 - (time.monotonic() - t)))
"""


class Dns(Sampler):
    """Docker's embedded DNS (inside dockerd), asked from a node's network namespace."""

    def __init__(self, pid: int, name: str = "toxiproxy") -> None:
        super().__init__("dns", lambda: None)
        self.proc = subprocess.Popen(  # noqa: S603 - fixed command
            ["nsenter", "-t", str(pid), "-n", sys.executable, "-c", DNS_PROBE, name],
            stdout=subprocess.PIPE, text=True)

    def _run(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            t, lat = line.split()
            self.samples.append((float(t), None if lat == "-" else float(lat)))

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


class Cpu:
    """Every 100 ms: busy share of all cores and the top processes by CPU time used."""

    def __init__(self, containers: dict[str, str] | None = None) -> None:
        self.containers = containers or {}  # container id -> node name (from the cgroup)
        self._nodes_for: dict[str, str] | None = None
        self._node_by_pid: dict[int, str] = {}
        self.samples: list[tuple[float, float, list[tuple[str, float]]]] = []
        self.steal: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probe-cpu", daemon=True)
        self.tick = 100.0  # USER_HZ

    @staticmethod
    def _total() -> tuple[float, float, float]:
        f = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        v = [float(x) for x in f]
        idle = v[3] + v[4]
        return sum(v), idle, v[7] if len(v) > 7 else 0.0  # steal: the VM's host took it

    def _node_of(self, proc: Path) -> str:
        """The node whose container holds this process ('' if none); a process never
        changes container, so each is looked up once (a fresh ``containers`` resets it)."""
        if self._nodes_for is not self.containers:
            self._nodes_for, self._node_by_pid = self.containers, {}
        pid = int(proc.name)
        if pid not in self._node_by_pid:
            try:
                cgroup = (proc / "cgroup").read_text()
            except OSError:
                return ""
            self._node_by_pid[pid] = next(
                (name for cid, name in self.containers.items() if cid in cgroup), "")
        return self._node_by_pid[pid]

    def _procs(self) -> dict[int, tuple[str, float]]:
        out = {}
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                stat = (p / "stat").read_text()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            node = self._node_of(p)
            if node:
                comm = f"{node}:{comm}"
            rest = stat[stat.rindex(")") + 2:].split()
            out[int(p.name)] = (comm, float(rest[11]) + float(rest[12]))
        return out

    def _run(self) -> None:
        last_t, last_idle, last_steal = self._total()
        last_p = self._procs()
        while not self._stop.wait(0.1):
            now = time.monotonic()
            tot, idle, steal = self._total()
            procs = self._procs()
            busy = 1.0 - (idle - last_idle) / max(1e-9, tot - last_t)
            self.steal.append((now, (steal - last_steal) / max(1e-9, tot - last_t)))
            used: dict[str, float] = {}
            for pid, (comm, t) in procs.items():
                d = t - last_p.get(pid, (comm, t if pid in last_p else 0.0))[1]
                if d > 0:
                    used[comm] = used.get(comm, 0.0) + d / self.tick
            top = sorted(used.items(), key=lambda kv: -kv[1])[:5]
            self.samples.append((now, busy, [(c, round(s, 3)) for c, s in top]))
            last_t, last_idle, last_steal, last_p = tot, idle, steal, procs

    def start(self) -> Cpu:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


def samplers(cluster: Cluster) -> list[Sampler]:
    db_ip, proxy_ip = cluster.nodes["db"].ip, cluster.nodes["toxiproxy"].ip
    via = cluster.links["coreapp-1->db"].listen_port
    direct, proxied = (Sql(db_ip, PORTS["db"], cluster.db_root_password),
                       Sql(proxy_ip, via, cluster.db_root_password))
    http = requests.Session()
    engine = cluster.client
    assert engine is not None

    def tcp() -> None:
        with socket.create_connection((db_ip, PORTS["db"]), timeout=OP_TIMEOUT):
            pass

    def get(url: str) -> Callable[[], None]:
        def op() -> None:
            http.get(url, timeout=OP_TIMEOUT).raise_for_status()
        return op

    def tick() -> None:
        time.sleep(0.01)

    return [
        Sampler("tcp-db", tcp),
        Sampler("db-direct", direct.select, direct.connect),
        Sampler("db-proxy", proxied.select, proxied.connect),
        Sampler("toxiproxy-api", get(f"http://{proxy_ip}:8474/version")),
        Sampler("gateway", get(f"{cluster.gateway_url}/health")),
        Sampler("engine", lambda: engine.ping() and None),
        Sampler("harness", tick),
        *[Sampler(name, get(f"http://{cluster.nodes[name].ip}:{PORTS['internal']}"
                            "/internal/status"))
          for name in cluster.spec.node_names("coreapp")],
        Dns(cluster.nodes["webapp-1"].container.attrs["State"]["Pid"]),
    ]


def worst(samples: list[Sample], t0: float, t1: float) -> str:
    window = [lat for t, lat in samples if t0 <= t < t1]
    if not window:
        return "-"
    failed = sum(1 for lat in window if lat is None)
    lats = [lat for lat in window if lat is not None]
    text = f"{max(lats) * 1000:7.0f}" if lats else "      -"
    return text + (f" ({failed} failed)" if failed else "")


def send_gaps(history: History, shards: list[int], t0: float, t1: float) -> dict[int, float]:
    """Longest stretch without an acknowledged send per shard in [t0, t1] (history time)."""
    oks: dict[int, list[float]] = {s: [t0] for s in shards}
    for e in history.events():
        if e.f == "send" and e.type == "ok" and e.value.get("shard") in oks and t0 <= e.time <= t1:
            oks[e.value["shard"]].append(e.time)
    return {s: max(b - a for a, b in zip(ts, ts[1:] + [t1], strict=False)) for s, ts in oks.items()}


def fences(history: History, skip_shard: int, t0: float, t1: float) -> list[str]:
    """Gateway connections of other shards that ended in [t0, t1] (history time)."""
    out = []
    for e in history.events():
        if e.process != "gateway" or not t0 <= e.time <= t1:
            continue
        v = e.value
        if e.f in ("gw-disconnect", "gw-timeout", "gw-kick") and v.get("shard") != skip_shard:
            out.append(f"{v.get('node')} shard {v.get('shard')} {v.get('type')} "
                       f"{v.get('reason', '')}".strip())
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cycles", type=int, default=5)
    ap.add_argument("--fault", choices=("kill", "spare", "start-only", "freeze-engine"),
                    default="kill")
    ap.add_argument("--down", type=float, default=7.0, help="seconds between kill and start")
    ap.add_argument("--watch", type=float, default=6.0, help="seconds watched after the start")
    ap.add_argument("--json", type=Path, help="write every sample here")
    args = ap.parse_args(argv)
    if not 1 <= args.cycles <= 100:
        ap.error("--cycles: 1-100")

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    cluster = Cluster(topology(coreapps=5, shards=4), progress=say)
    history = History()
    cluster.start()
    probes: list[Sampler] = []
    cpu = Cpu()
    marks: list[dict[str, float | str]] = []
    try:
        workload = Workload(cluster, history, media=0.0, health=False, shardmap=False)
        with workload.running():
            probes = [s.start() for s in samplers(cluster)]
            cpu.containers = {n.container.id: name for name, n in cluster.nodes.items()}
            cpu.start()
            time.sleep(3.0)
            assert cluster.client is not None
            for i in range(args.cycles):
                mark: dict[str, float | str] = {"quiet": time.monotonic() - 3.0}
                if args.fault == "freeze-engine":
                    name = "dockerd"
                    mark["target"] = name
                    mark["kill"] = time.monotonic()
                    time.sleep(1.0)
                    pid = int(Path("/var/run/docker.pid").read_text())
                    mark["start"] = time.monotonic()
                    os.kill(pid, signal.SIGSTOP)
                    try:
                        time.sleep(args.down)
                    finally:
                        os.kill(pid, signal.SIGCONT)
                    mark["started"] = time.monotonic()
                    time.sleep(args.watch)
                elif args.fault == "start-only":
                    name = "extra"
                    mark["target"] = name
                    mark["kill"] = time.monotonic()
                    time.sleep(args.down)
                    mark["start"] = time.monotonic()
                    extra = cluster.client.containers.create(
                        cluster.images["node"], name=f"{cluster.run_id}-extra-{i}",
                        entrypoint=["sleep", "30"], labels=cluster._labels("extra"),
                        network=cluster.network.name)
                    extra.start()
                    mark["started"] = time.monotonic()
                    time.sleep(args.watch)
                    extra.remove(force=True)
                else:
                    owners = {cluster.shard_map()[s]["hostname"] for s in range(4)}
                    if args.fault == "kill":
                        name = cluster.primary_coreapp(2)
                    else:
                        name = next(n for n in cluster.spec.node_names("coreapp")
                                    if n not in owners)
                    mark["target"] = name
                    c = cluster.nodes[name].container
                    mark["kill"] = time.monotonic()
                    c.kill()
                    time.sleep(args.down)
                    mark["start"] = time.monotonic()
                    c.start()
                    mark["started"] = time.monotonic()
                    time.sleep(args.watch)
                marks.append(mark)
                say(f"[probe] cycle {i + 1}: {args.fault} {name}")
        for s in probes:
            s.stop()
        cpu.stop()
    finally:
        cluster.stop()

    base = history._t0  # monotonic time of the history's zero
    print(f"\nworst latency (ms) per channel: quiet 3 s before the fault vs 3 s after the "
          f"container start ({args.fault}, {args.cycles} cycles, CI timings)")
    names = [s.name for s in probes]
    print("cycle  window  " + "  ".join(f"{n:>14}" for n in names))
    summary: dict[str, list[float]] = {}
    for i, m in enumerate(marks, 1):
        q0, k, st = float(m["quiet"]), float(m["kill"]), float(m["start"])
        print(f"{i:5}  quiet   " + "  ".join(f"{worst(s.samples, q0, k):>14}" for s in probes))
        print(f"{i:5}  start   " + "  ".join(f"{worst(s.samples, st, st + 3):>14}"
                                           for s in probes))
        for s in probes:
            lats = [lat for t, lat in s.samples if st <= t < st + 3 and lat is not None]
            if lats:
                summary.setdefault(s.name, []).append(max(lats))
        others = [0, 1, 3]
        gaps = send_gaps(history, others, st - base, st - base + args.watch)
        fen = fences(history, 2, st - base, st - base + args.watch)
        busy = [b for t, b, _ in cpu.samples if st <= t < st + 3]
        hot: dict[str, float] = {}
        for t, _, top in cpu.samples:
            if st <= t < st + 3:
                for comm, sec in top:
                    hot[comm] = hot.get(comm, 0.0) + sec
        print("       sends: longest gap per other shard "
              + ", ".join(f"{s}: {g:.2f} s" for s, g in gaps.items())
              + f"; other shards' connections ended: {fen or 'none'}")
        steal = [x for t, x in cpu.steal if st <= t < st + 3]
        if steal:
            print(f"       steal (CPU taken by the VM's host) after start: mean "
                  f"{statistics.mean(steal):.0%} max {max(steal):.0%}")
        if busy:
            print(f"       cpu after start: busy mean {statistics.mean(busy):.0%} max "
                  f"{max(busy):.0%}; top: " + ", ".join(
                      f"{c} {s:.2f}s" for c, s in sorted(hot.items(), key=lambda kv: -kv[1])[:6]))
    print("\nmedian over cycles of the worst latency after the start (ms): " + ", ".join(
        f"{n} {statistics.median(v) * 1000:.0f}" for n, v in summary.items()))
    if args.json:
        args.json.write_text(json.dumps({
            "marks": marks, "samples": {s.name: s.samples for s in probes},
            "errors": {s.name: s.errors for s in probes},
            "cpu": cpu.samples, "history_base": base}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
