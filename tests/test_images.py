"""Image recipes and the engine bootstrap.

Unit tests (no Docker): recipe hash stability/sensitivity, the build context tar, the step
progress lines, ensure_engine's decisions and its start lock (against a fake dockerd).
Integration tests (``-m integration``): a second ensure builds nothing, and each image
honours the run contract of docs/images.md on an ``--internal`` network.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import stat
import sys
import tarfile
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest

from harness.cluster import engine, images
from harness.cluster.engine import (
    EngineConfig,
    EngineNotAnswering,
    EngineUnavailable,
    ensure_engine,
)

# --------------------------------------------------------------------------- recipe hash


def _recipe(tmp_path: Path) -> Path:
    d = tmp_path / "images" / "db"
    d.mkdir(parents=True)
    (d / "Dockerfile").write_text("ARG BASE\nFROM ${BASE}\nCOPY entrypoint.sh /e\n")
    (d / "entrypoint.sh").write_text("#!/bin/sh\nexec true\n")
    return d


def _hash(tmp_path: Path, name: str = "db", parent: str | None = "abc",
          source: Path | None = None) -> str:
    files = images.context_files(name, images_dir=tmp_path / "images",
                                 source_dir=source or tmp_path / "nosource")
    return images.recipe_hash(name, parent, files)


def test_hash_is_stable_for_the_same_recipe(tmp_path: Path) -> None:
    _recipe(tmp_path)
    first = _hash(tmp_path)
    assert len(first) == 12 and all(c in "0123456789abcdef" for c in first)
    assert _hash(tmp_path) == first


def test_hash_does_not_depend_on_mtime_or_editor_droppings(tmp_path: Path) -> None:
    d = _recipe(tmp_path)
    before = _hash(tmp_path)
    os.utime(d / "Dockerfile", (1, 1))
    (d / "__pycache__").mkdir()
    (d / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (d / ".entrypoint.sh.swp").write_bytes(b"\0")
    (d / "notes.tmp").write_text("x")
    assert _hash(tmp_path) == before


@pytest.mark.parametrize("change", ["edit", "add", "remove", "chmod", "rename"])
def test_hash_changes_when_a_context_file_changes(tmp_path: Path, change: str) -> None:
    d = _recipe(tmp_path)
    before = _hash(tmp_path)
    if change == "edit":
        (d / "entrypoint.sh").write_text("#!/bin/sh\nexec false\n")
    elif change == "add":
        (d / "extra.cnf").write_text("[mariadbd]\n")
    elif change == "remove":
        (d / "entrypoint.sh").unlink()
    elif change == "chmod":
        p = d / "entrypoint.sh"
        p.chmod(p.stat().st_mode | stat.S_IXUSR)
    else:
        (d / "entrypoint.sh").rename(d / "start.sh")
    assert _hash(tmp_path) != before


def test_hash_covers_parent_hash_and_name(tmp_path: Path) -> None:
    _recipe(tmp_path)
    assert _hash(tmp_path, parent="abc") != _hash(tmp_path, parent="abd")
    files = images.context_files("db", images_dir=tmp_path / "images")
    assert images.recipe_hash("db", "p", files) != images.recipe_hash("nfs", "p", files)


def test_node_hash_follows_the_source_tree(tmp_path: Path) -> None:
    node = tmp_path / "images" / "node"
    node.mkdir(parents=True)
    (node / "Dockerfile").write_text("COPY multiconnect/ /opt/mc/multiconnect/\n")
    src = tmp_path / "multiconnect"
    (src / "sub").mkdir(parents=True)
    (src / "__init__.py").write_text("")
    (src / "sub" / "core.py").write_text("X = 1\n")
    files = images.context_files("node", images_dir=tmp_path / "images", source_dir=src)
    assert set(files) == {"Dockerfile", "multiconnect/__init__.py", "multiconnect/sub/core.py"}
    before = _hash(tmp_path, "node", source=src)
    (src / "sub" / "core.py").write_text("X = 2\n")
    assert _hash(tmp_path, "node", source=src) != before


def test_base_inputs_cover_debootstrap_args_and_host_apt_config(tmp_path: Path) -> None:
    (tmp_path / "etc/apt/sources.list.d").mkdir(parents=True)
    (tmp_path / "etc/apt/apt.conf.d").mkdir(parents=True)
    (tmp_path / "etc/apt/sources.list.d/debian.sources").write_text("Types: deb\n")
    (tmp_path / "etc/apt/apt.conf.d/99x").write_text('Acquire::Check-Date "false";\n')
    extra = images.extra_inputs("base", apt_root=tmp_path)
    keys = [k for k, _ in extra]
    assert keys == ["debootstrap", "host:etc/apt/sources.list.d/debian.sources",
                    "host:etc/apt/apt.conf.d/99x"]
    assert dict(extra)["debootstrap"] == b"--variant=minbase bookworm"
    h1 = images.recipe_hash("base", None, {}, extra)
    (tmp_path / "etc/apt/apt.conf.d/99x").write_text('Acquire::Check-Date "true";\n')
    h2 = images.recipe_hash("base", None, {}, images.extra_inputs("base", apt_root=tmp_path))
    assert h1 != h2
    assert images.extra_inputs("toxiproxy") == [
        ("go-module", f"{images.TOXIPROXY_MODULE}@{images.TOXIPROXY_VERSION}".encode())]


def test_real_recipes_have_a_folder_and_a_dockerfile_except_base() -> None:
    for name in images.ALL_IMAGES:
        files = images.context_files(name)
        assert ("Dockerfile" in files) == (name != "base"), name
    assert images.context_files("node").get("Dockerfile") is not None


def _dockerfile_env(text: str) -> dict[str, str]:
    """KEY=VALUE pairs of every ENV instruction (continuation lines joined)."""
    joined = text.replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in joined.splitlines():
        words = line.split()
        if words[:1] == ["ENV"]:
            env.update(w.split("=", 1) for w in words[1:] if "=" in w)
    return env


def test_dockerfile_env_reads_continued_env_lines() -> None:
    text = "FROM x\nENV A=1 \\\n    B=two\nRUN true\nENV C=3\n"
    assert _dockerfile_env(text) == {"A": "1", "B": "two", "C": "3"}


def test_node_image_preloads_libfaketime_without_its_per_wait_glibc_check() -> None:
    """libfaketime 0.9.10 checks the glibc version (getenv + sscanf) inside every
    pthread_cond_timedwait unless FAKETIME_FORCE_MONOTONIC_FIX=0, and CPython's GIL waits with
    one: two busy threads then cost 13-19x the CPU (benchmarks/bench_faketime.py). The fix is
    for a faked monotonic clock, which the image leaves alone."""
    env = _dockerfile_env((images.context_files("node")["Dockerfile"]).read_text())
    assert "libfaketime" in env["LD_PRELOAD"]
    assert env["FAKETIME_DONT_FAKE_MONOTONIC"] == "1"
    assert env["FAKETIME_FORCE_MONOTONIC_FIX"] == "0"


def test_context_tar_is_deterministic_and_keeps_exec_bits(tmp_path: Path) -> None:
    d = _recipe(tmp_path)
    (d / "entrypoint.sh").chmod(0o755)
    files = images.context_files("db", images_dir=tmp_path / "images")
    a = images._context_tar(files, ["multiconnect"]).getvalue()
    os.utime(d / "Dockerfile", (5, 5))
    b = images._context_tar(files, ["multiconnect"]).getvalue()
    assert a == b
    with tarfile.open(fileobj=images._context_tar(files, ["multiconnect"])) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["multiconnect"].isdir()  # an empty source tree still gives COPY a dir
    assert members["entrypoint.sh"].mode == 0o755 and members["Dockerfile"].mode == 0o644


def test_closure_adds_parents_in_build_order_and_rejects_unknown_names() -> None:
    assert images._closure(["node"]) == ["base", "node"]
    assert images._closure(["node", "db"]) == ["base", "db", "node"]
    assert images._closure(["db"], overrides={"db"}) == ["db"]
    assert images._closure(["db", "node"], overrides={"base"}) == ["base", "db", "node"]
    with pytest.raises(ValueError, match="unknown image 'redis'"):
        images._closure(["redis"])


def test_step_reporter_prints_one_timed_line_per_step_and_fails_with_the_tail() -> None:
    lines: list[str] = []
    rep = images._StepReporter("node", lines.append)
    rep.feed("Step 1/3 : ARG BASE\n")
    rep.feed("Step 2/3 : RUN apt-get update && apt-get install -y --no-install-recommends "
             "python3 python3-aiohttp python3-pymysql libfaketime\n ---> Running in 1\n")
    rep.feed("Get:1 http://deb bookworm InRelease\nE: Unable to locate package nope\n")
    assert len(lines) == 1 and lines[0].startswith("[images] node: step 1/3 ARG BASE (")
    err = rep.fail("The command returned a non-zero code: 100")
    assert isinstance(err, images.ImageBuildError)
    assert err.image == "node" and err.step.startswith("step 2/3 RUN apt-get update")
    assert "Unable to locate package nope" in str(err) and "non-zero code: 100" in str(err)
    rep2 = images._StepReporter("db", lines.append)
    rep2.feed("Step 3/6 : RUN " + "x" * 200 + "\n")
    rep2.finish()
    assert lines[-1].startswith("[images] db: step 3/6 RUN xxx") and "…" in lines[-1]
    assert lines[-1].endswith(" s)")


def test_override_missing_locally_is_a_clear_error() -> None:
    class NoImages:
        class images:  # noqa: N801 - mimics docker.DockerClient.images
            @staticmethod
            def get(ref: str) -> None:
                import docker.errors
                raise docker.errors.ImageNotFound(ref)

    with pytest.raises(images.ImageOverrideMissing, match=r"mysql:8\.0.*pull.*load"):
        images.ensure_images(NoImages(), ["db"], overrides={"db": "mysql:8.0"},  # type: ignore
                             progress=lambda _l: None)
    # checked before anything is built: node would otherwise start building base first
    with pytest.raises(images.ImageOverrideMissing, match="mc-db:mine"):
        images.ensure_images(NoImages(), ["node", "db"],  # type: ignore[arg-type]
                             overrides={"db": "mc-db:mine"}, progress=lambda _l: None)


# --------------------------------------------------------------------------- engine

FAKE_DOCKERD = textwrap.dedent('''
    import http.server, json, os, socketserver, sys, time
    sock, pid_file, starts, delay = sys.argv[1:5]
    with open(starts, "a") as f:
        f.write(f"{os.getpid()}\\n")
    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    if os.path.exists(sock + ".wedged"):
        os.unlink(sock + ".wedged")  # a fresh daemon is not wedged
    time.sleep(float(delay))

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path.endswith("/_ping"):
                body = b"OK"
            elif self.path.endswith("/version"):
                body = json.dumps({"ApiVersion": "1.41", "Version": "fake"}).encode()
            elif "/networks" in self.path:
                if os.path.exists(sock + ".wedged"):  # libnetwork deadlocked: no answer
                    time.sleep(60)
                body = b"[]"
            else:
                self.send_response(404); self.end_headers(); return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    class S(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

    if os.path.exists(sock):
        os.unlink(sock)
    S(sock, H).serve_forever()
''')


@pytest.fixture()
def fake_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An EngineConfig whose 'dockerd' is a fake that answers /_ping after 1 s."""
    script = tmp_path / "fake_dockerd.py"
    script.write_text(FAKE_DOCKERD)
    sock, pid, starts = tmp_path / "d.sock", tmp_path / "d.pid", tmp_path / "starts"
    cfg = EngineConfig(
        base_url=f"unix://{sock}",
        dockerd=(sys.executable, str(script), str(sock), str(pid), str(starts), "1.0"),
        lock_path=tmp_path / "lock", log_path=tmp_path / "dockerd.log", pid_path=pid,
        process_name="python", start_timeout=20, install=False,
        started_path=tmp_path / "started", probe_timeout=1.0, restart_wedged=False,
    )
    monkeypatch.setattr(engine, "_is_debian", lambda: True)
    monkeypatch.setattr(engine.os, "geteuid", lambda: 0)
    yield cfg, starts
    if starts.exists():
        for line in starts.read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line), 9)


def test_engine_refuses_to_start_dockerd_when_not_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine.os, "geteuid", lambda: 1000)
    cfg = EngineConfig(base_url=f"unix://{tmp_path}/none.sock", lock_path=tmp_path / "l")
    with pytest.raises(EngineUnavailable) as exc:
        ensure_engine(lambda _l: None, cfg)
    assert isinstance(exc.value, RuntimeError)
    msg = str(exc.value)
    assert "not root" in msg and "docker.io" in msg and "DOCKER_HOST" in msg
    assert not (tmp_path / "l").exists()


def test_engine_refuses_off_debian(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine.os, "geteuid", lambda: 0)
    monkeypatch.setattr(engine, "_is_debian", lambda: False)
    cfg = EngineConfig(base_url=f"unix://{tmp_path}/none.sock", lock_path=tmp_path / "l")
    with pytest.raises(EngineUnavailable, match="not Debian"):
        ensure_engine(lambda _l: None, cfg)


def test_two_concurrent_callers_start_exactly_one_dockerd(fake_engine) -> None:
    cfg, starts = fake_engine
    lines: list[str] = []
    results: list[object] = []

    def call() -> None:
        try:
            results.append(ensure_engine(lines.append, cfg))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 2 and all(hasattr(r, "ping") for r in results), results
    assert all(r.ping() for r in results)  # type: ignore[attr-defined]
    assert len(starts.read_text().split()) == 1
    assert any("started" in line and "log" in line for line in lines)
    assert any("answers" in line for line in lines)
    # a third caller finds it answering and starts nothing
    ensure_engine(lines.append, cfg)
    assert len(starts.read_text().split()) == 1


def test_a_live_dockerd_from_the_pid_file_is_waited_for_not_restarted(fake_engine) -> None:
    cfg, starts = fake_engine
    import subprocess
    subprocess.Popen(list(cfg.dockerd), start_new_session=True)
    deadline = time.monotonic() + 10
    while not cfg.pid_path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines: list[str] = []
    client = ensure_engine(lines.append, cfg)
    assert client.ping()
    assert len(starts.read_text().split()) == 1
    assert any("already running" in line for line in lines)


def test_a_wedged_engine_is_one_clear_error_naming_the_request(fake_engine) -> None:
    """/_ping answers, GET /networks does not (dockerd 20.10's libnetwork deadlock): one
    EngineNotAnswering within the probe timeout, not a 120 s hang per call."""
    cfg, starts = fake_engine
    ensure_engine(lambda _l: None, cfg)
    Path(f"{cfg.base_url[len('unix://'):]}.wedged").touch()
    t0 = time.monotonic()
    with pytest.raises(EngineNotAnswering) as exc:
        ensure_engine(lambda _l: None, cfg)
    assert time.monotonic() - t0 < 10
    msg = str(exc.value)
    assert "GET /networks" in msg and "1 s" in msg and "kill -9" in msg
    assert len(starts.read_text().split()) == 1  # not restarted: not asked to


def test_a_wedged_engine_that_the_harness_started_is_restarted_when_asked(fake_engine) -> None:
    cfg, starts = fake_engine
    cfg = dataclasses.replace(cfg, restart_wedged=True)
    ensure_engine(lambda _l: None, cfg)
    first = int(starts.read_text().split()[0])
    Path(f"{cfg.base_url[len('unix://'):]}.wedged").touch()
    lines: list[str] = []
    client = ensure_engine(lines.append, cfg)
    assert client.api.networks() == []
    pids = [int(x) for x in starts.read_text().split()]
    assert len(pids) == 2 and pids[0] == first
    assert int(cfg.started_path.read_text()) == pids[1]
    assert any("killing and restarting" in line for line in lines), lines
    with pytest.raises(ProcessLookupError):
        os.kill(first, 0)


def test_a_wedged_engine_started_by_someone_else_is_not_restarted(fake_engine) -> None:
    cfg, starts = fake_engine
    cfg = dataclasses.replace(cfg, restart_wedged=True)
    ensure_engine(lambda _l: None, cfg)
    cfg.started_path.write_text("1\n")  # we started another one once; this one is not ours
    Path(f"{cfg.base_url[len('unix://'):]}.wedged").touch()
    with pytest.raises(EngineNotAnswering, match="not started by this harness"):
        ensure_engine(lambda _l: None, cfg)
    assert len(starts.read_text().split()) == 1


def test_a_dockerd_that_dies_is_reported_with_its_log(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "_is_debian", lambda: True)
    monkeypatch.setattr(engine.os, "geteuid", lambda: 0)
    cfg = EngineConfig(
        base_url=f"unix://{tmp_path}/none.sock",
        dockerd=("sh", "-c", "echo 'failed to start daemon: boom' >&2; exit 1"),
        lock_path=tmp_path / "l", log_path=tmp_path / "d.log", pid_path=tmp_path / "pid",
        start_timeout=20, install=False, started_path=tmp_path / "started",
    )
    with pytest.raises(EngineUnavailable, match=r"(?s)exited while starting.*boom"):
        ensure_engine(lambda _l: None, cfg)


# --------------------------------------------------------------------------- integration


def _ip(container) -> str:
    container.reload()
    return next(iter(container.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]


def _wait(what: str, probe, timeout: float = 30.0, logs=None):
    """Poll ``probe()`` until truthy; on timeout fail naming what, the last error, logs."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            got = probe()
            if got:
                return got
            last = got
        except Exception as exc:  # noqa: BLE001 - kept for the failure message
            last = exc
        time.sleep(0.1)
    tail = logs().decode(errors="replace")[-2000:] if logs else ""
    pytest.fail(f"timed out after {timeout} s waiting for {what}; last: {last!r}\n{tail}")


@pytest.fixture(scope="module")
def docker_client():
    return ensure_engine()


@pytest.fixture(scope="module")
def refs(docker_client) -> dict[str, str]:
    return images.ensure_images(docker_client)


@pytest.fixture()
def lab(docker_client):
    """An --internal labelled network; everything created through it is removed after."""
    run = f"test-images-{uuid.uuid4().hex[:8]}"
    labels = {"mc.run": run}
    net = docker_client.networks.create(run, internal=True, labels=labels)
    made: list = []
    vols: list = []

    class Lab:
        client = docker_client

        def run(self, image: str, **kw):
            kw.setdefault("detach", True)
            c = docker_client.containers.run(image, network=net.name, labels=labels, **kw)
            made.append(c)
            return c

        def volume(self):
            v = docker_client.volumes.create(f"{run}-{len(vols)}", labels=labels)
            vols.append(v)
            return v

    yield Lab()
    import docker.errors
    for thing in [*made, *vols]:
        with contextlib.suppress(docker.errors.NotFound):
            thing.remove(force=True)
    net.remove()


DB_ENV = {"MC_DB_NAME": "waent", "MC_DB_USER": "wa", "MC_DB_PASSWORD": "s3cr'et\\x",
          "MC_DB_ROOT_PASSWORD": "root-pw"}


def _db_connect(ip: str, port: int = 3306):
    import pymysql
    return pymysql.connect(host=ip, port=port, user="wa", password=DB_ENV["MC_DB_PASSWORD"],
                           database="waent", connect_timeout=3, autocommit=True)


def _toxiproxy(lab, refs) -> tuple[object, str]:
    import requests
    toxi = lab.run(refs["toxiproxy"], init=True)
    ip = _ip(toxi)
    _wait("toxiproxy API", lambda: requests.get(f"http://{ip}:8474/version", timeout=2).ok,
          logs=toxi.logs)
    return toxi, ip


def _add_proxy(api_ip: str, name: str, port: int, upstream: str) -> None:
    import requests
    r = requests.post(f"http://{api_ip}:8474/proxies", timeout=5, data=json.dumps(
        {"name": name, "listen": f"0.0.0.0:{port}", "upstream": upstream}))
    assert r.status_code == 201, r.text


@pytest.mark.integration
def test_second_ensure_builds_nothing(docker_client, refs) -> None:
    lines: list[str] = []
    results = images.build_images(docker_client, progress=lines.append)
    assert {r.name: r.status for r in results} == {n: "cached" for n in images.ALL_IMAGES}
    assert not any(" step " in line for line in lines), lines
    assert {r.name: r.ref for r in results} == refs
    for r in results:
        labels = docker_client.images.get(r.ref).labels
        assert labels["mc.image"] == r.name and labels["mc.recipe"] == r.recipe
        assert r.ref == f"mc-{r.name}:{r.recipe}"


@pytest.mark.integration
def test_db_on_tmpfs_serves_the_app_user_directly_and_through_toxiproxy(lab, refs) -> None:
    db = lab.run(refs["db"], environment=DB_ENV, tmpfs={"/var/lib/mysql": ""})
    _wait("'ready for connections'", lambda: b"ready for connections" in db.logs(),
          logs=db.logs)
    ip = _ip(db)
    conn = _db_connect(ip)  # right after the log line: the init file already ran
    with conn.cursor() as cur:
        cur.execute("SELECT @@session.time_zone, @@global.time_zone, CURRENT_USER()")
        assert cur.fetchone() == ("+00:00", "+00:00", "wa@%")
        cur.execute("CREATE TABLE t (x INT)")
    _, toxi_ip = _toxiproxy(lab, refs)
    _add_proxy(toxi_ip, "test->db", 23306, f"{ip}:3306")
    with _db_connect(toxi_ip, 23306).cursor() as cur:
        cur.execute("SHOW TABLES")
        assert cur.fetchall() == (("t",),)
    import pymysql
    root = pymysql.connect(host=ip, user="root", password="root-pw", connect_timeout=3)
    root.close()


@pytest.mark.integration
def test_db_on_a_named_volume_keeps_data_across_containers(lab, refs) -> None:
    vol = lab.volume()
    for expected in (1, 2):
        db = lab.run(refs["db"], environment=DB_ENV,
                     volumes={vol.name: {"bind": "/var/lib/mysql", "mode": "rw"}})
        ip = _ip(db)
        conn = _wait("a pymysql connection", lambda ip=ip: _db_connect(ip), logs=db.logs)
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS t (x INT)")
            cur.execute("INSERT INTO t VALUES (1)")
            cur.execute("SELECT COUNT(*) FROM t")
            assert cur.fetchone() == (expected,)
        conn.close()
        db.stop(timeout=10)
        assert db.wait(timeout=10)["StatusCode"] == 0  # clean shutdown on SIGTERM
        db.remove()


@pytest.mark.integration
def test_db_rejects_a_bad_database_name(lab, refs) -> None:
    env = dict(DB_ENV, MC_DB_NAME="wa-ent")
    db = lab.run(refs["db"], environment=env)
    assert db.wait(timeout=30)["StatusCode"] == 2
    assert b"MC_DB_NAME must match" in db.logs()


def _tool(node, *cmd: str) -> str:
    res = node.exec_run(list(cmd))
    assert res.exit_code == 0, f"{cmd}: exit {res.exit_code}: {res.output.decode()}"
    return res.output.decode()


NFS_CAPS = ["DAC_READ_SEARCH", "SYS_ADMIN"]


@pytest.mark.integration
@pytest.mark.parametrize("mount", ["tmpfs", "volume"])
def test_nfs_serves_v4_to_the_node_image_directly_and_on_another_port(lab, refs, mount) -> None:
    kw: dict = {"cap_add": NFS_CAPS}
    if mount == "tmpfs":
        kw["tmpfs"] = {"/export": ""}
    else:
        kw["volumes"] = {lab.volume().name: {"bind": "/export", "mode": "rw"}}
    nfs = lab.run(refs["nfs"], **kw)
    _wait("'NFS SERVER INITIALIZED'", lambda: b"NFS SERVER INITIALIZED" in nfs.logs(),
          logs=nfs.logs)
    node = lab.run(refs["node"], init=True, entrypoint=["sleep", "infinity"])
    ip = _ip(nfs)
    _tool(node, "sh", "-c", "head -c 3000 /dev/urandom > /tmp/a")
    _tool(node, "nfs-cp", "/tmp/a", f"nfs://{ip}/export/a?version=4")
    assert " a" in _tool(node, "nfs-ls", f"nfs://{ip}/export?version=4")
    _, toxi_ip = _toxiproxy(lab, refs)
    _add_proxy(toxi_ip, "node->nfs", 12049, f"{ip}:2049")
    _tool(node, "nfs-cp", f"nfs://{toxi_ip}/export/a?version=4&nfsport=12049", "/tmp/b")
    _tool(node, "cmp", "/tmp/a", "/tmp/b")
    assert _tool(nfs, "stat", "-c", "%s", "/export/a").strip() == "3000"  # really on disk


@pytest.mark.integration
@pytest.mark.parametrize(("kw", "message"), [
    ({"cap_add": NFS_CAPS}, b"cannot export an overlay"),
    ({"tmpfs": {"/export": ""}}, b"needs --cap-add SYS_ADMIN --cap-add DAC_READ_SEARCH"),
    ({"environment": {"MC_NFS_FSAL": "MEM"}}, b"keeps no file contents"),
], ids=["overlay-export", "no-caps", "fsal-mem"])
def test_nfs_refuses_setups_that_would_not_serve_files(lab, refs, kw, message) -> None:
    nfs = lab.run(refs["nfs"], **kw)
    assert nfs.wait(timeout=30)["StatusCode"] == 2
    assert message in nfs.logs()


SKEW_PROBE = textwrap.dedent('''
    import asyncio, time
    async def main():
        base = time.time() - time.monotonic()
        m_prev = time.monotonic()
        for i in range(300):
            m = time.monotonic()
            print(f"{time.time() - m - base:.3f} {m - m_prev:.3f}", flush=True)
            m_prev = m
            await asyncio.sleep(0.05)
    asyncio.run(main())
''')


@pytest.mark.integration
def test_node_clock_skew_moves_wall_time_not_monotonic_without_restart(lab, refs) -> None:
    node = lab.run(refs["node"], init=True, entrypoint=["python3", "-c", SKEW_PROBE])

    def samples() -> list[tuple[float, float]]:
        return [tuple(map(float, ln.split())) for ln in node.logs().decode().splitlines()
                if ln.strip()]

    _wait("the probe's first samples", lambda: len(samples()) >= 3, logs=node.logs)
    assert all(abs(off) < 0.05 for off, _ in samples())
    res = node.exec_run(["sh", "-c", "echo +60 > /run/faketime/offset"])
    assert res.exit_code == 0
    n = len(samples())
    _wait("wall clock +60 s", lambda: any(abs(off - 60) < 0.5 for off, _ in samples()[n:]),
          timeout=5, logs=node.logs)
    steps = [dm for _, dm in samples()]
    assert max(steps) < 1.0, "monotonic clock jumped with the skew"
    assert min(steps[1:]) > 0.03, "asyncio.sleep(0.05) returned early"
    node.exec_run(["sh", "-c", "echo +0 > /run/faketime/offset"])
    n = len(samples())
    _wait("wall clock healed", lambda: any(abs(off) < 0.5 for off, _ in samples()[n:]),
          timeout=5, logs=node.logs)


@pytest.mark.integration
def test_node_image_has_the_pinned_python_stack_and_the_source(lab, refs, docker_client) -> None:
    out = docker_client.containers.run(
        refs["node"], remove=True, entrypoint=["python3", "-c",
            "import aiohttp, pymysql, multiconnect, os; "
            "print(aiohttp.__version__, pymysql.__version__, "
            "os.path.dirname(multiconnect.__file__), os.environ['LD_PRELOAD'])"],
        labels={"mc.run": "test-images"}, network_disabled=True,
    ).decode().split()
    assert out[0] == "3.8.4" and out[1] == "1.0.2"
    assert out[2] == "/opt/mc/multiconnect"
    assert out[3].endswith("libfaketime.so.1")
    cfg = docker_client.images.get(refs["node"]).attrs["Config"]
    assert cfg["Entrypoint"] == ["python3", "-m", "multiconnect"]
    hist = docker_client.api.history(refs["node"])
    created = [h["CreatedBy"] for h in hist if "LABEL" not in h["CreatedBy"]]
    # the source, then its bytecode, are the last layers: a change to it rebuilds only those
    assert "compileall" in created[0] and "/opt/mc/multiconnect" in created[0]
    assert "COPY" in created[1] and "/opt/mc/multiconnect" in created[1]


@pytest.mark.integration
def test_prune_removes_only_stale_tags_of_the_named_images(docker_client, refs) -> None:
    stale_db, other = "mc-db:000000000000", "mc-nfs:000000000000"
    docker_client.images.get(refs["db"]).tag(stale_db)
    docker_client.images.get(refs["nfs"]).tag(other)
    try:
        removed = images.prune_stale_images(docker_client, {"db": refs["db"]},
                                            progress=lambda _l: None)
        assert stale_db in removed and other not in removed
        assert refs["db"] not in removed
        tags = {t for i in docker_client.images.list(filters={"label": "mc.image"})
                for t in i.tags}
        assert stale_db not in tags and other in tags and refs["db"] in tags
    finally:
        import docker.errors
        for tag in (stale_db, other):
            with contextlib.suppress(docker.errors.ImageNotFound):
                docker_client.images.remove(tag)
