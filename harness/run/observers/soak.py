"""Soak sampling: each node's resident memory and open file descriptors over a long run.

Model. Every ``interval`` s, for every node container that is running, ``docker top`` gives
the host pids of its processes; the node's process is the ``python3 -m multiconnect`` one
(the image runs it under ``--init``). Its ``VmRSS`` and the entries of ``/proc/<pid>/fd`` are
read from the host's ``/proc``, so sampling costs no ``docker exec`` and needs the engine on
this host (the harness's set-up; a remote ``DOCKER_HOST`` is refused with that reason). Each
sample is a history event ``soak info sample {node, pid, rss, fds}``; a restarted node is a
new pid, i.e. a new series (see :mod:`harness.judge.checkers.growth`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from harness.history import History
from harness.run.observers.poller import Poller

PROCESS = "soak"


def read_proc(pid: int, proc: Path = Path("/proc")) -> tuple[int, int]:
    """``(rss bytes, open fds)`` of ``pid`` from ``/proc``."""
    rss = 0
    for line in (proc / str(pid) / "status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
            break
    fds = len(os.listdir(proc / str(pid) / "fd"))
    return rss, fds


def node_pid(top: dict) -> int | None:
    """The ``python3 -m multiconnect`` process in a ``docker top`` answer."""
    titles = top.get("Titles") or []
    cmd_title = next((t for t in ("CMD", "COMMAND") if t in titles), None)
    if "PID" not in titles or cmd_title is None:
        return None
    pid_col, cmd_col = titles.index("PID"), titles.index(cmd_title)
    for row in top.get("Processes") or []:
        if "multiconnect" in row[cmd_col] and "tini" not in row[cmd_col] \
                and "docker-init" not in row[cmd_col]:
            return int(row[pid_col])
    return None


class SoakSampler(Poller):
    """Records one ``sample`` per running node every ``interval`` s."""

    name = "soak"

    def __init__(self, containers: Callable[[], Iterable[tuple[str, object]]], history: History,
                 interval: float = 10.0, duration: float = 24 * 3600.0,
                 engine: str = "unix://") -> None:
        """``engine``: the URL of the engine the containers run on; soak sampling reads the
        nodes' ``/proc`` on this host, so any engine but a unix socket here is refused."""
        super().__init__(interval, duration)
        if not engine.startswith("unix://"):
            raise RuntimeError("soak sampling reads the nodes' /proc on this host; it needs "
                               f"the Docker engine here, not {engine} (run soak on an engine "
                               "of this machine)")
        self.containers = containers
        self.history = history
        self.samples = 0

    def poll(self) -> None:
        for name, container in self.containers():
            try:
                pid = node_pid(container.top(ps_args="-eo pid,args"))  # type: ignore[attr-defined]
                if pid is None:
                    continue
                rss, fds = read_proc(pid)
            except Exception:  # noqa: BLE001 - a node down or restarting: no sample
                continue
            self.history.append(PROCESS, "info", "sample",
                                {"node": name, "pid": pid, "rss": rss, "fds": fds})
            self.samples += 1
