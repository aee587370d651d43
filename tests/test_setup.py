"""Set-up's Python step (scripts/venv.sh) under Debian's /usr/bin/python3, against a scratch
directory and a tiny project, and the failover target's exit status, with fakes. No Docker.

The venv tests need Debian's python3 with python3-venv, and PyPI (pip fetches setuptools to
build the tiny project); about 20-30 s together.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_SH = REPO / "scripts" / "venv.sh"
DEBIAN_PYTHON = Path("/usr/bin/python3")
PROBE = "mc_chaos_setup_probe"

pytestmark = pytest.mark.setup


def _debian_venv_missing() -> str | None:
    if not DEBIAN_PYTHON.exists():
        return "/usr/bin/python3 (Debian's interpreter) is not installed"
    ok = subprocess.run([str(DEBIAN_PYTHON), "-c", "import ensurepip, venv"],
                        capture_output=True, check=False).returncode == 0
    return None if ok else ("Debian's python3 has no venv support: python3-venv is not "
                            "installed (apt-get install -y python3-venv)")


needs_debian_venv = pytest.mark.skipif(_debian_venv_missing() is not None,
                                       reason=_debian_venv_missing() or "")

PYPROJECT = f"""\
[build-system]
requires = [{{setuptools}}]
build-backend = "setuptools.build_meta"

[project]
name = "mc-chaos-setup-probe"
version = "0"

[project.optional-dependencies]
dev = []

[tool.setuptools]
py-modules = ["{PROBE}"]
"""


def _project(path: Path, setuptools: str = '"setuptools>=61"') -> Path:
    path.mkdir(parents=True)
    (path / "pyproject.toml").write_text(PYPROJECT.replace("{setuptools}", setuptools))
    (path / f"{PROBE}.py").write_text("VALUE = 42\n")
    return path


def _venv_sh(venv: Path, project: Path, **env: str) -> subprocess.CompletedProcess:
    """scripts/venv.sh as set-up runs it: no --python, so it picks the interpreter itself;
    Debian's PATH first, no MC_PYTHON, no active venv."""
    clean = {k: v for k, v in os.environ.items()
             if k not in ("MC_PYTHON", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    clean["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
    clean.update(env)
    return subprocess.run(["bash", str(VENV_SH), "--venv", str(venv), "--project",
                           str(project)], capture_output=True, text=True, env=clean,
                          cwd="/", timeout=600, check=False)


def _imports_probe(python: str | Path) -> bool:
    """Whether ``python`` (isolated: no cwd, no PYTHONPATH, no user site) imports the probe."""
    return subprocess.run([str(python), "-I", "-c", f"import {PROBE}"], capture_output=True,
                          cwd="/", check=False).returncode == 0


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory):
    """One venv made by scripts/venv.sh for the tiny project: (venv, project, first run)."""
    if _debian_venv_missing():
        pytest.skip(_debian_venv_missing())
    root = tmp_path_factory.mktemp("setup")
    project = _project(root / "project")
    venv = root / "venv"
    return venv, project, _venv_sh(venv, project)


@needs_debian_venv
def test_venv_step_installs_the_project_into_a_venv_of_debians_python(made) -> None:
    venv, project, run = made
    assert run.returncode == 0, run.stderr
    assert "FAILED" not in run.stderr
    assert run.stderr.rstrip().splitlines()[-1].startswith(f"[setup] {venv} ready")
    cfg = configparser.ConfigParser()
    cfg.read_string("[v]\n" + (venv / "pyvenv.cfg").read_text())
    assert cfg["v"]["home"] == "/usr/bin", "the venv must be made by Debian's /usr/bin/python3"
    assert cfg["v"]["include-system-site-packages"] == "false"
    # in the venv, editable (the project's own file), and NOT in the system interpreter
    out = subprocess.run([str(venv / "bin" / "python"), "-I", "-c",
                          f"import {PROBE} as m, sys; print(m.__file__); print(sys.prefix)"],
                         capture_output=True, text=True, cwd="/", check=True).stdout.split()
    assert Path(out[0]) == project / f"{PROBE}.py"
    assert Path(out[1]) == venv
    assert not _imports_probe(DEBIAN_PYTHON), "installed into the system Python"
    assert not _imports_probe(sys.executable) or Path(sys.prefix) == venv


@needs_debian_venv
def test_venv_step_run_again_only_checks(made) -> None:
    venv, project, first = made
    assert first.returncode == 0, first.stderr
    again = _venv_sh(venv, project)
    assert again.returncode == 0, again.stderr
    assert "up to date" in again.stderr
    assert "installing" not in again.stderr and "creating" not in again.stderr


@needs_debian_venv
def test_a_pip_failure_fails_the_venv_step_and_says_so(made, tmp_path: Path) -> None:
    venv, _, first = made
    assert first.returncode == 0, first.stderr
    # a build requirement that cannot be had: pip fails without asking any index
    broken = _project(tmp_path / "broken",
                      '"setuptools @ file:///nonexistent/mc-chaos/setuptools-0-py3-none-any.whl"')
    run = _venv_sh(venv, broken)
    assert run.returncode != 0, "pip failed and the venv step still exited 0\n" + run.stderr
    last = run.stderr.rstrip().splitlines()[-1]
    assert last.startswith(f"[setup] FAILED: installing Python packages into {venv} "
                           "(pip exited "), last
    assert "ready" not in last
    assert not (venv / ".mc-chaos-installed").exists(), "a failed install left its stamp"


@needs_debian_venv
def test_a_directory_that_is_not_a_venv_is_refused_not_removed(tmp_path: Path) -> None:
    target = tmp_path / "not-a-venv"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    run = _venv_sh(target, REPO)
    assert run.returncode == 1
    assert "[setup] FAILED: using" in run.stderr and "no pyvenv.cfg" in run.stderr
    assert (target / "keep.txt").read_text() == "mine"


def test_venv_step_refuses_an_interpreter_without_venv_support(tmp_path: Path) -> None:
    fake = tmp_path / "python3"  # says it is 3.11 but has no ensurepip (no python3-venv)
    fake.write_text("#!/bin/sh\ncase \"$*\" in *ensurepip*) exit 1;; esac\nexit 0\n")
    fake.chmod(0o755)
    run = _venv_sh(tmp_path / "venv", REPO, MC_PYTHON=str(fake))
    assert run.returncode == 1
    assert "python3-venv" in run.stderr and "[setup] FAILED: creating" in run.stderr
    assert not (tmp_path / "venv").exists()


# ------------------------------------------------------------------ nothing swallowed

SCRIPTS = [REPO / "scripts" / "setup.sh", REPO / "scripts" / "venv.sh", REPO / "Makefile",
           REPO / ".ci" / "run", REPO / "tox.ini"]


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_step_is_allowed_to_fail_silently(path: Path) -> None:
    text = path.read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert not re.search(r"\|\|\s*(true|:)\b", code), f"{path.name} swallows a failure"
    assert "--break-system-packages" not in code
    # pip runs only from the venv's interpreter (scripts/venv.sh), never the system's
    system_pip = r"(?:^|[;&|(]\s*)(?:sudo\s+)?pip3?\s+install|python3(?:\.\d+)?\s+-m\s+pip\b"
    assert not re.search(system_pip, code, re.M), f"{path.name} runs pip outside the venv"


def test_setup_refuses_an_unknown_step() -> None:
    run = subprocess.run(["bash", str(REPO / "scripts" / "setup.sh"), "bogus"],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 2 and "usage" in run.stderr


# ------------------------------------------------------------------ make failover's status

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def _fake(path: Path, status: int, say: str) -> Path:
    path.write_text(f"#!/bin/sh\necho '{say}' \"$@\"\nexit {status}\n")
    path.chmod(0o755)
    return path


@needs_make
@pytest.mark.parametrize(("tests", "report", "expected"),
                         [(0, 0, 0), (1, 0, 1), (0, 2, 2), (1, 2, 1), (5, 3, 5)])
def test_failover_ends_with_the_suites_status_else_the_reports(tmp_path: Path, tests: int,
                                                           report: int, expected: int) -> None:
    pytest_fake = _fake(tmp_path / "pytest", tests, "fake pytest")
    python_fake = _fake(tmp_path / "python", report, "fake report")
    cmd = ["make", "-s", "-C", str(REPO), "failover", "SETUP=true", f"PYTEST={pytest_fake}",
           f"PY={python_fake}", f"RESULTS={tmp_path}/results", f"HTML={tmp_path}/html"]
    # never start the real suite or set-up from a unit test: dry-run first, fakes only
    plan = subprocess.run([*cmd, "-n"], capture_output=True, text=True, timeout=60,
                          check=True).stdout
    commands = [line for line in plan.splitlines() if not line.startswith("echo ")]
    assert not any("setup.sh" in c or ".venv/bin" in c for c in commands), plan
    assert f"{pytest_fake} -m failover" in plan and f"{python_fake} -m harness" in plan, plan
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    out = run.stdout + run.stderr
    # GNU make exits 2 whenever a recipe fails; the recipe's own status is in its message
    assert run.returncode == (2 if expected else 0), out
    if expected:
        assert re.search(rf"\] Error {expected}$", run.stderr, re.M), run.stderr
    assert "[failover] 1/3 set-up" in out and "6-7 min" in out  # what it does, how long
    assert "fake pytest -m failover" in out and "fake report -m harness.report.html" in out
    if report == 0:
        assert f"[failover] report: {tmp_path}/html/index.html" in out
    else:
        assert (f"[failover] FAILED: the HTML report (harness.report.html exited {report})"
                in out)
        assert f"the results stay in {tmp_path}/results" in out
    assert ("[failover] tests: passed" in out) == (tests == 0)


@needs_make
def test_make_without_a_target_prints_the_targets() -> None:
    run = subprocess.run(["make", "-s", "-C", str(REPO)], capture_output=True, text=True,
                         timeout=60, check=True)
    for target in ("failover", "test", "setup", "venv", "report", "doctor", "lint"):
        assert f"make {target}" in run.stdout


# ------------------------------------------------------------------ Go for the toxiproxy build

def _fake_go(path: Path, version: str) -> str:
    path.write_text(f"#!/bin/sh\n[ \"$*\" = 'env GOVERSION' ] && echo {version}\n")
    path.chmod(0o755)
    return str(path)


def test_the_toxiproxy_build_takes_the_first_go_that_is_new_enough(tmp_path: Path) -> None:
    from harness.cluster import images

    old = _fake_go(tmp_path / "go119", "go1.19.8")  # Debian 12's golang-go
    new = _fake_go(tmp_path / "go123", "go1.23.5")  # bookworm-backports' golang-1.23-go
    assert images.find_go([old, new]) == new
    assert images.find_go([old]) is None
    assert images.find_go([str(tmp_path / "missing"), new]) == new


def test_debian_codename_decides_whether_backports_go_is_offered(tmp_path: Path) -> None:
    from harness.cluster import images

    rel = tmp_path / "os-release"
    rel.write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_CODENAME=bookworm\n')
    assert images._debian_codename(rel) == "bookworm"
    rel.write_text("ID=ubuntu\nVERSION_CODENAME=noble\n")
    assert images._debian_codename(rel) == "noble"
    assert images._debian_codename(tmp_path / "none") is None
