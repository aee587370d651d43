"""Webapp: the public REST API. Routes each request to the right coreapp by the shard map.

One concept per module:

- :mod:`.handlers`: :class:`Webapp`, the routes and handlers, its caches and forwarding rules
  (the model is in that module's docstring); :class:`WebappOptions`, :class:`WebappDeps`.
- :mod:`.store`: :class:`Store`, what the webapp needs from the database, and
  :class:`MysqlStore`, its bounded-time implementation on pymysql.
- :mod:`.validation`: request body and credential validators.
- :mod:`.metrics`: :class:`Metrics`, the counters behind ``GET /metrics``.
- :mod:`.main`: :func:`run`, the process (``python -m multiconnect webapp``).
"""

from .handlers import (
    MIN_PASSWORD,
    PUBLIC_ROUTES,
    TOKEN_TTL,
    Webapp,
    WebappDeps,
    WebappOptions,
    new_message_id,
)
from .main import run
from .metrics import Metrics
from .store import (
    MysqlStore,
    Store,
    q_get_user,
    q_issue_token,
    q_set_password,
    q_token,
    q_topology,
    q_touch,
)
from .validation import (
    MAX_BODY_CHARS,
    parse_basic,
    read_json,
    validate_message,
    validate_shards_request,
)

__all__ = [
    "MAX_BODY_CHARS",
    "MIN_PASSWORD",
    "PUBLIC_ROUTES",
    "TOKEN_TTL",
    "Metrics",
    "MysqlStore",
    "Store",
    "Webapp",
    "WebappDeps",
    "WebappOptions",
    "new_message_id",
    "parse_basic",
    "q_get_user",
    "q_issue_token",
    "q_set_password",
    "q_token",
    "q_topology",
    "q_touch",
    "read_json",
    "run",
    "validate_message",
    "validate_shards_request",
]
