"""The gateway (the WhatsApp servers' stand-in) stalls: ``docker pause`` freezes it while its
kernel still accepts connections and queues what they carry (issue 19).

Every owner's pings go unanswered: it closes its connection, waits out its ghost
((K + 0.5)/0.9) and connects again while the gateway is still paused, so that connect sits in
the gateway's queue. The coreapp keeps that one attempt however long the stall lasts
(fencing.md rule 5): on resume the gateway answers it and the owner serves again — one
connection per shard, no promotion (the masters still see every coreapp healthy). Before the
fix each attempt was given up after 2 s and the next one queued behind it; on resume each
registered and kicked the one before (a ``conflict``). The lengths straddle K (the gateway
keepalive: whether the old connection's pings fail, and whether its timeout or a queued
reconnect comes first on resume) and exceed the 2 s connect timeout; 12 s is the nightly
run's pause. From 3K on, the owner's reconnect is queued in the stall, and on resume the
gateway may handle the lines written to the old connection during the stall before its
close, and the queued connect before that: the owner kicks its own old connection. That is
outside the model (docs/fencing.md A3 (c)); ``single_connected`` counts it as an
``a3_breach`` and still fails any other conflict (a second queued connect, another node).
"""

from __future__ import annotations

from functools import partial

import pytest
from helpers import faulted, hold, label, warm_up

from harness.judge import bounds
from harness.judge.checkers import (
    no_lost_acks,
    no_promotion,
    primary_masters,
    recovery,
    single_connected,
)
from harness.nemesis.pause import Pause
from harness.verdict import judge

pytestmark = pytest.mark.failover

#: (id, pause length in multiples of K, or None for the nightly run's 12 s)
STALLS = [("0.5K", 0.5), ("1.5K", 1.5), ("3K", 3.0), ("12s", None)]
NIGHTLY_PAUSE = 12.0


@pytest.mark.parametrize("k_multiple", [m for _, m in STALLS], ids=[n for n, _ in STALLS])
def test_gateway_stall_keeps_one_connection_per_shard(
        k_multiple, cluster, history, nemesis, workload, mc_artifacts, record_figures):
    """The gateway is paused under traffic; after the resume every shard is served again
    within (K + 0.5)/0.9 + h/2 + margin, whatever the pause's length, with never two
    connections for a shard at the gateway, no acknowledged message lost and no promotion."""
    t = cluster.spec.timing
    k = t.gateway_ping_timeout
    seconds = NIGHTLY_PAUSE if k_multiple is None else k_multiple * k
    label("failover", "gateway stall", f"gateway paused {seconds:g} s (K = {k:g} s)")
    bound = bounds.gateway_stall_recovery(t.heartbeat_interval, k)
    with workload.running():
        warm_up(history)
        f = Pause("gateway")
        with faulted(cluster, history, nemesis, f,
                     f"fault: pause the gateway for {seconds:g}s (K = {k:g}s)") as start:
            hold(seconds)
    connects = sum(1 for e in history.events() if e.f == "gw-connect" and e.time >= start)
    judge(history.events(), [
        partial(recovery, bound=bound, fault=f.id),
        single_connected, no_lost_acks, partial(no_promotion, shard=0),
        partial(primary_masters, last=3),
    ], artifacts=mc_artifacts, secrets=cluster.secrets(), record=record_figures,
        title=f"gateway paused {seconds:g}s", extra_figures={
            "pause_s": seconds, "gateway_connects_since_pause": connects})
