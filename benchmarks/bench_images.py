"""Benchmark the image layer: cold build per image, warm ensure, source-change rebuild, start→ready.

    python benchmarks/bench_images.py [--runs N] [--skip-cold] [--skip-ready]

- cold: every image rebuilt from nothing under the tag prefix ``mcbench-`` (fresh debootstrap,
  ``nocache`` builds, the toxiproxy binary rebuilt with an empty Go build cache; the Go
  module download cache stays warm). The real ``mc-*`` images are untouched; the
  ``mcbench-*`` images are removed afterwards.
- warm: ``ensure_images`` with everything cached, median of N runs.
- node source change: a copy of ``multiconnect/`` with one extra file → only the last layer is
  rebuilt; that image is removed afterwards.
- start→ready: db (tmpfs datadir), nfs (tmpfs export), toxiproxy started on an ``--internal``
  network labelled ``mc.run=bench-images-…``, time until their readiness probe succeeds
  (median of N); everything is removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.cluster import images  # noqa: E402
from harness.cluster.engine import ensure_engine  # noqa: E402

QUIET = lambda _line: None  # noqa: E731


def cold(client) -> list[images.ImageResult]:
    """Build every image from nothing under another tag prefix; remove them after."""
    saved = os.environ.get("XDG_CACHE_HOME")
    tmp = tempfile.mkdtemp(prefix="mc-bench-cache-")
    os.environ["XDG_CACHE_HOME"] = tmp  # fresh toxiproxy binary + Go build cache
    try:
        return images.build_images(client, force=images.ALL_IMAGES, prefix="mcbench-",
                                   progress=images.print_to_stderr)
    finally:
        if saved is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = saved
        shutil.rmtree(tmp, ignore_errors=True)


def remove(client, refs: list[str]) -> None:
    for ref in reversed(refs):
        try:
            client.images.remove(ref)
        except Exception as exc:  # noqa: BLE001 - report and go on
            print(f"could not remove {ref}: {exc}", file=sys.stderr)


def warm(client, runs: int) -> list[float]:
    """Seconds per all-cached ensure; a run that had to build (the source changed under
    us: others edit multiconnect/) is not counted."""
    out: list[float] = []
    for _ in range(3 * runs):
        t0 = time.monotonic()
        res = images.build_images(client, progress=QUIET)
        took = time.monotonic() - t0
        if all(r.status == "cached" for r in res):
            out.append(took)
        if len(out) == runs:
            break
    return out


def source_change(client) -> float:
    """Seconds to rebuild node after a source change (only the last layer)."""
    tmp = Path(tempfile.mkdtemp(prefix="mc-bench-src-"))
    try:
        src = tmp / "multiconnect"
        shutil.copytree(images.SOURCE_DIR, src,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
        (src / "_bench_marker.py").write_text(f"MARK = {uuid.uuid4().hex!r}\n")
        t0 = time.monotonic()
        res = images.build_images(client, ["node"], source_dir=src, progress=QUIET)
        seconds = time.monotonic() - t0
        node = next(r for r in res if r.name == "node")
        assert node.status == "built"
        remove(client, [node.ref])
        return seconds
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def start_ready(client, refs: dict[str, str], runs: int) -> dict[str, list[float]]:
    import pymysql
    import requests

    run = f"bench-images-{uuid.uuid4().hex[:8]}"
    labels = {"mc.run": run}
    net = client.networks.create(run, internal=True, labels=labels)
    helper = client.containers.run(refs["node"], entrypoint=["sleep", "infinity"], init=True,
                                   detach=True, network=net.name, labels=labels)
    out: dict[str, list[float]] = {"db": [], "nfs": [], "toxiproxy": []}

    def ip(c) -> str:
        c.reload()
        return c.attrs["NetworkSettings"]["Networks"][net.name]["IPAddress"]

    def until(probe, c, limit: float = 60.0) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            try:
                if probe():
                    return time.monotonic() - t0
            except Exception:  # noqa: BLE001, S110 - not ready yet
                pass
            time.sleep(0.02)
        raise TimeoutError(c.logs()[-2000:].decode(errors="replace"))

    specs = {
        "db": dict(environment={"MC_DB_NAME": "b", "MC_DB_USER": "b", "MC_DB_PASSWORD": "b",
                                "MC_DB_ROOT_PASSWORD": "r"}, tmpfs={"/var/lib/mysql": ""}),
        "nfs": dict(cap_add=["DAC_READ_SEARCH", "SYS_ADMIN"], tmpfs={"/export": ""}),
        "toxiproxy": dict(init=True),
    }
    try:
        for _ in range(runs):
            for name, kw in specs.items():
                t0 = time.monotonic()
                c = client.containers.run(refs[name], detach=True, network=net.name,
                                          labels=labels, **kw)
                try:
                    addr = ip(c)
                    if name == "db":
                        probe = lambda a=addr: pymysql.connect(  # noqa: E731
                            host=a, user="b", password="b", database="b", connect_timeout=1)
                    elif name == "nfs":
                        probe = lambda a=addr: helper.exec_run(  # noqa: E731
                            ["nfs-ls", f"nfs://{a}/export?version=4"]).exit_code == 0
                    else:
                        probe = lambda a=addr: requests.get(  # noqa: E731
                            f"http://{a}:8474/version", timeout=1).ok
                    until(probe, c)
                    out[name].append(time.monotonic() - t0)
                finally:
                    c.remove(force=True)
    finally:
        helper.remove(force=True)
        net.remove()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="runs for medians (default 5)")
    ap.add_argument("--skip-cold", action="store_true", help="skip the cold builds (~3 min)")
    ap.add_argument("--skip-ready", action="store_true", help="skip start→ready timings")
    args = ap.parse_args()
    client = ensure_engine()
    refs = images.ensure_images(client)  # the real images, built if missing
    print(f"{'image':<10} {'cold s':>7} {'size MB':>8}  reference")
    if not args.skip_cold:
        results = cold(client)
        total = 0.0
        for r in results:
            total += r.seconds
            print(f"{r.name:<10} {r.seconds:>7.1f} {images.image_size_mb(client, r.ref):>8.0f}"
                  f"  {r.ref}")
        print(f"{'all':<10} {total:>7.1f}")
        remove(client, [r.ref for r in results])
    else:
        for name, ref in refs.items():
            print(f"{name:<10} {'-':>7} {images.image_size_mb(client, ref):>8.0f}  {ref}")
    w = warm(client, args.runs) or [float("nan")]
    print(f"warm ensure (all cached): median {statistics.median(w) * 1000:.0f} ms "
          f"over {len(w)} runs (min {min(w) * 1000:.0f}, max {max(w) * 1000:.0f})")
    print(f"node rebuild after a source change: {source_change(client):.1f} s")
    if not args.skip_ready:
        for name, xs in start_ready(client, refs, args.runs).items():
            print(f"start→ready {name:<10} median {statistics.median(xs):.2f} s "
                  f"(min {min(xs):.2f}, max {max(xs):.2f}, n={len(xs)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
