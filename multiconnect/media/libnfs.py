"""libnfs.so.13 (libnfs 4.0) through ctypes: loading, signatures, structures, one context.

Model. A libnfs context (:class:`NfsConn`: one TCP connection, one NFSv4 client id) is used by
one thread at a time. Before each RPC the context's timeout (``nfs_set_timeout``) is set to the
time left, so the thread itself comes back by the deadline. Closing a context destroys it,
unless RPCs are still queued on it: then it is set aside for the life of the process, never
destroyed (:meth:`NfsConn.close`, :data:`ABANDONED_CONTEXTS`).
Facts of libnfs 4.0 this works around (measured against nfs-ganesha 4.3):

* a single NFSv4 WRITE over ~3.9 KB fails to encode: data goes out in 3 KiB ``nfs_pwrite``
  calls, each return value checked, short writes continued;
* creating an existing file fails (exclusive create): temporary names are unique, and an
  existing one is opened with ``O_TRUNC`` instead;
* the default NFSv4 client name is ``Libnfs pid:<pid> <unix seconds>``: two contexts made in
  the same second (or in two containers whose processes share a pid) are one client to the
  server, and the second mount expires the first one's open files. Each context gets a unique
  name and a random verifier.

(The facts about reconnecting and lease renewal are dealt with by the pool, :mod:`.nfs`; the
URL syntax by :mod:`.nfs_url`.)
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import socket
import threading
import time
import uuid
from typing import Any

from .nfs_url import NfsTarget
from .store import MediaError, MediaUnavailable
from .threaded import Deadline

NFS_WRITE_CHUNK = 3 * 1024  # libnfs 4.0 cannot encode an NFSv4 WRITE over ~3.9 KB
NFS_READ_CHUNK = 256 * 1024


class _NfsStat64(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_uint64)
        for name in (
            "dev", "ino", "mode", "nlink", "uid", "gid", "rdev", "size", "blksize", "blocks",
            "atime", "mtime", "ctime", "atime_nsec", "mtime_nsec", "ctime_nsec", "used",
        )
    ]


class _NfsUrl(ctypes.Structure):
    _fields_ = [("server", ctypes.c_char_p), ("path", ctypes.c_char_p), ("file", ctypes.c_char_p)]


_LIB: ctypes.CDLL | None = None
_LIB_LOCK = threading.Lock()
ABANDONED_CONTEXTS = 0  # contexts closed with RPCs still queued (see NfsConn.close)
LIBNFS_NAME = "libnfs.so.13"


def load() -> ctypes.CDLL:
    """Load libnfs.so.13 once and declare the signatures the store uses."""
    global _LIB
    with _LIB_LOCK:
        if _LIB is not None:
            return _LIB
        try:
            lib = ctypes.CDLL(LIBNFS_NAME)
        except OSError as e:
            raise MediaError(f"cannot load {LIBNFS_NAME} (Debian package libnfs13): {e}") from e
        vp, cp, i, u64 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint64
        fhp = ctypes.POINTER(ctypes.c_void_p)
        sigs: dict[str, tuple[Any, list[Any]]] = {
            "nfs_init_context": (vp, []),
            "nfs_destroy_context": (None, [vp]),
            "nfs_queue_length": (i, [vp]),
            "nfs_get_fd": (i, [vp]),
            "nfs_get_error": (cp, [vp]),
            "nfs_parse_url_dir": (ctypes.POINTER(_NfsUrl), [vp, cp]),
            "nfs_destroy_url": (None, [ctypes.POINTER(_NfsUrl)]),
            "nfs_set_timeout": (None, [vp, i]),
            "nfs_set_autoreconnect": (None, [vp, i]),
            "nfs4_set_client_name": (None, [vp, cp]),
            "nfs4_set_verifier": (None, [vp, cp]),
            "nfs_mount": (i, [vp, cp, cp]),
            "nfs_open": (i, [vp, cp, i, fhp]),
            "nfs_create": (i, [vp, cp, i, i, fhp]),
            "nfs_close": (i, [vp, vp]),
            "nfs_fsync": (i, [vp, vp]),
            "nfs_pwrite": (i, [vp, vp, u64, u64, vp]),
            "nfs_pread": (i, [vp, vp, u64, u64, vp]),
            "nfs_rename": (i, [vp, cp, cp]),
            "nfs_mkdir": (i, [vp, cp]),
            "nfs_stat64": (i, [vp, cp, ctypes.POINTER(_NfsStat64)]),
        }
        for name, (restype, argtypes) in sigs.items():
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = argtypes
        _LIB = lib
        return lib


class NfsCallError(Exception):
    """A libnfs call returned an error."""

    LOGICAL = frozenset({errno.ENOENT, errno.EEXIST})

    def __init__(self, what: str, path: str, rc: int, message: str) -> None:
        super().__init__(f"{what} {path}: {message} (rc {rc})")
        self.rc = rc
        self.message = message

    @property
    def logical(self) -> bool:
        """The server answered with a file-level error: the connection is fine."""
        return -self.rc in self.LOGICAL

    @property
    def timed_out(self) -> bool:
        return "timed out" in self.message.lower()


class NfsConn:
    """One mounted libnfs context; used by one thread at a time."""

    def __init__(self, lib: ctypes.CDLL, target: NfsTarget, mount_path: str, dl: Deadline):
        self.lib = lib
        self.last_used = time.monotonic()
        ctx = lib.nfs_init_context()
        if not ctx:
            raise MediaUnavailable("libnfs: nfs_init_context failed")
        self.ctx: int | None = ctx
        try:
            url = lib.nfs_parse_url_dir(ctx, target.libnfs_url.encode())
            if not url:
                raise NfsCallError("parse", target.libnfs_url, -errno.EINVAL, self.error())
            lib.nfs_destroy_url(url)  # parsing set version=4 and nfsport on the context
            lib.nfs_set_autoreconnect(ctx, 0)
            name = f"mc-media {socket.gethostname()} {os.getpid()} {uuid.uuid4().hex}"
            lib.nfs4_set_client_name(ctx, name.encode())
            lib.nfs4_set_verifier(ctx, secrets.token_bytes(8))
            self._arm(dl, "mount")
            self._check("mount", mount_path, lib.nfs_mount(ctx, target.host.encode(),
                                                           mount_path.encode()))
        except BaseException:
            self.close()
            raise

    def error(self) -> str:
        msg = self.lib.nfs_get_error(self.ctx) if self.ctx else None
        return msg.decode(errors="replace") if msg else "unknown error"

    def close(self) -> None:
        """Destroy the context, unless RPCs are still queued on it: then close its socket and
        set it aside for the life of the process (:data:`ABANDONED_CONTEXTS`).

        libnfs 4.0's sync calls keep their callback data on the caller's stack. When the
        socket fails mid-call (a reset link), the call returns at once and leaves its RPC
        queued, its callback pointing at that finished stack frame; destroying the context
        cancels the RPC and runs the callback, which writes into whatever uses that stack
        now — the webapp died of it at an NFS link cut. A context set aside is never touched
        again (a few kilobytes; only connection-level failures make one)."""
        global ABANDONED_CONTEXTS
        if self.ctx:
            ctx, self.ctx = self.ctx, None
            if self.lib.nfs_queue_length(ctx) > 0:
                fd = self.lib.nfs_get_fd(ctx)
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)
                with _LIB_LOCK:
                    ABANDONED_CONTEXTS += 1
                return
            self.lib.nfs_destroy_context(ctx)

    def _arm(self, dl: Deadline, what: str) -> None:
        dl.check(f"NFS {what}")
        self.lib.nfs_set_timeout(self.ctx, max(1, int(dl.remaining() * 1000)))

    def _check(self, what: str, path: str, rc: int) -> int:
        if rc < 0:
            raise NfsCallError(what, path, rc, self.error())
        return rc

    def mkdir(self, path: str, dl: Deadline) -> None:
        self._arm(dl, "mkdir")
        rc = self.lib.nfs_mkdir(self.ctx, path.encode())
        if rc != -errno.EEXIST:
            self._check("mkdir", path, rc)

    def stat(self, path: str, dl: Deadline) -> _NfsStat64:
        st = _NfsStat64()
        self._arm(dl, "stat")
        self._check("stat", path, self.lib.nfs_stat64(self.ctx, path.encode(), ctypes.byref(st)))
        return st

    def rename(self, old: str, new: str, dl: Deadline) -> None:
        self._arm(dl, "rename")
        self._check("rename", old, self.lib.nfs_rename(self.ctx, old.encode(), new.encode()))

    def write_file(self, path: str, data: bytes, dl: Deadline) -> None:
        """Create (or truncate) ``path`` and write ``data`` in 3 KiB calls, then COMMIT."""
        fh = ctypes.c_void_p()
        self._arm(dl, "create")
        rc = self.lib.nfs_create(self.ctx, path.encode(), os.O_WRONLY, 0o644, ctypes.byref(fh))
        if rc == -errno.EEXIST:
            self._arm(dl, "open")
            rc = self.lib.nfs_open(self.ctx, path.encode(), os.O_WRONLY | os.O_TRUNC,
                                   ctypes.byref(fh))
        self._check("create", path, rc)
        # On an error below the handle is not closed: the context is discarded anyway.
        buf = ctypes.create_string_buffer(data, len(data)) if data else None
        base = ctypes.addressof(buf) if buf is not None else 0
        off = 0
        while off < len(data):
            count = min(NFS_WRITE_CHUNK, len(data) - off)
            self._arm(dl, "write")
            n = self._check("write", path,
                            self.lib.nfs_pwrite(self.ctx, fh, off, count, base + off))
            if n == 0:
                raise NfsCallError("write", path, -errno.EIO, "write made no progress")
            off += n
        self._arm(dl, "fsync")
        self._check("fsync", path, self.lib.nfs_fsync(self.ctx, fh))
        self._arm(dl, "close")
        self._check("close", path, self.lib.nfs_close(self.ctx, fh))

    def read_file(self, path: str, dl: Deadline, limit: int | None = None) -> bytes:
        """Read ``path`` to its end (or ``limit`` bytes)."""
        fh = ctypes.c_void_p()
        self._arm(dl, "open")
        self._check("open", path,
                    self.lib.nfs_open(self.ctx, path.encode(), os.O_RDONLY, ctypes.byref(fh)))
        buf = ctypes.create_string_buffer(NFS_READ_CHUNK)
        chunks: list[bytes] = []
        off = 0
        while limit is None or off < limit:
            self._arm(dl, "read")
            n = self._check("read", path,
                            self.lib.nfs_pread(self.ctx, fh, off, NFS_READ_CHUNK, buf))
            if n == 0:
                break
            chunks.append(ctypes.string_at(buf, n))
            off += n
        self._arm(dl, "close")
        self._check("close", path, self.lib.nfs_close(self.ctx, fh))
        return b"".join(chunks)
