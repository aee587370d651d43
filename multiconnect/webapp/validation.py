"""Request validation: the shape of each request body and of the login credentials.

Every validator returns the values the handler needs or raises :class:`ApiError` with the
envelope of :mod:`multiconnect.api_errors`, naming the bad field.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from aiohttp import web

from .. import api_errors as E
from ..api_errors import ApiError
from ..sharding import ALLOWED_SHARD_COUNTS

MAX_BODY_CHARS = 4096
_DIGITS = re.compile(r"^\d+$")


def validate_message(body: Any) -> tuple[str, str]:
    """Validate a send request; returns (to, text). Raises ApiError naming the field."""
    if not isinstance(body, dict):
        raise ApiError(400, E.INVALID_REQUEST, "body must be a JSON object")
    rtype = body.get("recipient_type", "individual")
    if rtype != "individual":
        raise ApiError(400, E.INVALID_RECIPIENT_TYPE,
                       f"recipient_type: must be \"individual\", got {rtype!r}")
    if "to" not in body:
        raise E.missing("to")
    to = body["to"]
    if not isinstance(to, str) or not _DIGITS.match(to) or not 5 <= len(to) <= 20:
        raise E.invalid("to", f"must be a WhatsApp id of 5-20 digits, got {to!r}")
    mtype = body.get("type", "text")
    if mtype != "text":
        raise E.invalid("type", f"only \"text\" is supported, got {mtype!r}")
    if "text" not in body:
        raise E.missing("text")
    text = body["text"]
    if not isinstance(text, dict):
        raise E.invalid("text", 'must be an object like {"body": "…"}')
    if "body" not in text:
        raise E.missing("text.body")
    msg = text["body"]
    if not isinstance(msg, str) or not msg:
        raise E.invalid("text.body", "must be a non-empty string")
    if len(msg) > MAX_BODY_CHARS:
        raise ApiError(400, E.MESSAGE_TOO_LONG,
                       f"text.body: at most {MAX_BODY_CHARS} characters, got {len(msg)}")
    return to, msg


def validate_shards_request(body: Any) -> int:
    if not isinstance(body, dict):
        raise ApiError(400, E.INVALID_REQUEST, "body must be a JSON object")
    for name in ("cc", "phone_number", "shards"):
        if name not in body:
            raise E.missing(name)
    cc, phone, shards = body["cc"], body["phone_number"], body["shards"]
    if not isinstance(cc, str) or not _DIGITS.match(cc) or not 1 <= len(cc) <= 3:
        raise E.invalid("cc", f"must be a country code of 1-3 digits, got {cc!r}")
    if not isinstance(phone, str) or not _DIGITS.match(phone) or not 4 <= len(phone) <= 14:
        raise E.invalid("phone_number", f"must be 4-14 digits, got {phone!r}")
    if isinstance(shards, bool) or not isinstance(shards, int) \
            or shards not in ALLOWED_SHARD_COUNTS:
        raise E.invalid("shards", f"must be one of {', '.join(map(str, ALLOWED_SHARD_COUNTS))},"
                        f" got {shards!r}")
    pin = body.get("pin")
    if pin is not None and (not isinstance(pin, str) or not re.match(r"^\d{6}$", pin)):
        raise E.invalid("pin", "must be a string of 6 digits")
    return shards


async def read_json(request: web.Request, optional: bool = False) -> Any:
    raw = await request.read()
    if not raw.strip():
        if optional:
            return {}
        raise ApiError(400, E.INVALID_REQUEST, "request body is empty; a JSON object is required")
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError) as e:
        raise ApiError(400, E.INVALID_REQUEST, f"body is not valid JSON: {e}") from None


def parse_basic(header: str | None) -> tuple[str, str]:
    if not header or not header.lower().startswith("basic "):
        raise ApiError(401, E.ACCESS_DENIED, "login needs HTTP Basic credentials",
                       {"WWW-Authenticate": 'Basic realm="whatsapp"'})
    try:
        user, sep, password = base64.b64decode(header[6:].strip(), validate=True) \
            .decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        sep = ""
    if not sep or not user:
        raise ApiError(401, E.ACCESS_DENIED, "malformed Basic credentials",
                       {"WWW-Authenticate": 'Basic realm="whatsapp"'})
    return user, password
