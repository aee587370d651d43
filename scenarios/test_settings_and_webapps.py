"""Operator-facing behaviour: settings changes reach every master and change failover timing;
a second webapp carries the traffic when one dies."""

from __future__ import annotations

import json
import time
from functools import partial

import pytest
from helpers import SLOW_DETECTOR, hold, label, new_connect, phase, wait_history, warm_up

from harness.cluster.api_client import FailoverClient
from harness.judge import bounds
from harness.judge.checkers import downtime, media, no_lost_acks, promotion, single_connected
from harness.nemesis.kill import Kill
from harness.run.workload import MediaRoundTrip, Workload, api_factory
from harness.verdict import judge
from harness.wait import wait_for

pytestmark = pytest.mark.failover


STATUS = ("python3 -c \"import urllib.request; print(urllib.request.urlopen("
          "'http://127.0.0.1:6250/internal/status', timeout=2).read().decode())\"")


def master_settings(cluster, name: str) -> dict:
    code, out = cluster.exec(name, ["sh", "-c", STATUS])
    if code != 0:
        raise RuntimeError(f"{name}: {out}")
    return json.loads(out)["settings"]


def masters_apply(cluster, unhealthy: float, timeout: float) -> None:
    """Wait until every master runs with ``unhealthy_interval`` = ``unhealthy``."""
    for m in cluster.spec.node_names("master"):
        wait_for(lambda m=m: master_settings(cluster, m)["unhealthy_interval"] == unhealthy,
                 timeout=timeout, what=f"{m} applying unhealthy_interval={unhealthy}")


#: PATCH bodies the API must refuse (400, error envelope), leaving the settings as they were.
INVALID_SETTINGS = (
    {"heartbeat_interval": 0},
    {"heartbeat_interval": -5},
    {"heartbeat_interval": True},      # JSON true is not a number of seconds
    {"heartbeat_interval": "5"},
    {"heartbeat_interval": 2.5},
    {"unhealthy_interval": 1},         # below 2 x heartbeat_interval
    {"no_such_setting": 1},
    {},
)


@SLOW_DETECTOR
def test_patch_settings_reaches_every_master_and_changes_failover(cluster, history, nemesis,
                                                                  workload, mc_artifacts,
                                                                  record_figures):
    """PATCH /v1/settings/application with a new unhealthy interval: the API shows it,
    every master applies it, and the next failover follows the new value (it takes at least
    the new unhealthy_interval less h, at most its bound). The new u is a third of the one
    the nodes were started with (the slow detector's 9·h): a node that keeps judging by its
    start-up value promotes after about the old u, past the new bound."""
    label("failover", "procedures", "settings change applied cluster-wide")
    api = cluster.api()
    old = api.settings()
    new_h, new_u = old["heartbeat_interval"], old["unhealthy_interval"] // 3
    for body in INVALID_SETTINGS:
        bad = api.patch_settings(body)
        assert bad.status_code == 400 and "errors" in bad.json(), (
            f"CHECK FAILED: invalid settings {body} must be refused with the error envelope: "
            f"{bad.status_code} {bad.text}")
    assert api.settings() == old, (
        f"CHECK FAILED: refused settings changed what the API shows: {old} -> {api.settings()}")
    r = api.patch_settings({"heartbeat_interval": new_h, "unhealthy_interval": new_u})
    try:
        assert r.status_code == 200, f"PATCH failed: {r.status_code} {r.text}"
        assert api.settings()["unhealthy_interval"] == new_u
        masters_apply(cluster, new_u, timeout=3 * old["heartbeat_interval"] + 5)
        # every master's heartbeat view settles on the new period, and every coreapp (which
        # re-reads the settings every old h) confirms with the new ownership TTL
        time.sleep(max(new_u, 2 * old["heartbeat_interval"]))
        bound = bounds.heartbeat_failover(new_h, new_u, cluster.spec.timing.gateway_ping_timeout)
        with workload.running():
            warm_up(history)
            pc = cluster.primary_coreapp(0)
            f = Kill(pc)
            nemesis.start(f)
            start = history.now()
            seen = wait_history(history, lambda h: new_connect(h, 0, pc, start), float(bound) + 5,
                                "a new primary")
            hold(2)  # traffic after the promotion; health reports the new primary
            nemesis.heal(f)
        took = seen.time - start if seen else None
        assert took is None or took >= new_u - new_h, (
            f"CHECK FAILED: promotion after {took:.2f}s, sooner than the new unhealthy_interval "
            f"{new_u}s allows: the old setting is still in use")
        judge(history.events(), [
            partial(promotion, shard=0, bound=bound),
            single_connected, no_lost_acks],
              artifacts=mc_artifacts, secrets=cluster.secrets(), record=record_figures,
              title=f"failover after settings change (h={new_h}, u={new_u})")
    finally:
        # the old values back, applied by every master: the cluster can serve the next test
        api.patch_settings({"heartbeat_interval": old["heartbeat_interval"],
                            "unhealthy_interval": old["unhealthy_interval"]})
        masters_apply(cluster, old["unhealthy_interval"], timeout=3 * new_h + 5)


@SLOW_DETECTOR
def test_killing_one_webapp_costs_a_retrying_client_nothing(cluster, history, nemesis,
                                                            mc_artifacts, record_figures):
    """With two webapps, a client that retries a refused request on the other webapp sees
    no downtime beyond the margin when one webapp is killed; media uploaded through the
    killed webapp reads back intact through the other one while it is down (the store is
    shared, not the webapp's own)."""
    label("failover", "procedures", "second webapp takes over the API traffic", "normal")
    w = Workload(cluster, history, rate=20, media=0)
    # media written through webapp-1 before it dies, read back through webapp-2 while it is
    # down (one process of its own: the workload's round trip would wait on the dead webapp)
    media_rt = MediaRoundTrip({k: api_factory(cluster, int(k[-1]), 3.0)
                               for k in ("webapp-1", "webapp-2")}, history,
                              process="media-writer-gone", seed=1)
    # the sender's clients retry a refused or dropped request on the other webapp
    w.sender.api_factory = lambda: FailoverClient(
        [api_factory(cluster, 1, 1.0)(), api_factory(cluster, 2, 1.0)()])
    with w.running():
        warm_up(history)
        written = [media_rt.upload("webapp-1") for _ in range(3)]
        assert all(written), "CHECK FAILED: media uploads through webapp-1 failed before any fault"
        f = Kill("webapp-1")
        with phase("fault: kill webapp-1"):
            nemesis.start(f)
            killed = history.now()
            for item in written:
                media_rt.download(item, "webapp-2")
            hold(5)
        with phase("heal"):
            nemesis.heal(f)
            healed = history.now()
            hold(2)
    events = history.events()
    reads = reads_while_writer_down(events, "webapp-1", killed, healed)
    assert reads == len(written), (
        f"the scenario did not provoke its case: {reads} of {len(written)} reads through "
        "webapp-2 of media written through webapp-1 were made while webapp-1 was down")
    # media: no excuse for a failed read in the kill's window (only webapp-2 is read)
    judge(events, [partial(downtime, bound=bounds.MARGIN), single_connected, no_lost_acks,
                   partial(media, excuse_faults=False)],
          artifacts=mc_artifacts, secrets=cluster.secrets(), record=record_figures,
          title="kill one of two webapps", extra_figures={"reads_while_writer_down": reads})


def reads_while_writer_down(events, writer: str, down: float, up: float) -> int:
    """Downloads invoked between ``down`` and ``up`` of media uploaded through ``writer``
    before ``down`` (whatever their outcome: ``media`` judges those)."""
    written = {e.value.get("id") for e in events
               if e.f == "upload" and e.type == "ok" and e.value.get("via") == writer
               and e.time < down}
    return sum(1 for e in events if e.f == "download" and e.type == "invoke"
               and down < e.time < up and e.value.get("id") in written)
