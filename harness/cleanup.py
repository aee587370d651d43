"""Labels and the sweeper: nothing a run creates outlives it.

Every container, network and volume carries ``mc.run=<run id>`` and ``mc.owner=<host>:<pid>``
(the process that must remove it) — or ``mc.owner=keep`` for clusters started by
``python -m harness up``, which only ``down`` removes. At every start, the sweeper removes the
resources of runs whose owner process is gone (a run killed with SIGKILL).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docker
import docker.errors

LABEL_RUN = "mc.run"
LABEL_OWNER = "mc.owner"
LABEL_COMPONENT = "mc.component"
KEEP = "keep"


def owner_label(keep: bool = False) -> str:
    return KEEP if keep else f"{socket.gethostname()}:{os.getpid()}"


def _owner_alive(owner: str) -> bool:
    if owner == KEEP:
        return True
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname():
        return True  # not ours to judge
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def runs(client: docker.DockerClient) -> dict[str, str]:
    """run id → owner label, for every run with a container or network present."""
    out: dict[str, str] = {}
    # the low-level listing: no per-container inspect that a concurrent removal would break
    for c in client.api.containers(all=True, filters={"label": LABEL_RUN}):
        labels = c.get("Labels") or {}
        out[labels[LABEL_RUN]] = labels.get(LABEL_OWNER, "")
    for n in client.networks.list(filters={"label": LABEL_RUN}):
        out.setdefault(n.attrs["Labels"][LABEL_RUN], n.attrs["Labels"].get(LABEL_OWNER, ""))
    for v in client.volumes.list(filters={"label": LABEL_RUN}):
        out.setdefault(v.attrs["Labels"][LABEL_RUN], v.attrs["Labels"].get(LABEL_OWNER, ""))
    return out


STUCK_NETWORK = ("[cleanup] network {name} has no containers but the engine still counts "
                 "active endpoints (a dockerd bug); left for the next sweep — restarting the "
                 "engine clears it. New runs are not affected (each has its own network).")


def _remove_network(network: Any, wait: float = 10.0, sleep: Callable[[float], None] = time.sleep,
                    clock: Callable[[], float] = time.monotonic,
                    progress: Callable[[str], None] | None = None) -> int:
    """Remove one network. The engine releases a removed container's endpoint
    asynchronously (dockerd 20.10 answered 403 "has active endpoints" right after the
    containers were gone), so that answer is waited out for up to ``wait`` s. If it persists
    the endpoint is stale inside the engine: reported, not raised (nothing of the run is
    running any more). Any other error is raised."""
    deadline = clock() + wait
    while True:
        try:
            network.remove()
            return 1
        except docker.errors.NotFound:
            return 0
        except docker.errors.APIError as e:
            if "active endpoints" not in str(e):
                raise
            if clock() >= deadline:
                (progress or print)(STUCK_NETWORK.format(name=getattr(network, "name", "?")))
                return 0
        sleep(0.2)


def remove_run(client: docker.DockerClient, run_id: str, network_wait: float = 10.0) -> int:
    """Remove every container, network and volume of one run. Returns how many."""
    flt = {"label": f"{LABEL_RUN}={run_id}"}

    def remove(cid: str) -> int:
        try:
            client.api.remove_container(cid, force=True, v=True)
            return 1
        except docker.errors.NotFound:
            return 0

    containers = [c["Id"] for c in client.api.containers(all=True, filters=flt)]
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(containers)))) as pool:
        removed = sum(pool.map(remove, containers))
    for n in client.networks.list(filters=flt):
        removed += _remove_network(n, wait=network_wait)
    for v in client.volumes.list(filters=flt):
        try:
            v.remove(force=True)
            removed += 1
        except docker.errors.NotFound:
            pass
    return removed


def sweep(client: docker.DockerClient, progress: Callable[[str], None] | None = None) -> list[str]:
    """Remove runs whose owner process is gone. Returns the run ids removed."""
    swept = []
    for run_id, owner in runs(client).items():
        if not _owner_alive(owner):
            n = remove_run(client, run_id, network_wait=1.0)  # a stuck one: seen before
            swept.append(run_id)
            if progress:
                progress(f"[cleanup] swept {n} leftovers of dead run {run_id} (owner {owner})")
    return swept
