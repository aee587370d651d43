"""No steady growth of a node's memory or open file descriptors over a soak run.

Model. The ``soak`` samples of one process (node, pid) form a series; a restart starts a new
one. A series is judged only if it has at least ``min_samples`` samples over at least
``min_span`` seconds. It is cut into ``bins`` equal parts by time and each part summarised by
its median (robust to a single spike). **Steady growth** = the medians rise from every part to
the next and the total rise (last median − first) is at least ``min_rss`` bytes and
``rss_ratio`` of the first median (memory), or ``min_fds`` descriptors (fds). A one-time step
(a cache warming, a pool filling) leaves equal medians on one side of it and is not growth;
noise around a flat level does not rise five times in a row.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from statistics import median

from harness.history import Event
from harness.judge.checkers.base import Result, checker, prepare


def _medians(points: list[tuple[float, float]], bins: int) -> list[float]:
    t0, t1 = points[0][0], points[-1][0]
    width = (t1 - t0) / bins
    parts: list[list[float]] = [[] for _ in range(bins)]
    for when, value in points:
        parts[min(int((when - t0) / width), bins - 1)].append(value)
    return [median(p) for p in parts if p]


def steady_rise(points: list[tuple[float, float]], bins: int, minimum: float) -> float | None:
    """The total rise if the per-part medians rise every time by ``minimum`` in total, else
    ``None``."""
    meds = _medians(points, bins)
    if len(meds) < bins or any(b <= a for a, b in zip(meds, meds[1:], strict=False)):
        return None
    rise = meds[-1] - meds[0]
    return rise if rise >= minimum else None


@checker
def no_steady_growth(events: Sequence[Event], *, bins: int = 5, min_samples: int = 10,
                     min_span: float = 60.0, min_rss: int = 8 << 20, rss_ratio: float = 0.2,
                     min_fds: int = 10) -> Result:
    series: dict[tuple[str, int], list[Event]] = defaultdict(list)
    for e in prepare(events).select("sample"):
        if e.process == "soak":
            series[(e.value["node"], int(e.value["pid"]))].append(e)
    findings, judged = [], 0
    for (node, pid), evs in sorted(series.items()):
        if len(evs) < min_samples or evs[-1].time - evs[0].time < min_span:
            continue
        judged += 1
        rss = [(e.time, float(e.value["rss"])) for e in evs]
        first = median(v for _, v in rss[: max(1, len(rss) // bins)])
        rise = steady_rise(rss, bins, max(min_rss, rss_ratio * first))
        if rise is not None:
            findings.append(f"{node} (pid {pid}) memory +{rise / 2**20:.1f} MiB over "
                            f"{evs[-1].time - evs[0].time:.0f} s, rising in every fifth")
        fds = [(e.time, float(e.value["fds"])) for e in evs]
        rise = steady_rise(fds, bins, min_fds)
        if rise is not None:
            findings.append(f"{node} (pid {pid}) open fds +{rise:.0f} over "
                            f"{evs[-1].time - evs[0].time:.0f} s, rising in every fifth")
    peak = max((e.value["rss"] for evs in series.values() for e in evs), default=0)
    figures = {"series": len(series), "series_judged": judged, "growth_findings": len(findings),
               "peak_rss_mib": round(peak / 2**20, 1)}
    if findings:
        return Result("no_steady_growth", False, figures, "steady growth: " + "; ".join(findings))
    return Result("no_steady_growth", True, figures,
                  f"{judged} of {len(series)} process series long enough to judge; none grows "
                  "steadily")
