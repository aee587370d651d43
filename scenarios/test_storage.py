"""The database and the NFS media store go away and come back."""

from __future__ import annotations

import hashlib
import os
from functools import partial

import pytest
from helpers import hold, label, new_connect, phase, wait_history, wait_ready, warm_up

from harness.judge import bounds
from harness.judge.checkers import downtime, media, no_lost_acks, recovery, single_connected
from harness.nemesis.db_outage import DbOutage
from harness.nemesis.kill import Kill
from harness.nemesis.nfs_outage import NfsOutage
from harness.verdict import judge

pytestmark = pytest.mark.failover

# the nodes' database timeout in the harness (cluster.node_env: WA_DB_TIMEOUT)
DB_TIMEOUT = 1.0


@pytest.mark.parametrize("variant", ["links", "pause"])
def test_database_outage_recovers(variant, cluster, history, nemesis, workload, mc_artifacts,
                                  record_figures):
    """The database is cut from every node (or frozen) for 3 × unhealthy_interval. Coreapps
    cannot confirm their ownership, so they fence themselves (safety over availability);
    when the database returns every shard serves again within h/2 + db timeout + margin, and
    no acknowledged message is lost."""
    label("failover", "storage", f"database outage ({variant})", "blocker")
    t = cluster.spec.timing
    bound = bounds.db_recovery(t.heartbeat_interval, DB_TIMEOUT)
    with workload.running():
        warm_up(history)
        f = DbOutage(variant=variant)
        with phase(f"fault: database outage ({variant}) for {3 * t.unhealthy_interval}s"):
            nemesis.start(f)
            hold(3 * t.unhealthy_interval)
        with phase("heal: database back"):
            nemesis.heal(f)
            healed = history.now()
            wait_history(history, lambda h: any(
                e.f == "send" and e.type == "ok" and e.time > healed for e in h.events()),
                float(bound) + 10, "a successful send after the heal")
            hold(2)
    judge(history.events(), [
        partial(recovery, bound=bound), single_connected, no_lost_acks,
    ], artifacts=mc_artifacts, secrets=cluster.secrets(), record=record_figures,
        title=f"database outage ({variant})")


def test_nfs_outage_media_fails_fast_text_unaffected(cluster, history, nemesis, workload,
                                                     mc_artifacts, record_figures):
    """The NFS server is black-holed for 4.5 s (its calls hang: the case a timeout is for;
    longer than the roles' 3 s default timeout), then refused for 2 s (links cut: a new
    mount fails at once): media uploads and downloads
    fail fast (within the media timeout + margin) with the API's error envelope; text
    messages are unaffected; media works again after the outage, including items uploaded
    before it."""
    label("failover", "storage", "NFS outage")
    t = cluster.spec.timing
    media_timeout = float(cluster.node_env("webapp-1", "webapp")["WA_MEDIA_TIMEOUT"])
    with workload.running():
        warm_up(history)
        hung, refused = NfsOutage("blackhole"), NfsOutage("links")
        with phase("fault: NFS server black-holed for 4.5 s"):
            nemesis.start(hung)
            hold(4.5)  # media round trips (one a second) hang until the media timeout
        with phase("fault: NFS server refused for 2 s"):
            nemesis.heal(hung)
            nemesis.start(refused)
            hold(2)  # the hung connections were dropped: every call mounts anew, refused
        with phase("heal"):
            nemesis.heal(refused)
            hold(3)  # media works again: earlier uploads read back (the rest at the stop)
    judge(history.events(), [
        partial(media, outages=("nfs-outage",), fail_fast=media_timeout + bounds.MARGIN,
                grace=1.0),
        partial(downtime, bound=bounds.MARGIN), single_connected, no_lost_acks,
    ], artifacts=mc_artifacts, secrets=cluster.secrets(), record=record_figures,
        title="NFS outage", extra_figures={"heartbeat": t.heartbeat_interval})


def test_media_uploaded_before_coreapp_failover_is_readable_after(cluster, history, nemesis,
                                                                  workload, mc_artifacts,
                                                                  record_figures):
    """Media lives on the shared store, not on a coreapp: what was uploaded before the
    primary coreapp died downloads intact after the promotion."""
    label("failover", "storage", "media survives coreapp failover", "normal")
    api = cluster.api()
    blobs = [os.urandom(2048 + i) for i in range(5)]
    ids = []
    for b in blobs:
        r = api.upload_media(b, "application/octet-stream", timeout=5)
        assert r.status_code == 201, f"upload before the fault failed: {r.status_code} {r.text}"
        ids.append(r.json()["media"][0]["id"])
    with workload.running():
        warm_up(history)
        old = cluster.primary_coreapp(0)
        f = Kill(old)
        nemesis.start(f)
        start = history.now()
        t = cluster.spec.timing
        bound = bounds.heartbeat_failover(t.heartbeat_interval, t.unhealthy_interval,
                                          t.gateway_ping_timeout)
        wait_history(history, lambda h: new_connect(h, 0, old, start), float(bound) + 5,
                     "a new primary coreapp")
        nemesis.heal(f)
    wait_ready(cluster, 20)
    for mid, b in zip(ids, blobs, strict=True):
        r = api.get_media(mid, timeout=5)
        assert r.status_code == 200, (
            f"CHECK FAILED: media {mid} unreadable after failover: {r.text}")
        assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(b).hexdigest(), (
            f"CHECK FAILED: media {mid} changed across the failover")
    judge(history.events(), [media, single_connected, no_lost_acks],
          artifacts=mc_artifacts, secrets=cluster.secrets(), record=record_figures,
          title="media across coreapp failover")
