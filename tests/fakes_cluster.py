"""A fake cluster for nemesis unit tests: containers, toxiproxy and the database views are
in-memory objects that record what was done to them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.cluster.bringup import Node
from harness.cluster.links import build_links
from harness.spec import Topology


@dataclass
class ExecResult:
    exit_code: int
    output: bytes


class FakeContainer:
    def __init__(self, name: str, tmpfs: dict[str, str] | None = None) -> None:
        self.name = name
        self.status = "running"
        self.calls: list[tuple] = []
        self.files: dict[str, str] = {"/run/faketime/offset": "+0\n"}
        self.attrs: dict[str, Any] = {"HostConfig": {"Tmpfs": tmpfs or {}},
                                      "NetworkSettings": {"Networks": {"net": {
                                          "IPAddress": "10.0.0.9"}}}}
        self.fail_on: set[str] = set()

    def _do(self, what: str, *args: Any) -> None:
        self.calls.append((what, *args))
        if what in self.fail_on:
            raise RuntimeError(f"{what} failed on {self.name}")

    def reload(self) -> None:
        pass

    def kill(self, signal: str = "SIGKILL") -> None:
        self._do("kill", signal)
        self.status = "exited"

    def stop(self, timeout: int = 10) -> None:
        self._do("stop", timeout)
        self.status = "exited"

    def start(self) -> None:
        self._do("start")
        self.status = "running"

    def restart(self, timeout: int = 10) -> None:
        self._do("restart", timeout)
        self.status = "running"

    def pause(self) -> None:
        self._do("pause")
        self.status = "paused"

    def unpause(self) -> None:
        self._do("unpause")
        self.status = "running"

    def exec_run(self, cmd: list[str]) -> ExecResult:
        self._do("exec", cmd)
        script = cmd[-1]
        # printf '%s\n' '<text>' > <file>
        text = script.split("'")[3]
        path = script.rsplit(">", 1)[1].strip()
        self.files[path] = text + "\n"
        return ExecResult(0, b"")

    def put_archive(self, path: str, data: bytes) -> bool:
        import io
        import tarfile
        self._do("put_archive", path)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for m in tar.getmembers():
                f = tar.extractfile(m)
                assert f is not None
                self.files[f"{path}/{m.name}"] = f.read().decode()
        return True


class FakeToxiproxy:
    def __init__(self, names: list[str]) -> None:
        self.enabled = {n: True for n in names}
        self.toxics: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in names}
        self.calls: list[tuple] = []
        self.fail_enable: set[str] = set()

    def set_enabled(self, name: str, enabled: bool) -> None:
        self.calls.append(("set_enabled", name, enabled))
        if enabled and name in self.fail_enable:
            raise RuntimeError(f"toxiproxy down while enabling {name}")
        self.enabled[name] = enabled

    def add_toxic(self, proxy: str, type_: str, *, name: str, stream: str = "downstream",
                  toxicity: float = 1.0, attributes: dict[str, Any] | None = None) -> None:
        self.calls.append(("add_toxic", proxy, name))
        assert name not in self.toxics[proxy], f"duplicate toxic {name} on {proxy}"
        self.toxics[proxy][name] = {"type": type_, "stream": stream,
                                    "attributes": dict(attributes or {})}

    def remove_toxic(self, proxy: str, name: str) -> None:
        self.calls.append(("remove_toxic", proxy, name))
        self.toxics[proxy].pop(name, None)


@dataclass
class FakeNetwork:
    name: str = "net"


@dataclass
class FakeCluster:
    spec: Topology = field(default_factory=Topology)
    owners: dict[int, str | None] = field(default_factory=lambda: {0: "coreapp-1"})
    primary: str | None = "master-1"
    gateway_url: str = "http://127.0.0.1:9"

    def __post_init__(self) -> None:
        self.links = build_links(self.spec)
        self.network = FakeNetwork()
        self.nodes: dict[str, Node] = {}
        for role in ("master", "coreapp", "webapp"):
            for n in self.spec.node_names(role):
                self.nodes[n] = Node(n, role, FakeContainer(n), "10.0.0.1")
        self.nodes["db"] = Node("db", "db", FakeContainer("db", {"/var/lib/mysql": "size=1m"}))
        self.nodes["nfs"] = Node("nfs", "nfs", FakeContainer("nfs", {"/export": "size=1m"}))
        self.nodes["gateway"] = Node("gateway", "gateway", FakeContainer("gateway"))
        self.nodes["toxiproxy"] = Node("toxiproxy", "toxiproxy", FakeContainer("toxiproxy"))
        self.toxiproxy = FakeToxiproxy(self.links.names())

    def shard_map(self) -> dict[int, dict[str, Any]]:
        return {s: {"hostname": h, "epoch": 1} for s, h in self.owners.items()}

    def primary_coreapp(self, shard: int = 0) -> str:
        owner = self.owners.get(shard)
        if owner is None:
            raise LookupError(f"shard {shard} has no primary coreapp")
        return owner

    def primary_master(self) -> str:
        if self.primary is None:
            raise LookupError("no live master lease")
        return self.primary

    def container(self, name: str) -> FakeContainer:
        return self.nodes[name].container
