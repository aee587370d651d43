"""The media store named by ``WA_MEDIA_PATH``: a directory path or an ``nfs://`` URL."""

from __future__ import annotations

import re

from .directory import DirectoryMediaStore
from .nfs import NfsMediaStore
from .nfs_url import NFS_SYNTAX
from .store import DEFAULT_TIMEOUT, MediaStore


def open_media_store(spec: str, timeout: float = DEFAULT_TIMEOUT) -> MediaStore:
    """Build the store named by ``spec``: a directory path or ``nfs://host[:port]/export[/dir]``.

    Raises ``ValueError`` (naming the problem) for a malformed spec or timeout, and
    ``MediaError`` if the NFS client library is missing. Does no I/O.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"media store must be a directory or {NFS_SYNTAX}, got {spec!r}")
    if spec != spec.strip():
        raise ValueError(f"media store spec has surrounding whitespace: {spec!r}")
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", spec)
    if scheme:
        if scheme.group(1).lower() != "nfs":
            raise ValueError(
                f"unsupported media store scheme {scheme.group(1)!r} in {spec!r} "
                f"(use a directory path or {NFS_SYNTAX})"
            )
        return NfsMediaStore(spec, timeout)
    return DirectoryMediaStore(spec, timeout)
