"""What one simulated run is: topology, timing preset, fault mix, workload, seed.

Model. A frozen :class:`SimConfig`; ``validate()`` applies the node-count rules shared with
the Docker harness (:func:`multiconnect.topology.check_counts`) and the simulator's own
rules, raising :class:`multiconnect.topology.TopologyError` (a ``ValueError``) naming the
field. The timing presets are the harness's (``multiconnect.timing.TIMINGS``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import TEST_BREAKS
from ..timing import TIMINGS, Timing
from ..topology import TopologyError, check_counts

FAULT_KINDS = ("kill", "pause", "cut", "blackhole", "oneway", "isolate", "latency", "loss",
               "db-outage", "db-slow", "clock-skew", "gateway-pause", "settings")
NET_MODELS = ("toxiproxy", "tcp")


@dataclass(frozen=True)
class SimConfig:
    seed: int = 0
    minutes: float = 10.0
    masters: int = 2
    coreapps: int = 3
    shards: int = 2
    webapps: int = 1
    timing_name: str = "documented"
    faults: tuple[str, ...] = FAULT_KINDS
    fault_rate: float = 4.0          # faults started per simulated minute
    drift: float = 0.01              # clock rates within 1 ± drift
    a3_cap: float = 0.25             # max extra one-way delay on coreapp->gateway links
    send_rate: float = 0.5           # messages per second per webapp
    breaks: str = ""
    net: str = "toxiproxy"           # link semantics: "toxiproxy" or "tcp" (see net.py)
    only_faults: tuple[int, ...] | None = None
    failover: bool = True

    @property
    def timing(self) -> Timing:
        return TIMINGS[self.timing_name]

    def validate(self) -> SimConfig:
        """This config, or TopologyError for the first invalid field."""
        check_counts(self.masters, self.coreapps, self.webapps, self.shards)
        if self.timing_name not in TIMINGS:
            raise TopologyError("timing", self.timing_name, f"one of {', '.join(TIMINGS)}")
        bad = [f for f in self.faults if f not in FAULT_KINDS]
        if bad:
            raise TopologyError("faults", bad[0],
                                f"a fault kind: one of {', '.join(FAULT_KINDS)}")
        if self.breaks and self.breaks not in TEST_BREAKS:
            raise TopologyError("breaks", self.breaks, f"'' or one of {', '.join(TEST_BREAKS)}")
        if self.net not in NET_MODELS:
            raise TopologyError("net", self.net, f"one of {', '.join(NET_MODELS)}")
        if not 0 <= self.drift < 1:
            raise TopologyError("drift", self.drift, "a number in [0, 1)")
        if self.minutes <= 0:
            raise TopologyError("minutes", self.minutes, "a number > 0")
        if self.send_rate <= 0:
            raise TopologyError("send_rate", self.send_rate, "a number > 0 (per second)")
        if self.fault_rate < 0:
            raise TopologyError("fault_rate", self.fault_rate, "a number >= 0 (per minute)")
        return self
