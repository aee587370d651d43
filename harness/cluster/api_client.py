"""A client for the cluster's public REST API (the same calls a real operator makes).

Timeouts are short and explicit so an outage shows up as failures, not as one hung request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests


class ApiError(RuntimeError):
    def __init__(self, status: int, body: Any, what: str) -> None:
        super().__init__(f"{what}: HTTP {status}: {body}")
        self.status = status
        self.body = body


@dataclass
class ApiClient:
    base_url: str
    username: str = "admin"
    password: str = "secret"
    timeout: float = 2.0
    token: str | None = None

    def __post_init__(self) -> None:
        self.http = requests.Session()
        self.base_url = self.base_url.rstrip("/")

    # -- auth ------------------------------------------------------------------------
    def login(self, new_password: str | None = None) -> str:
        body = {"new_password": new_password} if new_password else None
        r = self.http.post(f"{self.base_url}/v1/users/login", json=body,
                           auth=(self.username, self.password), timeout=self.timeout)
        if r.status_code != 200:
            raise ApiError(r.status_code, _body(r), "login")
        self.token = r.json()["users"][0]["token"]
        if new_password:
            self.password = new_password
        return self.token

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        h.update(extra or {})
        return h

    def request(self, method: str, path: str, *, timeout: float | None = None,
                **kw: Any) -> requests.Response:
        headers = self._headers(kw.pop("headers", None))
        return self.http.request(method, f"{self.base_url}{path}", headers=headers,
                                 timeout=timeout or self.timeout, **kw)

    # -- calls -----------------------------------------------------------------------
    def send_text(self, to: str, body: str, timeout: float | None = None) -> requests.Response:
        return self.request("POST", "/v1/messages", timeout=timeout, json={
            "recipient_type": "individual", "to": to, "type": "text", "text": {"body": body}})

    def health(self, timeout: float | None = None) -> dict[str, Any]:
        r = self.request("GET", "/v1/health", timeout=timeout)
        if r.status_code != 200:
            raise ApiError(r.status_code, _body(r), "health")
        return r.json()

    def upload_media(self, data: bytes, content_type: str = "application/octet-stream",
                     timeout: float | None = None) -> requests.Response:
        return self.request("POST", "/v1/media", data=data, timeout=timeout,
                            headers={"Content-Type": content_type})

    def get_media(self, media_id: str, timeout: float | None = None) -> requests.Response:
        return self.request("GET", f"/v1/media/{media_id}", timeout=timeout)

    def settings(self) -> dict[str, Any]:
        r = self.request("GET", "/v1/settings/application")
        if r.status_code != 200:
            raise ApiError(r.status_code, _body(r), "settings")
        return r.json()["settings"]["application"]

    def patch_settings(self, changes: dict[str, Any]) -> requests.Response:
        return self.request("PATCH", "/v1/settings/application", json=changes)


def _body(r: requests.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return r.text[:500]


# -- the /health answer, parsed once ----------------------------------------------------------
#
# The webapp answers ``GET /v1/health`` with ``{"health": {"<hostname>:<container-id>": entry}}``,
# an entry being ``{"role", "gateway_status", ...}`` or ``{"errors": [{"details", ...}]}`` for a
# node that did not answer. The harness keeps ``{name: {"role", "gateway_status"} | {"error"}}``
# (:func:`roles_from_health`) and records it as the value ``{"nodes": ...}`` of ``health``
# events (:mod:`harness.run.observers`); :func:`health_nodes` reads it back. Node names never hold a
# colon, so a key's name is what precedes its first one.


def node_name(key: str) -> str:
    """A node's name from a health key: ``"coreapp-1:abc123"`` (``<hostname>:<container-id>``)
    and ``"coreapp-1"`` both give ``"coreapp-1"``."""
    return str(key).split(":", 1)[0]


def roles_from_health(health: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"health": {"<name>:<cid>": {...}}}`` → ``{name: {"role", "gateway_status"}}``, or
    ``{name: {"error": details}}`` for a node the webapp could not reach."""
    out: dict[str, dict[str, Any]] = {}
    for key, entry in (health.get("health") or {}).items():
        name = node_name(key)
        if "errors" in entry:
            out[name] = {"error": entry["errors"][0].get("details", "unreachable")}
        else:
            out[name] = {"role": entry.get("role"), "gateway_status": entry.get("gateway_status")}
    return out


def health_nodes(value: Mapping[str, Any]) -> dict[str, Any] | None:
    """The node entries of a recorded ``health`` event's value, keyed by node name (keys of
    the ``<hostname>:<container-id>`` form are accepted too); ``None`` if the value holds no
    node map (a failed poll)."""
    nodes = value.get("nodes")
    if not isinstance(nodes, Mapping):
        return None
    return {node_name(k): entry for k, entry in nodes.items()}


class FailoverClient:
    """A client of several webapps that retries a request on the next webapp when the
    connection to the current one fails (refused, reset, closed without an answer) or no
    answer comes within the timeout, and stays on the webapp that answered.

    A timeout counts because a killed container does not refuse: once its network namespace
    is gone, packets to its address go unanswered, and a proxy in front of it accepts the
    client's connection and then waits for a dial that never completes.

    This is the client the documentation's "second webapp" promise is about. It gives
    at-least-once delivery: a request that reached a webapp which then died unanswered may be
    sent twice. ``attempts`` tells how many webapps the last call tried.
    """

    def __init__(self, clients: list[ApiClient]) -> None:
        if not clients:
            raise ValueError("FailoverClient needs at least one client")
        self.clients = clients
        self.current = 0
        self.attempts = 0

    def send_text(self, to: str, body: str, timeout: float | None = None) -> requests.Response:
        last: Exception | None = None
        self.attempts = 0
        for i in range(len(self.clients)):
            client = self.clients[(self.current + i) % len(self.clients)]
            self.attempts += 1
            try:
                r = client.send_text(to, body, timeout=timeout)
            except (requests.ConnectionError, requests.Timeout) as e:
                last = e
                continue
            self.current = (self.current + i) % len(self.clients)
            return r
        assert last is not None
        raise last

    def __getattr__(self, name: str):
        return getattr(self.clients[self.current], name)
