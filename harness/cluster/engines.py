"""Which Docker engines a run uses, and which one each pytest-xdist worker takes.

Model. An engine is a URL the Docker SDK accepts: ``unix:///path/to/docker.sock``,
``tcp://host:port`` (TLS from ``DOCKER_CERT_PATH`` / ``DOCKER_TLS_VERIFY`` as the docker CLI
reads them) or ``ssh://[user@]host[:port]`` (through the ``ssh`` client), on this machine
or elsewhere (:func:`is_here`: elsewhere, the harness reaches a run's containers through its
access container, :mod:`harness.cluster.access`). The list comes from
``--mc-docker-host`` (repeatable), else the ini key ``mc_docker_host`` (one per line or
comma-separated), else ``MC_DOCKER_HOSTS`` (comma-separated), else it is empty: the local
engine exactly as without this module (``DOCKER_HOST`` or the default socket, started when it
may be).

An engine holds one cluster at a time unless ``--mc-engine-slots URL=K`` says K. Placement is
round robin over slots: the slot list takes every engine's first slot in the order given,
then every engine's second, and so on; pytest-xdist worker ``gwN`` takes slot ``N mod
len(slots)``, a run without xdist the first. So ``-n 2`` over two engines puts one worker on
each, and a third worker shares the first engine only if it has a second slot.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

SCHEMES = ("unix", "tcp", "ssh")
ENV_HOSTS = "MC_DOCKER_HOSTS"

_UNIX = re.compile(r"^unix:///\S+$")
_TCP = re.compile(r"^tcp://[A-Za-z0-9.\-\[\]:]+:\d{1,5}$")
_SSH = re.compile(r"^ssh://([A-Za-z0-9._\-]+@)?[A-Za-z0-9.\-]+(:\d{1,5})?$")
_WORKER = re.compile(r"^gw(\d+)$")


class EngineSettingError(ValueError):
    """An engine setting that cannot be used: names the setting, the value and what is
    allowed."""

    def __init__(self, setting: str, value: str, allowed: str) -> None:
        super().__init__(f"{setting} {value!r} is invalid: {allowed}")
        self.setting = setting
        self.value = value
        self.allowed = allowed


@dataclass(frozen=True)
class Engine:
    """One Docker engine: its URL and how many clusters it holds at once."""

    url: str
    slots: int = 1

    @property
    def scheme(self) -> str:
        return self.url.split("://", 1)[0]


def check_url(url: str, setting: str = "--mc-docker-host") -> str:
    """``url`` if the Docker SDK can reach an engine by it, else EngineSettingError."""
    url = url.strip()
    ok = (_UNIX.match(url) or _TCP.match(url) or _SSH.match(url)) is not None
    if not ok:
        raise EngineSettingError(
            setting, url, "a Docker engine URL: unix:///path/to/docker.sock, tcp://host:port "
            "or ssh://[user@]host[:port]")
    return url


def split_hosts(text: str) -> list[str]:
    """The URLs of an ini value or ``MC_DOCKER_HOSTS``: separated by commas, spaces or lines."""
    return [u for u in re.split(r"[\s,]+", text) if u]


def parse_slots(values: Iterable[str], urls: Iterable[str]) -> dict[str, int]:
    """``URL=K`` settings (``--mc-engine-slots``) → {url: K}; each URL must be one of
    ``urls`` and K an integer from 1 to 16."""
    known = list(urls)
    out: dict[str, int] = {}
    for v in values:
        url, sep, k = v.strip().rpartition("=")
        if not sep or url not in known:
            raise EngineSettingError(
                "--mc-engine-slots", v, "URL=K where URL is one of the engines given ("
                + (", ".join(known) or "none: give --mc-docker-host first") + ")")
        if not k.isdigit() or not 1 <= int(k) <= 16:
            raise EngineSettingError("--mc-engine-slots", v, "K an integer from 1 to 16")
        out[url] = int(k)
    return out


def engines_from(cli: Iterable[str], ini: str = "", env: Mapping[str, str] | None = None,
                 slots: Iterable[str] = (), flag: str = "--mc-docker-host") -> list[Engine]:
    """The run's engines from the command line (given as ``flag``), else the ini value,
    else the environment (module docstring); checked (:func:`check_url`), duplicates
    refused. Empty: the default local engine."""
    env = os.environ if env is None else env
    cli = [u for u in cli if u]
    if cli:
        urls, setting = cli, flag
    elif split_hosts(ini):
        urls, setting = split_hosts(ini), "mc_docker_host"
    else:
        urls, setting = split_hosts(env.get(ENV_HOSTS, "")), ENV_HOSTS
    urls = [check_url(u, setting) for u in urls]
    seen: set[str] = set()
    for u in urls:
        if u in seen:
            raise EngineSettingError(setting, u, "each engine once (use --mc-engine-slots "
                                     "URL=K for several clusters on one engine)")
        seen.add(u)
    k = parse_slots(slots, urls)
    return [Engine(u, k.get(u, 1)) for u in urls]


def is_local_address(host: str) -> bool:
    """Whether ``host`` names this machine (a socket binds to it only if so)."""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    for family, _, _, _, addr in infos:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            try:
                s.bind((addr[0], 0))
                return True
            except OSError:
                continue
    return False


def engine_host(url: str) -> str:
    """The host of an engine URL (``tcp://host:port``, ``ssh://user@host``): where an engine
    elsewhere publishes the ports the harness dials; ``localhost`` for a unix socket."""
    if url.startswith("unix://"):
        return "localhost"
    return urlsplit(url).hostname or ""


def is_here(url: str) -> bool:
    """Whether the engine of ``url`` runs on this machine (a unix socket, or a host that is
    one of this machine's addresses), so that the host routes its networks: the harness
    then dials containers directly, else through an access container
    (:mod:`harness.cluster.access`)."""
    return url.startswith("unix://") or is_local_address(engine_host(url))


def slot_order(engines: list[Engine]) -> list[Engine]:
    """Every slot once: the first slot of each engine in order, then the second, …"""
    out = []
    for i in range(max((e.slots for e in engines), default=0)):
        out += [e for e in engines if e.slots > i]
    return out


def engine_for(worker: str | None, engines: list[Engine]) -> Engine | None:
    """The engine of pytest-xdist worker ``worker`` (``gw0``, ``gw1``, …; None or
    ``master`` without xdist); None when no engine is given (the default local one)."""
    slots = slot_order(engines)
    if not slots:
        return None
    m = _WORKER.match(worker or "")
    return slots[int(m.group(1)) % len(slots) if m else 0]
