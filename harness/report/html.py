"""Generate the HTML report from Allure results, offline.

    python -m harness.report.html [results_dir] [-o out_dir] [--screenshot shot.png]
    python -m harness.report.html --install-only     # check Java >= 17, install Allure once

Model: Allure 2 (npm ``allure-commandline``, pinned, run on the installed Java) is installed
once into a cache directory (``$MC_CHAOS_CACHE`` or ``$XDG_CACHE_HOME/mc-chaos`` or
``~/.cache/mc-chaos``, subdirectory ``allure``) with ``npm install --prefix``. Generation:

1. ``categories.json`` is written into the results if absent; results that passed only on
   retry are flagged flaky; ``<out_dir>/history/`` from the previous report is copied into the
   results so trends carry on.
2. ``out_dir/index.html`` is one self-contained file (``--single-file``: opens from file://);
   ``out_dir/history/`` is kept for the next run's trends.
3. With ``ALLURE_NO_ANALYTICS=true``; any known analytics snippet still present is stripped,
   then every page, script and style (including inlined ``data:`` scripts) is scanned for
   requests to other hosts. Any left -> exit status 3 and a list of them.
4. ``--screenshot`` opens the report in headless Chromium with a network log, writes a PNG and
   fails (exit 3) if the page tried to reach anything but itself.

Exit status: 0 ok, 2 usage/tooling error, 3 the report would make external requests.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

from harness.report import results as report

ALLURE_PACKAGE = "allure-commandline"
ALLURE_VERSION = "2.46.1"
DEFAULT_RESULTS = Path("reports/allure-results")
DEFAULT_OUT = Path("reports/html")

Log = Callable[[str], None]


class ReportToolError(RuntimeError):
    """A tool the report needs is missing or failed (exit status 2)."""


class ExternalRequestError(RuntimeError):
    """The generated report would contact other hosts (exit status 3)."""

    def __init__(self, findings: list[str]) -> None:
        super().__init__("the report makes external requests:\n  " + "\n  ".join(findings))
        self.findings = findings


def _log(msg: str) -> None:
    print(f"[report] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ installing Allure

def cache_dir() -> Path:
    if os.environ.get("MC_CHAOS_CACHE"):
        base = Path(os.environ["MC_CHAOS_CACHE"])
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mc-chaos"
    return base / "allure"


def allure_bin(prefix: Path) -> Path:
    return prefix / "node_modules" / ALLURE_PACKAGE / "dist" / "bin" / "allure"


def _installed_version(binary: Path, env: dict[str, str]) -> str | None:
    if not binary.is_file():
        return None
    try:
        out = subprocess.run([str(binary), "--version"], capture_output=True, text=True,
                             timeout=120, env=env, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


JAVA_MIN = 17
JAVA_HINT = ("on Debian as root: apt-get install -y openjdk-17-jre-headless (`make setup` "
             "does this)")


def parse_java_major(text: str) -> int | None:
    """The major version in ``java -version`` output ("1.8.0_392" -> 8, "17.0.15" -> 17)."""
    m = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def java_major(java: str) -> int | None:
    """Major version of ``java``, or None if it does not run or names no version."""
    try:
        proc = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_java_major(proc.stderr + proc.stdout)


def ensure_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise ReportToolError(
            f"Allure 2 needs a Java runtime ({JAVA_MIN} or newer) and none is on PATH; "
            f"{JAVA_HINT}")
    major = java_major(java)
    if major is None or major < JAVA_MIN:
        raise ReportToolError(
            f"Allure 2 needs Java {JAVA_MIN} or newer; {java} is "
            f"{'of unknown version' if major is None else f'Java {major}'}; {JAVA_HINT}, "
            "and make it the default (update-alternatives --config java)")
    return java


def ensure_allure(prefix: Path | None = None, *, log: Log = _log) -> Path:
    """Return the Allure binary, installing the pinned npm package on first use."""
    ensure_java()
    prefix = prefix or cache_dir()
    binary = allure_bin(prefix)
    env = _tool_env()
    if _installed_version(binary, env) == ALLURE_VERSION:
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise ReportToolError("npm is needed once to install Allure and is not on PATH; on "
                              "Debian as root: apt-get install -y nodejs npm (`make setup` "
                              "does this)")
    spec = f"{ALLURE_PACKAGE}@{ALLURE_VERSION}"
    log(f"installing {spec} into {prefix} (one time; ~5 MB from the npm registry)...")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".allure-install-", dir=prefix.parent))
    try:
        cmd = [npm, "install", "--prefix", str(staging), "--no-audit", "--no-fund",
               "--no-save", "--loglevel=http", spec]
        proc = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr, timeout=600,
                              check=False)
        if proc.returncode != 0 or not allure_bin(staging).is_file():
            raise ReportToolError(f"npm install {spec} failed (exit {proc.returncode})")
        if prefix.exists():
            shutil.rmtree(prefix)
        staging.rename(prefix)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    version = _installed_version(binary, env)
    if version != ALLURE_VERSION:
        raise ReportToolError(f"installed Allure reports version {version!r}, "
                              f"expected {ALLURE_VERSION}")
    log(f"Allure {version} installed")
    return binary


def _tool_env() -> dict[str, str]:
    env = dict(os.environ)
    env["ALLURE_NO_ANALYTICS"] = "true"
    return env


# ------------------------------------------------------------------ offline check

_ANALYTICS_HOSTS = ("googletagmanager.com", "google-analytics.com", "doubleclick.net",
                    "analytics.google.com", "segment.io", "segment.com/analytics",
                    "mixpanel.com", "plausible.io", "sentry.io", "hotjar.com")
_ANALYTICS_RE = re.compile("|".join(re.escape(h) for h in _ANALYTICS_HOSTS), re.I)
_SCRIPT_BLOCK = re.compile(r"<script\b[^>]*>.*?</script\s*>", re.I | re.S)

_EXT = r"(?:https?:)?//[^\s\"'`)<>]+"
_HTML_FETCHING = re.compile(
    r"<(?:script|link|img|iframe|frame|source|video|audio|embed|object|track|input|image|use)"
    rf"\b[^>]*?\b(?:src|href|data|poster|srcset|xlink:href)\s*=\s*[\"']?\s*({_EXT})", re.I)
_META_REFRESH = re.compile(rf"<meta\b[^>]*http-equiv=[\"']?refresh[^>]*url=\s*({_EXT})", re.I)
_JS_FETCHING = re.compile(
    r"(?:\bfetch|\bsendBeacon|\bimportScripts|\bimport|\bnew\s+(?:WebSocket|EventSource|Worker)"
    rf")\s*\(\s*[\"'`]\s*((?:https?:|wss?:)?//[^\"'`\s]+)"
    rf"|\.open\(\s*[\"'`][A-Za-z]+[\"'`]\s*,\s*[\"'`]({_EXT})"
    rf"|\.(?:src|href|action)\s*=\s*[\"'`]({_EXT})"
    rf"|\bsetAttribute\(\s*[\"'`](?:src|href)[\"'`]\s*,\s*[\"'`]({_EXT})"
    rf"|\burl\(\s*[\"']?({_EXT})"
    rf"|@import\s+(?:url\()?\s*[\"']?({_EXT})", re.I)
_DATA_URI = re.compile(r"data:([\w.+-]+/[\w.+-]+)((?:;[\w.+-]+=?[\w.+-]*)*),([^\"')\s]*)")
_SINGLE_FILE_DATA = re.compile(r"\bd\('([^']+)','([A-Za-z0-9+/=]*)'\)")


def strip_analytics(html: str) -> tuple[str, int]:
    """Remove ``<script>`` blocks that load or configure known analytics."""
    removed = 0

    def drop(m: re.Match[str]) -> str:
        nonlocal removed
        block = m.group(0)
        if _ANALYTICS_RE.search(block) or re.search(r"\bgtag\s*\(|\bdataLayer\b", block):
            removed += 1
            return "<!-- analytics removed by harness.report.html -->"
        return block

    return _SCRIPT_BLOCK.sub(drop, html), removed


def _decoded_parts(html: str) -> Iterator[tuple[str, str]]:
    """(kind, text) for the page itself (data: URIs cut out) and each inlined script, style,
    svg or html data: URI, and the single-file report's embedded data other than attachments
    (scanned as markup)."""
    yield "html", _DATA_URI.sub("data:", html)
    for m in _DATA_URI.finditer(html):
        mime, params, payload = m.group(1).lower(), m.group(2), m.group(3)
        if not any(k in mime for k in ("javascript", "css", "html", "svg", "xml")):
            continue
        try:
            text = (base64.b64decode(payload).decode("utf-8", "replace") if "base64" in params
                    else urllib.parse.unquote(payload))
        except (binascii.Error, ValueError):
            yield f"data:{mime}", "<undecodable>"
            continue
        yield f"data:{mime}", text
    for m in _SINGLE_FILE_DATA.finditer(html):
        if m.group(1).startswith("data/attachments/"):
            continue  # test output (logs, histories): shown as text, never fetched from
        try:
            text = base64.b64decode(m.group(2)).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            continue
        # JSON-escaped markup (descriptions, links) scanned as markup
        yield f"embedded {m.group(1)}", text.replace('\\"', '"').replace("\\/", "/")


def scan_text(kind: str, text: str) -> list[str]:
    findings = []
    for m in _ANALYTICS_RE.finditer(text):
        findings.append(f"{kind}: analytics host {m.group(0)!r}")
    patterns = [_HTML_FETCHING, _META_REFRESH]
    if not kind.startswith("embedded"):
        patterns.append(_JS_FETCHING)
    for pat in patterns:
        for m in pat.finditer(text):
            url = next(g for g in m.groups() if g)
            findings.append(f"{kind}: {url[:120]}")
    return sorted(set(findings))


def find_external_requests(report_dir: Path) -> list[str]:
    """Scan every page, script and style of a generated report (attachments excluded)."""
    findings: list[str] = []
    for path in sorted(report_dir.rglob("*")):
        rel = path.relative_to(report_dir)
        if not path.is_file() or rel.parts[0] == "history" or rel.parts[:2] == (
                "data", "attachments"):
            continue
        if path.suffix.lower() not in (".html", ".htm", ".js", ".mjs", ".css", ".svg"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix.lower() in (".html", ".htm"):
            for kind, part in _decoded_parts(text):
                findings += [f"{rel} {f}" for f in scan_text(kind, part)]
        else:
            findings += [f"{rel} {f}" for f in scan_text(path.suffix[1:], text)]
    return findings


def make_offline(report_dir: Path, *, log: Log = _log) -> None:
    """Strip known analytics, then fail if any external request remains."""
    for page in report_dir.rglob("*.html"):
        text = page.read_text(encoding="utf-8", errors="surrogateescape")
        new, n = strip_analytics(text)
        if n:
            page.write_text(new, encoding="utf-8", errors="surrogateescape")
            log(f"stripped {n} analytics block(s) from {page.relative_to(report_dir)}")
    findings = find_external_requests(report_dir)
    if findings:
        raise ExternalRequestError(findings)


# ------------------------------------------------------------------ generating

def _looks_like_report(d: Path) -> bool:
    return not d.exists() or not any(d.iterdir()) or (d / "index.html").is_file()


def generate(results_dir: Path, out_dir: Path, *, name: str = "multiconnect chaos",
             keep_history: bool = True, allure: Path | None = None,
             log: Log = _log) -> Path:
    """Generate ``out_dir/index.html`` (single file) and ``out_dir/history/``."""
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    if not results_dir.is_dir() or not any(results_dir.glob("*-result.json")):
        raise ReportToolError(f"{results_dir} holds no Allure results (*-result.json); run "
                              "pytest with --alluredir first")
    if not _looks_like_report(out_dir):
        raise ReportToolError(f"{out_dir} is not empty and holds no index.html; refusing to "
                              "replace it with a report")
    binary = allure or ensure_allure(log=log)
    if not (results_dir / "categories.json").exists():
        report.write_categories(results_dir)
    flaky = report.mark_flaky_retries(results_dir)
    if flaky:
        log(f"{len(flaky)} result(s) passed on retry: flagged flaky")
    if keep_history and report.keep_trend_history(out_dir, results_dir):
        log(f"trend history carried over from {out_dir / 'history'}")
    env = _tool_env()
    with tempfile.TemporaryDirectory(prefix="mc-allure-") as tmp:
        multi = Path(tmp) / "multi"
        _run([str(binary), "generate", str(results_dir), "-o", str(multi), "--clean",
              "--name", name], env)
        _run([str(binary), "generate", str(results_dir), "-o", str(out_dir), "--clean",
              "--single-file", "--name", name], env)
        if (multi / "history").is_dir():
            shutil.copytree(multi / "history", out_dir / "history", dirs_exist_ok=True)
    make_offline(out_dir, log=log)
    index = out_dir / "index.html"
    log(f"report: {index} (open it from disk; no network needed)")
    return index


def _run(cmd: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600,
                          check=False)
    if proc.returncode != 0:
        raise ReportToolError(f"{' '.join(cmd[:2])} failed (exit {proc.returncode}):\n"
                              f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


# ------------------------------------------------------------------ browser check

def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def browser_check(index: Path, screenshot: Path, *, fragment: str = "",
                  width: int = 1400, height: int = 1000) -> list[str]:
    """Load the report in headless Chromium, save a screenshot, return the URLs of requests
    it made to anything but the report itself (file:, data:, blob:, about:, chrome:)."""
    chromium = find_chromium()
    if chromium is None:
        raise ReportToolError("no Chromium on PATH (Debian: apt-get install -y chromium)")
    url = index.resolve().as_uri() + (f"#{fragment}" if fragment else "")
    with tempfile.TemporaryDirectory(prefix="mc-chromium-") as tmp:
        netlog = Path(tmp) / "netlog.json"
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update",
               "--no-first-run", "--disable-sync", "--disable-default-apps",
               f"--user-data-dir={tmp}/profile", f"--log-net-log={netlog}",
               # no name resolves: nothing the page or the browser asks for leaves the machine
               "--host-resolver-rules=MAP * ~NOTFOUND",
               "--net-log-capture-mode=Default", "--virtual-time-budget=10000",
               f"--screenshot={screenshot}", f"--window-size={width},{height}", url]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)
        if proc.returncode != 0 or not screenshot.is_file():
            raise ReportToolError(f"chromium failed (exit {proc.returncode}): "
                                  f"{proc.stderr[-1500:]}")
        return external_urls_in_netlog(netlog)


_LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:", "chrome:", "chrome-", "devtools:")


def _load_netlog(netlog: Path) -> dict:
    text = netlog.read_text(encoding="utf-8", errors="replace").strip()
    for candidate in (text, text.rstrip(",") + "]}", text.rstrip(",") + "}"):
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    return {}


def external_urls_in_netlog(netlog: Path) -> list[str]:
    """URLs that the page asked for, other than local schemes, from a Chromium net log.

    Page requests carry the page's (opaque, ``null``) initiator and a ``file://`` network
    isolation key; the browser's own background requests ("not an origin") are ignored (the
    host resolver rules keep them on the machine anyway)."""
    try:
        log = _load_netlog(netlog)
    except OSError:
        return []
    types = {v: k for k, v in log.get("constants", {}).get("logEventTypes", {}).items()}
    urls = set()
    for ev in log.get("events", []):
        if types.get(ev.get("type")) != "URL_REQUEST_START_JOB":
            continue
        p = ev.get("params") or {}
        url = str(p.get("url", ""))
        if not url or url.startswith(_LOCAL_SCHEMES):
            continue
        if p.get("initiator") != "not an origin" or "file://" in str(
                p.get("network_isolation_key", "")):
            urls.add(url)
    return sorted(urls)


# ------------------------------------------------------------------ command line

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.report.html",
                                 description="Generate the Allure HTML report offline.")
    ap.add_argument("results_dir", nargs="?", type=Path, default=DEFAULT_RESULTS)
    ap.add_argument("-o", "--out", type=Path, default=DEFAULT_OUT, dest="out_dir")
    ap.add_argument("--name", default="multiconnect chaos", help="report title")
    ap.add_argument("--no-history", action="store_true",
                    help="do not carry trend history over from the previous report in OUT")
    ap.add_argument("--screenshot", type=Path,
                    help="also open the report in headless Chromium, save a PNG here and "
                         "fail if the page contacted any other host")
    ap.add_argument("--fragment", default="", help="URL fragment for --screenshot, e.g. "
                    "categories or a test result id")
    ap.add_argument("--install-only", action="store_true",
                    help="only check Java and install Allure (once) into the cache; "
                         "scripts/setup.sh runs this")
    args = ap.parse_args(argv)
    if args.install_only:
        try:
            binary = ensure_allure()
        except ReportToolError as exc:
            _log(str(exc))
            return 2
        _log(f"Allure {ALLURE_VERSION} ready: {binary}")
        return 0
    try:
        index = generate(args.results_dir, args.out_dir, name=args.name,
                         keep_history=not args.no_history)
        if args.screenshot:
            external = browser_check(index, args.screenshot, fragment=args.fragment)
            if external:
                raise ExternalRequestError([f"browser requested {u}" for u in external])
            _log(f"screenshot: {args.screenshot} (no external request in the network log)")
    except ExternalRequestError as exc:
        _log(str(exc))
        return 3
    except ReportToolError as exc:
        _log(str(exc))
        return 2
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "ALLURE_VERSION", "ExternalRequestError", "ReportToolError", "browser_check",
    "cache_dir", "ensure_allure", "ensure_java", "find_external_requests", "generate",
    "java_major", "main", "parse_java_major",
    "make_offline", "scan_text", "strip_analytics",
]
