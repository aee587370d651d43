"""The webapp's message rule, written once (the containers' ``Webapp``, the simulator's).

Model. A message is routed by the cached shard map (:func:`multiconnect.sharding.shard_of`);
with no owner in the cache the map is read once more (at most ``refresh_deadline`` s). It is
forwarded to the owner's ``POST /internal/messages`` and retried once, on a fresh map naming
another owner or shard, only when the answer proves it was **not** sent: the owner was never
reached, answered 409 (not primary) or 503 code 1011 (not ready). Any other answer is final:
``ok``, ``unknown`` (502/504: it may have been sent; a retry could duplicate) or
``rejected`` (400). The driver supplies the waits (see :mod:`multiconnect.roles`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import api_errors as E
from .driver import Gen


@dataclass(frozen=True)
class Attempt:
    """Outcome of one forward to a coreapp (and the webapp's answer if it is final)."""

    kind: str                        # ok | not_sent | unknown | rejected
    status: int = 201
    code: int = 0
    details: str = ""


def answered(owner: str, shard: int, status: int, body: Any) -> Attempt:
    """What the owner's HTTP answer says happened to the message."""
    code = E.envelope_code(body)
    theirs = body["errors"][0].get("details", "") if code is not None else ""
    if status == 200:
        return Attempt("ok")
    if status == 409:
        return Attempt("not_sent", 503, E.NOT_PRIMARY_COREAPP,
                       f"{owner} is not primary for shard {shard}: {theirs}")
    if status == 503 and code == E.SERVICE_NOT_READY:
        return Attempt("not_sent", 503, E.SERVICE_NOT_READY, f"{owner}: {theirs}")
    if status == 400:
        return Attempt("rejected", 400, code or E.INVALID_PARAMETER, f"{owner}: {theirs}")
    return Attempt("unknown", 504 if status == 504 else 502, E.INTERNAL_ERROR,
                   f"{owner} answered HTTP {status} ({theirs or 'no details'}); "
                   "the message may have been sent")


def unreachable(owner: str, why: object) -> Attempt:
    """The request never reached the owner (no connection): certainly not sent."""
    return Attempt("not_sent", 503, E.SERVICE_NOT_READY, f"{owner} unreachable: {why}")


def no_answer(owner: str, timeout: float) -> Attempt:
    return Attempt("unknown", 504, E.INTERNAL_ERROR,
                   f"{owner} did not answer within {timeout:g} s; the message may have "
                   "been sent")


def broken(owner: str, why: object) -> Attempt:
    """The connection ended after the request was sent."""
    return Attempt("unknown", 502, E.INTERNAL_ERROR,
                   f"connection to {owner} failed after the request was sent ({why}); the "
                   "message may have been sent")


class Sender:
    """The rule; the driver provides the methods that raise ``NotImplementedError``."""

    refresh_deadline = 1.0

    def owner_of(self, to: str) -> tuple[int, str | None]:
        """(shard, owner or None) by the cached map."""
        raise NotImplementedError

    def map_known(self) -> bool:
        raise NotImplementedError

    def refresh(self, deadline: float) -> Gen:
        """Re-read the shard map, waiting at most ``deadline`` s."""
        raise NotImplementedError

    def forward(self, owner: str, payload: dict[str, Any]) -> Gen:
        """POST ``payload`` to the owner: an :class:`Attempt` (:func:`answered`,
        :func:`unreachable`, :func:`no_answer`, :func:`broken`)."""
        raise NotImplementedError

    def on_retry(self, msg_id: str, owner: str, attempt: Attempt, new_owner: str) -> None:
        """About to retry ``msg_id`` on ``new_owner``."""

    def route(self, msg_id: str, to: str, text: str) -> Gen:
        """Send one message: ``(final attempt, shard, owner or None)``."""
        shard, owner = self.owner_of(to)
        if owner is None:  # maybe a promotion just happened: look once more
            yield from self.refresh(self.refresh_deadline)
            shard, owner = self.owner_of(to)
        if owner is None:
            why = ("shard map unknown" if not self.map_known()
                   else f"no primary coreapp for shard {shard}")
            return Attempt("not_sent", 503, E.SERVICE_NOT_READY, why), shard, None
        attempt = yield from self.forward(owner, {"id": msg_id, "to": to, "body": text,
                                                  "shard": shard})
        if attempt.kind == "not_sent":
            yield from self.refresh(self.refresh_deadline)
            new_shard, new_owner = self.owner_of(to)
            if new_owner is not None and (new_owner, new_shard) != (owner, shard):
                self.on_retry(msg_id, owner, attempt, new_owner)
                shard, owner = new_shard, new_owner
                attempt = yield from self.forward(owner, {"id": msg_id, "to": to,
                                                          "body": text, "shard": shard})
        return attempt, shard, owner
