"""Throughput and latency of acknowledged messages through one webapp (issue: roles).

Starts the reference roles as processes on loopback against a throwaway MariaDB (as the
roles' integration test does): 2 masters, 2 coreapps, 1 webapp, the gateway stand-in. Then:

* sustained rate: ``--concurrency`` clients send back to back for ``--seconds``; prints
  acknowledged (201) messages per second;
* latency at a fixed rate: open-loop ``--rate`` msg/s for ``--seconds``; prints p50/p99.

Each figure is the median of ``--runs`` runs. Bounded: every loop stops at its time limit.
Usage: ``python benchmarks/bench_webapp.py [--runs 3] [--seconds 10]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from local_cluster import LocalCluster, local_mariadb, wait_until  # noqa: E402


def body(i: int) -> dict:
    return {"recipient_type": "individual", "to": f"1777{i:07d}", "type": "text",
            "text": {"body": f"bench {i}"}}


async def login(url: str) -> str:
    async with aiohttp.ClientSession() as s:
        for _ in range(300):
            try:
                async with s.post(f"{url}/v1/users/login",
                                  auth=aiohttp.BasicAuth("admin", "secret"),
                                  json={"new_password": "Bench-password-1"}) as r:
                    if r.status == 200:
                        return (await r.json())["users"][0]["token"]
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("could not log in")


async def sustained(url: str, token: str, concurrency: int, seconds: float) -> float:
    ok = 0
    counter = iter(range(10**9))
    deadline = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as s:
        async def worker() -> None:
            nonlocal ok
            while time.monotonic() < deadline:
                try:
                    async with s.post(f"{url}/v1/messages", json=body(next(counter)),
                                      timeout=aiohttp.ClientTimeout(total=5)) as r:
                        await r.read()
                        ok += r.status == 201
                except (TimeoutError, aiohttp.ClientError):
                    pass
        t0 = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return ok / (time.monotonic() - t0)


async def latency(url: str, token: str, rate: float, seconds: float) -> tuple[float, float, int]:
    lat: list[float] = []
    failed = 0
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers) as s:
        async def one(i: int) -> None:
            nonlocal failed
            t = time.monotonic()
            try:
                async with s.post(f"{url}/v1/messages", json=body(5_000_000 + i),
                                  timeout=aiohttp.ClientTimeout(total=5)) as r:
                    await r.read()
                    if r.status == 201:
                        lat.append(time.monotonic() - t)
                    else:
                        failed += 1
            except (TimeoutError, aiohttp.ClientError):
                failed += 1
        t0 = time.monotonic()
        tasks = []
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
            tasks.append(asyncio.ensure_future(one(i)))
        await asyncio.gather(*tasks)
    lat.sort()
    return lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))], failed


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--rate", type=float, default=50.0)
    a = p.parse_args()
    with local_mariadb() as db, tempfile.TemporaryDirectory(prefix="mc-bench-") as wd:
        c = LocalCluster(db, Path(wd))
        c.start_gateway()
        for n in ("master-1", "master-2"):
            c.start_node(n, "master")
        for n in ("coreapp-1", "coreapp-2"):
            c.start_node(n, "coreapp")
        web = c.start_node("webapp-1", "webapp", WA_LOG_LEVEL="ERROR")
        try:
            url = f"http://127.0.0.1:{web.ports['api']}"
            token = asyncio.run(login(url))
            wait_until(lambda: asyncio.run(sustained(url, token, 1, 0.5)) > 0, 60,
                       "a connected primary coreapp")
            rates, p50s, p99s = [], [], []
            for i in range(a.runs):
                r = asyncio.run(sustained(url, token, a.concurrency, a.seconds))
                p50, p99, failed = asyncio.run(latency(url, token, a.rate, a.seconds))
                print(f"run {i + 1}: {r:.0f} acknowledged msg/s sustained; at {a.rate:g} msg/s "
                      f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms ({failed} failed)")
                rates.append(r), p50s.append(p50), p99s.append(p99)
            print(f"median of {a.runs}: {statistics.median(rates):.0f} msg/s sustained "
                  f"(goal >= 300); at {a.rate:g} msg/s p50 {statistics.median(p50s) * 1000:.1f} ms"
                  f", p99 {statistics.median(p99s) * 1000:.1f} ms (goal p99 <= 50 ms)")
        finally:
            c.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
