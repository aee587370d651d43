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
from typing import Any

import docker
import docker.errors

from harness.cluster.engine import EngineNotAnswering, answered, check_answering

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


CALL_TIMEOUT = 60.0  # one removal: a SIGKILL, the exit, the network leave, the files


def remove_run(client: docker.DockerClient, run_id: str, network_wait: float = 10.0,
               call_timeout: float = CALL_TIMEOUT) -> int:
    """Remove every container, network and volume of one run. Returns how many.

    Containers go **one at a time**, each unpaused first: dockerd 20.10 deadlocks in
    libnetwork when one container leaves a network while another's endpoint deletion on the
    same network is processed (moby#46661) — removing a run's containers concurrently did
    that (docs/engine-stalls.md). A removal that gets no answer in ``call_timeout`` s is
    reported by name; if the engine then fails the cheap probe too
    (:func:`harness.cluster.engine.check_answering`), the rest is left for the next sweep and one
    :class:`EngineNotAnswering` says what was left and how to get the engine back."""
    flt = {"label": f"{LABEL_RUN}={run_id}"}
    removed = 0
    unanswered: list[str] = []

    def call(what: str, fn: Callable[[], Any]) -> Any:
        try:
            return answered(what, fn, call_timeout)
        except EngineNotAnswering:
            unanswered.append(what)
            check_answering(client, min(call_timeout, 10.0))  # wedged: raises, stop here
            return None

    try:
        containers = call("list the run's containers",
                          lambda: client.api.containers(all=True, filters=flt)) or []
        for c in containers:
            cid, name = c["Id"], (c.get("Names") or [c["Id"][:12]])[0].lstrip("/")
            removed += call(f"remove container {name}", lambda cid=cid: _remove_container(
                client, cid)) or 0
        networks = call("list the run's networks", lambda: client.networks.list(filters=flt))
        for n in networks or []:
            removed += call(f"remove network {n.name}", lambda n=n: _remove_network(
                n, wait=network_wait)) or 0
        volumes = call("list the run's volumes", lambda: client.volumes.list(filters=flt))
        for v in volumes or []:
            removed += call(f"remove volume {v.name}", lambda v=v: _remove_volume(v)) or 0
    except EngineNotAnswering as e:
        raise EngineNotAnswering(
            f"teardown of run {run_id} stopped, the engine is not answering (no answer to: "
            f"{'; '.join(unanswered) or 'the probe'}); its leftovers are removed by the next "
            f"sweep once the engine answers. {e}") from None
    if unanswered:
        raise EngineNotAnswering(f"teardown of run {run_id}: no answer to "
                                 f"{'; '.join(unanswered)} within {call_timeout:g} s (the "
                                 "engine answers the probe again; the next sweep retries)")
    return removed


def _remove_container(client: docker.DockerClient, cid: str) -> int:
    """Unpause (a paused container's SIGKILL waits for the thaw), then force-remove."""
    try:
        if client.api.inspect_container(cid)["State"].get("Paused"):
            client.api.unpause(cid)
        client.api.remove_container(cid, force=True, v=True)
        return 1
    except docker.errors.NotFound:
        return 0


def _remove_volume(volume: Any) -> int:
    try:
        volume.remove(force=True)
        return 1
    except docker.errors.NotFound:
        return 0


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
