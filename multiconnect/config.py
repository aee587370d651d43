"""Node configuration from environment variables (names follow the real client's).

Every ``WA_*`` variable must be one we know; each value is validated at start and a bad one
stops the node with one line naming the variable and what is allowed (exit code 2).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

from .timing import Timing


class ConfigError(ValueError):
    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


KNOWN_WA = {
    "WA_DB_ENGINE", "WA_DB_HOSTNAME", "WA_DB_PORT", "WA_DB_USERNAME", "WA_DB_PASSWORD",
    "WA_DB_NAME", "WA_DB_CONNECTION_IDLE_TIMEOUT", "WA_DB_TIMEOUT", "WA_MASTER_NODE",
    "WA_NODE_NAME", "WA_ADVERTISE_ADDRESS", "WA_HEARTBEAT_ADDRESS", "WA_ROUTES",
    "WA_GATEWAY_ADDRESS", "WA_GATEWAY_PING_TIMEOUT", "WA_MEDIA_PATH", "WA_MEDIA_TIMEOUT",
    "WA_DB_MONITOR_SCALE", "WA_MASTER_LEASE_TTL", "WA_HEARTBEAT_INTERVAL",
    "WA_UNHEALTHY_INTERVAL", "WA_PHONE_NUMBER", "WA_LOG_LEVEL", "WA_API_PORT",
    "WA_INTERNAL_PORT", "WA_HEARTBEAT_PORT", "WA_TLS_CERT", "WA_TLS_KEY", "WA_SCHEMA_VERSION",
    "WA_TEST_BREAK",
}

# test-only switches that deliberately break a safety rule (mutation checks)
TEST_BREAKS = ("never-self-fence", "promote-on-primary-miss")


@dataclass(frozen=True)
class DbConfig:
    host: str = "db"
    port: int = 3306
    user: str = "root"
    password: str = ""
    name: str = "waent"
    timeout: float = 2.0
    idle_timeout_ms: int = 180000


@dataclass(frozen=True)
class NodeConfig:
    role: str
    name: str
    db: DbConfig
    advertise_address: str
    heartbeat_address: str
    routes: Mapping[str, str] = field(default_factory=dict)
    gateway_address: str = "gateway:5222"
    gateway_ping_timeout: float = 10.0
    media_path: str = "/usr/local/wamedia"
    media_timeout: float = 3.0
    db_monitor_scale: float = 1.0
    lease_ttl: float = 10.0
    heartbeat_interval: int = 5
    unhealthy_interval: int = 30
    phone_number: str = "15550000001"
    log_level: str = "INFO"
    api_port: int = 9090
    internal_port: int = 6250
    heartbeat_port: int = 6253
    tls_cert: str = ""
    tls_key: str = ""
    container_id: str = ""
    schema_version: int | None = None
    test_break: str = ""

    @cached_property
    def timing(self) -> Timing:
        """This node's timing settings, as the harness and the simulator derive bounds."""
        return Timing(heartbeat_interval=self.heartbeat_interval,
                      unhealthy_interval=self.unhealthy_interval,
                      db_monitor_scale=self.db_monitor_scale, lease_ttl=self.lease_ttl,
                      gateway_ping_timeout=self.gateway_ping_timeout)

    @property
    def liveness_interval(self) -> float:
        return self.timing.liveness_interval

    @property
    def stale_after(self) -> float:
        return self.timing.stale_after

    def route(self, peer: str, default: str, kind: str = "") -> str:
        """Address to reach ``peer`` (its internal port, or ``kind='heartbeat'``)."""
        key = f"{peer}/{kind}" if kind else peer
        return self.routes.get(key, default)


def _int(env: Mapping[str, str], var: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(var)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(var, f"must be an integer between {lo} and {hi}, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(var, f"must be an integer between {lo} and {hi}, got {value}")
    return value


def _float(env: Mapping[str, str], var: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(var)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(var, f"must be a number between {lo:g} and {hi:g}, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(var, f"must be a number between {lo:g} and {hi:g}, got {value:g}")
    return value


_HOSTPORT = re.compile(r"^[A-Za-z0-9_.\-]+:\d{1,5}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


def _hostport(var: str, value: str) -> str:
    if not _HOSTPORT.match(value):
        raise ConfigError(var, f"must be host:port, got {value!r}")
    return value


def parse_routes(raw: str) -> dict[str, str]:
    routes: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in raw.split(","))):
        if "=" not in item:
            raise ConfigError("WA_ROUTES", f"entries are name=host:port, got {item!r}")
        key, addr = (s.strip() for s in item.split("=", 1))
        peer = key.split("/", 1)[0]
        if not _NAME.match(peer) or key.count("/") > 1:
            raise ConfigError("WA_ROUTES", f"bad peer name {key!r}")
        routes[key] = _hostport("WA_ROUTES", addr)
    return routes


def container_id() -> str:
    """The container id (Docker sets HOSTNAME to its first 12 hex digits)."""
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as fh:
            for m in re.finditer(r"[0-9a-f]{64}", fh.read()):
                return m.group(0)[:12]
    except OSError:
        pass
    return os.environ.get("HOSTNAME", socket.gethostname())[:12]


def load(role: str, env: Mapping[str, str] | None = None) -> NodeConfig:
    env = os.environ if env is None else env
    unknown = sorted(k for k in env if k.startswith("WA_") and k not in KNOWN_WA)
    if unknown:
        raise ConfigError(unknown[0], "unknown variable; known WA_* variables: "
                          + ", ".join(sorted(KNOWN_WA)))
    engine = env.get("WA_DB_ENGINE", "MYSQL")
    if engine != "MYSQL":
        raise ConfigError("WA_DB_ENGINE", f"must be MYSQL, got {engine!r}")
    master_flag = env.get("WA_MASTER_NODE", "")
    if master_flag not in ("", "0", "1", "true", "false"):
        raise ConfigError("WA_MASTER_NODE", f"must be 1 or 0, got {master_flag!r}")
    if role == "coreapp" and master_flag in ("1", "true"):
        role = "master"
    hostname = env.get("EXTERNAL_HOSTNAME") or {
        "coreapp": env.get("COREAPP_HOSTNAME"), "webapp": env.get("WEBAPP_HOSTNAME"),
    }.get(role) or socket.gethostname()
    name = env.get("WA_NODE_NAME") or hostname
    if not _NAME.match(name):
        raise ConfigError("WA_NODE_NAME",
                          f"must be 1-64 letters, digits, '.', '_' or '-', got {name!r}")
    ports = env.get("COREAPP_EXTERNAL_PORTS", "6250-6253")
    m = re.match(r"^(\d+)-(\d+)$", ports)
    if not m or int(m.group(2)) - int(m.group(1)) != 3:
        raise ConfigError("COREAPP_EXTERNAL_PORTS",
                          f"must be a range of 4 ports like 6250-6253, got {ports!r}")
    internal_port = _int(env, "WA_INTERNAL_PORT", 6250, 1, 65535)
    heartbeat_port = _int(env, "WA_HEARTBEAT_PORT", 6253, 1, 65535)
    # an explicit COREAPP_EXTERNAL_PORTS is the host range the container's 6250-6253 are
    # published on (multi-server installs): others reach this node there
    ext_first = int(m.group(1)) if env.get("COREAPP_EXTERNAL_PORTS") else None
    advertise = _hostport("WA_ADVERTISE_ADDRESS",
                          env.get("WA_ADVERTISE_ADDRESS")
                          or f"{hostname}:{ext_first or internal_port}")
    hb_addr = _hostport("WA_HEARTBEAT_ADDRESS",
                        env.get("WA_HEARTBEAT_ADDRESS")
                        or f"{advertise.rsplit(':', 1)[0]}:"
                           f"{ext_first + 3 if ext_first else heartbeat_port}")
    level = env.get("WA_LOG_LEVEL", "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("WA_LOG_LEVEL", f"must be DEBUG, INFO, WARNING or ERROR, got {level!r}")
    brk = env.get("WA_TEST_BREAK", "")
    if brk and brk not in TEST_BREAKS:
        raise ConfigError("WA_TEST_BREAK", f"must be one of {', '.join(TEST_BREAKS)}, got {brk!r}")
    cert, key = env.get("WA_TLS_CERT", ""), env.get("WA_TLS_KEY", "")
    if bool(cert) != bool(key):
        raise ConfigError("WA_TLS_CERT" if not cert else "WA_TLS_KEY",
                          "WA_TLS_CERT and WA_TLS_KEY must be given together")
    schema = env.get("WA_SCHEMA_VERSION")
    hb = _int(env, "WA_HEARTBEAT_INTERVAL", 5, 1, 600)
    uh = _int(env, "WA_UNHEALTHY_INTERVAL", 30, 1, 3600)
    if uh < 2 * hb:
        raise ConfigError("WA_UNHEALTHY_INTERVAL",
                          f"must be at least 2 × WA_HEARTBEAT_INTERVAL ({2 * hb}), got {uh}")
    phone = env.get("WA_PHONE_NUMBER", "15550000001")
    if not phone.isdigit() or not 6 <= len(phone) <= 15:
        raise ConfigError("WA_PHONE_NUMBER", f"must be 6-15 digits, got {phone!r}")
    db = DbConfig(
        host=env.get("WA_DB_HOSTNAME", "db"),
        port=_int(env, "WA_DB_PORT", 3306, 1, 65535),
        user=env.get("WA_DB_USERNAME", "root"),
        password=env.get("WA_DB_PASSWORD", ""),
        name=env.get("WA_DB_NAME", "waent"),
        timeout=_float(env, "WA_DB_TIMEOUT", 2.0, 0.1, 60.0),
        idle_timeout_ms=_int(env, "WA_DB_CONNECTION_IDLE_TIMEOUT", 180000, 1000, 86_400_000),
    )
    if not _NAME.match(db.name):
        raise ConfigError("WA_DB_NAME", f"must be a plain identifier, got {db.name!r}")
    return NodeConfig(
        role=role, name=name, db=db, advertise_address=advertise, heartbeat_address=hb_addr,
        routes=parse_routes(env.get("WA_ROUTES", "")),
        gateway_address=_hostport("WA_GATEWAY_ADDRESS",
                                  env.get("WA_GATEWAY_ADDRESS", "gateway:5222")),
        gateway_ping_timeout=_float(env, "WA_GATEWAY_PING_TIMEOUT", 10.0, 0.2, 600.0),
        media_path=env.get("WA_MEDIA_PATH", "/usr/local/wamedia"),
        media_timeout=_float(env, "WA_MEDIA_TIMEOUT", 3.0, 0.1, 120.0),
        db_monitor_scale=_float(env, "WA_DB_MONITOR_SCALE", 1.0, 0.001, 10.0),
        lease_ttl=_float(env, "WA_MASTER_LEASE_TTL", 10.0, 0.5, 600.0),
        heartbeat_interval=hb, unhealthy_interval=uh, phone_number=phone, log_level=level,
        api_port=_int(env, "WA_API_PORT", 9090, 1, 65535),
        internal_port=internal_port, heartbeat_port=heartbeat_port, tls_cert=cert, tls_key=key,
        container_id=container_id(),
        schema_version=_int(env, "WA_SCHEMA_VERSION", 0, 1, 1000) if schema else None,
        test_break=brk,
    )
