"""Media in a directory: local, or a kernel mount of the shared export (``/usr/local/wamedia``).

Model. Plain files written as the contract says (temporary name, ``fsync``, rename into
place), read in 1 MiB chunks with the deadline checked between chunks; the directory is
created if missing. A hung kernel mount can pin threads forever; callers still get their
answer in time (:mod:`.threaded`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

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

DIR_CHUNK = 1024 * 1024


class DirectoryMediaStore(ThreadedStore):
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

    def _put_blocking(self, media_id: str, data: bytes, content_type: str, dl: Deadline) -> None:
        try:
            os.makedirs(self.path, exist_ok=True)
        except OSError as e:
            raise MediaUnavailable(f"put {media_id}: cannot create {self.path}: {e}") from e
        self._write_atomic(media_id, data, dl)
        self._write_atomic(media_id + ".type", content_type.encode("ascii"), dl)

    def _write_atomic(self, name: str, data: bytes, dl: Deadline) -> None:
        final = os.path.join(self.path, name)
        tmp = os.path.join(self.path, tmp_name(name))
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

    def _get_blocking(self, media_id: str, dl: Deadline) -> tuple[bytes, str]:
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
        return data, decode_type(raw)

    def _check_blocking(self, dl: Deadline) -> None:
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


def _read_local(path: str, dl: Deadline, limit: int | None) -> bytes:
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
