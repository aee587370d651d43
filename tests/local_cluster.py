"""Real processes on loopback for the roles' integration tests: a MariaDB server started from
Debian's ``mariadb-server`` binaries in a temporary directory, and the role processes
(``python -m multiconnect …``) on free ports. No containers: this tests the roles alone; the
Docker harness tests them in their images."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pymysql

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll ``predicate`` until it returns a truthy value; on timeout say what was awaited and
    what was seen last."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as e:  # noqa: BLE001 - the last error is part of the message
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}; last seen: {last!r}")


def mariadb_binaries() -> tuple[str, str] | None:
    server = shutil.which("mariadbd") or shutil.which("mysqld") or (
        "/usr/sbin/mariadbd" if os.path.exists("/usr/sbin/mariadbd") else None)
    install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
    if server and install:
        return server, install
    return None


@dataclass
class LocalMariaDB:
    """A throwaway MariaDB server on 127.0.0.1 (root, empty password)."""

    root: Path
    port: int = 0
    proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> LocalMariaDB:
        bins = mariadb_binaries()
        if bins is None:
            raise RuntimeError("MariaDB is not installed: apt-get install -y mariadb-server")
        server, install = bins
        datadir = self.root / "data"
        datadir.mkdir(parents=True)
        subprocess.run([install, f"--datadir={datadir}", "--user=root",
                        "--auth-root-authentication-method=normal", "--skip-test-db"],
                       check=True, capture_output=True)
        self.port = free_port()
        self.log = (self.root / "mariadb.log").open("wb")
        self.proc = subprocess.Popen(
            [server, "--no-defaults", f"--datadir={datadir}", "--user=root",
             f"--socket={self.root / 'mysqld.sock'}", f"--port={self.port}",
             "--bind-address=127.0.0.1", "--default-time-zone=+00:00",
             "--skip-name-resolve", "--innodb-flush-log-at-trx-commit=2"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_until(self._answers, timeout, f"MariaDB on 127.0.0.1:{self.port}")
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            log = (self.root / "mariadb.log").read_text()[-2000:]
            raise RuntimeError("mariadbd exited: " + log)
        pymysql.connect(host="127.0.0.1", port=self.port, user="root", password="",
                        connect_timeout=1).close()
        return True

    def connect(self, database: str = "waent") -> pymysql.connections.Connection:
        return pymysql.connect(host="127.0.0.1", port=self.port, user="root", password="",
                               database=database, autocommit=True)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Proc:
    name: str
    role: str
    env: dict[str, str]
    log_path: Path
    ports: dict[str, int]
    popen: subprocess.Popen | None = None

    def start(self) -> Proc:
        self.log_fh = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "multiconnect", self.role], cwd=REPO, env=self.env,
            stdout=self.log_fh, stderr=subprocess.STDOUT)
        return self

    def kill(self) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait()

    def terminate(self) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class LocalCluster:
    db: LocalMariaDB
    workdir: Path
    heartbeat: int = 1
    unhealthy: int = 3
    ping_timeout: float = 1.0
    scale: float = 0.05
    lease_ttl: float = 3.0
    procs: dict[str, Proc] = field(default_factory=dict)

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WA_")}
        env.update({
            "PYTHONPATH": str(REPO), "WA_DB_HOSTNAME": "127.0.0.1",
            "WA_DB_PORT": str(self.db.port), "WA_DB_USERNAME": "root", "WA_DB_PASSWORD": "",
            "WA_HEARTBEAT_INTERVAL": str(self.heartbeat),
            "WA_UNHEALTHY_INTERVAL": str(self.unhealthy),
            "WA_GATEWAY_PING_TIMEOUT": str(self.ping_timeout),
            "WA_DB_MONITOR_SCALE": str(self.scale), "WA_MASTER_LEASE_TTL": str(self.lease_ttl),
            "WA_MEDIA_PATH": str(self.workdir / "media"),
        })
        if "gateway" in self.procs:
            env["WA_GATEWAY_ADDRESS"] = f"127.0.0.1:{self.procs['gateway'].ports['tcp']}"
        return env

    def start_gateway(self) -> Proc:
        ports = {"tcp": free_port(), "http": free_port()}
        env = self.base_env()
        env.update({"GATEWAY_PORT": str(ports["tcp"]), "GATEWAY_HTTP_PORT": str(ports["http"]),
                    "GATEWAY_PING_TIMEOUT": str(self.ping_timeout)})
        p = Proc("gateway", "gateway", env, self.workdir / "gateway.log", ports).start()
        self.procs["gateway"] = p
        return p

    def start_node(self, name: str, role: str, **extra_env: str) -> Proc:
        ports = {"internal": free_port(), "heartbeat": free_port(), "api": free_port()}
        env = self.base_env()
        env.update({
            "WA_NODE_NAME": name, "WA_INTERNAL_PORT": str(ports["internal"]),
            "WA_HEARTBEAT_PORT": str(ports["heartbeat"]), "WA_API_PORT": str(ports["api"]),
            "WA_ADVERTISE_ADDRESS": f"127.0.0.1:{ports['internal']}",
            "WA_HEARTBEAT_ADDRESS": f"127.0.0.1:{ports['heartbeat']}",
        })
        if role == "master":
            env["WA_MASTER_NODE"] = "1"
        env.update(extra_env)
        p = Proc(name, "coreapp" if role == "master" else role, env,
                 self.workdir / f"{name}.log", ports).start()
        self.procs[name] = p
        return p

    def logs(self) -> str:
        return "\n".join(f"==== {n}\n{p.log()[-4000:]}" for n, p in self.procs.items())

    def stop(self) -> None:
        for p in self.procs.values():
            p.terminate()


@contextlib.contextmanager
def local_mariadb() -> Iterator[LocalMariaDB]:
    with tempfile.TemporaryDirectory(prefix="mc-mariadb-") as d:
        db = LocalMariaDB(Path(d)).start()
        try:
            yield db
        finally:
            db.stop()
