"""``python -m harness doctor``'s checks, with fakes: no Docker, nothing started."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from types import SimpleNamespace

import docker.errors
import pytest

from harness import doctor
from harness.cluster import engine, images
from harness.doctor import Check, EngineProbe
from harness.report import html as report_html


def _completed(stdout: str = "", stderr: str = "", rc: int = 0):
    def run(cmd, **_kw):
        return subprocess.CompletedProcess(cmd, rc, stdout, stderr)
    return run


def _which(*present: str):
    return lambda name: f"/usr/bin/{name}" if name in present else None


# ------------------------------------------------------------------ venv

def _venv(root: Path, *, home: str = "/usr/bin", stamp: bool = True,
          pyproject: bytes = b"[project]\nname = 'x'\n") -> Path:
    (root / "pyproject.toml").write_bytes(pyproject)
    venv = root / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    (venv / "pyvenv.cfg").write_text(
        f"home = {home}\ninclude-system-site-packages = false\nversion = 3.11.2\n"
        f"executable = {home}/python3.11\n")
    if stamp:
        digest = hashlib.sha256(pyproject).hexdigest()
        (venv / doctor.STAMP).write_text(f"/usr/bin/python3.11 3.11.2|dev|{digest}|{root}\n")
    return venv


def test_venv_missing_says_make_setup(tmp_path: Path) -> None:
    c = doctor.check_venv(tmp_path)
    assert c.status == "fail" and "no virtual environment" in c.detail
    assert "make setup" in c.fix


def test_venv_made_by_debians_python_with_the_project_installed_is_ok(tmp_path: Path) -> None:
    _venv(tmp_path)
    c = doctor.check_venv(tmp_path, run=_completed("3.11.2\n"), active=False,
                          debian_python=Path("/usr/bin/python3"))
    assert c.status == "ok", c
    assert "3.11.2" in c.detail and "not activated" in c.detail
    assert c.fix == "to run pytest or python -m harness by hand: . .venv/bin/activate"
    active = doctor.check_venv(tmp_path, run=_completed("3.11.2\n"), active=True)
    assert active.status == "ok" and active.fix == ""


def test_venv_that_does_not_run_is_a_failure(tmp_path: Path) -> None:
    _venv(tmp_path)
    c = doctor.check_venv(tmp_path, run=_completed(stderr="No such file", rc=127))
    assert c.status == "fail" and "does not run" in c.detail and "make venv" in c.fix


def test_venv_without_a_finished_install_or_with_a_changed_pyproject_fails(
        tmp_path: Path) -> None:
    _venv(tmp_path, stamp=False)
    c = doctor.check_venv(tmp_path, run=_completed("3.11.2\n"))
    assert c.status == "fail" and "never finished" in c.detail
    (tmp_path / "b").mkdir()
    _venv(tmp_path / "b")
    (tmp_path / "b" / "pyproject.toml").write_text("[project]\nname = 'changed'\n")
    c = doctor.check_venv(tmp_path / "b", run=_completed("3.11.2\n"))
    assert c.status == "fail" and "pyproject.toml changed" in c.detail and "make venv" in c.fix


def test_venv_made_by_another_interpreter_is_a_warning(tmp_path: Path) -> None:
    _venv(tmp_path, home="/opt/python-3.11.7/bin")
    debian = tmp_path / "usr-bin-python3"
    debian.write_text("")
    c = doctor.check_venv(tmp_path, run=_completed("3.11.7\n"), debian_python=debian)
    assert c.status == "warn" and "not made by Debian's" in c.detail
    assert "rm -rf .venv" in c.fix


# ------------------------------------------------------------------ engine

class NotAnswering(Exception):
    pass


class FakeClient:
    def __init__(self, present: set[str] = frozenset(), root: str = "/var/lib/docker") -> None:
        self.present, self.root = set(present), root
        self.images = SimpleNamespace(get=self._get)

    def _get(self, ref: str):
        if ref not in self.present:
            raise docker.errors.ImageNotFound(ref)
        return SimpleNamespace(tags=[ref])

    def version(self) -> dict:
        return {"Version": "20.10.24"}

    def info(self) -> dict:
        return {"DockerRootDir": self.root}


def _probe(*, client=None, connect_raises=False, probe_raises=False, pid=None,
           stopped=False) -> EngineProbe:
    def connect():
        if connect_raises:
            raise NotAnswering("engine not answering: GET /_ping: no answer in 10 s. hint")
        return client

    def probe(_c):
        if probe_raises:
            raise NotAnswering("engine not answering: GET /networks: no answer in 10 s. hint")

    return EngineProbe(connect=connect, probe=probe, dockerd_pid=lambda: pid,
                       is_stopped=lambda _pid: stopped, not_answering=NotAnswering,
                       restart_hint="RESTART HINT")


def test_engine_that_answers_is_ok_and_hands_its_client_on() -> None:
    client = FakeClient()
    c, got = doctor.check_engine(_probe(client=client), which=_which("dockerd"))
    assert c.status == "ok" and "20.10.24" in c.detail and got is client


@pytest.mark.parametrize("where", ["connect", "probe"])
def test_engine_that_hangs_is_a_failure_with_the_restart_hint(where: str) -> None:
    p = _probe(client=FakeClient(), connect_raises=where == "connect",
               probe_raises=where == "probe")
    c, client = doctor.check_engine(p, which=_which("dockerd"))
    assert c.status == "fail" and client is None
    assert "no answer in 10 s" in c.detail and c.fix == "RESTART HINT"


def test_engine_stopped_by_sigstop_says_how_to_resume_it() -> None:
    c, _ = doctor.check_engine(_probe(pid=4242, stopped=True), which=_which("dockerd"))
    assert c.status == "fail" and "SIGSTOP" in c.detail and c.fix.startswith("kill -CONT 4242")


def test_engine_running_without_an_answering_socket() -> None:
    c, _ = doctor.check_engine(_probe(pid=4242), which=_which("dockerd"))
    assert c.status == "fail" and "does not answer" in c.detail and c.fix == "RESTART HINT"


def test_engine_installed_but_not_running_says_make_setup_starts_it() -> None:
    c, _ = doctor.check_engine(_probe(), which=_which("dockerd"))
    assert c.status == "fail" and "not running" in c.detail and "make setup" in c.fix


def test_engine_not_installed_says_make_setup_installs_it(monkeypatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(doctor, "_dockerd_installed", lambda _which: False)
    c, _ = doctor.check_engine(_probe(), which=_which())
    assert c.status == "fail" and "no Docker engine is installed" in c.detail
    assert "docker.io" in c.fix


def test_the_real_probe_starts_and_installs_nothing(monkeypatch, tmp_path: Path) -> None:
    def forbidden(*_a, **_k):
        raise AssertionError("the doctor must not start or install anything")
    for name in ("ensure_engine", "_start_dockerd", "_install_docker", "restart_engine"):
        monkeypatch.setattr(engine, name, forbidden)
    cfg = engine.EngineConfig(base_url=f"unix://{tmp_path}/no-such.sock",
                              pid_path=tmp_path / "docker.pid")
    c, client = doctor.check_engine(EngineProbe.real(timeout=5, config=cfg), which=_which())
    assert client is None and c.status == "fail"


# ------------------------------------------------------------------ images

PLAN = {"base": "mc-base:aaa", "db": "mc-db:bbb", "node": "mc-node:ccc"}


def test_images_all_present_is_ok() -> None:
    c = doctor.check_images(FakeClient(set(PLAN.values())), planned=lambda: PLAN)
    assert c.status == "ok" and "all 3 present" in c.detail


def test_images_missing_are_named_with_how_to_build_them() -> None:
    c = doctor.check_images(FakeClient({"mc-base:aaa"}), planned=lambda: PLAN)
    assert c.status == "fail"
    assert "db (mc-db:bbb)" in c.detail and "node (mc-node:ccc)" in c.detail
    assert "python -m harness images" in c.fix


def test_images_are_not_checked_without_an_engine() -> None:
    assert doctor.check_images(None, planned=lambda: PLAN).status == "skip"


def test_planned_refs_are_the_tags_ensure_images_looks_for(monkeypatch, tmp_path: Path) -> None:
    """The doctor and ensure_images agree: every planned tag present -> nothing is built."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # image locks
    planned = images.planned_refs()
    assert set(planned) == set(images.ALL_IMAGES)

    def no_build(*_a, **_k):
        raise AssertionError("built although every planned tag is present")
    monkeypatch.setattr(images, "_build_base", no_build)
    monkeypatch.setattr(images, "_docker_build", no_build)
    results = images.build_images(FakeClient(set(planned.values())),
                                  progress=lambda _line: None)
    assert {r.name: r.ref for r in results} == planned
    assert {r.status for r in results} == {"cached"}


# ------------------------------------------------------------------ compose, java, node

def test_compose_debian_or_plugin_or_how_to_install() -> None:
    c = doctor.check_compose(which=_which("docker-compose"), run=_completed("1.29.2\n"))
    assert c.status == "ok" and "docker-compose 1.29.2" in c.detail
    c = doctor.check_compose(which=_which("docker"), run=_completed("v2.27.0\n"))
    assert c.status == "ok" and "plugin" in c.detail
    c = doctor.check_compose(which=_which("docker"), run=_completed(rc=1))
    assert c.status == "fail" and "apt-get install -y docker-compose" in c.fix


@pytest.mark.parametrize(("text", "major"), [
    ('openjdk version "17.0.15" 2025-04-15', 17), ('java version "1.8.0_392"', 8),
    ('openjdk version "21" 2023-09-19', 21), ('openjdk version "11.0.2"', 11), ("junk", None)])
def test_java_major_from_java_version_output(text: str, major: int | None) -> None:
    assert report_html.parse_java_major(text) == major


def test_java_missing_old_or_ok() -> None:
    c = doctor.check_java(which=_which())
    assert c.status == "fail" and "openjdk-17-jre-headless" in c.fix
    old = doctor.check_java(which=_which("java"),
                            run=_completed(stderr='openjdk version "11.0.21" 2023-10-17'))
    assert old.status == "fail" and "Java 11" in old.detail and "update-alternatives" in old.fix
    ok = doctor.check_java(which=_which("java"),
                           run=_completed(stderr='openjdk version "17.0.15" 2025-04-15'))
    assert ok.status == "ok" and "Java 17" in ok.detail


def test_report_refuses_a_java_older_than_17(monkeypatch) -> None:
    monkeypatch.setattr(report_html.shutil, "which", lambda _n: "/usr/bin/java")
    monkeypatch.setattr(report_html, "java_major", lambda _j: 11)
    with pytest.raises(report_html.ReportToolError, match="Java 17 or newer.*Java 11"):
        report_html.ensure_java()


def test_node_and_npm_then_allure() -> None:
    c = doctor.check_node(which=_which("node"), run=_completed("v18.20.4\n"))
    assert c.status == "fail" and "npm" in c.detail and "nodejs npm" in c.fix
    c = doctor.check_node(which=_which("node", "npm"), run=_completed("9.2.0\n"),
                          allure_installed=lambda: False)
    assert c.status == "warn" and "--install-only" in c.fix
    c = doctor.check_node(which=_which("node", "npm"), run=_completed("9.2.0\n"),
                          allure_installed=lambda: True)
    assert c.status == "ok" and "Allure installed" in c.detail


# ------------------------------------------------------------------ disk and the verdict

def test_disk_warns_under_10_gb_once_per_filesystem(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    free = {a: 4e9, b: 50e9}
    usage = lambda p: SimpleNamespace(free=free[p])  # noqa: E731
    c = doctor.check_disk([a / "later", b, a], usage=usage, device=lambda p: hash(p))
    # a/later does not exist yet: it gets a's space, and a is not counted twice
    assert c.status == "warn" and f"{a / 'later'}: 4 GB free" in c.detail
    assert str(a / "later") in c.fix and f"{a}:" not in c.detail
    ok = doctor.check_disk([b], usage=usage, device=lambda p: 1)
    assert ok.status == "ok"


def test_render_exit_status_one_only_on_a_failure() -> None:
    ok, warn = Check("a", "ok", "fine"), Check("b", "warn", "low", "free some")
    fail, skip = Check("c", "fail", "broken", "make setup"), Check("d", "skip", "later")
    text, status = doctor.render([ok, warn])
    assert status == 0 and "ready, with warnings" in text and "-> free some" in text
    text, status = doctor.render([ok, fail, skip])
    assert status == 1 and "NOT ready" in text and "FAIL  c" in text and "-> make setup" in text
    assert doctor.render([ok])[1] == 0
