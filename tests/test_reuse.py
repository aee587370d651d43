"""Cluster reuse: the gateway cursor and the pool's hand-out rules (pure logic, fake clusters)."""

from __future__ import annotations

from harness.cluster.reuse import ClusterPool, gateway_cursor
from harness.spec import Topology


def ev(seq: int, kind: str, conn: int) -> dict:
    return {"seq": seq, "type": kind, "conn": conn}


def test_cursor_starts_at_the_oldest_connection_still_open():
    events = [ev(0, "connect", 1), ev(1, "deliver", 1), ev(2, "connect", 2),
              ev(3, "kick", 1), ev(4, "connect", 3), ev(5, "deliver", 3)]
    assert gateway_cursor(events, 6) == 2


def test_cursor_is_the_end_when_nothing_is_open():
    events = [ev(0, "connect", 1), ev(1, "disconnect", 1), ev(2, "connect", 2),
              ev(3, "timeout", 2)]
    assert gateway_cursor(events, 4) == 4
    assert gateway_cursor([], 17) == 17


def test_cursor_counts_only_ends_of_the_same_connection():
    events = [ev(10, "connect", 1), ev(11, "connect", 2), ev(12, "disconnect", 2)]
    assert gateway_cursor(events, 13) == 10


class FakeCluster:
    def __init__(self, spec: Topology, gate: str | None = None) -> None:
        self.spec, self.gate = spec, gate
        self.run_id = f"fake{id(self) % 1000}"
        self.started, self.stopped, self.reusable, self.uses = True, False, True, 1

    def check_reusable(self) -> str | None:
        if self.gate == "raise":
            raise RuntimeError("engine gone")
        return self.gate

    def stop(self) -> None:
        self.stopped, self.started = True, False


def pool(**kw) -> tuple[ClusterPool, list[FakeCluster]]:
    made: list[FakeCluster] = []

    def factory(spec: Topology) -> FakeCluster:
        made.append(FakeCluster(spec))
        return made[-1]

    return ClusterPool(factory, progress=lambda _: None, **kw), made


def test_a_passing_tests_cluster_serves_the_next_test_of_the_same_topology():
    p, made = pool()
    a = p.acquire(Topology())
    p.release(a, reusable=True)
    assert p.acquire(Topology()) is a
    assert (len(made), a.uses, a.stopped, p.reused) == (1, 2, False, 1)


def test_another_topology_gets_a_new_cluster_and_the_idle_one_is_removed():
    p, made = pool()
    a = p.acquire(Topology())
    p.release(a, reusable=True)
    b = p.acquire(Topology(masters=1))
    assert b is not a and a.stopped and len(made) == 2


def test_a_failed_test_or_an_unhealed_fault_removes_the_cluster():
    p, _ = pool()
    a = p.acquire(Topology())
    p.release(a, reusable=False)
    assert a.stopped and p.idle is None
    b = p.acquire(Topology())
    b.reusable = False  # e.g. the nemesis could not heal a fault
    p.release(b, reusable=True)
    assert b.stopped and p.idle is None


def test_a_cluster_failing_the_gate_is_replaced():
    for gate in ("container mc-db is paused", "raise"):
        p, made = pool()
        a = p.acquire(Topology())
        p.release(a, reusable=True)
        a.gate = gate
        b = p.acquire(Topology())
        assert b is not a and a.stopped and len(made) == 2 and p.reused == 0


def test_reuse_off_removes_every_cluster_after_its_test():
    p, made = pool(enabled=False)
    a = p.acquire(Topology())
    p.release(a, reusable=True)
    assert a.stopped
    assert p.acquire(Topology()) is not a and len(made) == 2


def test_close_removes_the_idle_cluster():
    p, _ = pool()
    a = p.acquire(Topology())
    p.release(a, reusable=True)
    p.close()
    assert a.stopped and p.idle is None
