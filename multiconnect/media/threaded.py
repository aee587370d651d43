"""The time bound every media store keeps: blocking I/O in a thread, under a shared deadline.

Model. Every call runs its blocking I/O in a fresh daemon thread and answers within
``timeout`` seconds (``asyncio.wait_for`` around waiting for a slot and for the thread), else
raises ``MediaUnavailable``. At most ``max_concurrency`` threads work for callers at once. The
thread shares a deadline (:class:`Deadline`) with the caller and gives up at its next step once
the deadline passes or the caller went away. A thread stuck in a call nobody can interrupt (a
hung kernel NFS mount) releases its slot when its caller gives up and holds nothing later calls
need; with ``max_stuck`` such threads alive, new calls fail at once with ``MediaUnavailable``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import math
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from .store import (
    MediaError,
    MediaInvalid,
    MediaNotFound,
    MediaStore,
    MediaTooLarge,
    MediaUnavailable,
    is_valid_media_id,
    normalize_content_type,
)

log = logging.getLogger("multiconnect.media")

DEFAULT_MAX_CONCURRENCY = 8
DEFAULT_MAX_STUCK = 16

T = TypeVar("T")


def _check_timeout(timeout: object) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise ValueError(f"media timeout must be a number of seconds, got {timeout!r}")
    value = float(timeout)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"media timeout must be a positive number of seconds, got {timeout!r}")
    return value


class Deadline:
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


class _Call:
    """Book-keeping of one worker thread (guarded by the store's lock)."""

    __slots__ = ("done", "stuck")

    def __init__(self) -> None:
        self.done = False
        self.stuck = False


class ThreadedStore(MediaStore):
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
    def _put_blocking(self, media_id: str, data: bytes, content_type: str, dl: Deadline) -> None:
        ...

    @abc.abstractmethod
    def _get_blocking(self, media_id: str, dl: Deadline) -> tuple[bytes, str]:
        ...

    @abc.abstractmethod
    def _check_blocking(self, dl: Deadline) -> None:
        ...

    async def _run(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args, deadline)`` in a daemon thread; answer within ``timeout`` seconds."""
        with self._lock:
            if self._stuck >= self.max_stuck:
                raise MediaUnavailable(
                    f"{what} on {self.describe()}: {self._stuck} earlier media operations "
                    "are still stuck in I/O"
                )
        dl = Deadline(self.timeout, self.describe())
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
                         dl: Deadline) -> T:
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
