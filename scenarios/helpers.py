"""Small shared steps for scenarios. The steps a failover runs (warm-up, waiting on the
history, holding, settling, Allure phases, the successor lookups) live in
:mod:`harness.failover` with its runner and are re-exported here; what stays is the
scenarios' own."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from harness.chaos import runner as chaos
from harness.failover import hold as hold
from harness.failover import new_connect as new_connect
from harness.failover import phase as phase
from harness.failover import settle as settle
from harness.failover import wait_history as wait_history
from harness.failover import warm_up as warm_up
from harness.history import History
from multiconnect.timing import Timing


def unknown_but_delivered(events: Any) -> int:
    """Sends whose outcome the client could not know (``info``: 502/504 or no answer) and
    whose recipient the gateway got a message for after the send began: answers lost after
    the delivery."""
    invoked: dict[Any, float] = {}
    for e in events:
        if e.f == "send" and e.type == "invoke":
            invoked[e.value.get("to")] = e.time
    unknown = {e.value.get("to") for e in events if e.f == "send" and e.type == "info"}
    return len({e.value.get("to") for e in events
                if e.f == "gw-deliver" and e.value.get("to") in unknown
                and e.time >= invoked.get(e.value.get("to"), float("inf"))})


def label(epic: str, feature: str, story: str, severity: str = "critical") -> None:
    from harness.report.results import label_scenario
    label_scenario(epic, feature, story, severity)


def timing(cluster: Any) -> Any:
    return cluster.spec.timing


def node_status(cluster: Any, name: str, timeout: float = 0.5) -> dict[str, Any] | None:
    """A master's or coreapp's own ``/internal/status``, read directly (None if it does not
    answer in time)."""
    import requests

    from harness.run.workload import status_url
    try:
        body = requests.get(status_url(cluster, name)(), timeout=timeout).json()
    except (requests.RequestException, ValueError):
        return None
    return body if isinstance(body, dict) else None


def attempt_in_flight(cluster: Any, node: str, field: str, since: float = 0.0,
                      before: float = 0.2) -> bool | str:
    """True once ``node``'s own status says its database attempt ``field``
    (``lease_attempt_for`` of a master, ``confirm_attempt_for`` of a coreapp) has been on its
    way for at least ``since`` and less than ``before`` seconds, so a freeze issued now lands
    at that point of the attempt (the scenarios slow that node's database answers to widen
    it); ``"unknown"`` for an image whose status does not say (the freeze then lands
    wherever it lands)."""
    status = node_status(cluster, node)
    if status is None:
        return False
    if field not in status:
        return "unknown"
    age = status[field]
    return age is not None and since <= age < before


def connected_coreapps(cluster: Any) -> list[str]:
    return [n for n, r in cluster.health().items()
            if r.get("role") == "coreapp" and r.get("gateway_status") == "connected"]


def wait_ready(cluster: Any, timeout: float) -> Any:
    """After heals: one primary master and one connected coreapp per shard again."""
    return chaos.wait_ready(cluster, timeout)


@contextlib.contextmanager
def faulted(cluster: Any, history: History, nemesis: Any, fault: Any,
            title: str) -> Iterator[float]:
    """Start ``fault`` in the phase ``title`` and yield its start time (history clock); when
    the block ends, heal it and settle the cluster. If the block raises, the ``nemesis``
    fixture's teardown heals it."""
    with phase(title):
        nemesis.start(fault)
        yield history.now()
    with phase(f"heal: {fault.kind}"):
        nemesis.heal(fault)
        settle(cluster, history)


def slow_detector(t: Timing) -> Timing:
    """The session's preset with unhealthy_interval 9·h (the presets have 6·h or 3·h) and a
    database detector 3× slower (stale 18 s at CI timings, > u + h), so that, as with the
    documented defaults, the heartbeat detector decides. A standby that stopped answering is
    then silent past the 2·h + 0.5 s a promotion candidate may be for 6·h before it is
    unhealthy, and a settings change can lower u to a third."""
    return replace(t, unhealthy_interval=9 * t.heartbeat_interval,
                   db_monitor_scale=3 * t.db_monitor_scale)


#: One cluster for the tests that need the slow detector (or a third coreapp, or a second
#: webapp): they run one after the other on it.
SLOW_DETECTOR = pytest.mark.topology(webapps=2, coreapps=3, timing=slow_detector)
