"""Error envelope of the public API: ``{"errors":[{"code":N,"title":"…","details":"…"}]}``.

Codes follow the real client's published error codes where one fits. HTTP status and code
together tell a client what happened to a message it tried to send: 503 means it was
certainly **not** sent; 502 and 504 mean the outcome is unknown (the webapp never retries
those, a retry could duplicate).

=====  =====  ==============================  ==============================================
HTTP   code   title                           when
=====  =====  ==============================  ==============================================
400    1001   Message too long                ``text.body`` over 4096 characters
400    1002   Invalid recipient type          ``recipient_type`` other than ``individual``
401    1005   Access denied                   bad Basic credentials; missing, invalid or
                                              expired bearer token
404    1006   Resource not found              unknown route; unknown media id
400    1008   Required parameter is missing   a required field is absent (details name it)
400    1009   Parameter value is not valid    a field has a bad value (details name it)
503    1011   Service not ready               no coreapp owns the shard; the owner is
                                              unreachable or not ready; media store down
502    1014   Internal error                  coreapp / master failed after receiving the
                                              request (outcome unknown)
504    1014   Internal error                  coreapp / master did not answer in time
                                              (outcome unknown)
500    1014   Internal error                  unexpected failure inside the webapp
503    1017   Not primary master              no live, reachable primary master for
                                              settings / shard changes
503    1018   Not primary coreapp             the owner says it is not primary for the shard
                                              and the map names no other owner
503    1023   Database error                  database unreachable and nothing cached answers
400    1024   Password change required        first login without ``new_password``
400    1025   Invalid request                 body not valid JSON / not a JSON object
405    1025   Invalid request                 method not allowed on that route
413    1025   Invalid request                 body larger than the API accepts
=====  =====  ==============================  ==============================================

The nodes' internal APIs (master, coreapp: :mod:`multiconnect.roles`) answer in the same
envelope (:func:`multiconnect.roles.driver.envelope`), some with titles of their own (e.g.
``Not Primary Master``); :func:`multiconnect.shell.read_json` answers a body that is not
JSON with 400, 1000 (``GENERIC_ERROR``) ``Generic error``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # aiohttp only where a response is built: the codes are shared with the
    from aiohttp import web  # simulator (multiconnect.roles), which runs without aiohttp

GENERIC_ERROR = 1000
MESSAGE_TOO_LONG = 1001
INVALID_RECIPIENT_TYPE = 1002
ACCESS_DENIED = 1005
NOT_FOUND = 1006
MISSING_PARAMETER = 1008
INVALID_PARAMETER = 1009
SERVICE_NOT_READY = 1011
INTERNAL_ERROR = 1014
NOT_PRIMARY_MASTER = 1017
NOT_PRIMARY_COREAPP = 1018
DATABASE_ERROR = 1023
PASSWORD_CHANGE_REQUIRED = 1024
INVALID_REQUEST = 1025

TITLES: dict[int, str] = {
    GENERIC_ERROR: "Generic error",
    MESSAGE_TOO_LONG: "Message too long",
    INVALID_RECIPIENT_TYPE: "Invalid recipient type",
    ACCESS_DENIED: "Access denied",
    NOT_FOUND: "Resource not found",
    MISSING_PARAMETER: "Required parameter is missing",
    INVALID_PARAMETER: "Parameter value is not valid",
    SERVICE_NOT_READY: "Service not ready",
    INTERNAL_ERROR: "Internal error",
    NOT_PRIMARY_MASTER: "Not primary master",
    NOT_PRIMARY_COREAPP: "Not primary coreapp",
    DATABASE_ERROR: "Database error",
    PASSWORD_CHANGE_REQUIRED: "Password change required",
    INVALID_REQUEST: "Invalid request",
}


class ApiError(Exception):
    """Raised by a handler; the error middleware turns it into the envelope."""

    def __init__(self, status: int, code: int, details: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code} {details}")
        self.status = status
        self.code = code
        self.details = details
        self.headers = headers or {}

    def response(self) -> web.Response:
        return error_response(self.status, self.code, self.details, self.headers)


def error_entry(code: int, details: str, title: str | None = None) -> dict[str, Any]:
    """One ``errors`` item (also used inside /v1/health entries). ``title`` defaults to the
    code's in ``TITLES`` (``Generic error`` for a code not there)."""
    if title is None:
        title = TITLES.get(code, TITLES[GENERIC_ERROR])
    return {"code": code, "title": title, "details": details}


def error_body(code: int, details: str, title: str | None = None) -> dict[str, Any]:
    """The whole envelope: ``{"errors": [error_entry(code, details, title)]}``."""
    return {"errors": [error_entry(code, details, title)]}


def error_response(status: int, code: int, details: str,
                   headers: dict[str, str] | None = None) -> web.Response:
    from aiohttp import web

    return web.json_response(error_body(code, details), status=status, headers=headers)


def missing(field: str) -> ApiError:
    return ApiError(400, MISSING_PARAMETER, f"{field} is required")


def invalid(field: str, message: str) -> ApiError:
    return ApiError(400, INVALID_PARAMETER, f"{field}: {message}")


def is_envelope(body: Any) -> bool:
    """True if ``body`` already has the envelope shape (relayed from a master / coreapp)."""
    return (isinstance(body, dict) and isinstance(body.get("errors"), list) and bool(body["errors"])
            and all(isinstance(e, dict) and "code" in e for e in body["errors"]))


def envelope_code(body: Any) -> int | None:
    """The first error code of an envelope, or None."""
    if not is_envelope(body):
        return None
    code = body["errors"][0].get("code")
    return code if isinstance(code, int) else None


def from_http_exception(exc: web.HTTPException) -> web.Response:
    """Envelope for aiohttp's own errors (unknown route, wrong method, body too large)."""
    status = exc.status
    if status == 404:
        return error_response(404, NOT_FOUND, "no such route")
    if status == 405:
        allowed = getattr(exc, "allowed_methods", None) or ()
        hdrs = {"Allow": ",".join(sorted(allowed))} if allowed else None
        return error_response(405, INVALID_REQUEST,
                              f"method {getattr(exc, 'method', '?')} not allowed; allowed: "
                              + (", ".join(sorted(allowed)) or "none"), hdrs)
    if status == 413:
        return error_response(413, INVALID_REQUEST, exc.text or "request body too large")
    code = INTERNAL_ERROR if status >= 500 else INVALID_REQUEST
    return error_response(status, code, exc.reason)
