"""What every master and coreapp claims of itself (process ``claims``, one per node).

The node's own ``GET /internal/status``, directly (not through the webapp or a proxy), every
``interval`` s → ``claim`` ``ok {"node","kind","group","epoch","valid_for","sent"}`` when the
node says it holds the master lease or a confirmed shard ownership (:func:`claim_of`); answers
that claim nothing and failed requests are not recorded (``exclusive_claims`` judges them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests

from harness.history import History
from harness.run.observers.poller import Poller


def claim_of(node: str, status: Any, sent: float) -> dict[str, Any] | None:
    """What one status answer claims: the master lease (group ``lease``) or a shard's
    ownership (group ``shard-<n>``), with how long the node believes it may act; None if
    nothing (a secondary, a coreapp without a valid ownership, an unreadable answer)."""
    if not isinstance(status, dict):
        return None
    if status.get("role") == "primary_master":
        kind, group, epoch = "master", "lease", status.get("lease_epoch")
        valid_for = status.get("lease_valid_for")
    elif status.get("role") == "coreapp" and status.get("shard") is not None:
        kind, group, epoch = "coreapp", f"shard-{status['shard']}", status.get("epoch")
        valid_for = status.get("ownership_valid_for")
    else:
        return None
    if not isinstance(valid_for, int | float) or valid_for <= 0:
        return None
    return {"node": node, "kind": kind, "group": group, "epoch": epoch,
            "valid_for": float(valid_for), "sent": round(sent, 6)}


class ClaimSampler(Poller):
    name = "claims"

    def __init__(self, node: str, url: Callable[[], str], history: History,
                 interval: float = 0.2, timeout: float = 0.25, **kw: Any) -> None:
        super().__init__(interval, **kw)
        self.node = node
        self.url = url
        self.history = history
        self.timeout = timeout
        self._session = requests.Session()

    def poll(self) -> None:
        sent = self.history.now()
        try:
            status = self._session.get(self.url(), timeout=self.timeout).json()
        except (requests.RequestException, ValueError):
            self.errors += 1
            return
        claim = claim_of(self.node, status, sent)
        if claim is not None:
            self.history.append("claims", "ok", "claim", claim)
