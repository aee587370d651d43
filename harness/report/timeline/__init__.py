"""Timeline of one scenario's history, for the report: the model (:mod:`.model`, a pure
function of the history) and its drawing (:mod:`.draw`, matplotlib). Every public name of
both is importable from here."""

from harness.report.timeline.draw import (
    FAULT_COLOURS,
    LANE_COLOURS,
    MARKER_STYLE,
    OP_COLOURS,
    render_model,
    render_timeline,
)
from harness.report.timeline.model import (
    CONNECTED,
    GATEWAY_MARKERS,
    LANE_STATES,
    MEDIA_FS,
    NOT_CONNECTED,
    OTHER,
    PRIMARY,
    SECONDARY,
    UNREACHABLE,
    FaultSpan,
    Marker,
    OpSeries,
    RoleSegment,
    TimelineModel,
    build_model,
    choose_bucket,
    fault_spans,
    lane_state,
)

__all__ = [
    "CONNECTED", "FAULT_COLOURS", "GATEWAY_MARKERS", "LANE_COLOURS", "LANE_STATES",
    "MARKER_STYLE", "MEDIA_FS", "NOT_CONNECTED", "OP_COLOURS", "OTHER", "PRIMARY", "SECONDARY",
    "UNREACHABLE", "FaultSpan", "Marker", "OpSeries", "RoleSegment", "TimelineModel",
    "build_model", "choose_bucket", "fault_spans", "lane_state", "render_model",
    "render_timeline",
]
