"""Reporting layer: Allure attachments, labels, report-level files and the terminal summary.

Model: a thin wrapper over allure-pytest's ``allure`` API, imported lazily so the harness
runs without allure installed (the ``attach_*`` functions then do nothing and return False).
Every attached text passes through a ``harness.report.scrub.Scrubber`` (the generic one when the
caller gives ``None``), so no password reaches a report.

Failure categories (``write_categories``) split a red run in three: a checker failed (the
assertion message starts with ``CHECK_FAILED_PREFIX``), the harness or its environment broke
(bring-up or Docker errors), or a test passed only on retry (``mark_flaky_retries`` flags those
results before the HTML is generated).
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.history import Event
from harness.report.scrub import DEFAULT as _GENERIC_SCRUBBER
from harness.report.scrub import Scrubber

CHECK_FAILED_PREFIX = "CHECK FAILED:"

#: Exception names and messages that mean "the harness or the machine failed", not the product.
HARNESS_ERROR_PATTERNS: tuple[str, ...] = (
    "ClusterStartError", "EngineUnavailable", "ImageBuildError", "ImageError",
    "ImageOverrideMissing", "SpecError", "ToxiproxyError", "docker\\.errors\\.",
    "DockerException",
)
_HARNESS_ANY = "(?:" + "|".join(HARNESS_ERROR_PATTERNS) + ")"
# Allure 2 matches messageRegex/traceRegex against the whole text with DOTALL (Java
# Pattern.matches); only constructs shared by Java and Python regexes are used here.
_PREFIX_RE = re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", CHECK_FAILED_PREFIX)
_CHECK_MSG = r"(?:[\w.]+: )?" + _PREFIX_RE + r".*"
_NOT_CHECK = r"(?!(?:[\w.]+: )?" + _PREFIX_RE + r")"

PRODUCT_DEFECT = "Product defect"
HARNESS_ERROR = "Harness or environment error"
FLAKY = "Flaky: passed on retry"
OTHER_FAILURE = "Unclassified test failure"

CATEGORIES: list[dict[str, Any]] = [
    {"name": PRODUCT_DEFECT, "matchedStatuses": ["failed", "broken"], "messageRegex": _CHECK_MSG},
    {"name": HARNESS_ERROR, "matchedStatuses": ["broken", "failed"],
     "messageRegex": _NOT_CHECK + r".*" + _HARNESS_ANY + r".*"},
    {"name": HARNESS_ERROR, "matchedStatuses": ["broken", "failed"],
     "messageRegex": _NOT_CHECK + r"(?!.*" + _HARNESS_ANY + r").*",
     "traceRegex": r".*" + _HARNESS_ANY + r".*"},
    {"name": OTHER_FAILURE, "matchedStatuses": ["broken", "failed"],
     "messageRegex": _NOT_CHECK + r"(?!.*" + _HARNESS_ANY + r").*",
     "traceRegex": r"(?!.*" + _HARNESS_ANY + r").*"},
    {"name": FLAKY, "matchedStatuses": ["passed"], "flaky": True},
]

_SEVERITIES = ("blocker", "critical", "normal", "minor", "trivial")


def _allure() -> Any | None:
    try:
        import allure
    except ImportError:
        return None
    return allure


def _scrubber(s: Scrubber | None) -> Scrubber:
    return s if s is not None else _GENERIC_SCRUBBER


# ------------------------------------------------------------------ attachments

def attach_text(name: str, text: str, scrubber: Scrubber | None) -> bool:
    allure = _allure()
    if allure is None:
        return False
    allure.attach(_scrubber(scrubber).text(text), name=name,
                  attachment_type=allure.attachment_type.TEXT)
    return True


def attach_json(name: str, obj: Any, scrubber: Scrubber | None) -> bool:
    allure = _allure()
    if allure is None:
        return False
    sc = _scrubber(scrubber)
    body = sc.text(json.dumps(sc.json(obj), indent=2, sort_keys=True, default=str))
    allure.attach(body, name=name, attachment_type=allure.attachment_type.JSON)
    return True


def history_jsonl(events: Iterable[Event], scrubber: Scrubber | None) -> str:
    """The history as scrubbed JSON lines (one event per line)."""
    sc = _scrubber(scrubber)
    return "".join(sc.text(ev.to_json()) + "\n" for ev in events)


def attach_history(events: Iterable[Event], scrubber: Scrubber | None,
                   name: str = "history.jsonl") -> bool:
    allure = _allure()
    if allure is None:
        return False
    allure.attach(history_jsonl(events, scrubber), name=name, attachment_type="text/plain",
                  extension="jsonl")
    return True


def attach_timeline(events: Iterable[Event], bounds: Mapping[str, float] | None = None, *,
                    title: str = "", name: str = "timeline") -> bool:
    """Attach the timeline PNG. A rendering error is attached as text instead of raising,
    so a plotting problem never changes a scenario's verdict."""
    allure = _allure()
    if allure is None:
        return False
    from harness.report.timeline import render_timeline

    try:
        png = render_timeline(list(events), bounds=bounds, title=title)
    except Exception as exc:  # noqa: BLE001 - reported in the attachment
        import traceback

        allure.attach(f"timeline rendering failed: {exc!r}\n\n{traceback.format_exc()}",
                      name=f"{name} (error)", attachment_type=allure.attachment_type.TEXT)
        return False
    allure.attach(png, name=name, attachment_type=allure.attachment_type.PNG)
    return True


def _result_fields(r: Any) -> tuple[str, Any, dict[str, Any], str]:
    get = r.get if isinstance(r, Mapping) else (lambda k, d=None: getattr(r, k, d))
    return (str(get("name", "?")), get("valid", None), dict(get("figures", None) or {}),
            str(get("explanation", "") or ""))


def _verdict(valid: Any) -> str:
    if valid is True:
        return "valid"
    if valid is False:
        return "INVALID"
    return str(valid) if valid is not None else "unknown"


def results_table(results: Iterable[Any]) -> str:
    """Checker results as plain text, one block per checker."""
    out = []
    for r in results:
        name, valid, figures, expl = _result_fields(r)
        out.append(f"[{_verdict(valid)}] {name}")
        for k, v in sorted(figures.items()):
            out.append(f"    {k} = {_fmt_fig(v)}")
        if expl:
            out.extend("    " + line for line in expl.splitlines())
    return "\n".join(out) + ("\n" if out else "")


def _fmt_fig(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def check_failed_message(results: Iterable[Any]) -> str | None:
    """The assertion message for the invalid results (``CHECK FAILED: …``), or None."""
    bad = []
    for r in results:
        name, valid, _figures, expl = _result_fields(r)
        if valid is False:
            bad.append(f"{name}: {expl.splitlines()[0] if expl else 'invalid'}")
    return f"{CHECK_FAILED_PREFIX} " + "; ".join(bad) if bad else None


def attach_results(results: Iterable[Any], scrubber: Scrubber | None = None) -> bool:
    allure = _allure()
    if allure is None:
        return False
    rs = list(results)
    sc = _scrubber(scrubber)
    allure.attach(sc.text(results_table(rs)), name="checker results",
                  attachment_type=allure.attachment_type.TEXT)
    data = [dict(zip(("name", "valid", "figures", "explanation"), _result_fields(r),
                     strict=True)) for r in rs]
    attach_json("checker results (json)", data, sc)
    return True


_TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?\s")


def merge_logs(logs: Mapping[str, str]) -> str:
    """Node-prefixed lines of all logs; ordered by timestamp when every line has one
    (``docker logs --timestamps``), else node by node."""
    width = max((len(n) for n in logs), default=0)
    rows: list[tuple[str, int, str]] = []
    for node, text in logs.items():
        for i, line in enumerate(text.splitlines()):
            rows.append((node, i, line))
    if rows and all(_TS.match(line) for _n, _i, line in rows if line.strip()):
        rows.sort(key=lambda r: _TS.match(r[2]).group(0) if _TS.match(r[2]) else "")
    return "".join(f"{node:<{width}} | {line}\n" for node, _i, line in rows)


def attach_container_logs(logs: Mapping[str, str], scrubber: Scrubber | None) -> int:
    """One attachment per node plus one combined; returns how many were attached."""
    allure = _allure()
    if allure is None:
        return 0
    sc = _scrubber(scrubber)
    n = 0
    for node, text in logs.items():
        body = "".join(f"{node} | {line}\n" for line in text.splitlines())
        allure.attach(sc.text(body), name=f"log: {node}",
                      attachment_type=allure.attachment_type.TEXT)
        n += 1
    if logs:
        allure.attach(sc.text(merge_logs(logs)), name="log: all nodes",
                      attachment_type=allure.attachment_type.TEXT)
        n += 1
    return n


def label_scenario(epic: str, feature: str, story: str, severity: str = "normal") -> bool:
    sev = severity.lower()
    if sev not in _SEVERITIES:
        raise ValueError(f"severity {severity!r} is not one of {', '.join(_SEVERITIES)}")
    allure = _allure()
    if allure is None:
        return False
    allure.dynamic.epic(epic)
    allure.dynamic.feature(feature)
    allure.dynamic.story(story)
    allure.dynamic.severity(allure.severity_level[sev.upper()])
    return True


# ------------------------------------------------------------------ report-level files

def _prop_escape(s: str, *, key: bool) -> str:
    out = []
    for ch in s:
        if ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif key and ch in " =:#!":
            out.append("\\" + ch)
        elif ord(ch) > 0x7E or ord(ch) < 0x20:
            units = ch.encode("utf-16-be")
            out.extend(f"\\u{int.from_bytes(units[i:i + 2], 'big'):04x}"
                       for i in range(0, len(units), 2))
        else:
            out.append(ch)
    return "".join(out)


def environment_properties(props: Mapping[str, Any], scrubber: Scrubber | None = None) -> str:
    """Java-properties text (what Allure reads); values scrubbed, sensitive keys blanked."""
    sc = _scrubber(scrubber)
    lines = []
    for k, v in props.items():
        val = sc.json({str(k): "" if v is None else str(v)})[str(k)]
        lines.append(f"{_prop_escape(str(k), key=True)}={_prop_escape(val, key=False)}")
    return "\n".join(lines) + ("\n" if lines else "")


def write_environment(results_dir: str | Path, props: Mapping[str, Any],
                      scrubber: Scrubber | None = None) -> Path:
    d = Path(results_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / "environment.properties"
    path.write_text(environment_properties(props, scrubber), encoding="latin-1")
    return path


def write_categories(results_dir: str | Path) -> Path:
    d = Path(results_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / "categories.json"
    path.write_text(json.dumps(CATEGORIES, indent=2) + "\n", encoding="utf-8")
    return path


def categorize(status: str, message: str | None, trace: str | None = None,
               flaky: bool = False) -> list[str]:
    """Which of ``CATEGORIES`` Allure 2 puts a result in (same rule as its CategoriesPlugin:
    status listed, message and trace regexes match whole text, flaky flag equal)."""
    names: list[str] = []
    for c in CATEGORIES:
        if c.get("matchedStatuses") and status not in c["matchedStatuses"]:
            continue
        ok = True
        for key, text in (("messageRegex", message), ("traceRegex", trace)):
            if key in c and (text is None or not re.fullmatch(c[key], text, re.DOTALL)):
                ok = False
        if ok and bool(c.get("flaky", False)) == flaky and c["name"] not in names:
            names.append(c["name"])
    return names


def keep_trend_history(previous_report_dir: str | Path | None,
                       results_dir: str | Path) -> bool:
    """Copy ``<previous report>/history/`` into the results so the new report shows trends."""
    if previous_report_dir is None:
        return False
    src = Path(previous_report_dir) / "history"
    if not src.is_dir():
        return False
    shutil.copytree(src, Path(results_dir) / "history", dirs_exist_ok=True)
    return True


def mark_flaky_retries(results_dir: str | Path) -> list[str]:
    """Flag as flaky each test whose latest result passed after an earlier failed/broken
    attempt (same ``historyId``). Returns the flagged result uuids."""
    by_history: dict[str, list[tuple[dict[str, Any], Path]]] = {}
    for p in Path(results_dir).glob("*-result.json"):
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if d.get("historyId"):
            by_history.setdefault(d["historyId"], []).append((d, p))
    flagged = []
    for attempts in by_history.values():
        if len(attempts) < 2:
            continue
        attempts.sort(key=lambda dp: (dp[0].get("stop") or 0, dp[0].get("start") or 0))
        latest, path = attempts[-1]
        if latest.get("status") == "passed" and any(
                d.get("status") in ("failed", "broken") for d, _p in attempts[:-1]):
            sd = latest.setdefault("statusDetails", {}) or {}
            latest["statusDetails"] = sd
            if not sd.get("flaky"):
                sd["flaky"] = True
                path.write_text(json.dumps(latest), encoding="utf-8")
            flagged.append(str(latest.get("uuid", path.name)))
    return flagged


# ------------------------------------------------------------------ terminal summary

@dataclass(frozen=True)
class ScenarioSummary:
    """One line of the end-of-run table (times in seconds, None = not measured)."""

    scenario: str
    promotion: float | None
    downtime: float | None
    bound: float | None
    verdict: str
    retried: int | bool = 0


_HEADERS = ("scenario", "promotion", "downtime", "bound", "verdict", "retried")
_MAX_NAME = 56


def _secs(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.2f} s"


def format_summary(rows: Sequence[ScenarioSummary]) -> str:
    """Fixed-width table; a downtime above its bound is flagged with ``!``."""
    body = []
    for r in rows:
        name = r.scenario if len(r.scenario) <= _MAX_NAME else r.scenario[:_MAX_NAME - 1] + "…"
        down = _secs(r.downtime)
        if r.downtime is not None and r.bound is not None and r.downtime > r.bound:
            down += " !"
        retried = int(r.retried)
        body.append((name, _secs(r.promotion), down, _secs(r.bound), r.verdict,
                     str(retried) if retried else "-"))
    widths = [max([len(h)] + [len(b[i]) for b in body]) for i, h in enumerate(_HEADERS)]
    right = (False, True, True, True, False, True)

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if r else c.ljust(w)
                         for c, w, r in zip(cells, widths, right, strict=True)).rstrip()

    out = [line(_HEADERS), line(["-" * w for w in widths])]
    out += [line(b) for b in body]
    verdicts: dict[str, int] = {}
    for r in rows:
        verdicts[r.verdict] = verdicts.get(r.verdict, 0) + 1
    tally = ", ".join(f"{n} {v}" for v, n in sorted(verdicts.items()))
    n_retried = sum(1 for r in rows if r.retried)
    out.append(f"{len(rows)} scenarios" + (f": {tally}" if tally else "")
               + (f"; {n_retried} retried" if n_retried else ""))
    return "\n".join(out) + "\n"
