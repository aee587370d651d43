"""``python -m harness doctor``: is this machine ready for the suite? Starts and builds nothing.

Checks, each printed as ``ok``, ``WARN``, ``FAIL`` or ``--`` (not checked because an earlier
check failed), with what to do under every one that is not ok:

- ``venv``: the project's ``.venv`` exists, runs, was made by Debian's ``/usr/bin/python3``,
  and holds the project as set-up installed it (``pyproject.toml`` unchanged since).
- ``engine``: is dockerd installed; does an engine answer ``GET /_ping`` and ``GET /networks``
  within 10 s (:mod:`harness.cluster.engine`'s probe; a dockerd left stopped by SIGSTOP is named).
- ``images``: every recipe's image is present under the tag
  :func:`harness.cluster.images.ensure_images` looks for
  (:func:`harness.cluster.images.planned_refs`: the recipe hashes as they are now).
- ``compose``: ``docker-compose`` (Debian, 1.29) or the ``docker compose`` plugin.
- ``java``: Java >= 17 for the HTML report (Allure 2).
- ``node``: Node and npm (Allure is installed from npm once), and whether Allure is installed.
- ``disk``: free space where Docker keeps its images and where the project is (warning under
  10 GB).

Exit status 0 when nothing failed (warnings allowed), 1 otherwise.

Run outside the venv (``python3 -m harness doctor``), the doctor re-runs itself with
``.venv/bin/python`` when that works, since the engine and image checks need the project's
packages; without a venv it checks what it can and says how to make one.
"""

from __future__ import annotations

import configparser
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.report.html import JAVA_MIN, parse_java_major

REPO = Path(__file__).resolve().parents[1]
DEBIAN_PYTHON = Path("/usr/bin/python3")
STAMP = ".mc-chaos-installed"  # written by scripts/venv.sh after a successful pip install
MIN_FREE_BYTES = 10 * 10**9
PROBE_TIMEOUT = 10.0
SETUP = "make setup (as root; or bash scripts/setup.sh)"

Run = Callable[..., subprocess.CompletedProcess]
Which = Callable[[str], str | None]


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # "ok" | "warn" | "fail" | "skip"
    detail: str
    fix: str = ""


def _ok(name: str, detail: str) -> Check:
    return Check(name, "ok", detail)


def _run_out(run: Run, cmd: Sequence[str], timeout: float = 60) -> tuple[int, str]:
    """(exit status, stdout+stderr) of ``cmd``; 127 if it cannot be started."""
    try:
        proc = run(list(cmd), capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return proc.returncode, (proc.stdout or "") + (proc.stderr or "")


# ------------------------------------------------------------------ venv

def _read_cfg(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser()
    parser.read_string("[venv]\n" + path.read_text(errors="replace"))
    return dict(parser["venv"])


def check_venv(root: Path = REPO, *, active: bool | None = None, run: Run = subprocess.run,
               debian_python: Path = DEBIAN_PYTHON) -> Check:
    """``active``: whether this shell activated .venv (default: from ``$VIRTUAL_ENV``)."""
    venv = root / ".venv"
    cfg_path, python = venv / "pyvenv.cfg", venv / "bin" / "python"
    if not cfg_path.is_file():
        return Check("venv", "fail", "no virtual environment .venv in the project",
                     f"{SETUP} creates it; only the venv: make venv")
    cfg = _read_cfg(cfg_path)
    rc, out = _run_out(run, [str(python), "-c", "import sys; print(sys.version.split()[0])"])
    if rc != 0:
        return Check("venv", "fail", f".venv/bin/python does not run (exit {rc}): "
                     f"{out.strip()[-200:]}", "rm -rf .venv, then make venv")
    made_by = cfg.get("executable") or cfg.get("home", "?")
    stamp = venv / STAMP
    digest = hashlib.sha256((root / "pyproject.toml").read_bytes()).hexdigest()
    if not stamp.is_file():
        return Check("venv", "fail", ".venv exists but set-up never finished installing the "
                     "project into it", "make venv (or make setup)")
    if digest not in stamp.read_text():
        return Check("venv", "fail", "pyproject.toml changed since the project was installed "
                     "into .venv", "make venv (or make setup) installs it again")
    detail = f".venv: Python {out.strip()} made by {made_by}, the project installed"
    if active is None:
        env = os.environ.get("VIRTUAL_ENV", "")
        active = bool(env) and Path(env).resolve() == venv.resolve()
    detail += " (activated in this shell)" if active else " (not activated in this shell)"
    if debian_python.exists() and cfg.get("home") != str(debian_python.parent):
        return Check("venv", "warn", detail + f"; not made by Debian's {debian_python}",
                     "rm -rf .venv, then make venv (set-up uses Debian's python3 on every "
                     "machine)")
    fix = "" if active else "to run pytest or python -m harness by hand: . .venv/bin/activate"
    return Check("venv", "ok", detail, fix)


# ------------------------------------------------------------------ engine

@dataclass
class EngineProbe:
    """What the engine check asks of :mod:`harness.cluster.engine`; tests pass fakes."""

    connect: Callable[[], Any]  # a client whose engine answers a ping, else None
    probe: Callable[[Any], None]  # raises EngineNotAnswering if /_ping or /networks hang
    dockerd_pid: Callable[[], int | None]  # pid of a live dockerd from its pid file
    is_stopped: Callable[[int], bool]
    not_answering: type[BaseException]
    restart_hint: str

    @classmethod
    def real(cls, timeout: float = PROBE_TIMEOUT, config: Any = None) -> EngineProbe:
        from harness.cluster import engine

        cfg = config or engine.EngineConfig()
        return cls(
            connect=lambda: engine.answered("GET /_ping", lambda: engine._answers(cfg), timeout),
            probe=lambda client: engine.check_answering(client, timeout),
            dockerd_pid=lambda: engine._dockerd_alive(cfg),
            is_stopped=engine.stopped,
            not_answering=engine.EngineNotAnswering,
            restart_hint=engine.RESTART_HINT,
        )


def _dockerd_installed(which: Which) -> bool:
    return bool(which("dockerd")) or Path("/usr/sbin/dockerd").exists()


def check_engine(probe: EngineProbe | None = None, *, which: Which = shutil.which
                 ) -> tuple[Check, Any]:
    """(check, client or None). Starts nothing: only asks an engine that is already there."""
    if probe is None:
        try:
            probe = EngineProbe.real()
        except ImportError as exc:
            return Check("engine", "fail", f"cannot check: {exc} (this interpreter is "
                         f"{sys.executable}, not the project's .venv)",
                         "run the doctor from the venv: . .venv/bin/activate && python -m "
                         "harness doctor (make setup creates .venv)"), None
    try:
        client = probe.connect()
        if client is not None:
            probe.probe(client)
    except probe.not_answering as exc:
        return Check("engine", "fail", str(exc).split(". ")[0], probe.restart_hint), None
    if client is not None:
        try:
            version = client.version().get("Version", "?")
        except Exception:  # noqa: BLE001 - only for the message
            version = "?"
        return _ok("engine", f"Docker {version} answers (GET /_ping, GET /networks)"), client
    pid = probe.dockerd_pid()
    if pid is not None and probe.is_stopped(pid):
        return Check("engine", "fail", f"dockerd (pid {pid}) is stopped (SIGSTOP), e.g. by a "
                     "run killed during an engine-freeze fault",
                     f"kill -CONT {pid} (make setup resumes it too)"), None
    if pid is not None:
        return Check("engine", "fail", f"dockerd (pid {pid}) runs but its socket does not "
                     "answer", probe.restart_hint), None
    if _dockerd_installed(which):
        return Check("engine", "fail", "dockerd is installed and not running",
                     f"{SETUP} starts it (or: setsid dockerd >/var/log/dockerd.log 2>&1 &)"), None
    host = os.environ.get("DOCKER_HOST", "")
    if host and not host.startswith("unix://"):
        return Check("engine", "fail", f"DOCKER_HOST={host} does not answer",
                     "start that engine, or unset DOCKER_HOST to use a local one"), None
    return Check("engine", "fail", "no Docker engine is installed (no dockerd)",
                 f"{SETUP} installs Debian's docker.io and starts it"), None


# ------------------------------------------------------------------ images

def check_images(client: Any, planned: Callable[[], Mapping[str, str]] | None = None) -> Check:
    if client is None:
        return Check("images", "skip", "not checked: no engine answers")
    if planned is None:
        from harness.cluster.images import planned_refs as planned
    refs = planned()
    missing = []
    for name, ref in refs.items():
        try:
            client.images.get(ref)
        except Exception as exc:  # docker.errors.ImageNotFound (or a fake's)
            if type(exc).__name__ != "ImageNotFound":
                raise
            missing.append(f"{name} ({ref})")
    if missing:
        return Check("images", "fail", f"{len(missing)} of {len(refs)} images missing or "
                     f"out of date: {', '.join(missing)}",
                     "python -m harness images builds them locally (as root; from scratch "
                     "≈ 2-3 min; make setup does it)")
    return _ok("images", f"all {len(refs)} present for the current recipes: "
               + ", ".join(refs.values()))


# ------------------------------------------------------------------ compose, java, node

def check_compose(*, which: Which = shutil.which, run: Run = subprocess.run) -> Check:
    if which("docker-compose"):
        rc, out = _run_out(run, ["docker-compose", "version", "--short"])
        if rc == 0:
            return _ok("compose", f"docker-compose {out.strip()}")
    if which("docker"):
        rc, out = _run_out(run, ["docker", "compose", "version", "--short"])
        if rc == 0:
            return _ok("compose", f"docker compose plugin {out.strip()}")
    return Check("compose", "fail", "neither docker-compose nor the docker compose plugin "
                 "(the operator procedures need one)",
                 f"{SETUP} installs Debian's docker-compose (or: apt-get install -y "
                 "docker-compose)")


def check_java(*, which: Which = shutil.which, run: Run = subprocess.run) -> Check:
    fix = (f"{SETUP} installs Debian's openjdk-17-jre-headless (or: apt-get install -y "
           "openjdk-17-jre-headless)")
    java = which("java")
    if java is None:
        return Check("java", "fail", f"no java on PATH; the HTML report (Allure 2) needs "
                     f"Java >= {JAVA_MIN}", fix)
    rc, out = _run_out(run, [java, "-version"])
    major = parse_java_major(out) if rc == 0 else None
    if major is None:
        return Check("java", "fail", f"{java} -version failed (exit {rc}): "
                     f"{out.strip()[-200:]}", fix)
    if major < JAVA_MIN:
        return Check("java", "fail", f"{java} is Java {major}; the report needs >= {JAVA_MIN}",
                     fix + ", then make it the default: update-alternatives --config java")
    return _ok("java", f"Java {major} ({java})")


def check_node(*, which: Which = shutil.which, run: Run = subprocess.run,
               allure_installed: Callable[[], bool] | None = None) -> Check:
    fix = f"{SETUP} installs Debian's nodejs and npm (or: apt-get install -y nodejs npm)"
    versions = {}
    for tool in ("node", "npm"):
        path = which(tool)
        rc, out = _run_out(run, [path, "--version"]) if path else (127, "")
        if rc != 0:
            return Check("node", "fail", f"no working {tool} on PATH; Allure (the HTML "
                         "report) is installed from npm", fix)
        versions[tool] = out.strip().splitlines()[-1] if out.strip() else "?"
    detail = f"Node {versions['node']}, npm {versions['npm']}"
    if allure_installed is None:
        allure_installed = _allure_installed
    if not allure_installed():
        return Check("node", "warn", detail + "; Allure not installed yet",
                     "make setup installs it (or the first report does): python -m "
                     "harness.report.html --install-only")
    return _ok("node", detail + "; Allure installed")


def _allure_installed() -> bool:
    from harness.report import html as report_html
    return report_html.allure_bin(report_html.cache_dir()).is_file()


# ------------------------------------------------------------------ disk

def check_disk(paths: Iterable[Path], *,
               usage: Callable[[Path], Any] = shutil.disk_usage,
               device: Callable[[Path], int] = lambda p: p.stat().st_dev,
               min_free: int = MIN_FREE_BYTES) -> Check:
    seen: dict[int, tuple[Path, int]] = {}
    for path in paths:
        p = path  # a folder not made yet (/var/lib/docker) gets the space of its parent
        while not p.exists() and p != p.parent:
            p = p.parent
        dev = device(p)
        if dev not in seen:
            seen[dev] = (path, usage(p).free)
    parts = [f"{p}: {free / 1e9:.0f} GB free" for p, free in seen.values()]
    low = [p for p, free in seen.values() if free < min_free]
    if low:
        return Check("disk", "warn", "; ".join(parts),
                     f"under {min_free / 1e9:.0f} GB free at {', '.join(map(str, low))}: the "
                     "images and clusters need room; free some (docker system prune, "
                     "python -m harness images --prune)")
    return _ok("disk", "; ".join(parts))


def docker_root(client: Any) -> Path:
    if client is not None:
        try:
            return Path(client.info().get("DockerRootDir") or "/var/lib/docker")
        except Exception:  # noqa: BLE001 - a guess is enough here
            pass
    return Path("/var/lib/docker")


# ------------------------------------------------------------------ running

def run_checks(root: Path = REPO) -> list[Check]:
    checks = [check_venv(root)]
    engine, client = check_engine()
    checks += [engine, check_images(client), check_compose(), check_java(), check_node(),
               check_disk([docker_root(client), root])]
    return checks


_LABEL = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "--  "}


def render(checks: Sequence[Check]) -> tuple[str, int]:
    lines = []
    for c in checks:
        lines.append(f"{_LABEL[c.status]}  {c.name:<8} {c.detail}")
        if c.fix:
            lines.append(f"      {'':<8} -> {c.fix}")
    counts = {s: sum(c.status == s for c in checks) for s in _LABEL}
    status = 1 if counts["fail"] else 0
    verdict = ("ready" if status == 0 and not counts["warn"] else
               "ready, with warnings" if status == 0 else "NOT ready")
    lines.append(f"doctor: {verdict}: {counts['ok']} ok, {counts['warn']} warning(s), "
                 f"{counts['fail']} failed, {counts['skip']} not checked")
    return "\n".join(lines), status


def _in_venv(venv: Path) -> bool:
    return Path(sys.prefix).resolve() == venv.resolve()


def _venv_works(python: Path) -> bool:
    rc, _ = _run_out(subprocess.run, [str(python), "-c", "import docker, harness.doctor"])
    return rc == 0


def main(argv: Sequence[str] | None = None) -> int:
    venv = REPO / ".venv"
    python = venv / "bin" / "python"
    if (not _in_venv(venv) and python.exists() and os.environ.get("MC_DOCTOR_HERE") != "1"
            and _venv_works(python)):
        print(f"(doctor: {sys.executable} is not the project's .venv; checking with "
              ".venv/bin/python)", flush=True)
        os.execve(str(python), [str(python), "-m", "harness", "doctor"],
                  {**os.environ, "MC_DOCTOR_HERE": "1"})
    text, status = render(run_checks(REPO))
    print(text, flush=True)
    return status


__all__ = ["Check", "EngineProbe", "check_compose", "check_disk", "check_engine",
           "check_images", "check_java", "check_node", "check_venv", "main", "render",
           "run_checks"]
