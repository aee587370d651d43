"""Two real Docker engines on this machine (scripts/second-engine.sh): a cluster placed on the
second engine with its images shipped from the first, the sweeper and ``python -m harness``
on both, the engine-freeze fault aimed at the right daemon, and pytest-xdist workers taking
one engine each. Skipped, with the reason, where a second engine cannot be started (not root,
no dockerd)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from harness.cluster import cleanup
from harness.cluster import plan as container_plan
from harness.cluster.bringup import Cluster
from harness.cluster.engine import EngineConfig, engine_url, ensure_engine, local_dockerd
from harness.spec import topology

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "second-engine.sh"


def _script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def engines() -> Iterator[tuple[docker.DockerClient, docker.DockerClient]]:
    """(the first engine, the second one); the second is stopped again if this started it."""
    first = ensure_engine()
    was_running = _script("status").returncode == 0
    started = _script("start")
    if started.returncode != 0:
        pytest.skip(f"no second engine here: {started.stderr.strip().splitlines()[-1]}")
    url = _script("url").stdout.strip()
    second = ensure_engine(config=EngineConfig(base_url=url, start=False))
    try:
        yield first, second
    finally:
        cleanup.sweep(second, lambda _: None)
        if not was_running:
            _script("stop")


def _runs_on(client: docker.DockerClient, run_id: str) -> int:
    return len(client.containers.list(all=True,
                                      filters={"label": f"{cleanup.LABEL_RUN}={run_id}"}))


def test_a_cluster_runs_on_the_second_engine_with_images_shipped_from_the_first(
        engines) -> None:
    first, second = engines
    c = Cluster(topology(media="volume"), client=second, image_source=first,
                progress=lambda _: None)
    with c:
        assert c.engine_url == engine_url(second) != engine_url(first)
        assert _runs_on(second, c.run_id) == len(c.nodes) and _runs_on(first, c.run_id) == 0
        for ref in c.images.values():
            second.images.get(ref)   # shipped (or already there): present on the second
        assert c.api().health()      # reached from this host through the second engine
        assert c.round_trip()
    assert _runs_on(second, c.run_id) == 0


def test_the_engine_freeze_fault_finds_each_engines_own_dockerd(engines) -> None:
    first, second = engines
    p1, p2 = local_dockerd(first), local_dockerd(second)
    assert p1 is not None and p2 is not None and p1 != p2
    pidfile = Path("/run/mc-docker2/docker.pid")
    if pidfile.exists():
        assert p2 == int(pidfile.read_text())


def test_the_cli_lists_and_removes_runs_on_every_engine_given(engines) -> None:
    first, second = engines
    urls = [engine_url(first), engine_url(second)]
    env = {**os.environ, "MC_DOCKER_HOSTS": ",".join(urls)}
    labels = container_plan.labels("mcengine2x", "probe", keep=True)
    images = second.images.list(filters={"label": "mc.image=node"})
    assert images, "the node image should have been shipped by the test above"
    second.containers.create(images[0].tags[0], name="mcengine2x-probe", labels=labels,
                             entrypoint=["sleep", "60"])
    ps = subprocess.run([sys.executable, "-m", "harness", "ps"], capture_output=True,
                        text=True, env=env, cwd=REPO, timeout=120)
    assert f"mcengine2x  owner=keep  containers=1 running=0  engine={urls[1]}" in ps.stdout
    down = subprocess.run([sys.executable, "-m", "harness", "down", "--run-id", "mcengine2x"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert down.returncode == 0 and f"({urls[1]})" in down.stdout, down.stderr
    assert _runs_on(second, "mcengine2x") == 0


XDIST_TEST = '''
import json
import os
from pathlib import Path


def test_where(cluster):
    Path(f"{os.environ['PYTEST_XDIST_WORKER']}-{__name__}.json").write_text(
        json.dumps(cluster.engine_url))
'''


def test_xdist_workers_take_one_engine_each(engines, tmp_path: Path) -> None:
    """Two test files, two workers, ``--dist loadfile``: gw0 runs on the first engine, gw1 on
    the second (round robin over the engines given)."""
    first, second = engines
    urls = [engine_url(first), engine_url(second)]
    for name in ("test_a.py", "test_b.py"):
        (tmp_path / name).write_text(textwrap.dedent(XDIST_TEST))
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
            "-n", "2", "--dist", "loadfile", "--mc-media", "volume",
            "--mc-artifacts", str(tmp_path / "artifacts"), "test_a.py", "test_b.py"]
    for u in urls:
        args += ["--mc-docker-host", u]
    res = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    placed = {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("gw*.json")}
    assert len(placed) == 2 and {k.split("-")[0] for k in placed} == {"gw0", "gw1"}, placed
    for key, url in placed.items():
        assert url == urls[int(key.split("-")[0][2:])], placed


def test_a_run_killed_on_one_engine_is_swept_by_the_next_run_on_any(engines,
                                                                      tmp_path: Path) -> None:
    """A dead run's container on the second engine (its owner process is gone, as after a
    SIGKILL) is removed by the next session given both engines, although that session's
    clusters run on the first (no xdist: the first engine)."""
    first, second = engines
    urls = [engine_url(first), engine_url(second)]
    labels = container_plan.labels("mcdeadrun1", "probe")
    labels[cleanup.LABEL_OWNER] = f"{socket.gethostname()}:{_exited_pid()}"
    image = second.images.list(filters={"label": "mc.image=node"})[0].tags[0]
    second.containers.create(image, name="mcdeadrun1-probe", labels=labels,
                             entrypoint=["sleep", "60"])
    (tmp_path / "test_one.py").write_text("def test_one(cluster):\n    assert cluster.run_id\n")
    args = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:randomly", "-p",
            "no:cacheprovider", "--mc-media", "volume", "--mc-artifacts",
            str(tmp_path / "artifacts"), "test_one.py"]
    for u in urls:
        args += ["--mc-docker-host", u]
    res = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "of dead run mcdeadrun1" in res.stderr + res.stdout
    assert _runs_on(second, "mcdeadrun1") == 0


def _exited_pid() -> int:
    """The pid of a process that has exited (no process has it now)."""
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid
