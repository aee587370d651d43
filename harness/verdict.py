"""Judge a scenario: run its checkers on the history, keep the evidence, fail with a reason.

``judge`` writes the checker results next to the history in the test's artifact directory,
attaches history, results and the timeline figure to the Allure report (secrets scrubbed),
records the headline figures for the terminal summary, and raises ``AssertionError`` whose
message starts with ``CHECK FAILED:`` (the report's "product defect" category) naming each
failed check, its bound and observed figure, and where the evidence was written. Every
scenario is also judged by :data:`ALWAYS`, the safety checks that hold whatever it did.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.history import Event
from harness.judge.checkers import (
    Result,
    db_record,
    exclusive_claims,
    no_duplicates,
    prepare,
    promoted_live,
    refused_not_delivered,
)
from harness.report import results as report
from harness.report.scrub import Scrubber

Check = Callable[[Sequence[Event]], Result]

#: Safety checks every judged scenario runs besides its own: they read only what the history
#: shows (no claims sampled or no delivery recorded: nothing to judge), so they hold in every
#: scenario. ``no_duplicates`` with its default ``allow="none"``: no client here ever resends,
#: so a message the gateway receives twice was resent by the roles. ``refused_not_delivered``:
#: a 503 tells the client the message was certainly not sent, so it must not arrive.
#: ``db_record``: every lease and shard-map change the database recorded was allowed.
#: ``promoted_live``: no promotion named a coreapp that a fault had long taken down.
ALWAYS: tuple[Check, ...] = (exclusive_claims, no_duplicates, refused_not_delivered, db_record,
                             promoted_live)


def with_always(checks: Iterable[Check]) -> list[Check]:
    """``checks`` plus each check of :data:`ALWAYS` not already among them (bare or bound
    with ``functools.partial``)."""
    out = list(checks)
    present = {getattr(c, "func", c) for c in out}
    return out + [c for c in ALWAYS if c not in present]


def run_checks(events: Sequence[Event], checks: Iterable[Check]) -> list[Result]:
    prepared = prepare(list(events))
    return [check(prepared) for check in checks]


def headline(results: Sequence[Result]) -> dict[str, Any]:
    """Promotion time, downtime and bound, from whichever checkers measured them."""
    out: dict[str, Any] = {}
    for r in results:
        f = r.figures
        if "promotion" in f and f["promotion"] is not None:
            out.setdefault("promotion", f["promotion"])
        if "max_downtime" in f and f["max_downtime"] is not None:
            out.setdefault("downtime", f["max_downtime"])
        if f.get("bound") is not None:
            out.setdefault("bound", f["bound"])
    return out


def judge(events: Sequence[Event], checks: Iterable[Check], *, artifacts: Path,
          secrets: Iterable[str] = (), record: Callable[..., None] | None = None,
          title: str = "", extra_figures: Mapping[str, Any] | None = None) -> list[Result]:
    __tracebackhide__ = True  # the arguments (secrets included) stay out of tracebacks
    events = list(events)
    results = run_checks(events, with_always(checks))
    scrub = Scrubber(list(secrets))
    artifacts.mkdir(parents=True, exist_ok=True)
    (artifacts / "results.json").write_text(json.dumps(scrub.json(
        [{"name": r.name, "valid": r.valid, "figures": r.figures,
          "explanation": r.explanation} for r in results]), indent=1, default=str))
    bounds = headline(results)
    report.attach_timeline(events, bounds=bounds, title=title)
    report.attach_history(events, scrub)
    report.attach_results(results, scrub)
    figures = {**bounds, **(extra_figures or {})}
    failed = [r for r in results if not r.valid]
    figures["verdict"] = "FAIL" if failed else "pass"
    if record is not None:
        record(**figures)
    if failed:
        lines = [report.check_failed_message(failed) or "CHECK FAILED:"]
        for r in failed:
            lines.append(f"- {r.name}: {r.explanation}")
        lines.append(f"history, results and logs: {artifacts}")
        raise AssertionError(scrub.text("\n".join(lines)))
    return results
