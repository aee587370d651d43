"""Schema versions: a node works only on the schema version its code was written for."""

from __future__ import annotations

import contextlib
import time
from functools import partial

import pytest
from helpers import hold, label, phase, warm_up

from harness.cluster.bringup import DB_NAME
from harness.judge import bounds
from harness.judge.checkers import downtime, no_lost_acks, no_promotion, single_connected
from harness.nemesis.stop import Stop
from harness.verdict import judge
from harness.wait import wait_for
from multiconnect import schema

pytestmark = pytest.mark.failover


def _db(cluster, sql: str, *args) -> tuple | None:
    """One statement as the database's root (the operator), its first row."""
    with contextlib.closing(cluster.db_connect()) as conn, conn.cursor() as cur:
        cur.execute(sql.replace("{db}", f"`{DB_NAME}`"), args)
        return cur.fetchone()


def started_at(cluster, node: str):
    """When ``node`` last registered (the ``nodes`` row a starting node writes)."""
    row = _db(cluster, "SELECT started_at FROM {db}.nodes WHERE name = %s", node)
    return row[0] if row else None


def set_schema_version(cluster, version: int) -> None:
    _db(cluster, "UPDATE {db}.schema_version SET version = %s WHERE id = 1", version)


def test_coreapp_started_on_a_newer_schema_waits(cluster, history, nemesis, workload,
                                                 mc_artifacts, record_figures):
    """After a rollback the database holds a schema newer than a node's code. A coreapp that
    starts then must wait for its own version (nodes never write to a schema they do not
    know): it does not register while the rest of the cluster keeps serving, and it
    registers as soon as the schema is back at its version."""
    label("failover", "procedures", "a node waits for its own schema version")
    t = cluster.spec.timing
    want = schema.LATEST
    waiting = f"waiting: schema version {want + 1}, this node needs {want}"
    with workload.running():
        warm_up(history)
        primary = cluster.primary_coreapp(0)
        standby = next(c for c in cluster.spec.node_names("coreapp") if c != primary)
        up = f"coreapp {standby} up"
        before = started_at(cluster, standby)
        f = Stop(standby, grace=2)
        with phase(f"fault: {standby} stopped, schema {want + 1} in the database, "
                   f"{standby} started"):
            nemesis.start(f)
            started = time.time()
            set_schema_version(cluster, want + 1)
            try:
                nemesis.heal(f)  # the container starts again, on the newer schema
                wait_for(lambda: any(w in node_log(cluster, standby, started)
                                     for w in (waiting, up)), timeout=30,
                         what=f"{standby} logging '{waiting}' (or '{up}')")
                # it polls the schema every 0.5 s: ample time to register, were it not waiting
                hold(2 * t.heartbeat_interval)
                registered, log = started_at(cluster, standby), node_log(cluster, standby, started)
            finally:
                set_schema_version(cluster, want)
            assert registered == before and up not in log, (
                f"CHECK FAILED: {standby} registered (started_at {before} -> {registered}) on "
                f"schema {want + 1}, newer than its code's {want}:\n{log[-2000:]}")
            assert waiting in log, f"{standby} did not say it waits:\n{log[-2000:]}"
        with phase(f"heal: schema {want} again"):
            wait_for(lambda: started_at(cluster, standby) != before, timeout=30,
                     what=f"{standby} registering on schema {want}")
            hold(1)
    judge(history.events(), [
        partial(no_promotion, shard=0), partial(downtime, bound=bounds.MARGIN),
        single_connected, no_lost_acks,
    ], artifacts=mc_artifacts, secrets=cluster.secrets(), record=record_figures,
        title=f"coreapp started on schema {want + 1} waits")


def node_log(cluster, node: str, since: float) -> str:
    """``node``'s container log from wall time ``since`` on."""
    return cluster.container(node).logs(since=since).decode(errors="replace")
