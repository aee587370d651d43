"""Media store: directory store, NFS URL parsing, the timeout wrapper, and (integration) NFS.

NFS tests need a real NFSv4 server: ``MC_TEST_NFS_URL=nfs://host[:port]/export[/dir]``; the
outage test also needs ``MC_TEST_NFS_PID`` (the server's pid, as seen from this process) and
stops it with SIGSTOP for a few seconds.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest

from multiconnect import media
from multiconnect.media import (
    DEFAULT_CONTENT_TYPE,
    DirectoryMediaStore,
    MediaError,
    MediaInvalid,
    MediaNotFound,
    MediaTooLarge,
    MediaUnavailable,
    NfsMediaStore,
    NfsTarget,
    libnfs,
    open_media_store,
    parse_nfs_url,
)

SIZES = [0, 1, 3 * 1024, 4 * 1024, 6 * 1024 + 1, 1024 * 1024]
BAD_IDS = ["", "../../etc/passwd", "a/b", "..", ".type", "0123456", "0" * 65, "ABCDEF0123",
           "0123456789abcdef/..", "0123456789abcdef.type", "0123456789abcdef\x00", None, 42]


def run(coro):
    return asyncio.run(coro)


def payload(n: int, seed: str = "") -> bytes:
    """Deterministic, non-repeating bytes (so a misplaced chunk shows)."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{i}".encode()).digest()
        i += 1
    return bytes(out[:n])


# --------------------------------------------------------------------------- directory store


@pytest.fixture
def store(tmp_path: Path) -> DirectoryMediaStore:
    return DirectoryMediaStore(tmp_path / "wamedia", timeout=3)


@pytest.mark.parametrize("size", SIZES)
def test_directory_round_trip(store: DirectoryMediaStore, size: int) -> None:
    data = payload(size, "dir")

    async def go():
        mid = await store.put(data, "image/jpeg")
        return mid, await store.get(mid)

    mid, (got, ctype) = run(go())
    assert media.is_valid_media_id(mid) and len(mid) == 32
    assert got == data
    assert ctype == "image/jpeg"
    names = sorted(os.listdir(store.path))
    assert names == [mid, mid + ".type"]  # no temporary file left behind


def test_directory_ids_are_new(store: DirectoryMediaStore) -> None:
    async def go():
        return [await store.put(b"same", "text/plain") for _ in range(3)]

    assert len(set(run(go()))) == 3


def test_content_type_is_stored_and_defaults(store: DirectoryMediaStore) -> None:
    async def go():
        a = await store.put(b"a", "text/plain; charset=utf-8")
        b = await store.put(b"b", "")
        c = await store.put(b"c", "audio/ogg")
        os.unlink(os.path.join(store.path, c + ".type"))
        return [await store.get(x) for x in (a, b, c)]

    assert run(go()) == [
        (b"a", "text/plain; charset=utf-8"),
        (b"b", DEFAULT_CONTENT_TYPE),
        (b"c", DEFAULT_CONTENT_TYPE),
    ]


def test_garbage_type_file_reads_as_default(store: DirectoryMediaStore) -> None:
    async def go():
        mid = await store.put(b"x", "image/png")
        Path(store.path, mid + ".type").write_bytes(b"\xff\xfe\n")
        return await store.get(mid)

    assert run(go()) == (b"x", DEFAULT_CONTENT_TYPE)


@pytest.mark.parametrize("ctype", ["t\u00e9xt/plain", "text/plain\r\nX-Evil: 1", "a" * 256])
def test_bad_content_type_is_rejected(store: DirectoryMediaStore, ctype: str) -> None:
    with pytest.raises(MediaInvalid):
        run(store.put(b"x", ctype))
    assert not os.path.exists(store.path) or os.listdir(store.path) == []


def test_too_large_is_rejected(tmp_path: Path) -> None:
    small = DirectoryMediaStore(tmp_path, timeout=3, max_size=10)
    assert run(small.get(run(small.put(b"0123456789", "a/b")))) == (b"0123456789", "a/b")
    with pytest.raises(MediaTooLarge):
        run(small.put(b"01234567890", "a/b"))


def test_not_found(store: DirectoryMediaStore) -> None:
    with pytest.raises(MediaNotFound):
        run(store.get(uuid.uuid4().hex))  # directory does not even exist yet
    run(store.put(b"x", "a/b"))
    with pytest.raises(MediaNotFound):
        run(store.get(uuid.uuid4().hex))


@pytest.mark.parametrize("bad", BAD_IDS)
def test_bad_ids_are_not_found(tmp_path: Path, bad) -> None:
    # A file that a traversal would reach must stay unreachable.
    (tmp_path / "secret").write_bytes(b"secret")
    inner = DirectoryMediaStore(tmp_path / "media", timeout=3)
    run(inner.put(b"x", "a/b"))
    with pytest.raises(MediaNotFound):
        run(inner.get(bad))


@pytest.mark.parametrize("bad", ["../x0000000", "ABCDEF0123", "short"])
def test_bad_explicit_id_on_put_is_rejected(store: DirectoryMediaStore, bad: str) -> None:
    with pytest.raises(MediaInvalid):
        run(store.put(b"x", "a/b", media_id=bad))


def test_overwrite_with_explicit_id(store: DirectoryMediaStore) -> None:
    mid = uuid.uuid4().hex

    async def go():
        assert await store.put(b"first", "text/plain", media_id=mid) == mid
        assert await store.put(b"second!", "image/gif", media_id=mid) == mid
        return await store.get(mid)

    assert run(go()) == (b"second!", "image/gif")
    assert sorted(os.listdir(store.path)) == [mid, mid + ".type"]


def test_concurrent_puts(tmp_path: Path) -> None:
    store = DirectoryMediaStore(tmp_path, timeout=30)  # 80 fsyncs on a busy disk
    blobs = [payload(1000 + i * 37, f"c{i}") for i in range(40)]

    async def go():
        ids = await asyncio.gather(*(store.put(b, f"x/y{i}") for i, b in enumerate(blobs)))
        got = await asyncio.gather(*(store.get(m) for m in ids))
        return ids, got

    ids, got = run(go())
    assert len(set(ids)) == len(blobs)
    assert got == [(b, f"x/y{i}") for i, b in enumerate(blobs)]


def test_check(store: DirectoryMediaStore, tmp_path: Path) -> None:
    run(store.check())  # creates the directory
    assert os.path.isdir(store.path)
    (tmp_path / "plainfile").write_bytes(b"")
    with pytest.raises(MediaUnavailable, match="not a directory"):
        run(DirectoryMediaStore(tmp_path / "plainfile", timeout=3).check())
    with pytest.raises(MediaUnavailable):
        run(DirectoryMediaStore(tmp_path / "plainfile" / "sub", timeout=3).put(b"x", "a/b"))


def test_write_past_deadline_leaves_nothing(store: DirectoryMediaStore) -> None:
    os.makedirs(store.path)
    dl = media.Deadline(0)
    with pytest.raises(MediaUnavailable, match="out of time"):
        store._write_atomic("0123456789abcdef", b"data" * 1000, dl)
    assert os.listdir(store.path) == []


# --------------------------------------------------------------------------- timeouts


class HangingStore(DirectoryMediaStore):
    """A directory store whose first ``hang`` puts block until ``release`` is set."""

    def __init__(self, path: Path, timeout: float, hang: int = 1, **kw) -> None:
        super().__init__(path, timeout, **kw)
        self.hang = hang
        self.release = threading.Event()
        self.deadlines: list[media.Deadline] = []
        self.late_errors: list[BaseException] = []

    def _put_blocking(self, media_id, data, content_type, dl):
        if len(self.deadlines) < self.hang:
            self.deadlines.append(dl)
            assert self.release.wait(30), "test never released the hung call"
            try:
                dl.check("after hang")
            except MediaError as e:
                self.late_errors.append(e)
                raise
        return super()._put_blocking(media_id, data, content_type, dl)


async def wait_until(cond, what: str, limit: float = 10.0) -> None:
    end = time.monotonic() + limit
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def test_hung_call_times_out_and_does_not_block_later_calls(tmp_path: Path) -> None:
    st = HangingStore(tmp_path, timeout=0.5)

    async def go():
        t0 = time.monotonic()
        with pytest.raises(MediaUnavailable, match=r"no answer within 0.5 s"):
            await st.put(b"stuck", "a/b")
        elapsed = time.monotonic() - t0
        assert (st.inflight, st.stuck) == (1, 1)  # the thread is still stuck...
        mid = await st.put(b"later", "a/b")  # ...and a later call does not wait for it
        assert await st.get(mid) == (b"later", "a/b")
        st.release.set()
        await wait_until(lambda: st.inflight == 0, "the hung thread to finish")
        assert st.stuck == 0
        return elapsed, mid

    elapsed, mid = run(go())
    assert 0.5 <= elapsed < 1.5
    assert st.deadlines[0].abandoned.is_set()
    assert len(st.late_errors) == 1  # the released thread saw it had been given up on
    assert sorted(os.listdir(tmp_path)) == [mid, mid + ".type"]  # the stuck put wrote nothing


def test_too_many_stuck_calls_fail_fast_then_recover(tmp_path: Path) -> None:
    st = HangingStore(tmp_path, timeout=0.3, hang=2, max_stuck=2)

    async def go():
        for _ in range(2):
            with pytest.raises(MediaUnavailable, match="no answer"):
                await st.put(b"x", "a/b")
        with pytest.raises(MediaUnavailable, match="2 earlier media operations are still stuck"):
            await st.get(uuid.uuid4().hex)
        st.release.set()
        await wait_until(lambda: st.inflight == 0, "the hung threads to finish")
        mid = await st.put(b"ok", "a/b")
        return await st.get(mid)

    assert run(go()) == (b"ok", "a/b")


class CountingStore(DirectoryMediaStore):
    """Records how many blocking puts ran at the same time."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.now = 0
        self.peak = 0
        self.gate = threading.Lock()

    def _put_blocking(self, media_id, data, content_type, dl):
        with self.gate:
            self.now += 1
            self.peak = max(self.peak, self.now)
        try:
            threading.Event().wait(0.02)  # hold the slot long enough for others to pile up
            return super()._put_blocking(media_id, data, content_type, dl)
        finally:
            with self.gate:
                self.now -= 1


def test_calls_beyond_max_concurrency_wait_for_a_slot(tmp_path: Path) -> None:
    st = CountingStore(tmp_path, timeout=30, max_concurrency=2, fsync=False)

    async def go():
        ids = await asyncio.gather(*(st.put(bytes([i]), "a/b") for i in range(10)))
        return [await st.get(m) for m in ids]

    assert run(go()) == [(bytes([i]), "a/b") for i in range(10)]
    assert st.peak == 2


def test_cancelled_caller_abandons_the_thread(tmp_path: Path) -> None:
    st = HangingStore(tmp_path, timeout=30)

    async def go():
        task = asyncio.create_task(st.put(b"x", "a/b"))
        await wait_until(lambda: len(st.deadlines) == 1, "the put to start")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert st.deadlines[0].abandoned.is_set()
        st.release.set()
        await wait_until(lambda: st.inflight == 0, "the hung thread to finish")

    run(go())
    assert len(st.late_errors) == 1
    assert os.listdir(tmp_path) == []


# --------------------------------------------------------------------------- specs


def test_parse_nfs_url() -> None:
    assert parse_nfs_url("nfs://nfs/export") == NfsTarget("nfs", 2049, "/export")
    t = parse_nfs_url("nfs://toxiproxy:20491/export/wamedia/")
    assert t == NfsTarget("toxiproxy", 20491, "/export/wamedia")
    assert t.libnfs_url == "nfs://toxiproxy/export/wamedia?version=4&nfsport=20491"
    assert parse_nfs_url("NFS://10.0.0.2/e?version=4&nfsport=7") == NfsTarget("10.0.0.2", 7, "/e")
    assert parse_nfs_url("nfs://h:7/e?nfsport=7").port == 7


@pytest.mark.parametrize("url", [
    "nfs://", "nfs:///export", "nfs://h", "nfs://h/", "nfs://h:0/x", "nfs://h:99999/x",
    "nfs://h:port/x", "nfs://h/x?version=3", "nfs://h/x?foo=1", "nfs://h:1/x?nfsport=2",
    "nfs://h/x?nfsport=abc", "nfs://h/x?version=4&version=4", "nfs://u@h/x", "nfs://h/../x",
    "nfs://h/a//b", "nfs://h/a b", "nfs://[::1]/x", "nfs://h/x#frag", "nfs://h$/x",
])
def test_parse_nfs_url_rejects(url: str) -> None:
    with pytest.raises(ValueError, match="invalid NFS media URL"):
        parse_nfs_url(url)


def test_open_media_store_directory(tmp_path: Path) -> None:
    st = open_media_store(str(tmp_path / "m"), timeout=1.5)
    assert isinstance(st, DirectoryMediaStore)
    assert st.path == str(tmp_path / "m") and st.timeout == 1.5


@pytest.mark.parametrize("spec", ["", " /x", "/x\n", "http://h/x", "s3://bucket/x", "nfs://h"])
def test_open_media_store_rejects(spec: str) -> None:
    with pytest.raises(ValueError):
        open_media_store(spec)


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), "3", True, None])
def test_open_media_store_rejects_timeout(tmp_path: Path, timeout) -> None:
    with pytest.raises(ValueError, match="timeout"):
        open_media_store(str(tmp_path), timeout=timeout)


def _have_libnfs() -> bool:
    try:
        libnfs.load()
    except MediaError:
        return False
    return True


@pytest.mark.skipif(not _have_libnfs(), reason="libnfs.so.13 (Debian libnfs13) not installed")
def test_open_media_store_nfs_does_no_io() -> None:
    st = open_media_store("nfs://192.0.2.1:2050/export/m", timeout=2)  # TEST-NET: unroutable
    assert isinstance(st, NfsMediaStore)
    assert st.target == NfsTarget("192.0.2.1", 2050, "/export/m")


@pytest.mark.skipif(not _have_libnfs(), reason="libnfs.so.13 (Debian libnfs13) not installed")
def test_nfs_refused_connection_is_unavailable() -> None:
    import socket

    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    st = NfsMediaStore(f"nfs://127.0.0.1:{port}/export", timeout=2)
    with pytest.raises(MediaUnavailable, match="cannot mount"):
        run(st.put(b"x", "a/b"))
    with pytest.raises(MediaUnavailable, match="cannot mount"):
        run(st.check())


# --------------------------------------------------------------------------- NFS integration

NFS_URL = os.environ.get("MC_TEST_NFS_URL", "")
NFS_PID = os.environ.get("MC_TEST_NFS_PID", "")
needs_nfs = pytest.mark.skipif(
    not NFS_URL, reason="MC_TEST_NFS_URL is not set (nfs://host[:port]/export of a live server)"
)


@pytest.fixture
def nfs_store():
    st = NfsMediaStore(NFS_URL, timeout=10)  # generous: these tests are about correctness
    yield st
    st.close()


@pytest.mark.integration
@needs_nfs
@pytest.mark.parametrize("size", SIZES)
def test_nfs_round_trip(nfs_store: NfsMediaStore, size: int) -> None:
    data = payload(size, f"nfs{size}")

    async def go():
        mid = await nfs_store.put(data, "video/mp4")
        return await nfs_store.get(mid)

    assert run(go()) == (data, "video/mp4")


@pytest.mark.integration
@needs_nfs
def test_nfs_overwrite(nfs_store: NfsMediaStore) -> None:
    mid = uuid.uuid4().hex
    big, small = payload(10_000, "big"), b"tiny"

    async def go():
        await nfs_store.put(big, "image/png", media_id=mid)
        first = await nfs_store.get(mid)
        await nfs_store.put(small, "text/plain", media_id=mid)
        return first, await nfs_store.get(mid)

    assert run(go()) == ((big, "image/png"), (small, "text/plain"))


@pytest.mark.integration
@needs_nfs
def test_nfs_not_found_and_bad_ids(nfs_store: NfsMediaStore) -> None:
    async def go():
        await nfs_store.check()
        with pytest.raises(MediaNotFound):
            await nfs_store.get(uuid.uuid4().hex)
        for bad in ("../etc", "0" * 65, "a/b/c/d/e"):
            with pytest.raises(MediaNotFound):
                await nfs_store.get(bad)

    run(go())


@pytest.mark.integration
@needs_nfs
def test_nfs_concurrent_puts_on_separate_connections(nfs_store: NfsMediaStore) -> None:
    # Several contexts mounted in the same second: with libnfs's default NFSv4 client name
    # they would be one client to the server and expire each other's open files.
    blobs = [payload(20_000 + i, f"cc{i}") for i in range(8)]

    async def go():
        ids = await asyncio.gather(*(nfs_store.put(b, "a/b") for b in blobs))
        return await asyncio.gather(*(nfs_store.get(m) for m in ids))

    assert run(go()) == [(b, "a/b") for b in blobs]


@pytest.mark.integration
@needs_nfs
def test_nfs_missing_subdirectory_is_created() -> None:
    st = NfsMediaStore(f"{NFS_URL.rstrip('/')}/mc-test-{uuid.uuid4().hex[:8]}/media", timeout=10)
    try:
        mid = run(st.put(b"in a new dir", "a/b"))
        assert run(st.get(mid)) == (b"in a new dir", "a/b")
        assert run(NfsMediaStore(str(st.target), timeout=10).get(mid)) == (b"in a new dir", "a/b")
    finally:
        st.close()


@pytest.mark.integration
@needs_nfs
@pytest.mark.skipif(not NFS_PID, reason="MC_TEST_NFS_PID is not set (pid of the NFS server)")
def test_nfs_outage_times_out_then_recovers() -> None:
    pid = int(NFS_PID)
    timeout = 2.0
    st = NfsMediaStore(NFS_URL, timeout=timeout)
    before = payload(50_000, "before")

    async def timed(coro):
        t0 = time.monotonic()
        with pytest.raises(MediaUnavailable) as info:
            await coro
        return time.monotonic() - t0, str(info.value)

    async def go():
        mid = await st.put(before, "a/b")
        os.kill(pid, signal.SIGSTOP)
        try:
            outage = [
                await timed(st.put(payload(100_000, "during"), "a/b")),
                await timed(st.get(mid)),
                await timed(st.check()),
            ]
            # The worker threads come back by themselves (libnfs timeout), server still stopped.
            await wait_until(lambda: st.inflight == 0, "worker threads to give up", timeout + 1)
        finally:
            os.kill(pid, signal.SIGCONT)
        # Same store object, first attempt after the server is back: no retries here.
        after = await st.put(b"after", "c/d")
        return outage, await st.get(mid), await st.get(after)

    try:
        outage, got_before, got_after = run(go())
    finally:
        st.close()
    print("outage:", outage)
    for elapsed, message in outage:
        assert elapsed < timeout + 1.0, (elapsed, message)
        assert str(st.target) in message
    assert got_before == (before, "a/b")
    assert got_after == (b"after", "c/d")


# ------------------------------------------------------------- libnfs in the node image

# Run inside the node image (where libnfs13 is): a server that resets every connection after
# the first request, so each mount's sync call breaks out on the socket error with its RPC
# still queued; every nfs_destroy_context is recorded with the context's queue length.
QUEUED_RPC_PROBE = r'''
import asyncio, ctypes, json, socket, struct, sys, threading
from multiconnect import media
from multiconnect.media import libnfs

def serve(ls):
    while True:
        c, _ = ls.accept()
        try:
            c.recv(4096)
        except OSError:
            pass
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()

ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(16)
threading.Thread(target=serve, args=(ls,), daemon=True).start()
lib = libnfs.load()
queue_length = lib.nfs_queue_length
queue_length.argtypes, queue_length.restype = [ctypes.c_void_p], ctypes.c_int
destroy, destroyed = lib.nfs_destroy_context, []
lib.nfs_destroy_context = lambda ctx: (destroyed.append(queue_length(ctx)), destroy(ctx))
store = media.NfsMediaStore(f"nfs://127.0.0.1:{ls.getsockname()[1]}/export", timeout=2)
errors = []
for _ in range(10):
    try:
        asyncio.run(store.check())
    except media.MediaUnavailable as e:
        errors.append(str(e))
print(json.dumps({"errors": errors, "destroyed": destroyed,
                  "abandoned": libnfs.ABANDONED_CONTEXTS}))
'''


@pytest.mark.integration
def test_nfs_context_left_with_a_queued_rpc_is_never_destroyed() -> None:
    """A reset connection leaves libnfs 4.0's RPC queued with its callback on a finished
    stack frame; destroying that context runs it (the webapp died of it at an NFS link cut).
    The store sets such contexts aside and destroys only contexts with an empty queue."""
    import json

    from harness.cluster import cleanup
    from harness.cluster.engine import ensure_engine
    from harness.cluster.images import ensure_images

    client = ensure_engine()
    node = ensure_images(client, names=("base", "node"), progress=lambda _l: None)["node"]
    run_id = f"mcmedia{uuid.uuid4().hex[:8]}"
    labels = {cleanup.LABEL_RUN: run_id, cleanup.LABEL_OWNER: cleanup.owner_label()}
    try:
        c = client.containers.run(node, entrypoint=["python3", "-c", QUEUED_RPC_PROBE],
                                  environment={"LD_PRELOAD": ""}, network_mode="none",
                                  labels=labels, detach=True)
        status = c.wait(timeout=120)
        out = c.logs().decode(errors="replace")
    finally:
        cleanup.remove_run(client, run_id)
    assert status["StatusCode"] == 0, out
    result = json.loads(out.strip().splitlines()[-1])
    assert len(result["errors"]) == 10 and all("nfs_service failed" in e
                                               for e in result["errors"]), result
    assert result["abandoned"] == 10, result  # each failure left its RPC queued
    assert not any(result["destroyed"]), result  # and none was destroyed with a queue
