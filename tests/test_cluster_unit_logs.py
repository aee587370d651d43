"""Cluster.logs(): the whole log of a fresh cluster; on a reused one only what the current
test logged, under a first line saying so (an empty log explained, not blank)."""

from __future__ import annotations

from typing import Any

from harness.cluster.bringup import Cluster, Node
from harness.spec import topology


class LogContainer:
    def __init__(self, text: bytes) -> None:
        self.text = text
        self.since: list[Any] = []

    def logs(self, since: Any = None) -> bytes:
        self.since.append(since)
        return self.text


def _cluster(texts: dict[str, bytes]) -> Cluster:
    c = Cluster(topology(), run_id="mctest0000", progress=lambda _: None)
    c.nodes = {name: Node(name, "coreapp", LogContainer(t)) for name, t in texts.items()}
    return c


def test_a_fresh_cluster_gives_each_whole_log_as_it_is() -> None:
    c = _cluster({"coreapp-1": b"up\n", "webapp-1": b""})
    assert c.logs() == {"coreapp-1": "up\n", "webapp-1": ""}
    assert c.nodes["coreapp-1"].container.since == [None]


def test_a_reused_cluster_says_its_logs_start_at_the_test() -> None:
    c = _cluster({"coreapp-1": b"promoted\n", "webapp-1": b""})
    c.test_started_wall = 1_790_000_000.7
    logs = c.logs()
    assert c.nodes["coreapp-1"].container.since == [1_790_000_000]
    for text in logs.values():
        assert text.startswith("# logged since this test began (2026-09-21 ")
        assert "reused from an earlier test" in text.splitlines()[0]
    assert logs["coreapp-1"].splitlines()[1:] == ["promoted"]
    assert logs["webapp-1"].splitlines()[1:] == ["(nothing logged)"]
