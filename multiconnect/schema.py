"""The versioned database schema. Only the primary master creates or upgrades it.

Bootstrap: every master creates the ``master_lease`` table (idempotent) so that they can
compete; the winner then creates or upgrades everything else and records the version. Nodes
whose code expects another version wait and retry (they never write to a schema they do not
know). A database that is *newer* than a master's code is never downgraded: that master
refuses to act as primary and says so in its log.
"""

from __future__ import annotations

LEASE_DDL = [
    """CREATE TABLE IF NOT EXISTS master_lease (
        id TINYINT PRIMARY KEY,
        holder VARCHAR(64) NULL,
        epoch BIGINT NOT NULL DEFAULT 0,
        expires_at DATETIME(6) NOT NULL DEFAULT '1970-01-01 00:00:01'
    ) ENGINE=InnoDB""",
    "INSERT IGNORE INTO master_lease (id, holder, epoch) VALUES (1, NULL, 0)",
]

# version -> statements that bring the schema from version-1 to version
MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE IF NOT EXISTS schema_version (
            id TINYINT PRIMARY KEY, version INT NOT NULL) ENGINE=InnoDB""",
        """CREATE TABLE IF NOT EXISTS shard_map (
            shard INT PRIMARY KEY,
            lower_bound INT NOT NULL, upper_bound INT NOT NULL,
            hostname VARCHAR(64) NULL, ports VARCHAR(32) NOT NULL DEFAULT '6250-6253',
            epoch BIGINT NOT NULL DEFAULT 0,
            valid_until DATETIME(6) NULL, fence_until DATETIME(6) NULL,
            confirm_token VARCHAR(32) NULL,
            updated_at DATETIME(6) NOT NULL,
            KEY by_host (hostname)) ENGINE=InnoDB""",
        """CREATE TABLE IF NOT EXISTS nodes (
            name VARCHAR(64) PRIMARY KEY,
            role VARCHAR(16) NOT NULL,
            address VARCHAR(128) NOT NULL, heartbeat_address VARCHAR(128) NOT NULL,
            container_id VARCHAR(64) NOT NULL DEFAULT '',
            last_seen DATETIME(6) NOT NULL, started_at DATETIME(6) NOT NULL) ENGINE=InnoDB""",
        """CREATE TABLE IF NOT EXISTS heartbeat_views (
            master VARCHAR(64) NOT NULL, coreapp VARCHAR(64) NOT NULL,
            unhealthy BOOL NOT NULL, updated_at DATETIME(6) NOT NULL,
            PRIMARY KEY (master, coreapp)) ENGINE=InnoDB""",
        """CREATE TABLE IF NOT EXISTS settings (
            name VARCHAR(64) PRIMARY KEY, value TEXT NOT NULL) ENGINE=InnoDB""",
        """CREATE TABLE IF NOT EXISTS users (
            username VARCHAR(64) PRIMARY KEY, password_hash VARCHAR(255) NOT NULL,
            must_change BOOL NOT NULL) ENGINE=InnoDB""",
        """CREATE TABLE IF NOT EXISTS tokens (
            token VARCHAR(128) PRIMARY KEY, username VARCHAR(64) NOT NULL,
            expires_at DATETIME(6) NOT NULL) ENGINE=InnoDB""",
    ],
    # version 2: delivery bookkeeping (used by the upgrade procedure tests)
    2: [
        """CREATE TABLE IF NOT EXISTS message_stats (
            shard INT PRIMARY KEY, sent BIGINT NOT NULL DEFAULT 0) ENGINE=InnoDB""",
    ],
}

LATEST = 1  # the version this code writes; 2 exists for upgrade tests (WA_SCHEMA_VERSION=2)


def migrations_between(current: int, target: int) -> list[str]:
    if target < current:
        raise ValueError(f"refusing to downgrade the schema from {current} to {target}")
    out: list[str] = []
    for v in range(current + 1, target + 1):
        out.extend(MIGRATIONS[v])
    return out
