"""harness.cluster.cleanup.remove_run against a fake engine: one container removal at a time
(dockerd 20.10 deadlocks on concurrent ones), paused containers unpaused first, and an engine that
stops answering gives one EngineNotAnswering naming what got no answer — no hang."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from harness.cluster.cleanup import remove_run
from harness.cluster.engine import EngineNotAnswering


class FakeApi:
    def __init__(self, names: list[str], *, paused: set[str] = frozenset(),  # type: ignore
                 hang: set[str] = frozenset(), wedged: bool = False) -> None:  # type: ignore
        self.names, self.paused, self.hang, self.wedged = list(names), set(paused), hang, wedged
        self.log: list[tuple[str, str]] = []
        self.active = self.most_active = 0
        self.lock = threading.Lock()

    def containers(self, all: bool, filters: dict[str, str]) -> list[dict[str, Any]]:
        return [{"Id": f"id-{n}", "Names": [f"/{n}"]} for n in self.names]

    def inspect_container(self, cid: str) -> dict[str, Any]:
        return {"State": {"Paused": cid[3:] in self.paused}}

    def unpause(self, cid: str) -> None:
        self.log.append(("unpause", cid[3:]))
        self.paused.discard(cid[3:])

    def remove_container(self, cid: str, force: bool, v: bool) -> None:
        with self.lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            if cid[3:] in self.hang:
                time.sleep(3)
            time.sleep(0.02)
            assert cid[3:] not in self.paused, "removed while paused"
            self.log.append(("remove", cid[3:]))
        finally:
            with self.lock:
                self.active -= 1

    def networks(self) -> list[Any]:
        if self.wedged:
            time.sleep(3)
        return []


class FakeList:
    def list(self, filters: dict[str, str]) -> list[Any]:
        return []


class FakeClient:
    def __init__(self, api: FakeApi) -> None:
        self.api, self.networks, self.volumes = api, FakeList(), FakeList()

    def ping(self) -> bool:
        return True


def test_containers_are_removed_one_at_a_time_and_unpaused_first():
    api = FakeApi(["a", "b", "c", "d"], paused={"b", "d"})
    assert remove_run(FakeClient(api), "run1") == 4  # type: ignore[arg-type]
    assert api.most_active == 1
    assert api.log == [("remove", "a"), ("unpause", "b"), ("remove", "b"), ("remove", "c"),
                       ("unpause", "d"), ("remove", "d")]


def test_a_removal_without_answer_is_named_and_the_rest_still_removed():
    api = FakeApi(["a", "b", "c"], hang={"b"})
    with pytest.raises(EngineNotAnswering) as exc:
        remove_run(FakeClient(api), "run1", call_timeout=0.5)  # type: ignore[arg-type]
    assert "remove container b" in str(exc.value)
    assert ("remove", "c") in api.log and ("remove", "a") in api.log


def test_a_wedged_engine_stops_the_teardown_at_once_with_one_error():
    api = FakeApi(["a", "b", "c", "d"], hang={"b", "c", "d"}, wedged=True)
    t0 = time.monotonic()
    with pytest.raises(EngineNotAnswering) as exc:
        remove_run(FakeClient(api), "run1", call_timeout=0.5)  # type: ignore[arg-type]
    assert time.monotonic() - t0 < 2.5  # b's removal and the probe, not every container
    msg = str(exc.value)
    assert "teardown of run run1 stopped" in msg and "remove container b" in msg
    assert "GET /networks" in msg and "next sweep" in msg
