"""The webapp's metrics: request counters, message send latency (a summary over the last
samples), routing retries, sends per shard and outcome, failed shard map reads; served as
JSON or in the Prometheus text format by ``GET /metrics``.
"""

from __future__ import annotations

from collections import deque
from typing import Any


class Metrics:
    """Request counters, message send latency (summary), routing retries, per-shard sends."""

    QUANTILES = (0.5, 0.9, 0.99)

    def __init__(self, window: int = 2048) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        self.latencies: deque[float] = deque(maxlen=window)
        self.latency_count = 0
        self.latency_sum = 0.0
        self.retries = 0
        self.shard_sends: dict[tuple[int, str], int] = {}
        self.map_refresh_failures = 0

    def request(self, route: str, method: str, status: int) -> None:
        key = (route, method, status)
        self.requests[key] = self.requests.get(key, 0) + 1

    def sent(self, shard: int, outcome: str, latency: float | None = None) -> None:
        """outcome: ok | not_sent | unknown."""
        self.shard_sends[(shard, outcome)] = self.shard_sends.get((shard, outcome), 0) + 1
        if latency is not None:
            self.latencies.append(latency)
            self.latency_count += 1
            self.latency_sum += latency

    def quantiles(self) -> dict[str, float]:
        data = sorted(self.latencies)
        if not data:
            return {}
        return {str(q): data[min(len(data) - 1, int(q * len(data)))] for q in self.QUANTILES}

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": [{"route": r, "method": m, "status": s, "count": n}
                         for (r, m, s), n in sorted(self.requests.items())],
            "message_send_seconds": {"count": self.latency_count,
                                     "sum": round(self.latency_sum, 6),
                                     "quantiles": self.quantiles()},
            "routing_retries": self.retries,
            "shard_sends": [{"shard": sh, "outcome": o, "count": n}
                            for (sh, o), n in sorted(self.shard_sends.items())],
            "shard_map_refresh_failures": self.map_refresh_failures,
        }

    def to_prometheus(self) -> str:
        def esc(v: str) -> str:
            return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

        out = ["# HELP webapp_requests_total API requests by route, method and status.",
               "# TYPE webapp_requests_total counter"]
        for (r, m, s), n in sorted(self.requests.items()):
            out.append(f'webapp_requests_total{{route="{esc(r)}",method="{m}",status="{s}"}} {n}')
        out += ["# HELP webapp_message_send_seconds Time to a coreapp-acknowledged send.",
                "# TYPE webapp_message_send_seconds summary"]
        for q, v in self.quantiles().items():
            out.append(f'webapp_message_send_seconds{{quantile="{q}"}} {v:.6f}')
        out += [f"webapp_message_send_seconds_sum {self.latency_sum:.6f}",
                f"webapp_message_send_seconds_count {self.latency_count}",
                "# HELP webapp_routing_retries_total Sends retried on a new shard owner.",
                "# TYPE webapp_routing_retries_total counter",
                f"webapp_routing_retries_total {self.retries}",
                "# HELP webapp_shard_sends_total Sends by shard and outcome.",
                "# TYPE webapp_shard_sends_total counter"]
        for (sh, o), n in sorted(self.shard_sends.items()):
            out.append(f'webapp_shard_sends_total{{shard="{sh}",outcome="{o}"}} {n}')
        out += ["# HELP webapp_shard_map_refresh_failures_total Failed shard map reads.",
                "# TYPE webapp_shard_map_refresh_failures_total counter",
                f"webapp_shard_map_refresh_failures_total {self.map_refresh_failures}"]
        return "\n".join(out) + "\n"
