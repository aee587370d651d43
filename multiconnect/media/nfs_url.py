"""NFS media URLs: ``nfs://host[:port]/export[/dir]`` parsed into an :class:`NfsTarget`.

Model. NFSv4 only; the port defaults to 2049, ``:N`` and ``nfsport=N`` mean the same. Fact of
libnfs 4.0: ``nfs://host:port/`` is not understood, so the target hands libnfs
``nfs://host/path?version=4&nfsport=N`` (:attr:`NfsTarget.libnfs_url`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

NFS_DEFAULT_PORT = 2049
NFS_SYNTAX = "nfs://host[:port]/export[/dir][?version=4][&nfsport=N]"

_HOST_RE = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9._-]*[A-Za-z0-9_])?")
_PATH_PART_RE = re.compile(r"[A-Za-z0-9._~+-]+")


@dataclass(frozen=True)
class NfsTarget:
    """A parsed ``nfs://host[:port]/export[/dir]`` spec (NFSv4)."""

    host: str
    port: int
    path: str

    @property
    def libnfs_url(self) -> str:
        """The same target in libnfs 4.0 syntax (it has no ``host:port``)."""
        return f"nfs://{self.host}{self.path}?version=4&nfsport={self.port}"

    def __str__(self) -> str:
        return f"nfs://{self.host}:{self.port}{self.path}"



def parse_nfs_url(url: str) -> NfsTarget:
    """Parse and validate an NFS media URL; ``ValueError`` names what is wrong.

    Accepted: ``nfs://host[:port]/export[/dir]``, optional query ``version=4`` and
    ``nfsport=N`` (same as ``:N``). The port defaults to 2049. Path components are
    ``[A-Za-z0-9._~+-]`` without ``.``/``..``.
    """
    def bad(why: str) -> ValueError:
        return ValueError(f"invalid NFS media URL {url!r}: {why} (expected {NFS_SYNTAX})")

    if not isinstance(url, str):
        raise ValueError(f"NFS media URL must be a string, got {type(url).__name__}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise bad(str(e)) from None
    if parts.scheme.lower() != "nfs":
        raise bad("scheme must be nfs")
    if "@" in parts.netloc:
        raise bad("user names are not supported")
    if parts.fragment:
        raise bad("no #fragment allowed")
    host = parts.hostname or ""
    if "[" in parts.netloc:
        raise bad("IPv6 literals are not supported by libnfs 4.0 URLs")
    if not _HOST_RE.fullmatch(host):
        raise bad("missing or invalid host")
    if port is not None and not 1 <= port <= 65535:
        raise bad("port out of range")
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as e:
        raise bad(f"malformed query: {e}") from None
    seen: set[str] = set()
    for key, value in query:
        if key in seen:
            raise bad(f"{key} given twice")
        seen.add(key)
        if key == "version":
            if value != "4":
                raise bad("only version=4 (NFSv4) is supported")
        elif key == "nfsport":
            if not value.isdigit() or not 1 <= int(value) <= 65535:
                raise bad("nfsport must be a port number")
            if port is not None and port != int(value):
                raise bad("port and nfsport disagree")
            port = int(value)
        else:
            raise bad(f"unknown parameter {key!r} (allowed: version, nfsport)")
    path = parts.path.rstrip("/")
    if not path.startswith("/"):
        raise bad("missing export path")
    for part in path[1:].split("/"):
        if part in ("", ".", "..") or not _PATH_PART_RE.fullmatch(part):
            raise bad(f"invalid path component {part!r}")
    return NfsTarget(host=host, port=port or NFS_DEFAULT_PORT, path=path)
