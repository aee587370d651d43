"""The reference roles as real processes on loopback against a real MariaDB server.

2 masters, 2 coreapps, 1 webapp and the gateway stand-in; kill the primary coreapp with
SIGKILL under message traffic and check, from the gateway's own log: a new primary within
``unhealthy_interval + heartbeat_interval + 1 s``, no ``conflict`` event, and every message
the webapp acknowledged (201) delivered.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import pytest
import requests
from local_cluster import LocalCluster, local_mariadb, mariadb_binaries, wait_until

from multiconnect.sharding import recipients_for_shard

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(mariadb_binaries() is None,
                       reason="needs Debian mariadb-server (scripts/setup.sh installs it)"),
]


@pytest.fixture
def local_cluster(request: pytest.FixtureRequest):
    """The roles as processes on loopback; every process's log is printed (teardown's
    captured output, shown with the failure) when the test failed — pytest does not raise a
    test's exception into its fixtures, so the count of failed tests tells."""
    failed_before = request.session.testsfailed
    with local_mariadb() as db, tempfile.TemporaryDirectory(prefix="mc-roles-") as wd:
        c = LocalCluster(db, Path(wd))
        c.start_gateway()
        for n in ("master-1", "master-2"):
            c.start_node(n, "master")
        for n in ("coreapp-1", "coreapp-2"):
            c.start_node(n, "coreapp")
        c.start_node("webapp-1", "webapp")
        try:
            yield c
        finally:
            if request.session.testsfailed > failed_before:
                print(c.logs())
            c.stop()


def gateway_events(c: LocalCluster) -> list[dict]:
    port = c.procs["gateway"].ports["http"]
    return requests.get(f"http://127.0.0.1:{port}/events", params={"since": 0},
                        timeout=2).json()["events"]


def login(c: LocalCluster) -> requests.Session:
    url = f"http://127.0.0.1:{c.procs['webapp-1'].ports['api']}"
    s = requests.Session()

    def first_login():
        r = s.post(f"{url}/v1/users/login", auth=("admin", "secret"),
                   json={"new_password": "Another-secret-1"}, timeout=2)
        return r.status_code == 200 and r.json()["users"][0]["token"]

    token = wait_until(first_login, 30, "first admin login")
    s.headers["Authorization"] = f"Bearer {token}"
    s.base_url = url  # type: ignore[attr-defined]
    return s


def test_kill_primary_coreapp_fails_over_within_bound(local_cluster: LocalCluster) -> None:
    c = local_cluster
    api = login(c)
    connected = wait_until(lambda: [e for e in gateway_events(c) if e["type"] == "connect"],
                           30, "a coreapp connected to the gateway")
    old = connected[-1]["node"]

    acked: list[str] = []
    stop = threading.Event()
    recipients = recipients_for_shard(0, 1, 2000, prefix="1444")

    def sender() -> None:
        deadline = time.monotonic() + 30
        for i, to in enumerate(recipients):
            if stop.is_set() or time.monotonic() > deadline:
                return
            try:
                r = api.post(f"{api.base_url}/v1/messages", timeout=2, json={
                    "recipient_type": "individual", "to": to, "type": "text",
                    "text": {"body": f"m{i}"}})
            except requests.RequestException:
                continue
            if r.status_code == 201:
                acked.append(r.json()["messages"][0]["id"])
            time.sleep(0.02)

    t = threading.Thread(target=sender)
    t.start()
    try:
        wait_until(lambda: len(acked) >= 10, 10, "10 acknowledged messages before the fault")
        killed_at = time.time()
        c.procs[old].kill()
        new = wait_until(lambda: [e for e in gateway_events(c)
                                  if e["type"] == "connect" and e["node"] != old],
                         20, "another coreapp connected")[0]
        n_before = len(acked)
        wait_until(lambda: len(acked) > n_before + 5, 10, "acknowledgements after failover")
    finally:
        stop.set()
        t.join()

    promotion = new["time"] - killed_at
    bound = c.unhealthy + c.heartbeat + 1.0
    print(f"promotion {promotion:.2f}s (bound {bound:.2f}s), {len(acked)} acknowledged")
    assert promotion <= bound, f"promotion took {promotion:.2f}s > bound {bound:.2f}s"
    events = gateway_events(c)
    conflicts = [e for e in events if e["type"] == "conflict"]
    assert not conflicts, f"two coreapps connected for one shard: {conflicts}"
    delivered = {e["id"] for e in events if e["type"] == "deliver"}
    lost = [m for m in acked if m not in delivered]
    assert not lost, f"{len(lost)} acknowledged messages never delivered: {lost[:5]}"
