"""multiconnect.shell.drive: a role generator on asyncio (the containers' driver)."""

from __future__ import annotations

import asyncio

import pytest

from multiconnect.shell import awaiting, drive


async def value(v):
    await asyncio.sleep(0)
    return v


async def boom():
    await asyncio.sleep(0)
    raise ValueError("no")


def test_each_wait_gets_its_result_and_the_return_value_comes_back():
    def role():
        a = yield from awaiting(value(2))
        b = yield from awaiting(value(3))
        return a * b

    assert asyncio.run(drive(role())) == 6


def test_an_awaitable_that_fails_raises_inside_the_generator():
    def role():
        try:
            yield from awaiting(boom())
        except ValueError as e:
            return f"caught {e}"
        return "not raised"

    assert asyncio.run(drive(role())) == "caught no"

    def careless():
        yield from awaiting(boom())

    with pytest.raises(ValueError):
        asyncio.run(drive(careless()))


def test_cancelling_the_task_runs_the_generators_finally():
    seen = []

    def role():
        try:
            yield from awaiting(asyncio.sleep(60))
        finally:
            seen.append("finally")

    async def main():
        task = asyncio.ensure_future(drive(role()))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert seen == ["finally"]
