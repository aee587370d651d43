"""Media store: uploaded media on a shared directory or on an NFS export reached with libnfs.

Model
-----
A media item is two files in one flat directory: ``<id>`` (the bytes) and ``<id>.type`` (the
content type, ASCII). ``put`` writes each file under a unique temporary name
(``.<name>.<random>.tmp``) and renames it into place, data first, type second, so a reader sees
either no item or the complete data; a missing ``.type`` reads as ``application/octet-stream``.
Ids are ``uuid4().hex``; ``get`` accepts ``[0-9a-f-]{8,64}`` and treats anything else as not
found, so no id can name a path outside the directory.

Time bound: every call runs its blocking I/O in a fresh daemon thread and answers within
``timeout`` seconds (``asyncio.wait_for`` around waiting for a slot and for the thread), else
raises ``MediaUnavailable``. At most ``max_concurrency`` threads work for callers at once. The
thread shares a deadline with the caller and gives up at its next step once the deadline passes
or the caller went away. A thread stuck in a call nobody can interrupt (a hung kernel NFS mount)
releases its slot when its caller gives up and holds nothing later calls need; with
``max_stuck`` such threads alive, new calls fail at once with ``MediaUnavailable``.

NFS (``NfsMediaStore``): libnfs.so.13 (libnfs 4.0) through ctypes, NFSv4 only. A libnfs context
(one TCP connection, one NFSv4 client id) is used by one thread at a time: a thread checks one
out of a small pool of idle contexts or mounts a fresh one, and returns it only after a call
that did not fail at the connection level; a context that failed or timed out is destroyed, so
a stuck or broken connection is never reused. Before each RPC the context's timeout
(``nfs_set_timeout``) is set to the time left, so the thread itself comes back by the deadline.
Facts of libnfs 4.0 this works around (measured against nfs-ganesha 4.3):

* a single NFSv4 WRITE over ~3.9 KB fails to encode: data goes out in 3 KiB ``nfs_pwrite``
  calls, each return value checked, short writes continued;
* creating an existing file fails (exclusive create): temporary names are unique, and an
  existing one is opened with ``O_TRUNC`` instead;
* a context never reconnects after its connection drops, and never renews its NFSv4 lease: an
  idle context is reused only for ``idle_ttl`` seconds, and a call that fails on a reused
  context at the connection level is retried once on a fresh context;
* the default NFSv4 client name is ``Libnfs pid:<pid> <unix seconds>``: two contexts made in
  the same second (or in two containers whose processes share a pid) are one client to the
  server, and the second mount expires the first one's open files. Each context gets a unique
  name and a random verifier.
* ``nfs://host:port/`` is not understood by libnfs 4.0: the port goes in ``nfsport=``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import ctypes
import errno
import logging
import math
import os
import re
import secrets
import socket
import stat
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 3.0
DEFAULT_CONTENT_TYPE = "application/octet-stream"
DEFAULT_MAX_SIZE = 16 * 1024 * 1024
DEFAULT_MAX_CONCURRENCY = 8
DEFAULT_MAX_STUCK = 16
NFS_DEFAULT_PORT = 2049
NFS_WRITE_CHUNK = 3 * 1024  # libnfs 4.0 cannot encode an NFSv4 WRITE over ~3.9 KB
NFS_READ_CHUNK = 256 * 1024
DIR_CHUNK = 1024 * 1024
TYPE_MAX = 255

_ID_RE = re.compile(r"[0-9a-f-]{8,64}")
_CONTENT_TYPE_RE = re.compile(r"[\x21-\x7e][\x20-\x7e]*")
_HOST_RE = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9._-]*[A-Za-z0-9_])?")
_PATH_PART_RE = re.compile(r"[A-Za-z0-9._~+-]+")

T = TypeVar("T")


class MediaError(Exception):
    """Base class of every error the media store raises."""


class MediaNotFound(MediaError):
    """No media with that id (or the id is not a valid media id)."""


class MediaUnavailable(MediaError):
    """The store could not be reached or did not answer in time; the message says what failed."""


class MediaInvalid(MediaError, ValueError):
    """The caller's input is unacceptable (content type, explicit id)."""


class MediaTooLarge(MediaInvalid):
    """The data is larger than the store's ``max_size``."""


def is_valid_media_id(media_id: object) -> bool:
    """True for strings that may name a media item (``[0-9a-f-]{8,64}``)."""
    return isinstance(media_id, str) and _ID_RE.fullmatch(media_id) is not None


def normalize_content_type(content_type: str | None) -> str:
    """Return the content type to store: printable ASCII, at most 255 characters.

    Empty or ``None`` becomes ``application/octet-stream``; anything else invalid raises
    ``MediaInvalid``.
    """
    ct = (content_type or "").strip()
    if not ct:
        return DEFAULT_CONTENT_TYPE
    if len(ct) > TYPE_MAX or _CONTENT_TYPE_RE.fullmatch(ct) is None:
        raise MediaInvalid(
            f"content type must be printable ASCII of at most {TYPE_MAX} characters: {ct[:40]!r}"
        )
    return ct


def _check_timeout(timeout: object) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise ValueError(f"media timeout must be a number of seconds, got {timeout!r}")
    value = float(timeout)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"media timeout must be a positive number of seconds, got {timeout!r}")
    return value


def _tmp_name(name: str) -> str:
    return f".{name}.{secrets.token_hex(6)}.tmp"


class _Deadline:
    """What a worker thread shares with the coroutine waiting for it."""

    def __init__(self, seconds: float, where: str = "") -> None:
        self.end = time.monotonic() + seconds
        self.where = where
        self.abandoned = threading.Event()

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def check(self, what: str) -> None:
        """Raise ``MediaUnavailable`` once the deadline passed or the caller gave up."""
        if self.abandoned.is_set() or self.remaining() <= 0:
            where = f" on {self.where}" if self.where else ""
            raise MediaUnavailable(f"{what}{where}: gave up, out of time")


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is None:
        fut.set_result(result)
    else:
        fut.set_exception(exc)


class MediaStore(abc.ABC):
    """Async media store used by the webapp; every call returns or raises within ``timeout``."""

    timeout: float

    @abc.abstractmethod
    async def put(self, data: bytes, content_type: str, *, media_id: str | None = None) -> str:
        """Store ``data``; return its id (new ``uuid4().hex`` unless ``media_id`` is given,
        in which case that item is replaced)."""

    @abc.abstractmethod
    async def get(self, media_id: str) -> tuple[bytes, str]:
        """Return ``(data, content_type)``; ``MediaNotFound`` for unknown or invalid ids."""

    @abc.abstractmethod
    async def check(self) -> None:
        """Return if the store is reachable and usable, else raise ``MediaUnavailable``."""

    def describe(self) -> str:
        """Where the media lives, for messages and logs."""
        return type(self).__name__

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release idle resources (connections); the store stays usable."""


class _Call:
    """Book-keeping of one worker thread (guarded by the store's lock)."""

    __slots__ = ("done", "stuck")

    def __init__(self) -> None:
        self.done = False
        self.stuck = False


class _ThreadedStore(MediaStore):
    """Shared logic: validation, ids, and the thread + deadline wrapper around blocking I/O.

    At most ``max_concurrency`` calls run at once per event loop (others wait, within their
    timeout). A call whose caller gave up while its thread still runs counts as *stuck*; with
    ``max_stuck`` stuck threads alive, new calls fail at once.
    """

    def __init__(self, timeout: float, max_size: int, max_concurrency: int,
                 max_stuck: int) -> None:
        self.timeout = _check_timeout(timeout)
        if max_size < 0 or max_concurrency < 1 or max_stuck < 1:
            raise ValueError("need max_size >= 0, max_concurrency >= 1 and max_stuck >= 1")
        self.max_size = max_size
        self.max_concurrency = max_concurrency
        self.max_stuck = max_stuck
        self._threads = 0
        self._stuck = 0
        self._lock = threading.Lock()
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]
        self._slots = weakref.WeakKeyDictionary()

    @property
    def inflight(self) -> int:
        """Worker threads still running (including stuck ones)."""
        with self._lock:
            return self._threads

    @property
    def stuck(self) -> int:
        """Worker threads still running although their caller gave up."""
        with self._lock:
            return self._stuck

    async def put(self, data: bytes, content_type: str, *, media_id: str | None = None) -> str:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"media data must be bytes, got {type(data).__name__}")
        payload = bytes(data)
        ct = normalize_content_type(content_type)
        if len(payload) > self.max_size:
            raise MediaTooLarge(f"media of {len(payload)} bytes exceeds {self.max_size} bytes")
        if media_id is None:
            media_id = uuid.uuid4().hex
        elif not is_valid_media_id(media_id):
            raise MediaInvalid(f"invalid media id {media_id!r}")
        await self._run(f"put {media_id}", self._put_blocking, media_id, payload, ct)
        return media_id

    async def get(self, media_id: str) -> tuple[bytes, str]:
        if not is_valid_media_id(media_id):
            raise MediaNotFound(f"no media {str(media_id)[:80]!r} (not a media id)")
        return await self._run(f"get {media_id}", self._get_blocking, media_id)

    async def check(self) -> None:
        await self._run("check", self._check_blocking)

    @abc.abstractmethod
    def _put_blocking(self, media_id: str, data: bytes, content_type: str, dl: _Deadline) -> None:
        ...

    @abc.abstractmethod
    def _get_blocking(self, media_id: str, dl: _Deadline) -> tuple[bytes, str]:
        ...

    @abc.abstractmethod
    def _check_blocking(self, dl: _Deadline) -> None:
        ...

    async def _run(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args, deadline)`` in a daemon thread; answer within ``timeout`` seconds."""
        with self._lock:
            if self._stuck >= self.max_stuck:
                raise MediaUnavailable(
                    f"{what} on {self.describe()}: {self._stuck} earlier media operations "
                    "are still stuck in I/O"
                )
        dl = _Deadline(self.timeout, self.describe())
        try:
            return await asyncio.wait_for(self._in_thread(what, fn, args, dl), self.timeout)
        except TimeoutError:  # asyncio.TimeoutError is TimeoutError since 3.11
            raise MediaUnavailable(
                f"{what} on {self.describe()}: no answer within {self.timeout:g} s"
            ) from None
        finally:
            dl.abandoned.set()

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        with self._lock:
            sem = self._slots.get(loop)
            if sem is None:
                sem = self._slots[loop] = asyncio.Semaphore(self.max_concurrency)
            return sem

    async def _in_thread(self, what: str, fn: Callable[..., T], args: tuple[Any, ...],
                         dl: _Deadline) -> T:
        async with self._semaphore():
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[T] = loop.create_future()
            call = _Call()

            def work() -> None:
                result: Any = None
                exc: BaseException | None = None
                try:
                    result = fn(*args, dl)
                except BaseException as e:  # handed to the waiting coroutine
                    exc = e
                finally:
                    with self._lock:
                        call.done = True
                        self._threads -= 1
                        if call.stuck:
                            self._stuck -= 1
                if dl.abandoned.is_set():
                    if exc is not None and not isinstance(exc, MediaError):
                        log.warning("abandoned media call %s failed late: %r", what, exc)
                    return
                with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting
                    loop.call_soon_threadsafe(_settle, fut, result, exc)

            with self._lock:
                self._threads += 1
            try:
                threading.Thread(target=work, name=f"media {what}", daemon=True).start()
            except BaseException:
                with self._lock:
                    self._threads -= 1
                raise
            try:
                return await fut
            finally:
                with self._lock:
                    if not call.done:
                        call.stuck = True
                        self._stuck += 1


# --------------------------------------------------------------------------- directory


class DirectoryMediaStore(_ThreadedStore):
    """Media in a local or mounted directory (``/usr/local/wamedia`` on an NFS mount).

    The directory is created on first use if missing. Files are fsync'ed before the rename
    unless ``fsync=False``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        timeout: float = DEFAULT_TIMEOUT,
        *,
        fsync: bool = True,
        max_size: int = DEFAULT_MAX_SIZE,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        max_stuck: int = DEFAULT_MAX_STUCK,
    ) -> None:
        super().__init__(timeout, max_size, max_concurrency, max_stuck)
        raw = os.fspath(path)
        if not raw or "\x00" in raw:
            raise ValueError(f"invalid media directory {raw!r}")
        self.path = os.path.abspath(raw)
        self.fsync = fsync

    def describe(self) -> str:
        return f"directory {self.path}"

    def _put_blocking(self, media_id: str, data: bytes, content_type: str, dl: _Deadline) -> None:
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as e:
            raise MediaUnavailable(f"put {media_id}: cannot create {self.path}: {e}") from e
        self._write_atomic(media_id, data, dl)
        self._write_atomic(media_id + ".type", content_type.encode("ascii"), dl)

    def _write_atomic(self, name: str, data: bytes, dl: _Deadline) -> None:
        final = os.path.join(self.path, name)
        tmp = os.path.join(self.path, _tmp_name(name))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                view = memoryview(data)
                off = 0
                while off < len(view):
                    dl.check(f"write {final}")
                    n = os.write(fd, view[off : off + DIR_CHUNK])
                    if n <= 0:
                        raise OSError(errno.EIO, "write made no progress")
                    off += n
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            dl.check(f"rename {final}")
            os.replace(tmp, final)
        except OSError as e:
            _unlink_quietly(tmp)
            raise MediaUnavailable(f"write {final}: {e.strerror or e}") from e
        except BaseException:
            _unlink_quietly(tmp)
            raise

    def _get_blocking(self, media_id: str, dl: _Deadline) -> tuple[bytes, str]:
        final = os.path.join(self.path, media_id)
        try:
            data = _read_local(final, dl, None)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise MediaNotFound(f"no media {media_id}") from None
        except OSError as e:
            raise MediaUnavailable(f"read {final}: {e.strerror or e}") from e
        try:
            raw = _read_local(final + ".type", dl, TYPE_MAX + 1)
        except (FileNotFoundError, IsADirectoryError):
            return data, DEFAULT_CONTENT_TYPE
        except OSError as e:
            raise MediaUnavailable(f"read {final}.type: {e.strerror or e}") from e
        return data, _decode_type(raw)

    def _check_blocking(self, dl: _Deadline) -> None:
        try:
            if not os.path.lexists(self.path):
                os.makedirs(self.path, exist_ok=True)
            st = os.stat(self.path)
        except OSError as e:
            raise MediaUnavailable(f"check {self.path}: {e.strerror or e}") from e
        if not stat.S_ISDIR(st.st_mode):
            raise MediaUnavailable(f"check {self.path}: not a directory")
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise MediaUnavailable(f"check {self.path}: not writable")


def _read_local(path: str, dl: _Deadline, limit: int | None) -> bytes:
    chunks: list[bytes] = []
    total = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            dl.check(f"read {path}")
            chunk = f.read(DIR_CHUNK)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            total += len(chunk)
            if limit is not None and total >= limit:
                return b"".join(chunks)


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _decode_type(raw: bytes) -> str:
    try:
        return normalize_content_type(raw.decode("ascii"))
    except (UnicodeDecodeError, MediaInvalid):
        return DEFAULT_CONTENT_TYPE


# --------------------------------------------------------------------------- NFS URL


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


_NFS_SYNTAX = "nfs://host[:port]/export[/dir][?version=4][&nfsport=N]"


def parse_nfs_url(url: str) -> NfsTarget:
    """Parse and validate an NFS media URL; ``ValueError`` names what is wrong.

    Accepted: ``nfs://host[:port]/export[/dir]``, optional query ``version=4`` and
    ``nfsport=N`` (same as ``:N``). The port defaults to 2049. Path components are
    ``[A-Za-z0-9._~+-]`` without ``.``/``..``.
    """
    def bad(why: str) -> ValueError:
        return ValueError(f"invalid NFS media URL {url!r}: {why} (expected {_NFS_SYNTAX})")

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


# --------------------------------------------------------------------------- libnfs


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
ABANDONED_CONTEXTS = 0  # contexts closed with RPCs still queued (see _NfsConn.close)
LIBNFS_NAME = "libnfs.so.13"


def _libnfs() -> ctypes.CDLL:
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


class _NfsCallError(Exception):
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


class _NfsConn:
    """One mounted libnfs context; used by one thread at a time."""

    def __init__(self, lib: ctypes.CDLL, target: NfsTarget, mount_path: str, dl: _Deadline):
        self.lib = lib
        self.last_used = time.monotonic()
        ctx = lib.nfs_init_context()
        if not ctx:
            raise MediaUnavailable("libnfs: nfs_init_context failed")
        self.ctx: int | None = ctx
        try:
            url = lib.nfs_parse_url_dir(ctx, target.libnfs_url.encode())
            if not url:
                raise _NfsCallError("parse", target.libnfs_url, -errno.EINVAL, self.error())
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

    def _arm(self, dl: _Deadline, what: str) -> None:
        dl.check(f"NFS {what}")
        self.lib.nfs_set_timeout(self.ctx, max(1, int(dl.remaining() * 1000)))

    def _check(self, what: str, path: str, rc: int) -> int:
        if rc < 0:
            raise _NfsCallError(what, path, rc, self.error())
        return rc

    def mkdir(self, path: str, dl: _Deadline) -> None:
        self._arm(dl, "mkdir")
        rc = self.lib.nfs_mkdir(self.ctx, path.encode())
        if rc != -errno.EEXIST:
            self._check("mkdir", path, rc)

    def stat(self, path: str, dl: _Deadline) -> _NfsStat64:
        st = _NfsStat64()
        self._arm(dl, "stat")
        self._check("stat", path, self.lib.nfs_stat64(self.ctx, path.encode(), ctypes.byref(st)))
        return st

    def rename(self, old: str, new: str, dl: _Deadline) -> None:
        self._arm(dl, "rename")
        self._check("rename", old, self.lib.nfs_rename(self.ctx, old.encode(), new.encode()))

    def write_file(self, path: str, data: bytes, dl: _Deadline) -> None:
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
                raise _NfsCallError("write", path, -errno.EIO, "write made no progress")
            off += n
        self._arm(dl, "fsync")
        self._check("fsync", path, self.lib.nfs_fsync(self.ctx, fh))
        self._arm(dl, "close")
        self._check("close", path, self.lib.nfs_close(self.ctx, fh))

    def read_file(self, path: str, dl: _Deadline, limit: int | None = None) -> bytes:
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


class _NfsPool:
    """Idle mounted contexts, newest first; a context idle longer than ``idle_ttl`` is dropped
    (libnfs 4.0 never renews the NFSv4 lease, so the server forgets idle clients)."""

    def __init__(self, lib: ctypes.CDLL, target: NfsTarget, max_idle: int, idle_ttl: float):
        self.lib = lib
        self.target = target
        self.max_idle = max_idle
        self.idle_ttl = idle_ttl
        self._idle: list[_NfsConn] = []
        self._lock = threading.Lock()
        self._dir_ready = False

    def take(self, dl: _Deadline) -> tuple[_NfsConn, bool]:
        """Return ``(context, reused)``: a recently used idle context, else a new mount."""
        stale: list[_NfsConn] = []
        conn: _NfsConn | None = None
        with self._lock:  # newest last; if the newest is stale, all are
            if self._idle and time.monotonic() - self._idle[-1].last_used < self.idle_ttl:
                conn = self._idle.pop()
            else:
                stale, self._idle = self._idle, []
        for old in stale:
            old.close()
        if conn is not None:
            return conn, True
        return self._connect(dl), False

    def _connect(self, dl: _Deadline) -> _NfsConn:
        try:
            return _NfsConn(self.lib, self.target, self.target.path, dl)
        except _NfsCallError as e:
            parts = self.target.path.strip("/").split("/")
            if -e.rc != errno.ENOENT or len(parts) < 2 or self._dir_ready:
                raise
        # The export exists but the directory below it does not: create it, then mount it.
        log.info("creating media directory %s", self.target)
        top = _NfsConn(self.lib, self.target, "/" + parts[0], dl)
        try:
            for i in range(2, len(parts) + 1):
                top.mkdir("/" + "/".join(parts[1:i]), dl)
        finally:
            top.close()
        self._dir_ready = True
        return _NfsConn(self.lib, self.target, self.target.path, dl)

    def give(self, conn: _NfsConn) -> None:
        conn.last_used = time.monotonic()
        with self._lock:
            if len(self._idle) < self.max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def drop_idle(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class NfsMediaStore(_ThreadedStore):
    """Media on an NFSv4 export reached in user space with libnfs (no kernel mount).

    ``url`` is ``nfs://host[:port]/export[/dir]``; a missing ``dir`` below the export is
    created. See the module docstring for the connection model.
    """

    def __init__(
        self,
        url: str,
        timeout: float = DEFAULT_TIMEOUT,
        *,
        max_size: int = DEFAULT_MAX_SIZE,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        max_stuck: int = DEFAULT_MAX_STUCK,
        max_idle: int = 4,
        idle_ttl: float = 10.0,
    ) -> None:
        super().__init__(timeout, max_size, max_concurrency, max_stuck)
        self.target = parse_nfs_url(url)
        self._pool = _NfsPool(_libnfs(), self.target, max_idle, idle_ttl)

    def describe(self) -> str:
        return str(self.target)

    def close(self) -> None:
        self._pool.drop_idle()

    def _with_conn(self, what: str, dl: _Deadline, fn: Callable[[_NfsConn], T]) -> T:
        """Run ``fn`` on a pooled context; retry once on a fresh one if a reused context
        failed at the connection level (server restarted, lease expired, link reset)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                conn, reused = self._pool.take(dl)
            except _NfsCallError as e:
                raise MediaUnavailable(f"{what}: cannot mount {self.target}: {e}") from None
            try:
                result = fn(conn)
            except _NfsCallError as e:
                if e.logical:
                    self._pool.give(conn)
                    raise
                conn.close()
                self._pool.drop_idle()
                if reused and attempt == 1 and not e.timed_out and dl.remaining() > 0:
                    log.info("%s: %s; retrying on a new NFS connection", what, e)
                    continue
                raise MediaUnavailable(f"{what} on {self.target}: {e}") from None
            except BaseException:
                conn.close()
                raise
            self._pool.give(conn)
            return result

    def _put_blocking(self, media_id: str, data: bytes, content_type: str, dl: _Deadline) -> None:
        def put(conn: _NfsConn) -> None:
            for name, blob in ((media_id, data), (media_id + ".type", content_type.encode())):
                tmp = "/" + _tmp_name(name)
                conn.write_file(tmp, blob, dl)
                conn.rename(tmp, "/" + name, dl)

        try:
            self._with_conn(f"put {media_id}", dl, put)
        except _NfsCallError as e:  # a file-level error the server gave
            raise MediaUnavailable(f"put {media_id} on {self.target}: {e}") from None

    def _get_blocking(self, media_id: str, dl: _Deadline) -> tuple[bytes, str]:
        def get(conn: _NfsConn) -> tuple[bytes, str] | None:
            try:
                data = conn.read_file("/" + media_id, dl)
            except _NfsCallError as e:
                if -e.rc == errno.ENOENT:
                    return None
                raise
            try:
                raw = conn.read_file(f"/{media_id}.type", dl, TYPE_MAX + 1)
            except _NfsCallError as e:
                if -e.rc == errno.ENOENT:
                    return data, DEFAULT_CONTENT_TYPE
                raise
            return data, _decode_type(raw)

        try:
            found = self._with_conn(f"get {media_id}", dl, get)
        except _NfsCallError as e:
            raise MediaUnavailable(f"get {media_id} on {self.target}: {e}") from None
        if found is None:
            raise MediaNotFound(f"no media {media_id}")
        return found

    def _check_blocking(self, dl: _Deadline) -> None:
        try:
            st = self._with_conn("check", dl, lambda conn: conn.stat("/", dl))
        except _NfsCallError as e:
            raise MediaUnavailable(f"check {self.target}: {e}") from None
        if not stat.S_ISDIR(st.mode):
            raise MediaUnavailable(f"check {self.target}: not a directory")


# --------------------------------------------------------------------------- factory


def open_media_store(spec: str, timeout: float = DEFAULT_TIMEOUT) -> MediaStore:
    """Build the store named by ``spec``: a directory path or ``nfs://host[:port]/export[/dir]``.

    Raises ``ValueError`` (naming the problem) for a malformed spec or timeout, and
    ``MediaError`` if the NFS client library is missing. Does no I/O.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"media store must be a directory or {_NFS_SYNTAX}, got {spec!r}")
    if spec != spec.strip():
        raise ValueError(f"media store spec has surrounding whitespace: {spec!r}")
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", spec)
    if scheme:
        if scheme.group(1).lower() != "nfs":
            raise ValueError(
                f"unsupported media store scheme {scheme.group(1)!r} in {spec!r} "
                f"(use a directory path or {_NFS_SYNTAX})"
            )
        return NfsMediaStore(spec, timeout)
    return DirectoryMediaStore(spec, timeout)
