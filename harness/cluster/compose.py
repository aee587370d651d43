"""docker-compose runs of the operator files in ``fixtures/compose/``, one isolated run at a time.

Model: a :class:`ComposeRun` owns a run id (``mc-<hex>``), a copy of the fixture files in a
private directory (tests edit them as an operator would), and one bridge network, the run's
"LAN", that every compose project of the run uses as its default network (a generated
override file per project makes it ``external``). Operator files publish their ports on
``${WA_BIND_ADDRESS:-0.0.0.0}``; the run sets it to the LAN's gateway address (a host
address only the host and the run's containers reach), so "servers" (projects) reach each
other through published ports as on separate machines.

No egress: the LAN has IP masquerading off and two ``DOCKER-USER`` rules drop every packet
forwarded from the LAN to another interface or into it from one; they are removed at
teardown (and swept when their bridge is gone). Traffic to the host's address (published
ports, docker-proxy) is not forwarded and stays allowed; that address is also the containers'
upstream DNS server, so a lookup of an unknown name stays on the LAN (``override_for``).

Images: the files name ``mc-node:${WA_IMAGE_TAG}`` and ``mc-db:${WA_DB_TAG}``.
:func:`ensure_versioned_images` tags the harness-built images as ``mc-node:0.1.0`` and
``mc-db:10.11`` and builds ``mc-node:0.2.0`` (FROM the node image, ``WA_SCHEMA_VERSION=2``).

Every container and volume carries ``mc.run`` / ``mc.owner`` (the files' ``labels:`` read
``MC_RUN`` / ``MC_OWNER``); teardown runs ``down -v`` per project and then the label sweep.
"""

from __future__ import annotations

import io
import os
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors

from harness.cluster import cleanup
from harness.cluster.engine import ensure_engine, print_to_stderr
from harness.cluster.images import ensure_images

Progress = Callable[[str], None]
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "compose"
OLD_VERSION, NEW_VERSION, DB_TAG = "0.1.0", "0.2.0", "10.11"
RULE_COMMENT = "mc-compose"
INSTALL_HINT = ("docker-compose is not installed: run `make setup` (it installs Debian's "
                "`docker-compose` package, 1.29), or `apt-get install docker-compose`")


class ComposeError(RuntimeError):
    """A docker-compose command failed; carries the command and its output."""

    def __init__(self, cmd: list[str], rc: int, out: str) -> None:
        super().__init__(f"{' '.join(cmd)} exited {rc}:\n{out[-4000:]}")
        self.cmd, self.rc, self.out = cmd, rc, out


class ComposeMissing(RuntimeError):
    """No docker-compose binary (nor the compose plugin)."""


def compose_command() -> list[str]:
    """``docker-compose`` (Debian) or ``docker compose`` (plugin); else ComposeMissing."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True,
                               text=True, check=False)
        if probe.returncode == 0:
            return ["docker", "compose"]
    raise ComposeMissing(INSTALL_HINT)


# --------------------------------------------------------------------------- images


def ensure_versioned_images(client: docker.DockerClient,
                            progress: Progress = print_to_stderr) -> dict[str, str]:
    """Tag the harness images with the versions the compose files use; build the newer one.

    Returns ``{"0.1.0": ref, "0.2.0": ref, "db": ref}``.
    """
    refs = ensure_images(client, names=("base", "db", "node"), progress=progress)
    node = client.images.get(refs["node"])
    node.tag("mc-node", OLD_VERSION)
    client.images.get(refs["db"]).tag("mc-db", DB_TAG)
    dockerfile = (f"FROM {refs['node']}\nENV WA_SCHEMA_VERSION=2\n"
                  f'LABEL mc.version="{NEW_VERSION}" mc.compose="1"\n').encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    buf.seek(0)
    client.images.build(fileobj=buf, custom_context=True, tag=f"mc-node:{NEW_VERSION}",
                        rm=True, labels={"mc.compose": "1"})
    return {OLD_VERSION: f"mc-node:{OLD_VERSION}", NEW_VERSION: f"mc-node:{NEW_VERSION}",
            "db": f"mc-db:{DB_TAG}"}


# --------------------------------------------------------------------------- iptables


def _iptables(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["iptables", "-w", "5", *args], capture_output=True, text=True,
                          check=False)


def _no_egress_rules(bridge: str) -> list[list[str]]:
    tag = ["-m", "comment", "--comment", f"{RULE_COMMENT}:{bridge}", "-j", "DROP"]
    return [["-i", bridge, "!", "-o", bridge, *tag], ["-o", bridge, "!", "-i", bridge, *tag]]


def egress_rule_counters(bridge: str) -> list[tuple[int, str]]:
    """``(packets, rule)`` of the run's DOCKER-USER drop rules (empty: none installed)."""
    out = _iptables("-L", "DOCKER-USER", "-v", "-x", "-n")
    rows = []
    for line in out.stdout.splitlines():
        if f"{RULE_COMMENT}:{bridge} " in line + " " and "DROP" in line:
            rows.append((int(line.split()[0]), line.strip()))
    return rows


def sweep_rules(progress: Progress = print_to_stderr) -> int:
    """Delete DOCKER-USER rules of runs whose bridge no longer exists."""
    out = _iptables("-S", "DOCKER-USER").stdout.splitlines()
    removed = 0
    for line in out:
        if f"{RULE_COMMENT}:" not in line:
            continue
        bridge = line.split(f"{RULE_COMMENT}:", 1)[1].split()[0].strip('"')
        if Path(f"/sys/class/net/{bridge}").exists():
            continue
        spec = line.split(None, 2)[2]  # after "-A DOCKER-USER"
        if _iptables("-D", "DOCKER-USER", *shlex.split(spec)).returncode == 0:
            removed += 1
    if removed:
        progress(f"[compose] swept {removed} stale DOCKER-USER rules")
    return removed


# --------------------------------------------------------------------------- projects


@dataclass
class Project:
    """One docker-compose project (one "server") of a run."""

    run: ComposeRun
    name: str
    files: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def command(self, *args: str) -> list[str]:
        cmd = [*self.run.compose, "-p", self.name]
        for f in [*self.files, self.run.override_for(self)]:
            cmd += ["-f", f]
        return [*cmd, *args]

    def compose(self, *args: str, check: bool = True, timeout: float = 240.0,
                env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run one docker-compose command in the run directory (bounded by ``timeout``)."""
        cmd = self.command(*args)
        full_env = {**self.run.base_env(), **self.env, **(env or {})}
        try:
            proc = subprocess.run(cmd, cwd=self.run.dir, env=full_env, capture_output=True,
                                  text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as e:
            raise ComposeError(cmd, -1, f"timed out after {timeout:g}s\n"
                               f"{(e.stdout or '')!s}{(e.stderr or '')!s}") from e
        if check and proc.returncode != 0:
            raise ComposeError(cmd, proc.returncode, proc.stdout + proc.stderr)
        return proc

    def up(self, *services: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.compose("up", "-d", *services, **kw)

    def down(self, volumes: bool = False, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.compose("down", "-t", "5", *(["-v"] if volumes else []), **kw)

    def containers(self, service: str | None = None) -> list[Any]:
        labels = [f"com.docker.compose.project={self.name}"]
        if service:
            labels.append(f"com.docker.compose.service={service}")
        return self.run.client.containers.list(all=True, filters={"label": labels})

    def ip(self, service: str) -> str:
        found = self.containers(service)
        if not found:
            raise LookupError(f"no container for service {service!r} in project {self.name}")
        nets = found[0].attrs["NetworkSettings"]["Networks"]
        return nets[self.run.network_name]["IPAddress"]

    def volumes(self) -> list[str]:
        return [v.name for v in self.run.client.volumes.list(
            filters={"label": f"com.docker.compose.project={self.name}"})]


class ComposeRun:
    """One isolated run: a private copy of the files, a LAN without egress, its projects."""

    def __init__(self, client: docker.DockerClient | None = None,
                 progress: Progress = print_to_stderr, hosts: Iterable[str] = ()) -> None:
        self.compose = compose_command()
        self.client = client or ensure_engine(progress)
        self.progress = progress
        self.run_id = f"mc-{uuid.uuid4().hex[:8]}"
        self.owner = cleanup.owner_label()
        self.bridge = f"mcc{self.run_id[3:]}"
        self.network_name = f"{self.run_id}-lan"
        self.hosts = list(hosts)  # server names that resolve to the host's LAN address
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.run_id}-"))
        self.projects: dict[str, Project] = {}
        self.network: Any = None
        self.host_ip = ""
        self.rules: list[list[str]] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> ComposeRun:
        try:
            cleanup.sweep(self.client, self.progress)
            sweep_rules(self.progress)
            for src in FIXTURES.iterdir():
                if src.is_file():
                    shutil.copy2(src, self.dir / src.name)
            self.network = self.client.networks.create(
                self.network_name, driver="bridge", check_duplicate=True,
                options={"com.docker.network.bridge.enable_ip_masquerade": "false",
                         "com.docker.network.bridge.name": self.bridge},
                labels={cleanup.LABEL_RUN: self.run_id, cleanup.LABEL_OWNER: self.owner,
                        cleanup.LABEL_COMPONENT: "compose-lan"})
            self.network.reload()
            self.host_ip = self.network.attrs["IPAM"]["Config"][0]["Gateway"]
            for rule in _no_egress_rules(self.bridge):
                res = _iptables("-I", "DOCKER-USER", *rule)
                if res.returncode != 0:
                    raise RuntimeError(f"cannot install the no-egress rule: {res.stderr}")
                self.rules.append(rule)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        t0 = time.monotonic()
        # the run's containers one at a time first (and its labelled networks and volumes);
        # `down` then removes what compose still knows of
        n = cleanup.remove_run(self.client, self.run_id)
        for project in list(self.projects.values()):
            try:
                project.down(volumes=True, check=False, timeout=120)
            except ComposeError as e:
                self.progress(f"[compose] {project.name}: down failed: {e}")
        for rule in self.rules:
            _iptables("-D", "DOCKER-USER", *rule)
        self.rules = []
        shutil.rmtree(self.dir, ignore_errors=True)
        self.progress(f"[compose] {self.run_id}: torn down ({n} resources removed) in "
                      f"{time.monotonic() - t0:.1f}s")

    def __enter__(self) -> ComposeRun:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ projects
    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k in ("PATH", "HOME", "LANG", "DOCKER_HOST", "XDG_RUNTIME_DIR")}
        # compose keeps its default parallelism: its limit is one semaphore shared by nested
        # tasks, so a small one deadlocks `up` (2 services each hold a slot their containers
        # need). The run's own teardown removes containers one at a time before `down`
        # (docs/engine-stalls.md).
        env.update({"MC_RUN": self.run_id, "MC_OWNER": self.owner,
                    "WA_BIND_ADDRESS": self.host_ip, "COMPOSE_HTTP_TIMEOUT": "120"})
        return env

    def project(self, suffix: str, files: list[str], **env: str) -> Project:
        p = Project(self, f"{self.run_id}-{suffix}", files, dict(env))
        self.projects[p.name] = p
        return p

    def override_for(self, project: Project) -> str:
        """A generated file: the run's LAN as default network, server names → host address,
        and the host's LAN address as every container's upstream DNS server. Docker's embedded
        DNS forwards a name it does not know (a sibling already removed by ``down``) to the
        upstream servers from the container's own namespace: with the host's resolver that
        query left the LAN (the no-egress rule counted it); to the LAN address it stays on the
        run's network and is refused there (nothing listens on port 53)."""
        path = self.dir / f".override-{project.name}.yml"
        if not path.exists():
            services = subprocess.run(
                [*self.compose, "-p", project.name, *sum((["-f", f] for f in project.files),
                                                         []), "config", "--services"],
                cwd=self.dir, env={**self.base_env(), **project.env,
                                   "EXTERNAL_HOSTNAME": "x"},
                capture_output=True, text=True, check=True).stdout.split()
            lines = ['version: "3.5"', "networks:", "  default:", "    external: true",
                     f"    name: {self.network_name}"]
            if services:
                lines.append("services:")
            for s in services:
                lines += [f"  {s}:", "    dns:", f"      - {self.host_ip}"]
                if self.hosts:
                    lines.append("    extra_hosts:")
                    lines += [f'      - "{h}:{self.host_ip}"' for h in self.hosts]
            path.write_text("\n".join(lines) + "\n")
        return path.name

    def edit(self, name: str, old: str, new: str) -> None:
        """Edit a copied file as an operator would (``old`` must occur)."""
        path = self.dir / name
        text = path.read_text()
        if old not in text:
            raise ValueError(f"{old!r} not in {name}")
        path.write_text(text.replace(old, new))
