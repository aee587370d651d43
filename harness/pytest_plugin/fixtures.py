"""Fixtures for faults and clients, imported by :mod:`harness.pytest_plugin.plugin`.

``nemesis``: a :class:`harness.nemesis.Nemesis` on the test's ``cluster`` recording into its
``history``; teardown heals every fault still active (also after a failure or Ctrl-C, since
pytest tears fixtures down on KeyboardInterrupt) and fails the test's teardown if a heal
failed (and then the cluster is never reused). ``workload``: a
:class:`harness.run.workload.Workload` (not started: use ``with workload.running():``); teardown
stops it if it is still running.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def nemesis(cluster: Any, history: Any) -> Iterator[Any]:
    """A Nemesis on ``cluster`` recording into ``history``; heals everything in teardown."""
    from harness.nemesis import Nemesis

    n = Nemesis(cluster, history)
    try:
        yield n
    finally:
        try:
            n.heal_all()
        except BaseException:
            cluster.reusable = False  # a fault may still be in place: never reuse
            raise


@pytest.fixture
def workload(cluster: Any, history: Any) -> Iterator[Any]:
    """A Workload (20 msg/s, 1 media round trip/s, observers); stopped in teardown."""
    from harness.run.workload import Workload

    w = Workload(cluster, history)
    try:
        yield w
    finally:
        w.stop()
