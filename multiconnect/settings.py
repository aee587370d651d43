"""Application settings (``/v1/settings/application``) and their validation.

No ranges are documented by the real client; ours: positive integers (seconds),
heartbeat_interval ≤ 600, unhealthy_interval ≤ 3600 and unhealthy ≥ 2 × heartbeat (otherwise
a single late heartbeat would be a failure).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any
from urllib.parse import urlparse

HEARTBEAT_MAX = 600
UNHEALTHY_MAX = 3600


def ownership_ttl(heartbeat_interval: float) -> float:
    """How long a coreapp may act on one ownership confirmation (F = 2·h)."""
    return 2.0 * heartbeat_interval


class SettingsError(ValueError):
    """An invalid settings value; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Settings:
    heartbeat_interval: int = 5
    unhealthy_interval: int = 30
    webhooks_url: str = ""

    @property
    def ownership_ttl(self) -> float:
        return ownership_ttl(self.heartbeat_interval)

    @property
    def confirm_period(self) -> float:
        return self.heartbeat_interval / 2.0

    def to_api(self) -> dict[str, Any]:
        return {
            "heartbeat_interval": self.heartbeat_interval,
            "unhealthy_interval": self.unhealthy_interval,
            "webhooks": {"url": self.webhooks_url},
        }

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Settings:
        return validate(cls(**{k: d[k] for k in ("heartbeat_interval", "unhealthy_interval",
                                                 "webhooks_url") if k in d}))


def _positive_int(field: str, value: Any, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SettingsError(field, f"must be a positive integer (seconds), got {value!r}")
    if not 1 <= value <= maximum:
        raise SettingsError(field, f"must be between 1 and {maximum}, got {value}")
    return value


def validate(s: Settings) -> Settings:
    _positive_int("heartbeat_interval", s.heartbeat_interval, HEARTBEAT_MAX)
    _positive_int("unhealthy_interval", s.unhealthy_interval, UNHEALTHY_MAX)
    if s.unhealthy_interval < 2 * s.heartbeat_interval:
        raise SettingsError(
            "unhealthy_interval",
            f"must be at least 2 × heartbeat_interval ({2 * s.heartbeat_interval}), "
            f"got {s.unhealthy_interval}",
        )
    if not isinstance(s.webhooks_url, str):
        raise SettingsError("webhooks.url", f"must be a string, got {s.webhooks_url!r}")
    if s.webhooks_url:
        u = urlparse(s.webhooks_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise SettingsError("webhooks.url", f"must be an http(s) URL, got {s.webhooks_url!r}")
    return s


def apply_patch(current: Settings, patch: Any) -> Settings:
    """Apply a PATCH body; unknown keys and bad values raise SettingsError."""
    if not isinstance(patch, dict) or not patch:
        raise SettingsError("body", "must be a non-empty JSON object")
    changes: dict[str, Any] = {}
    for key, value in patch.items():
        if key in ("heartbeat_interval", "unhealthy_interval"):
            changes[key] = value
        elif key == "webhooks":
            if not isinstance(value, dict) or set(value) - {"url"}:
                raise SettingsError("webhooks", 'must be an object like {"url": "https://…"}')
            url = value.get("url", "")
            if not isinstance(url, str):
                raise SettingsError("webhooks.url", "must be a string")
            changes["webhooks_url"] = url
        else:
            raise SettingsError(
                key, "unknown setting; allowed: heartbeat_interval, unhealthy_interval, webhooks"
            )
    return validate(replace(current, **changes))
