"""A small client for one toxiproxy server's HTTP API.

toxiproxy-python keeps the API host on a class (one server per process), which does not fit
several clusters per process (the ``cluster_factory`` fixture), so the harness speaks the
documented HTTP API directly (``/proxies``, ``/proxies/{name}``, ``/proxies/{name}/toxics``)
and does not ship that package (docs/architecture.md).
"""

from __future__ import annotations

from typing import Any

import requests


class ToxiproxyError(RuntimeError):
    pass


class Toxiproxy:
    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()

    def _req(self, method: str, path: str, json: Any = None, ok=(200, 201, 204)) -> Any:
        try:
            r = self.http.request(method, self.url + path, json=json, timeout=self.timeout)
        except requests.RequestException as e:
            raise ToxiproxyError(f"toxiproxy {method} {path}: {e}") from e
        if r.status_code not in ok:
            raise ToxiproxyError(f"toxiproxy {method} {path}: HTTP {r.status_code} {r.text}")
        return r.json() if r.content else None

    def version(self) -> str:
        r = self.http.get(self.url + "/version", timeout=self.timeout)
        r.raise_for_status()
        return r.text.strip()

    def populate(self, proxies: list[dict[str, Any]]) -> None:
        self._req("POST", "/populate", proxies)

    def proxies(self) -> dict[str, Any]:
        return self._req("GET", "/proxies")

    def set_enabled(self, name: str, enabled: bool) -> None:
        self._req("POST", f"/proxies/{name}", {"enabled": enabled})

    def add_toxic(self, proxy: str, type_: str, *, name: str, stream: str = "downstream",
                  toxicity: float = 1.0, attributes: dict[str, Any] | None = None) -> None:
        self._req("POST", f"/proxies/{proxy}/toxics",
                  {"name": name, "type": type_, "stream": stream, "toxicity": toxicity,
                   "attributes": attributes or {}})

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._req("DELETE", f"/proxies/{proxy}/toxics/{name}", ok=(200, 204, 404))

    def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        self._req("POST", "/reset")
