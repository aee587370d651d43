"""Make sure a Docker engine answers, starting (and if needed installing) one when we may.

Model: the engine is *available* when ``docker.from_env().ping()`` succeeds. When it does
not and we run as root on Debian, we install Debian's ``docker.io`` (only if ``dockerd`` is
missing), start ``dockerd`` in its own session (log under /var/log) and poll the socket for
up to 60 s. Anywhere else we raise :class:`EngineUnavailable` telling the user what to do.

*Usable* also means it answers ``GET /networks`` within ``probe_timeout``: Debian's dockerd
20.10 can deadlock in libnetwork (moby#46661) and then answer ``/_ping`` while every network
operation and container removal hangs. Such an engine gives :class:`EngineNotAnswering` (one
clear error naming the request, and how to restart it) instead of a 120 s timeout per call;
with ``MC_ENGINE_RESTART=1`` a dockerd that this harness started is killed and started again
(:func:`restart_engine`). A dockerd left stopped by a killed run (nemesis ``engine-freeze``)
is resumed.

Concurrency: a lock file serialises starters. A second caller blocks on the lock while the
first installs/starts dockerd, then finds the socket answering and returns; a caller that
finds a live ``dockerd`` process (pid file) never starts another one, it only waits.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors

from harness.cluster.engines import is_here

Progress = Callable[[str], None]


def print_to_stderr(line: str) -> None:
    """Default progress sink: one line to stderr, flushed."""
    print(line, file=sys.stderr, flush=True)


class EngineUnavailable(RuntimeError):
    """No Docker engine answers and this process cannot start one."""


class EngineNotAnswering(EngineUnavailable):
    """The engine took a request and gave no answer in time (e.g. a libnetwork deadlock of
    dockerd 20.10: ``GET /networks`` and container removals hang while ``/_ping`` answers).
    The message names the operation and says how to get the engine back."""


T = TypeVar("T")


def answered(what: str, call: Callable[[], T], timeout: float) -> T:
    """``call()``'s result, or :class:`EngineNotAnswering` naming ``what`` if it gives no
    answer within ``timeout`` s. The call runs on a daemon thread: a hung request does not
    hold up this caller (nor the interpreter's exit); it ends with the client's own
    timeout."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = call()
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            box["error"] = e

    worker = threading.Thread(target=run, name=f"docker: {what}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise EngineNotAnswering(f"engine not answering: {what}: no answer from the Docker "
                                 f"engine in {timeout:g} s. {RESTART_HINT}")
    if "error" in box:
        raise box["error"]
    return box["value"]


RESTART_HINT = ("If `docker network ls` hangs too, dockerd is wedged (a libnetwork deadlock "
                "of dockerd 20.10, docs/engine-stalls.md): restart it — as root `kill -9 "
                "$(cat /var/run/docker.pid)`, then start it again (`make setup`, or run the "
                "suite with MC_ENGINE_RESTART=1 to let the harness restart a dockerd it "
                "started itself); `python -m harness down --all` then removes the leftovers.")


def check_answering(client: docker.DockerClient, timeout: float = 10.0) -> None:
    """Raise :class:`EngineNotAnswering` unless the engine answers ``GET /_ping`` and
    ``GET /networks`` (the latter takes libnetwork's locks: a deadlock there hangs it)."""
    answered("GET /_ping", client.ping, timeout)
    answered("GET /networks", lambda: client.api.networks(), timeout)


@dataclass(frozen=True)
class EngineConfig:
    """Where things live; the defaults are the real system, tests point them elsewhere."""

    base_url: str | None = None  # None: docker.from_env() (DOCKER_HOST or the default socket)
    start: bool = True  # may this process start (or install) dockerd when none answers?
    dockerd: tuple[str, ...] = ("dockerd",)
    lock_path: Path = Path("/run/mc-chaos-dockerd.lock")
    log_path: Path = Path("/var/log/mc-chaos-dockerd.log")
    pid_path: Path = Path("/var/run/docker.pid")
    process_name: str = "dockerd"  # what /proc/<pid>/comm of a live daemon contains
    start_timeout: float = 60.0
    lock_timeout: float = 600.0  # another caller may be running apt-get
    install: bool = True
    started_path: Path = Path("/run/mc-chaos-dockerd.pid")  # pid of the dockerd we started
    probe_timeout: float = 10.0  # GET /_ping and GET /networks must answer within this
    # restart a wedged dockerd that this harness started (MC_ENGINE_RESTART=1; CI sets it)
    restart_wedged: bool = field(
        default_factory=lambda: os.environ.get("MC_ENGINE_RESTART", "") == "1")


def client_for(url: str) -> docker.DockerClient:
    """A client of the engine at ``url`` (:mod:`harness.cluster.engines`): ``tcp://`` with
    TLS when ``DOCKER_CERT_PATH`` is set (as the docker CLI does), ``ssh://`` through the
    ``ssh`` client."""
    if url.startswith("tcp://") and os.environ.get("DOCKER_CERT_PATH"):
        kwargs = docker.utils.kwargs_from_env(environment={**os.environ, "DOCKER_HOST": url})
        return docker.DockerClient(version="auto", timeout=120, **kwargs)
    return docker.DockerClient(base_url=url, version="auto", timeout=120,
                               use_ssh_client=url.startswith("ssh://"))


def _client(cfg: EngineConfig) -> docker.DockerClient:
    if cfg.base_url:
        return client_for(cfg.base_url)
    return docker.from_env(timeout=120)


def _answers(cfg: EngineConfig) -> docker.DockerClient | None:
    """The client if the engine answers a ping now, else None."""
    try:
        client = _client(cfg)
        if client.ping():
            return client
    except (docker.errors.DockerException, OSError):
        pass
    return None


def _is_debian() -> bool:
    return Path("/etc/debian_version").exists()


def _dockerd_alive(cfg: EngineConfig) -> int | None:
    """Pid of a running daemon recorded in the pid file, else None."""
    try:
        pid = int(cfg.pid_path.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return pid
    return pid if cfg.process_name in comm else None


DEFAULT_SOCKET = "/var/run/docker.sock"


def dockerd_sockets(cmdline: list[str]) -> list[str]:
    """The unix sockets a dockerd command line listens on (``-H``/``--host``; none given:
    the default socket)."""
    hosts: list[str] = []
    for i, arg in enumerate(cmdline):
        if arg in ("-H", "--host") and i + 1 < len(cmdline):
            hosts.append(cmdline[i + 1])
        elif arg.startswith(("--host=", "-H=")):
            hosts.append(arg.split("=", 1)[1])
        elif arg.startswith("-H") and len(arg) > 2:
            hosts.append(arg[2:])
    if not hosts:
        return [DEFAULT_SOCKET]
    return [h[len("unix://"):] for h in hosts if h.startswith("unix://")]


def socket_of(client: docker.DockerClient) -> str | None:
    """The socket path of a client of a unix-socket engine, else None."""
    if not str(getattr(client.api, "base_url", "")).startswith("http+docker://localhost"):
        return None
    adapter = client.api.get_adapter("http+docker://localhost")
    return getattr(adapter, "socket_path", None) or DEFAULT_SOCKET


def engine_url(client: docker.DockerClient) -> str:
    """The URL of ``client``'s engine as a user gives it: ``unix:///path``,
    ``tcp://host:port`` (the SDK keeps ``http://`` or ``https://``), ``ssh://[user@]host``
    (the SDK keeps ``http+docker://ssh`` and the host on its adapter)."""
    socket = socket_of(client)
    if socket:
        return f"unix://{socket}"
    base = str(client.api.base_url)
    if base == "http+docker://ssh":
        adapter = getattr(client.api, "_custom_adapter", None)
        return f"ssh://{getattr(adapter, 'ssh_host', '')}"
    scheme, _, rest = base.partition("://")
    return f"tcp://{rest}" if scheme in ("http", "https") else base


def local_dockerd(client: docker.DockerClient, cfg: EngineConfig | None = None,
                  proc: Path = Path("/proc")) -> int | None:
    """Pid of the dockerd behind ``client`` when it runs on this machine: the live
    ``dockerd`` process listening on the client's unix socket; None for any other engine."""
    socket = socket_of(client)
    if socket is None:
        return None
    want = os.path.realpath(socket)
    name = (cfg or EngineConfig()).process_name
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != name:
                continue
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(os.path.realpath(s) == want for s in dockerd_sockets([a for a in cmdline if a])):
            return int(entry.name)
    return None


def stopped(pid: int) -> bool:
    """True if the process is stopped (SIGSTOP: state ``T`` in /proc/<pid>/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].startswith(("T", "t"))


def _how_to_fix(reason: str) -> str:
    return (
        f"No Docker engine answers ({reason}). Start one before running the suite: "
        "on Debian/Ubuntu as root `apt-get install -y docker.io && "
        "(setsid dockerd >/var/log/dockerd.log 2>&1 &)`, "
        "elsewhere start Docker Desktop / `systemctl start docker`, or point DOCKER_HOST at a "
        "running engine; a non-root user needs to be in the `docker` group."
    )


@contextmanager
def _locked(path: Path, timeout: float, progress: Progress) -> Iterator[None]:
    """Hold an exclusive flock on ``path``, polling while another process has it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told:
                    progress(f"[engine] another process is starting dockerd (lock {path}); waiting")
                    told = True
                if time.monotonic() > deadline:
                    raise EngineUnavailable(
                        f"gave up after {timeout:.0f} s waiting for the lock {path} held by "
                        "another process starting dockerd"
                    ) from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)  # releases the flock


def _install_docker(progress: Progress) -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", "docker.io"]):
        t0 = time.monotonic()
        progress(f"[engine] {' '.join(cmd)}")
        proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, check=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
            raise EngineUnavailable(
                f"`{' '.join(cmd)}` failed (exit {proc.returncode}); "
                f"install docker.io by hand.\n{tail}"
            )
        progress(f"[engine] {' '.join(cmd)} done ({time.monotonic() - t0:.1f} s)")


def _start_dockerd(cfg: EngineConfig, progress: Progress) -> int:
    cfg.log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(cfg.log_path, "ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - fixed command
            list(cfg.dockerd), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            start_new_session=True, close_fds=True,
        )
    cfg.started_path.parent.mkdir(parents=True, exist_ok=True)
    cfg.started_path.write_text(f"{proc.pid}\n")
    progress(f"[engine] started {' '.join(cfg.dockerd)} (pid {proc.pid}), log {cfg.log_path}")
    return proc.pid


def _started_by_us(cfg: EngineConfig) -> int | None:
    try:
        return int(cfg.started_path.read_text().strip())
    except (OSError, ValueError):
        return None


def restart_engine(progress: Progress = print_to_stderr,
                   config: EngineConfig | None = None) -> docker.DockerClient:
    """Kill the dockerd this harness started and start it again. SIGKILL: a deadlocked
    daemon does not finish a graceful stop. Its containers go down with it; the sweep of
    the next start removes what is left of them. Refused for a dockerd started by anyone
    else (the system's service, a user): that one is theirs to restart."""
    cfg = config or EngineConfig()
    with _locked(cfg.lock_path, cfg.lock_timeout, progress):
        pid, ours = _dockerd_alive(cfg), _started_by_us(cfg)
        if pid is None or pid != ours:
            raise EngineNotAnswering(
                f"the Docker engine (pid {pid}) was not started by this harness (it started "
                f"{ours or 'none'}), so it is not restarted here. {RESTART_HINT}")
        progress(f"[engine] dockerd (pid {pid}) stopped answering; killing and restarting it")
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30.0
        while _pid_alive(pid):
            if time.monotonic() > deadline:
                raise EngineNotAnswering(f"dockerd (pid {pid}) did not exit 30 s after SIGKILL")
            time.sleep(0.1)
        new = _start_dockerd(cfg, progress)
        return _wait_answer(cfg, progress, new)


def _usable(client: docker.DockerClient, cfg: EngineConfig,
            progress: Progress) -> docker.DockerClient:
    """``client`` if the engine also answers the libnetwork probe; else restart it (when
    allowed and ours) or raise :class:`EngineNotAnswering`."""
    try:
        check_answering(client, cfg.probe_timeout)
        return client
    except EngineNotAnswering as e:
        if not cfg.restart_wedged or not cfg.start:
            raise
        progress(f"[engine] {e}")
    client = restart_engine(progress, cfg)
    check_answering(client, cfg.probe_timeout)
    return client


def _wait_answer(cfg: EngineConfig, progress: Progress, pid: int | None) -> docker.DockerClient:
    t0 = time.monotonic()
    next_note = t0 + 5.0
    while True:
        client = _answers(cfg)
        if client is not None:
            progress(f"[engine] docker engine answers ({time.monotonic() - t0:.1f} s)")
            return client
        now = time.monotonic()
        if pid is not None and not _pid_alive(pid):
            raise EngineUnavailable(
                f"dockerd (pid {pid}) exited while starting; see {cfg.log_path}:\n"
                + _tail(cfg.log_path)
            )
        if now - t0 > cfg.start_timeout:
            raise EngineUnavailable(
                f"dockerd did not answer within {cfg.start_timeout:.0f} s; see {cfg.log_path}:\n"
                + _tail(cfg.log_path)
            )
        if now >= next_note:
            progress(f"[engine] waiting for the docker socket ({now - t0:.0f} s)")
            next_note = now + 5.0
        time.sleep(0.25)


def _pid_alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap if it is our child and died
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def ensure_engine(
    progress: Progress = print_to_stderr, config: EngineConfig | None = None
) -> docker.DockerClient:
    """Return a client of an engine that answers, starting/installing dockerd when allowed."""
    cfg = config or EngineConfig()
    client = _answers(cfg)
    if client is not None:
        return _usable(client, cfg, progress)
    if not cfg.start:
        raise EngineUnavailable(f"the Docker engine at {cfg.base_url} does not answer "
                                "GET /_ping; start it (scripts/second-engine.sh start for this "
                                "machine's second engine) or leave it out of the engines given")
    if os.geteuid() != 0:
        raise EngineUnavailable(_how_to_fix("not root, so this process will not start dockerd"))
    if not _is_debian():
        raise EngineUnavailable(_how_to_fix("not Debian, so this process will not install dockerd"))
    host = os.environ.get("DOCKER_HOST", "")
    if cfg.base_url is None and host and not host.startswith("unix://"):
        raise EngineUnavailable(_how_to_fix(f"DOCKER_HOST={host} is remote and does not answer"))
    with _locked(cfg.lock_path, cfg.lock_timeout, progress):
        client = _answers(cfg)  # someone else may have started it while we waited
        if client is not None:
            return client
        pid = _dockerd_alive(cfg)
        if pid is not None and stopped(pid):
            # a run killed while it held the engine frozen (nemesis engine-freeze)
            progress(f"[engine] dockerd (pid {pid}) is stopped (SIGSTOP); resuming it")
            os.kill(pid, signal.SIGCONT)
        if pid is not None:
            progress(f"[engine] dockerd already running (pid {pid}); waiting for its socket")
            return _wait_answer(cfg, progress, pid)
        if shutil.which(cfg.dockerd[0]) is None:
            if not cfg.install:
                raise EngineUnavailable(_how_to_fix(f"{cfg.dockerd[0]} is not installed"))
            _install_docker(progress)
        pid = _start_dockerd(cfg, progress)
        return _wait_answer(cfg, progress, pid)


def build_engine(urls: list[str], clients: dict[str, docker.DockerClient],
                 progress: Progress = print_to_stderr) -> docker.DockerClient:
    """Where a run's images are built, to be shipped to every other engine: where the run
    starts. That is the first engine given that is on this machine; with every engine given
    elsewhere, this machine's default engine (started when it may be); with none here either,
    the first engine given (its host then needs the package mirrors the recipes use)."""
    for url in urls:
        if is_here(url):
            return clients[url]
    try:
        local = ensure_engine(progress)
        if is_here(engine_url(local)):
            return local
        reason = f"DOCKER_HOST is elsewhere too ({engine_url(local)})"
    except EngineUnavailable as e:
        reason = str(e)
    progress(f"[images] no engine on this machine to build on ({reason}); building on "
             f"{urls[0]}")
    return clients[urls[0]]


if __name__ == "__main__":
    c = ensure_engine()
    print(c.version().get("Version"))
