"""Drawing a ``TimelineModel`` (:mod:`harness.report.timeline.model`) with matplotlib's Agg backend
(no display needed): operations per bucket, share ok per shard, role lanes, fault windows,
gateway markers and the bound, as PNG, SVG or PDF bytes."""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from harness.history import Event
from harness.report.timeline.model import (
    CONNECTED,
    LANE_STATES,
    NOT_CONNECTED,
    OTHER,
    PRIMARY,
    SECONDARY,
    UNREACHABLE,
    TimelineModel,
    build_model,
)

#: Colours of the lane states, operation outcomes, fault kinds (cycled) and gateway markers.
LANE_COLOURS = {
    PRIMARY: "#1f4e99",
    SECONDARY: "#9dbbe8",
    CONNECTED: "#2e9b3e",
    NOT_CONNECTED: "#d5d5d5",
    UNREACHABLE: "#d9534f",
    OTHER: "#c5b0d5",
}
OP_COLOURS = {"ok": "#2e9b3e", "info": "#f0ad4e", "fail": "#d9534f"}
FAULT_COLOURS = ("#ffbf00", "#9467bd", "#17becf", "#8c564b", "#e377c2", "#7f7f7f")
MARKER_STYLE = {
    "connect": {"color": "#2e9b3e", "ls": ":", "lw": 0.9},
    "disconnect": {"color": "#555555", "ls": ":", "lw": 0.9},
    "kick": {"color": "#ff7f0e", "ls": "--", "lw": 1.1},
    "timeout": {"color": "#9467bd", "ls": "--", "lw": 1.0},
    "promotion": {"color": "#1f4e99", "ls": "-", "lw": 2.0},
    "conflict": {"color": "#e00000", "ls": "-", "lw": 3.0},
}


def render_timeline(events: Iterable[Event], *, bounds: Mapping[str, float] | None = None,
                    title: str = "", fmt: str = "png") -> bytes:
    """Render the history's timeline; returns the image bytes (``fmt``: png, svg, pdf)."""
    return render_model(build_model(events, bounds=bounds), title=title, fmt=fmt)


def render_model(model: TimelineModel, *, title: str = "", fmt: str = "png") -> bytes:
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    shard_groups = [s for s in model.ops]
    n_nodes = max(1, len(model.lanes))
    heights = [2.4, 0.35 * max(1, len(shard_groups)) + 0.5, 0.32 * n_nodes + 0.5]
    fig = Figure(figsize=(14, sum(heights) + 1.6), dpi=100, layout="constrained")
    ax_ops, ax_strip, ax_lane = fig.subplots(
        3, 1, sharex=True, gridspec_kw={"height_ratios": heights})
    edges = [model.t0 + i * model.bucket for i in range(model.n_buckets)]

    # -- top: totals per bucket, stacked ok / info / fail
    if model.ops:
        tot = {k: [sum(getattr(s, k)[i] for s in model.ops) for i in range(model.n_buckets)]
               for k in ("ok", "info", "fail")}
        bottom = [0] * model.n_buckets
        for k in ("ok", "info", "fail"):
            ax_ops.bar(edges, tot[k], width=model.bucket, bottom=bottom, align="edge",
                       color=OP_COLOURS[k], label=k, linewidth=0)
            bottom = [b + v for b, v in zip(bottom, tot[k], strict=True)]
        ax_ops.set_ylabel(f"ops / {model.bucket:g} s")
    else:
        ax_ops.text(0.5, 0.5, "no client operations in this history", ha="center",
                    va="center", transform=ax_ops.transAxes, color="#777777")
        ax_ops.set_yticks([])

    # -- middle: one row per shard group, cell colour = share of its ops that were ok
    # (red 0 % .. green 100 %); a bucket whose ops all ended unknown (info) is orange
    cmap = _ok_cmap()
    for row, s in enumerate(shard_groups):
        cells: dict[int, list[tuple[float, float]]] = defaultdict(list)
        for i, x in enumerate(edges):
            n = s.ok[i] + s.fail[i] + s.info[i]
            if n:  # -1: only unknown outcomes (info), shown in the info colour
                level = -1 if s.info[i] == n else round(20 * s.ok[i] / n)
                cells[level].append((x, model.bucket))
        for level, ranges in cells.items():
            colour = OP_COLOURS["info"] if level < 0 else cmap(level / 20)
            ax_strip.broken_barh(ranges, (row - 0.4, 0.8), color=colour, linewidth=0)
    ax_strip.set_yticks(range(len(shard_groups)), [s.group for s in shard_groups])
    ax_strip.set_ylim(-0.6, max(1, len(shard_groups)) - 0.4)
    ax_strip.invert_yaxis()
    ax_strip.set_ylabel("share ok")

    # -- bottom: role lanes
    nodes = list(model.lanes)
    for row, node in enumerate(nodes):
        by_state: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for seg in model.lanes[node]:
            by_state[seg.state].append((seg.start, seg.end - seg.start))
        for state, ranges in by_state.items():
            ax_lane.broken_barh(ranges, (row - 0.38, 0.76), color=LANE_COLOURS[state],
                                linewidth=0)
    ax_lane.set_yticks(range(len(nodes)), nodes)
    ax_lane.set_ylim(-0.6, max(1, len(nodes)) - 0.4)
    ax_lane.invert_yaxis()
    if not nodes:
        ax_lane.text(0.5, 0.5, "no health observations", ha="center", va="center",
                     transform=ax_lane.transAxes, color="#777777")
    ax_lane.set_xlabel("seconds since the history started")
    ax_lane.set_xlim(model.t0, model.t1)

    # -- fault windows across all panels, labelled on the top panel where there is room
    kinds = sorted({f.kind for f in model.faults})
    fcol = {k: FAULT_COLOURS[i % len(FAULT_COLOURS)] for i, k in enumerate(kinds)}
    for ax in (ax_ops, ax_strip, ax_lane):
        for k in kinds:
            spans = [(f.start, f.end - f.start) for f in model.faults if f.kind == k]
            ax.broken_barh(spans, (0, 1), transform=ax.get_xaxis_transform(), color=fcol[k],
                           alpha=0.18, linewidth=0, zorder=0)
    per_px = (model.t1 - model.t0) / 1250.0  # data seconds per pixel of the plot width
    extents = [(f.start, f.start + _text_width(f.label, per_px)) for f in model.faults]
    for f, row in _place(extents, list(model.faults), 4):
        ax_ops.text(f.start, 0.97 - 0.13 * row, " " + f.label,
                    transform=ax_ops.get_xaxis_transform(),
                    va="top", ha="left", fontsize=8, clip_on=True,
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": fcol[f.kind],
                          "alpha": 0.85})

    # -- vertical markers: one collection per kind and panel; conflicts and promotions
    # labelled where there is room (conflicts first)
    for kind, st in MARKER_STYLE.items():
        xs = [m.time for m in model.markers if m.kind == kind]
        if xs:
            for ax in (ax_ops, ax_strip, ax_lane):
                ax.vlines(xs, 0, 1, transform=ax.get_xaxis_transform(), colors=st["color"],
                          linestyles=st["ls"], linewidths=st["lw"], zorder=3)
    labelled = sorted((m for m in model.markers if m.kind in ("conflict", "promotion")),
                      key=lambda m: (m.kind != "conflict", m.time))
    split = model.t0 + 0.6 * (model.t1 - model.t0)  # right of it, labels extend leftwards
    extents = [(m.time - _text_width(m.label, per_px), m.time) if m.time > split
               else (m.time, m.time + _text_width(m.label, per_px)) for m in labelled]
    for m, row in _place(extents, labelled, 3):
        right_half = m.time > split
        ax_ops.annotate(m.label, (m.time, 0.0), xycoords=ax_ops.get_xaxis_transform(),
                        xytext=(-4 if right_half else 4, 6 + 14 * row),
                        textcoords="offset points", fontsize=8,
                        ha="right" if right_half else "left",
                        color=MARKER_STYLE[m.kind]["color"],
                        fontweight="bold" if m.kind == "conflict" else "normal",
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                              "alpha": 0.85})

    deadline = model.bound_deadline
    if deadline is not None:
        for ax in (ax_ops, ax_strip, ax_lane):
            ax.axvline(deadline, color="black", ls=(0, (6, 3)), lw=1.2, zorder=3)
        ax_ops.annotate(f"bound: first fault + {model.bounds['bound']:g} s", (deadline, 0.5),
                        xycoords=ax_ops.get_xaxis_transform(), xytext=(4, 0),
                        textcoords="offset points", fontsize=8)

    # -- legend and headline
    handles = [Patch(color=OP_COLOURS[k], label=f"op {k}") for k in ("ok", "info", "fail")]
    if shard_groups:
        handles.append(Patch(color=cmap(0.5), label="shard row: share ok 0-100 % (red-green)"))
    handles += [Patch(color=LANE_COLOURS[s], label=s) for s in LANE_STATES if s != OTHER]
    present = {m.kind for m in model.markers}
    handles += [Line2D([], [], color=MARKER_STYLE[k]["color"], ls=MARKER_STYLE[k]["ls"],
                       lw=MARKER_STYLE[k]["lw"], label=f"gw {k}" if k != "promotion" else k)
                for k in MARKER_STYLE if k in present]
    handles += [Patch(color=fcol[k], alpha=0.35, label=f"fault: {k}") for k in kinds]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(8, len(handles)),
               fontsize=8, frameon=False)
    headline, bad = _headline(model)
    fig.suptitle(title or "timeline", fontsize=12, x=0.01, ha="left")
    if headline:
        fig.text(0.99, 0.995, headline, ha="right", va="top", fontsize=10,
                 color="#c00000" if bad else "#1a6e1a", fontweight="bold")
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt)
    return buf.getvalue()


def _ok_cmap():
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list(
        "share_ok", [OP_COLOURS["fail"], OP_COLOURS["info"], OP_COLOURS["ok"]])


def _text_width(text: str, per_px: float, char_px: float = 6.2) -> float:
    """Estimated width, in data seconds, of a size-8 label."""
    return (len(text) + 2) * char_px * per_px


def _place(extents: list[tuple[float, float]], items: list, rows: int) -> list[tuple[Any, int]]:
    """Greedy label placement, in the given order of priority: each label goes to the first
    row where it overlaps no label already placed; labels with no room are dropped (every
    span and line is still drawn, and the legend names the kinds)."""
    taken: list[list[tuple[float, float]]] = [[] for _ in range(rows)]
    out = []
    for (lo, hi), item in zip(extents, items, strict=True):
        for row in range(rows):
            if all(hi <= a or lo >= b for a, b in taken[row]):
                taken[row].append((lo, hi))
                out.append((item, row))
                break
    return out


def _headline(model: TimelineModel) -> tuple[str, bool]:
    b = model.bounds
    parts = []
    bad = False
    if "downtime" in b:
        parts.append(f"observed downtime {b['downtime']:.2f} s")
    if "bound" in b:
        parts.append(f"bound {b['bound']:g} s")
        if "downtime" in b and b["downtime"] > b["bound"]:
            parts.append("BOUND EXCEEDED")
            bad = True
        elif "downtime" in b:
            parts.append("within bound")
    parts += [f"{k} {v:.2f}" for k, v in b.items() if k not in ("downtime", "bound")]
    if any(m.kind == "conflict" for m in model.markers):
        parts.append("GATEWAY CONFLICT")
        bad = True
    return "  |  ".join(parts), bad
