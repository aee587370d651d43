"""Recipient → shard routing (multiconnect.sharding).

Model under test: ``server_shard = crc32(recipient) % 1024``; with ``shards`` shards, shard k
owns the contiguous server-shard range ``shard_bounds(k, shards)``, the ranges tile 0..1023,
and ``shard_of`` sends a recipient to the shard whose range holds its server shard.
"""

from __future__ import annotations

import zlib

import pytest

from multiconnect import sharding
from multiconnect.sharding import (
    ALLOWED_SHARD_COUNTS,
    SERVER_SHARDS,
    recipients_for_shard,
    server_shard,
    shard_bounds,
    shard_of,
)


@pytest.fixture(scope="module")
def one_recipient_per_server_shard() -> dict[int, str]:
    """A recipient for every one of the 1024 server shards (bounded search)."""
    found: dict[int, str] = {}
    for i in range(200_000):
        r = f"1555{i:07d}"
        found.setdefault(server_shard(r), r)
        if len(found) == SERVER_SHARDS:
            return found
    raise AssertionError(f"only {len(found)} server shards reached")


def test_allowed_counts_are_the_documented_ones():
    assert ALLOWED_SHARD_COUNTS == (1, 2, 4, 8, 16, 32)
    assert SERVER_SHARDS == 1024


def test_server_shard_is_crc32_mod_1024():
    for r in ("15550000001", "447700900123", "", "é-utf8"):
        assert server_shard(r) == zlib.crc32(r.encode("utf-8")) % 1024
    assert server_shard("15550000001") == server_shard("15550000001")


@pytest.mark.parametrize("shards", ALLOWED_SHARD_COUNTS)
def test_bounds_tile_all_server_shards_without_overlap(shards):
    covered: list[int] = []
    previous_upper = -1
    for k in range(shards):
        lo, hi = shard_bounds(k, shards)
        assert lo == previous_upper + 1, "contiguous, in shard order"
        assert hi - lo + 1 == SERVER_SHARDS // shards, "equal widths"
        covered.extend(range(lo, hi + 1))
        previous_upper = hi
    assert covered == list(range(SERVER_SHARDS))


@pytest.mark.parametrize("shards", ALLOWED_SHARD_COUNTS)
def test_shard_of_agrees_with_shard_bounds_on_every_server_shard(
    shards, one_recipient_per_server_shard
):
    for s, recipient in one_recipient_per_server_shard.items():
        k = shard_of(recipient, shards)
        assert 0 <= k < shards
        lo, hi = shard_bounds(k, shards)
        assert lo <= s <= hi, f"server shard {s} routed to {k} = [{lo}, {hi}]"


@pytest.mark.parametrize("shards", ALLOWED_SHARD_COUNTS)
def test_every_shard_receives_traffic(shards, one_recipient_per_server_shard):
    hit = {shard_of(r, shards) for r in one_recipient_per_server_shard.values()}
    assert hit == set(range(shards))


def test_doubling_the_shards_splits_each_range_in_two(one_recipient_per_server_shard):
    for r in one_recipient_per_server_shard.values():
        for n in ALLOWED_SHARD_COUNTS[:-1]:
            assert shard_of(r, 2 * n) // 2 == shard_of(r, n)


def test_single_shard_takes_everything(one_recipient_per_server_shard):
    assert {shard_of(r, 1) for r in one_recipient_per_server_shard.values()} == {0}
    assert shard_bounds(0, 1) == (0, SERVER_SHARDS - 1)


@pytest.mark.parametrize(("shard", "shards"), [(0, 0), (0, 3), (0, 64), (-1, 4), (4, 4),
                                                (32, 32)])
def test_shard_bounds_rejects_bad_arguments(shard, shards):
    with pytest.raises(ValueError):
        shard_bounds(shard, shards)


@pytest.mark.parametrize("shards", [0, 3, 64])
def test_shard_of_rejects_counts_that_shard_bounds_rejects(shards):
    with pytest.raises(ValueError):
        shard_of("15550000001", shards)


@pytest.mark.parametrize("shards", ALLOWED_SHARD_COUNTS)
def test_recipients_for_shard_land_on_that_shard(shards):
    for k in sorted({0, shards // 2, shards - 1}):
        rs = recipients_for_shard(k, shards, 25)
        assert len(rs) == 25 and len(set(rs)) == 25
        assert all(shard_of(r, shards) == k for r in rs)
        assert all(r.startswith("1555") and r.isdigit() for r in rs)
        assert recipients_for_shard(k, shards, 25) == rs, "deterministic"


def test_recipients_for_shard_prefix_and_zero_count():
    rs = recipients_for_shard(1, 4, 5, prefix="44")
    assert all(r.startswith("44") and shard_of(r, 4) == 1 for r in rs)
    assert recipients_for_shard(1, 4, 0) == []


@pytest.mark.parametrize(("shard", "shards"), [(4, 4), (-1, 2), (0, 0)])
def test_recipients_for_an_impossible_shard_fail_fast(monkeypatch, shard, shards):
    calls = 0
    real_shard_of = sharding.shard_of

    def bounded_shard_of(recipient: str, n: int) -> int:
        nonlocal calls
        calls += 1
        if calls > 100_000:  # keeps the test bounded while the bug exists
            raise RuntimeError("recipients_for_shard is looping")
        return real_shard_of(recipient, n)

    monkeypatch.setattr(sharding, "shard_of", bounded_shard_of)
    with pytest.raises(ValueError):
        recipients_for_shard(shard, shards, 1)
