"""Media on an NFSv4 export in user space (:class:`NfsMediaStore`), no kernel mount.

Model. A thread checks a libnfs context (:class:`~.libnfs.NfsConn`) out of a small pool of
idle contexts or mounts a fresh one, and returns it only after a call that did not fail at the
connection level; a context that failed or timed out is closed, so a stuck or broken
connection is never reused. A missing directory below the export is created.
Fact of libnfs 4.0 this works around (measured against nfs-ganesha 4.3): a context never
reconnects after its connection drops, and never renews its NFSv4 lease: an idle context is
reused only for ``idle_ttl`` seconds, and a call that fails on a reused context at the
connection level is retried once on a fresh context.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import stat
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from . import libnfs
from .libnfs import NfsCallError, NfsConn
from .nfs_url import NfsTarget, parse_nfs_url
from .store import (
    DEFAULT_CONTENT_TYPE,
    DEFAULT_MAX_SIZE,
    DEFAULT_TIMEOUT,
    TYPE_MAX,
    MediaNotFound,
    MediaUnavailable,
    decode_type,
    tmp_name,
)
from .threaded import DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_STUCK, Deadline, ThreadedStore

log = logging.getLogger("multiconnect.media")

T = TypeVar("T")


class NfsPool:
    """Idle mounted contexts, newest first; a context idle longer than ``idle_ttl`` is dropped
    (libnfs 4.0 never renews the NFSv4 lease, so the server forgets idle clients)."""

    def __init__(self, lib: ctypes.CDLL, target: NfsTarget, max_idle: int, idle_ttl: float):
        self.lib = lib
        self.target = target
        self.max_idle = max_idle
        self.idle_ttl = idle_ttl
        self._idle: list[NfsConn] = []
        self._lock = threading.Lock()
        self._dir_ready = False

    def take(self, dl: Deadline) -> tuple[NfsConn, bool]:
        """Return ``(context, reused)``: a recently used idle context, else a new mount."""
        stale: list[NfsConn] = []
        conn: NfsConn | None = None
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

    def _connect(self, dl: Deadline) -> NfsConn:
        try:
            return NfsConn(self.lib, self.target, self.target.path, dl)
        except NfsCallError as e:
            parts = self.target.path.strip("/").split("/")
            if -e.rc != errno.ENOENT or len(parts) < 2 or self._dir_ready:
                raise
        # The export exists but the directory below it does not: create it, then mount it.
        log.info("creating media directory %s", self.target)
        top = NfsConn(self.lib, self.target, "/" + parts[0], dl)
        try:
            for i in range(2, len(parts) + 1):
                top.mkdir("/" + "/".join(parts[1:i]), dl)
        finally:
            top.close()
        self._dir_ready = True
        return NfsConn(self.lib, self.target, self.target.path, dl)

    def give(self, conn: NfsConn) -> None:
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


class NfsMediaStore(ThreadedStore):
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
        self._pool = NfsPool(libnfs.load(), self.target, max_idle, idle_ttl)

    def describe(self) -> str:
        return str(self.target)

    def close(self) -> None:
        self._pool.drop_idle()

    def _with_conn(self, what: str, dl: Deadline, fn: Callable[[NfsConn], T]) -> T:
        """Run ``fn`` on a pooled context; retry once on a fresh one if a reused context
        failed at the connection level (server restarted, lease expired, link reset)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                conn, reused = self._pool.take(dl)
            except NfsCallError as e:
                raise MediaUnavailable(f"{what}: cannot mount {self.target}: {e}") from None
            try:
                result = fn(conn)
            except NfsCallError as e:
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

    def _put_blocking(self, media_id: str, data: bytes, content_type: str, dl: Deadline) -> None:
        def put(conn: NfsConn) -> None:
            for name, blob in ((media_id, data), (media_id + ".type", content_type.encode())):
                tmp = "/" + tmp_name(name)
                conn.write_file(tmp, blob, dl)
                conn.rename(tmp, "/" + name, dl)

        try:
            self._with_conn(f"put {media_id}", dl, put)
        except NfsCallError as e:  # a file-level error the server gave
            raise MediaUnavailable(f"put {media_id} on {self.target}: {e}") from None

    def _get_blocking(self, media_id: str, dl: Deadline) -> tuple[bytes, str]:
        def get(conn: NfsConn) -> tuple[bytes, str] | None:
            try:
                data = conn.read_file("/" + media_id, dl)
            except NfsCallError as e:
                if -e.rc == errno.ENOENT:
                    return None
                raise
            try:
                raw = conn.read_file(f"/{media_id}.type", dl, TYPE_MAX + 1)
            except NfsCallError as e:
                if -e.rc == errno.ENOENT:
                    return data, DEFAULT_CONTENT_TYPE
                raise
            return data, decode_type(raw)

        try:
            found = self._with_conn(f"get {media_id}", dl, get)
        except NfsCallError as e:
            raise MediaUnavailable(f"get {media_id} on {self.target}: {e}") from None
        if found is None:
            raise MediaNotFound(f"no media {media_id}")
        return found

    def _check_blocking(self, dl: Deadline) -> None:
        try:
            st = self._with_conn("check", dl, lambda conn: conn.stat("/", dl))
        except NfsCallError as e:
            raise MediaUnavailable(f"check {self.target}: {e}") from None
        if not stat.S_ISDIR(st.mode):
            raise MediaUnavailable(f"check {self.target}: not a directory")
