"""Engine freeze: stop the Docker engine's process (SIGSTOP on ``dockerd``); heal resumes it.

Nothing of the cluster's data path may depend on the engine: containers keep running, and
names resolve from each container's ``/etc/hosts`` (harness.cluster.addresses), not from the
engine's embedded DNS server. A frozen engine stands for a busy one (a container start or removal
holding its network locks, a long garbage collection): while it lasts, the engine answers no API
call, so the harness must not use Docker until the heal (the workload and observers do not). Needs
the engine on this machine and the right to signal it; anywhere else the fault is skipped. Not part
of the random chaos kinds. A run killed while the engine is frozen leaves it stopped: the next
``ensure_engine`` resumes it.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

from harness.cluster.engine import local_dockerd
from harness.nemesis.base import Fault, FaultContext, FaultSkipped, NeedsEngineHost
from harness.nemesis.registry import register


@register
@dataclass
class EngineFreeze(Fault):
    kind = "engine-freeze"
    chaos = None  # the nemesis itself needs the engine between faults

    def start(self, ctx: FaultContext) -> None:
        pid = local_dockerd(ctx.cluster.client)
        if pid is None:
            raise NeedsEngineHost("engine-freeze needs the Docker engine on this machine "
                                  "(reached through its unix socket)")
        try:
            os.kill(pid, signal.SIGSTOP)
        except PermissionError as e:
            raise FaultSkipped(f"engine-freeze: no right to signal dockerd (pid {pid}): "
                               f"{e}") from e
        self._pid = pid
        self.targets = ["dockerd"]

    def heal(self, ctx: FaultContext) -> None:
        pid = getattr(self, "_pid", None)
        if pid is not None:
            os.kill(pid, signal.SIGCONT)
