"""harness.cluster.cleanup._remove_network: the engine's late endpoint release is waited out, within
a bound; every other error is raised."""

from __future__ import annotations

import docker.errors
import pytest

from harness.cluster.cleanup import _remove_network

ACTIVE = 'error while removing network: network mcx id abc has active endpoints'


class FakeNetwork:
    def __init__(self, errors: list[Exception]) -> None:
        self.errors = errors
        self.calls = 0

    def remove(self) -> None:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)


def clock_pair():
    now = [0.0]
    return (lambda: now[0]), (lambda dt: now.__setitem__(0, now[0] + dt))


def test_active_endpoints_are_waited_out():
    clock, sleep = clock_pair()
    n = FakeNetwork([docker.errors.APIError(ACTIVE), docker.errors.APIError(ACTIVE)])
    assert _remove_network(n, wait=5.0, sleep=sleep, clock=clock) == 1
    assert n.calls == 3


def test_still_active_after_the_wait_is_reported_not_raised():
    """A stale endpoint inside the engine: the run's containers are gone, the network stays;
    failing the test (or the next run's sweep) for it would stop every later run."""
    clock, sleep = clock_pair()
    n = FakeNetwork([docker.errors.APIError(ACTIVE)] * 100)
    said: list[str] = []
    assert _remove_network(n, wait=1.0, sleep=sleep, clock=clock, progress=said.append) == 0
    assert n.calls == 6  # t = 0, 0.2, …, 1.0
    assert said and "active endpoints" in said[0] and "restarting the engine" in said[0]


def test_other_errors_are_raised_at_once_and_gone_counts_zero():
    clock, sleep = clock_pair()
    n = FakeNetwork([docker.errors.APIError("permission denied")])
    with pytest.raises(docker.errors.APIError, match="permission"):
        _remove_network(n, sleep=sleep, clock=clock)
    assert n.calls == 1
    gone = FakeNetwork([docker.errors.NotFound("gone")])
    assert _remove_network(gone, sleep=sleep, clock=clock) == 0
