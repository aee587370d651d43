"""Every fenced database decision, defined once: a condition over a row and its update.

Model. A :class:`Decision` is ``UPDATE <table> [JOIN master_lease l ON <held>] SET <col =
expr, …> WHERE <condition>``, built from a few expression nodes. Each node renders itself to
SQL (``sql``: text with ``%s`` placeholders, appending the parameters) and evaluates itself in
Python (``ev``) with SQL's meaning: ``NULL`` is ``None`` and propagates through comparisons
and arithmetic, ``AND``/``OR``/``NOT`` are three-valued, a row matches only where the
condition is true, and ``SET`` assignments apply left to right, each seeing the ones before
(as MariaDB applies them; ``promote`` computes ``fence_until`` from ``valid_until`` before
clearing it). Times are seconds (``DATETIME(6)`` in SQL, floats in Python); intervals are
whole microseconds in both (``INTERVAL int(x·10⁶) MICROSECOND``).

:mod:`multiconnect.db` executes ``decision.sql(**args)``; the simulator's model of the
database (:mod:`multiconnect.sim.db`) calls ``decision.matches(row, lease, now, **args)``
and ``decision.apply(row, lease, now, **args)`` on its in-memory rows (objects whose
attributes are the column names; ``lease`` is the ``master_lease`` row a join reads).
``tests/test_db_model_sql.py`` drives random rows through both on a real MariaDB.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from operator import attrgetter
from typing import Any

Rows = dict[str, Any]   # table alias ("" for the updated table, "l" for the lease) -> row
Fn = Callable[[Rows, float, dict[str, Any]], Any]


class Expr:
    """A node: ``sql`` renders it, ``ev`` evaluates it (through a closure built once)."""

    def sql(self, args: dict[str, Any], params: list[Any]) -> str:
        raise NotImplementedError

    def compile(self) -> Fn:
        raise NotImplementedError

    @cached_property
    def fn(self) -> Fn:
        return self.compile()

    def ev(self, rows: Rows, now: float, args: dict[str, Any]) -> Any:
        return self.fn(rows, now, args)


@dataclass(frozen=True)
class Col(Expr):
    name: str
    alias: str = ""

    def sql(self, args: dict[str, Any], params: list[Any]) -> str:
        return f"{self.alias}.{self.name}" if self.alias else self.name

    def compile(self) -> Fn:
        get, alias = attrgetter(self.name), self.alias
        return lambda r, n, g: get(r[alias])


@dataclass(frozen=True)
class Arg(Expr):
    name: str

    def sql(self, args: dict[str, Any], params: list[Any]) -> str:
        params.append(args[self.name])
        return "%s"

    def compile(self) -> Fn:
        name = self.name
        return lambda r, n, g: g[name]


@dataclass(frozen=True)
class Const(Expr):
    value: int | None

    def sql(self, args: dict[str, Any], params: list[Any]) -> str:
        return "NULL" if self.value is None else str(int(self.value))

    def compile(self) -> Fn:
        value = self.value
        return lambda r, n, g: value


class _Now(Expr):
    def sql(self, args: dict[str, Any], params: list[Any]) -> str:
        return "NOW(6)"

    def compile(self) -> Fn:
        return lambda r, n, g: n


NOW = _Now()


def micros(seconds: float) -> int:
    """``INTERVAL`` in whole microseconds, as every statement passes it."""
    return int(seconds * 1_000_000)


@dataclass(frozen=True)
class After(Expr):
    """``time + INTERVAL <seconds argument> MICROSECOND``."""

    time: Expr
    seconds: str

    def sql(self, args: dict[str, Any], params: list[Any]) -> str:
        t = self.time.sql(args, params)
        params.append(micros(args[self.seconds]))
        return f"{t} + INTERVAL %s MICROSECOND"

    def compile(self) -> Fn:
        t, key = self.time.fn, self.seconds

        def after(r: Rows, n: float, g: dict[str, Any]) -> Any:
            x = t(r, n, g)
            return None if x is None else x + micros(g[key]) / 1_000_000
        return after


@dataclass(frozen=True)
class NextEpoch(Expr):
    """``LAST_INSERT_ID(col + 1)``: the column plus one, handed back to the session."""

    col: Col

    def sql(self, args: dict[str, Any], params: list[Any]) -> str:
        return f"LAST_INSERT_ID({self.col.sql(args, params)} + 1)"

    def compile(self) -> Fn:
        c = self.col.fn
        return lambda r, n, g: c(r, n, g) + 1


@dataclass(frozen=True)
class _Op(Expr):
    """An operator or function over its items; ``None`` in gives ``None`` out unless
    ``null_safe`` (then ``fn`` sees the ``None``s)."""

    op: str
    fn_: Callable[..., Any]
    items: tuple[Expr, ...]
    null_safe: bool = False

    def sql(self, args: dict[str, Any], params: list[Any]) -> str:
        if self.op in ("GREATEST", "COALESCE"):
            return f"{self.op}({', '.join(x.sql(args, params) for x in self.items)})"
        if self.op == "IS NULL":
            return f"{self.items[0].sql(args, params)} IS NULL"
        if self.op == "NOT":
            return f"NOT {self.items[0].sql(args, params)}"
        return "(" + f" {self.op} ".join(x.sql(args, params) for x in self.items) + ")"

    def compile(self) -> Fn:
        f, items, safe = self.fn_, tuple(x.fn for x in self.items), self.null_safe
        if len(items) == 2 and not safe:
            a, b = items

            def binary(r: Rows, n: float, g: dict[str, Any]) -> Any:
                x = a(r, n, g)
                if x is None:
                    return None
                y = b(r, n, g)
                return None if y is None else f(x, y)
            return binary

        def many(r: Rows, n: float, g: dict[str, Any]) -> Any:
            values = [x(r, n, g) for x in items]
            if not safe and None in values:
                return None
            return f(*values)
        return many


@dataclass(frozen=True)
class _Logic(Expr):
    """``AND`` / ``OR`` in SQL's three-valued logic (``None`` is unknown)."""

    op: str
    items: tuple[Expr, ...]

    def sql(self, args: dict[str, Any], params: list[Any]) -> str:
        return "(" + f" {self.op} ".join(x.sql(args, params) for x in self.items) + ")"

    def compile(self) -> Fn:
        items = tuple(x.fn for x in self.items)
        decisive = self.op == "OR"  # OR: one true decides; AND: one false decides

        def logic(r: Rows, n: float, g: dict[str, Any]) -> Any:
            unknown = False
            for x in items:
                v = x(r, n, g)
                if v is None:
                    unknown = True
                elif bool(v) is decisive:
                    return decisive
            return None if unknown else not decisive
        return logic


def _coalesce(*vs: Any) -> Any:
    return next((v for v in vs if v is not None), None)


def Eq(a: Expr, b: Expr) -> Expr:  # noqa: N802 - reads as SQL
    return _Op("=", lambda x, y: x == y, (a, b))


def NullSafeEq(a: Expr, b: Expr) -> Expr:  # noqa: N802
    return _Op("<=>", lambda x, y: x == y, (a, b), null_safe=True)


def Gt(a: Expr, b: Expr) -> Expr:  # noqa: N802
    return _Op(">", lambda x, y: x > y, (a, b))


def Le(a: Expr, b: Expr) -> Expr:  # noqa: N802
    return _Op("<=", lambda x, y: x <= y, (a, b))


def IsNull(a: Expr) -> Expr:  # noqa: N802
    return _Op("IS NULL", lambda x: x is None, (a,), null_safe=True)


def Not(a: Expr) -> Expr:  # noqa: N802
    return _Op("NOT", lambda x: not x, (a,))


def And(*xs: Expr) -> Expr:  # noqa: N802
    return _Logic("AND", xs)


def Or(*xs: Expr) -> Expr:  # noqa: N802
    return _Logic("OR", xs)


def Greatest(*xs: Expr) -> Expr:  # noqa: N802
    return _Op("GREATEST", max, xs)


def Coalesce(*xs: Expr) -> Expr:  # noqa: N802
    return _Op("COALESCE", _coalesce, xs, null_safe=True)


@dataclass(frozen=True)
class Decision:
    """``UPDATE table [alias] [JOIN master_lease l ON join] SET … WHERE where``."""

    table: str
    where: Expr
    set: tuple[tuple[str, Expr], ...]
    alias: str = ""
    join: Expr | None = None

    def sql(self, **args: Any) -> tuple[str, list[Any]]:
        params: list[Any] = []
        target = f"{self.table} {self.alias}".rstrip()
        if self.join is not None:
            target += f" JOIN master_lease l ON {self.join.sql(args, params)}"
        prefix = f"{self.alias}." if self.alias else ""
        sets = ", ".join(f"{prefix}{col} = {e.sql(args, params)}" for col, e in self.set)
        return f"UPDATE {target} SET {sets} WHERE {self.where.sql(args, params)}", params

    @cached_property
    def _compiled(self) -> tuple[Fn | None, Fn, tuple[tuple[str, Fn], ...]]:
        return (None if self.join is None else self.join.fn, self.where.fn,
                tuple((col, e.fn) for col, e in self.set))

    def matches(self, row: Any, lease: Any, now: float, **args: Any) -> bool:
        """``row`` (of ``table``) is updated, the lease row being ``lease`` (for the join)."""
        join, where, _ = self._compiled
        rows = {self.alias: row, "l": lease}
        if join is not None and join(rows, now, args) is not True:
            return False
        return where(rows, now, args) is True

    def apply(self, row: Any, lease: Any, now: float, **args: Any) -> None:
        rows = {self.alias: row, "l": lease}
        for col, fn in self._compiled[2]:
            setattr(row, col, fn(rows, now, args))


# ------------------------------------------------------------------------------ the decisions
def lease_held(alias: str = "l") -> Expr:
    """``me`` holds the live lease under ``epoch``."""
    return And(Eq(Col("id", alias), Const(1)), Eq(Col("holder", alias), Arg("me")),
               Eq(Col("epoch", alias), Arg("epoch")), Gt(Col("expires_at", alias), NOW))


LEASE_HELD = lease_held()

#: RENEW: the row still names us under our epoch and is live
LEASE_RENEW = Decision(
    "master_lease", lease_held(""), (("expires_at", After(NOW, "ttl")),))

#: ACQUIRE: the row expired, or is ours under another epoch (a new epoch either way); a live
#: row without a holder is busy until it expires (``core.lease.decide``)
LEASE_ACQUIRE = Decision(
    "master_lease",
    And(Eq(Col("id"), Const(1)),
        Or(Le(Col("expires_at"), NOW),
           And(Eq(Col("holder"), Arg("me")), Not(NullSafeEq(Col("epoch"), Arg("epoch")))))),
    (("epoch", NextEpoch(Col("epoch"))), ("holder", Arg("me")),
     ("expires_at", After(NOW, "ttl"))))

#: a graceful stop gives the lease up: expired now, no holder
LEASE_RELEASE = Decision(
    "master_lease",
    And(Eq(Col("id"), Const(1)), Eq(Col("holder"), Arg("me")), Eq(Col("epoch"), Arg("epoch"))),
    (("holder", Const(None)), ("expires_at", NOW)))

#: a promotion by the live lease holder: the shard to ``new`` under a new epoch, fenced until
#: the old owner's ``valid_until`` + ``fence_extra`` (never before now)
PROMOTE = Decision(
    "shard_map",
    And(Eq(Col("shard", "s"), Arg("shard")), NullSafeEq(Col("hostname", "s"), Arg("old"))),
    (("hostname", Arg("new")), ("epoch", Arg("new_epoch")), ("confirm_token", Const(None)),
     ("fence_until", Greatest(NOW, Coalesce(After(Col("valid_until", "s"), "fence_extra"),
                                            NOW))),
     ("valid_until", Const(None)), ("updated_at", NOW)),
    alias="s", join=LEASE_HELD)

#: a coreapp's confirmation extends the row naming it unless the row is fenced
CONFIRM = Decision(
    "shard_map",
    And(Eq(Col("hostname"), Arg("me")),
        Or(IsNull(Col("fence_until")), Le(Col("fence_until"), NOW))),
    (("valid_until", After(NOW, "ttl")), ("confirm_token", Arg("token"))))

#: the settings, written only by the live lease holder
WRITE_SETTINGS = Decision(
    "settings", Eq(Col("name", "s"), Arg("name")), (("value", Arg("value")),),
    alias="s", join=LEASE_HELD)
