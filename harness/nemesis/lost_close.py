"""Lost close: the end of a connection never reaches its server. In toxiproxy's network
namespace, TCP segments carrying FIN or RST toward ``dst`` (default: the gateway) are dropped,
so when a client's connection through a link ends — the coreapp closed it, or a toxic reset
it — toxiproxy's close of the server side is lost, and the server keeps the connection until
its own keepalive gives up (a firewall or NAT that forgets the flow, a path that fails as the
close is sent). New connections and data pass untouched. The gateway then holds a *ghost*:
a coreapp that connects again for the same shard before the gateway's keepalive has dropped
it gets two connections for one shard (a conflict) — unless it waits, as its ghost wait
must (``multiconnect/core/ownership.py``).

The rules are iptables rules entered with ``nsenter`` into toxiproxy's network namespace, so
the fault needs the engine on this machine (its containers' pids) and root; anywhere else it
is skipped. Heal deletes them; they also go with the container. Not part of the random chaos
kinds.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from harness.cluster.engine import local_dockerd
from harness.cluster.links import PORTS
from harness.nemesis.base import Fault, FaultContext, FaultSkipped, NeedsEngineHost
from harness.nemesis.common import container
from harness.nemesis.registry import register

FLAGS = ("FIN", "RST")


@register
@dataclass
class LostClose(Fault):
    dst: str = "gateway"

    kind = "lost-close"
    chaos = None  # needs the engine's host

    def _rules(self, ctx: FaultContext) -> list[list[str]]:
        if self.dst not in PORTS or self.dst not in ctx.cluster.nodes:
            raise FaultSkipped(f"lost-close: {self.dst!r} is not a server of this cluster")
        ip, port = ctx.cluster.nodes[self.dst].ip, PORTS[self.dst]
        return [["OUTPUT", "-p", "tcp", "-d", ip, "--dport", str(port), "--tcp-flags", flag, flag,
                 "-m", "comment", "--comment", f"mc-{self.id}", "-j", "DROP"] for flag in FLAGS]

    def _iptables(self, action: str, rule: list[str]) -> None:
        cmd = ["nsenter", "-t", str(self._pid), "-n", "iptables", "-w", "5", action, *rule]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=20, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"lost-close: {' '.join(cmd)} exited {done.returncode}: "
                               f"{done.stderr.strip()}")

    def start(self, ctx: FaultContext) -> None:
        if local_dockerd(ctx.cluster.client) is None:
            raise NeedsEngineHost("lost-close needs the Docker engine on this machine "
                                  "(reached through its unix socket)")
        missing = [t for t in ("nsenter", "iptables") if shutil.which(t) is None]
        if missing:
            raise FaultSkipped(f"lost-close needs {' and '.join(missing)} on this machine")
        proxy = container(ctx, "toxiproxy")
        proxy.reload()
        self._pid = int(proxy.attrs["State"]["Pid"])
        self.targets = [f"toxiproxy->{self.dst}"]
        self._added: list[list[str]] = []
        for rule in self._rules(ctx):
            self._iptables("-I", rule)
            self._added.append(rule)

    def heal(self, ctx: FaultContext) -> None:
        for rule in list(getattr(self, "_added", [])):
            self._iptables("-D", rule)
            self._added.remove(rule)
