"""Recipient → shard routing, as the real webapp does it.

The real webapp hashes the recipient with crc32 onto 1024 "server shards"; the shard map
assigns contiguous server-shard ranges ``[lower_bound, upper_bound]`` to each of ``shards``
shards.
"""

from __future__ import annotations

import zlib

SERVER_SHARDS = 1024
ALLOWED_SHARD_COUNTS = (1, 2, 4, 8, 16, 32)


def server_shard(recipient: str) -> int:
    return zlib.crc32(recipient.encode("utf-8")) % SERVER_SHARDS


def shard_bounds(shard: int, shards: int) -> tuple[int, int]:
    """Inclusive server-shard range of ``shard`` when there are ``shards`` shards."""
    _check_count(shards)
    if not 0 <= shard < shards:
        raise ValueError(f"shard must be in 0..{shards - 1}, got {shard}")
    width = SERVER_SHARDS // shards
    return shard * width, (shard + 1) * width - 1


def _check_count(shards: int) -> None:
    if shards not in ALLOWED_SHARD_COUNTS:
        raise ValueError(f"shards must be one of {ALLOWED_SHARD_COUNTS}, got {shards}")


def shard_of(recipient: str, shards: int) -> int:
    _check_count(shards)
    return server_shard(recipient) * shards // SERVER_SHARDS


def recipients_for_shard(shard: int, shards: int, count: int, prefix: str = "1555") -> list[str]:
    """Deterministic recipients that land on ``shard`` (workloads spread over all shards)."""
    _check_count(shards)
    if not 0 <= shard < shards:
        raise ValueError(f"shard must be in 0..{shards - 1}, got {shard}")
    out: list[str] = []
    i = 0
    while len(out) < count:
        candidate = f"{prefix}{i:07d}"
        if shard_of(candidate, shards) == shard:
            out.append(candidate)
        i += 1
    return out
