"""Remove secrets from anything that goes into a report.

Model: a ``Scrubber`` knows a set of secret strings (passwords, tokens) and replaces, in any
text, each of them and its common encodings with ``*****``:

- the literal, its URL encodings (``quote``/``quote_plus``) and its JSON-escaped form;
- any base64 token whose decoded text contains a secret (covers HTTP basic auth
  ``base64(user:password)`` for any user, and base64 of the bare secret at any alignment).

Independently of known secrets it blanks generic credential shapes: ``Bearer …`` and
``Basic …`` authorization values, ``password=…``/``WA_DB_PASSWORD=…``/``token: …`` style
key-value pairs, ``"password": "…"`` JSON members and ``scheme://user:password@host`` URLs.
``Scrubber.json`` walks dicts/lists and also blanks the values of keys that look sensitive.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "*****"
MIN_SECRET_LEN = 3  # shorter strings would blank ordinary words; they are ignored

_KEY_WORDS = r"(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|credentials?)"
SENSITIVE_KEY = re.compile(rf"(?i)^[\w.-]*{_KEY_WORDS}[\w.-]*$")

_QUOTED = r"""(?:"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*')"""
_GENERIC: tuple[tuple[re.Pattern[str], str], ...] = (
    # Authorization: Bearer <token>
    (re.compile(r"(?i)\b(bearer)(\s+)[A-Za-z0-9\-._~+/]{8,}=*"), rf"\1\2{MASK}"),
    # "password": "value" / 'token': 123 (JSON, Python reprs)
    (re.compile(rf"""(?i)(["'][\w.-]*{_KEY_WORDS}[\w.-]*["']\s*:\s*)"""
                rf"""(?:{_QUOTED}|(?![\[{{]|null\b|true\b|false\b)[^,}}\]\s]+)"""),
     rf'\1"{MASK}"'),
    # password=value, WA_DB_PASSWORD="value", token: value
    (re.compile(rf"(?i)\b([\w.-]*{_KEY_WORDS}[\w.-]*)(\s*[=:]\s*)"
                rf"(?:{_QUOTED}|(?!\*{{5}})[^\s&;,'\"]+)"),
     rf"\1\2{MASK}"),
    # scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]+:)[^\s@/]+@"), rf"\1{MASK}@"),
)
_BASIC = re.compile(r"(?i)\b(basic\s+)([A-Za-z0-9+/]{4,}={0,2})(?![A-Za-z0-9+/=])")

_B64_TOKEN = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{8,}={0,2}(?![A-Za-z0-9+/=])")


class Scrubber:
    """Replace known secrets (and encodings) and generic credential shapes with ``*****``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        raw = {s for s in (str(x) for x in secrets if x is not None) if len(s) >= MIN_SECRET_LEN}
        self.secrets: frozenset[str] = frozenset(raw)
        forms: set[str] = set()
        for s in raw:
            forms |= {s, quote(s, safe=""), quote_plus(s), json.dumps(s)[1:-1]}
            forms.add(base64.b64encode(s.encode()).decode().rstrip("="))
        ordered = sorted((f for f in forms if f), key=len, reverse=True)
        self._literal = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def text(self, s: str) -> str:
        """Scrub one string."""
        if not s:
            return s
        out = _B64_TOKEN.sub(self._b64_sub, s) if self.secrets else s
        if self._literal is not None:
            out = self._literal.sub(MASK, out)
        out = _BASIC.sub(_basic_sub, out)
        for pat, repl in _GENERIC:
            out = pat.sub(repl, out)
        return out

    def _b64_sub(self, m: re.Match[str]) -> str:
        tok = m.group(0)
        decoded = _b64decode(tok)
        if decoded is not None and any(sec in decoded for sec in self.secrets):
            return MASK
        return tok

    def json(self, obj: Any) -> Any:
        """Deep-scrub a JSON-like value; values under sensitive-looking keys are blanked."""
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            out = {}
            for k, v in obj.items():
                key = str(k)
                if SENSITIVE_KEY.match(key) and v not in (None, "") and not isinstance(
                        v, dict | list | tuple | bool):
                    out[k] = MASK
                else:
                    out[k] = self.json(v)
            return out
        if isinstance(obj, list | tuple):
            return [self.json(v) for v in obj]
        return obj

    def __call__(self, s: str) -> str:
        return self.text(s)


def _basic_sub(m: re.Match[str]) -> str:
    """``Basic <b64>`` is blanked when it decodes to printable ``user:password``."""
    decoded = _b64decode(m.group(2))
    if decoded is not None and ":" in decoded and decoded.isprintable():
        return m.group(1) + MASK
    return m.group(0)


def _b64decode(tok: str) -> str | None:
    t = tok.rstrip("=")
    t += "=" * (-len(t) % 4)
    try:
        data = base64.b64decode(t, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data.decode("utf-8", "replace")


DEFAULT = Scrubber(())
