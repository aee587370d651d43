"""Differential test: the simulator's database model against the SQL, on a real MariaDB.

Model. Each case draws a row state (lease holder, epoch and expiry; shard rows with owner,
epoch, ``valid_until``, ``fence_until``; nodes and heartbeat views), a database clock value
and one decision (a lease attempt, a release, a promotion, a confirmation, a read), all from
a seeded RNG. The same state is written to MariaDB and loaded into
:class:`multiconnect.sim.db.SimDatabase`; MariaDB's clock is pinned with
``SET timestamp`` so ``NOW(6)`` is the case's instant in every statement; the decision runs
through :mod:`multiconnect.db` and through the model; the results (values returned,
``NotPrimary`` raised or not) and every row afterwards must be identical, to the
microsecond. A mismatch prints the seed, the state and both sides.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from local_cluster import local_mariadb, mariadb_binaries

from multiconnect import db as dbq
from multiconnect import schema
from multiconnect.config import DbConfig
from multiconnect.db import Database, NotPrimary
from multiconnect.settings import Settings
from multiconnect.sharding import shard_bounds
from multiconnect.sim.db import LeaseState, ShardState, SimDatabase

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(mariadb_binaries() is None,
                       reason="needs Debian mariadb-server (scripts/setup.sh installs it)"),
]

CASES = 400
MASTERS = ("master-1", "master-2", "master-3")
COREAPPS = ("coreapp-1", "coreapp-2", "coreapp-3", "coreapp-4")
EPOCH_US = 1_790_000_000 * 1_000_000  # around the simulator's wall clock
OPS = ("lease_attempt", "release_lease", "promote", "confirm_ownership", "read_shard_map",
       "unhealthy_reports", "list_nodes", "write_settings", "read_settings")


def to_dt(us: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=us)


def to_us(value: Any) -> int | None:
    """A DATETIME(6) from MariaDB or a model float (seconds) as integer microseconds."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return (value - dt.datetime(1970, 1, 1)) // dt.timedelta(microseconds=1)
    return round(value * 1_000_000)


@dataclass
class Case:
    """One row state, one instant, one decision."""

    now: int                                   # database clock, microseconds
    lease: tuple[str | None, int, int]         # holder, epoch, expires_at (µs)
    shards: list[tuple[str | None, int, int | None, int | None]] = field(default_factory=list)
    nodes: dict[str, int] = field(default_factory=dict)          # name -> last_seen (µs)
    views: dict[tuple[str, str], tuple[bool, int]] = field(default_factory=dict)
    settings: tuple[Settings, int] = (Settings(), 1)
    op: str = ""
    args: tuple = ()


def draw(rng: random.Random) -> Case:
    """A reachable state (a coreapp owns at most one shard) around a random instant."""
    now = EPOCH_US + rng.randrange(10**12)

    def near() -> int:  # an instant within ±6 s of now, sometimes exactly now
        return now if rng.random() < 0.1 else now + rng.randrange(-6_000_000, 6_000_000)

    def maybe() -> int | None:
        return None if rng.random() < 0.3 else near()

    lease_epoch = rng.randrange(0, 6)
    holder = None if rng.random() < 0.2 else rng.choice(MASTERS)
    case = Case(now, (holder, lease_epoch, near() if holder or rng.random() < 0.5 else 1))
    owners = rng.sample(COREAPPS, rng.randrange(0, 3))
    shard_count = rng.choice((1, 2, 4))
    for s in range(shard_count):
        host = owners[s] if s < len(owners) else None
        case.shards.append((host, rng.randrange(1, 9), maybe(), maybe()))
    for name in (*MASTERS, *COREAPPS):
        if rng.random() < 0.7:
            case.nodes[name] = near() - rng.randrange(0, 200_000_000)
    for m in MASTERS:
        for c in COREAPPS:
            if rng.random() < 0.4:
                case.views[(m, c)] = (rng.random() < 0.5, near())
    case.settings = (random_settings(rng), rng.randrange(1, 50))
    me = rng.choice(MASTERS)
    epoch_guess = rng.choice((None, lease_epoch, lease_epoch + 1, max(0, lease_epoch - 1)))
    ttl = rng.choice((0.5, 3.0, 5.0, 10.0, 7.123457))
    op = rng.choice(OPS)
    case.op = op
    if op == "lease_attempt":
        case.args = (me, epoch_guess, ttl)
    elif op == "release_lease":
        case.args = (me, rng.choice((lease_epoch, lease_epoch + 1)))
    elif op == "promote":
        shard = rng.randrange(shard_count + 1)  # sometimes a shard that does not exist
        current = case.shards[shard][0] if shard < shard_count else None
        old = current if rng.random() < 0.8 else rng.choice((None, *COREAPPS))
        new = rng.choice(COREAPPS)
        fence_extra = rng.choice((2.5, 10.5, 0.0, 1.2345678))
        lease_me = holder if holder and rng.random() < 0.7 else me
        case.args = (lease_me, rng.choice((lease_epoch, lease_epoch, lease_epoch + 1)), shard,
                     old, new, fence_extra)
    elif op == "confirm_ownership":
        who = rng.choice(owners) if owners and rng.random() < 0.8 else rng.choice(COREAPPS)
        case.args = (who, rng.choice((2.0, 10.0, 0.75)))
    elif op == "unhealthy_reports":
        case.args = (me, rng.choice((3.0, 7.5, 20.0)))
    elif op == "write_settings":
        lease_me = holder if holder and rng.random() < 0.7 else me
        case.args = (lease_me, rng.choice((lease_epoch, lease_epoch, lease_epoch + 1)),
                     random_settings(rng))
    return case


def random_settings(rng: random.Random) -> Settings:
    h = rng.randrange(1, 30)
    return Settings(h, rng.randrange(2 * h, 200), rng.choice(("", "https://hooks.example")))


# ------------------------------------------------------------------------------ SQL side
def load_sql(cur: Any, c: Case) -> None:
    for table in ("shard_map", "nodes", "heartbeat_views", "settings"):
        cur.execute(f"DELETE FROM {table}")
    settings, version = c.settings
    cur.execute("INSERT INTO settings (name, value) VALUES ('application', %s), "
                "('settings_version', %s)", (json.dumps(settings.to_json()), str(version)))
    holder, epoch, expires = c.lease
    cur.execute("UPDATE master_lease SET holder = %s, epoch = %s, expires_at = %s WHERE id = 1",
                (holder, epoch, to_dt(expires)))
    for s, (host, epoch, valid, fence) in enumerate(c.shards):
        lo, hi = shard_bounds(s, len(c.shards))
        cur.execute("INSERT INTO shard_map (shard, lower_bound, upper_bound, hostname, epoch, "
                    "valid_until, fence_until, updated_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)",
                    (s, lo, hi, host, epoch, valid and to_dt(valid), fence and to_dt(fence),
                     to_dt(c.now - 1)))
    for name, seen in c.nodes.items():
        role = "master" if name.startswith("master") else "coreapp"
        cur.execute("INSERT INTO nodes (name, role, address, heartbeat_address, last_seen, "
                    "started_at) VALUES (%s, %s, %s, %s, %s, %s)",
                    (name, role, name, name, to_dt(seen), to_dt(seen)))
    for (m, co), (bad, at) in c.views.items():
        cur.execute("INSERT INTO heartbeat_views (master, coreapp, unhealthy, updated_at) "
                    "VALUES (%s, %s, %s, %s)", (m, co, bad, to_dt(at)))


def state_sql(cur: Any) -> dict[str, Any]:
    cur.execute("SELECT holder, epoch, expires_at FROM master_lease WHERE id = 1")
    holder, epoch, expires = cur.fetchone()
    cur.execute("SELECT shard, hostname, epoch, valid_until, fence_until, updated_at "
                "FROM shard_map ORDER BY shard")
    shards = [(int(r[0]), r[1], int(r[2]), to_us(r[3]), to_us(r[4]), to_us(r[5]))
              for r in cur.fetchall()]
    return {"lease": (holder, int(epoch), to_us(expires)), "shards": shards,
            "settings": dbq.read_settings(cur)}


def run_sql(db: Database, c: Case) -> tuple[Any, dict[str, Any]]:
    def go(cur: Any) -> tuple[Any, dict[str, Any]]:
        load_sql(cur, c)
        cur.execute(f"SET timestamp = {c.now // 1_000_000}.{c.now % 1_000_000:06d}")
        try:
            try:
                result: Any = normalise(getattr(dbq, c.op)(cur, *c.args))
            except NotPrimary:
                result = "NotPrimary"
            return result, state_sql(cur)
        finally:
            cur.execute("SET timestamp = DEFAULT")
    return db.run(go)


# ------------------------------------------------------------------------------ model side
def run_model(c: Case) -> tuple[Any, dict[str, Any]]:
    world = SimpleNamespace(now=c.now / 1e6)
    m = SimDatabase(world, len(c.shards), c.settings[0])
    m.settings_version = c.settings[1]
    holder, epoch, expires = c.lease
    m.lease = LeaseState(holder, epoch, expires / 1e6)
    m.shard_rows = {}
    for s, (host, ep, valid, fence) in enumerate(c.shards):
        lo, hi = shard_bounds(s, len(c.shards))
        m.shard_rows[s] = ShardState(s, lo, hi, host, ep, valid and valid / 1e6,
                                     fence and fence / 1e6, (c.now - 1) / 1e6)
    m.nodes = {n: ["master" if n.startswith("master") else "coreapp", seen / 1e6, seen / 1e6]
               for n, seen in c.nodes.items()}
    m.views = {k: (bad, at / 1e6) for k, (bad, at) in c.views.items()}
    try:
        result: Any = normalise(getattr(m, c.op)(*c.args))
    except NotPrimary:
        result = "NotPrimary"
    shards = [(r.shard, r.hostname, r.epoch, to_us(r.valid_until), to_us(r.fence_until),
               to_us(r.updated_at)) for _, r in sorted(m.shard_rows.items())]
    lease = (m.lease.holder, m.lease.epoch, to_us(m.lease.expires_at))
    return result, {"lease": lease, "shards": shards,
                    "settings": (m.settings, m.settings_version)}


def normalise(result: Any) -> Any:
    """Return values in a comparable form (ages and times to the microsecond)."""
    if isinstance(result, list):
        return [normalise(r) for r in result]
    if isinstance(result, dbq.NodeRow):  # address columns: the model names the node
        return (result.name, result.role, round(result.age * 1e6))
    if isinstance(result, tuple):
        return tuple(normalise(r) for r in result)
    return result


# ------------------------------------------------------------------------------ the test
@pytest.fixture(scope="module")
def db():
    with local_mariadb() as server:
        d = Database(DbConfig(host="127.0.0.1", port=server.port, user="root", password="",
                              name="differential", timeout=5.0))
        d.run(dbq.ensure_lease_table)
        d.run(lambda cur: [cur.execute(s) for s in schema.migrations_between(0, schema.LATEST)])
        yield d
        d.close()


@pytest.mark.parametrize("seed", [1, 2])
def test_the_model_decides_as_the_sql_does(db, seed):
    rng = random.Random(seed)
    seen: dict[str, int] = {}
    mismatches = []
    for i in range(CASES // 2):
        case = draw(rng)
        sql = run_sql(db, case)
        model = run_model(case)
        seen[case.op] = seen.get(case.op, 0) + 1
        if sql != model:
            mismatches.append(f"seed {seed} case {i}: {case}\n  sql:   {sql}\n  model: {model}")
    assert not mismatches, f"{len(mismatches)} of {CASES // 2} cases differ:\n" + \
        "\n".join(mismatches[:5])
    assert set(seen) == set(OPS), seen  # every decision was drawn
