"""The simulated world: virtual time, one seeded RNG, an event heap, cooperative tasks.

Model. Time is a float of virtual seconds; nothing here reads a real clock. Events are
``(time, seq, node, incarnation, fn, arg)`` in a heap; ``seq`` breaks ties in scheduling
order, so one seed fixes the whole run. An event bound to a node is dropped once the node has
crashed (its incarnation changed) and is queued while the node is paused; resuming replays the
queue at the resume instant (timers fire late, replies were waiting in the socket), in the
order the node's ``resume_order`` gives (arrival order unless a node models otherwise).

Shell code runs as generator tasks (asyncio coroutines rewritten as generators):
``yield (SLEEP, local_seconds)`` or ``yield (AWAIT, fut, local_timeout_or_None[, REPLY])``
(a timeout raises :class:`SimTimeout` in the task) or ``yield (WAIT, fut, local_timeout)``
(a timeout returns ``TIMED_OUT``: no exception thrown into the generator, for loops whose
waits usually time out).
``REPLY`` marks an await whose answer is certain to come long before the timeout unless a
fault starts first (the caller checked that the path is fault-free): its timer is only armed
— at its original deadline — when a fault starts before the answer came (``arm_timers``).
This is an optimisation only (such timers would fire after their answer); outcomes are the
same. A node's
monotonic clock runs at its own rate ``1 + drift``, so local durations are divided by the
rate to get virtual ones. ``soon`` callbacks (asyncio's ``call_soon``) run right after the
current event, before any other event.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Generator
from heapq import heappop, heappush
from typing import Any

SLEEP = 0
AWAIT = 1
WAIT = 2      # like AWAIT, but a timeout resumes the task with TIMED_OUT instead of raising
REPLY = True
TIMED_OUT = object()

Command = tuple
TaskGen = Generator[Command, Any, Any]


class SimTimeout(Exception):
    """An await with a timeout ran out (asyncio.TimeoutError in the real shells)."""


class Fut:
    """A one-shot result that at most one task awaits."""

    __slots__ = ("done", "value", "exc", "task", "gkey", "soft")

    def __init__(self) -> None:
        self.done = False
        self.value: Any = None
        self.exc: BaseException | None = None
        self.task: Task | None = None
        self.gkey = 0
        self.soft = False  # awaited with WAIT: a timeout resolves it with TIMED_OUT


class Task:
    __slots__ = ("gen", "node", "inc", "name")

    def __init__(self, gen: TaskGen, node: Endpoint, name: str) -> None:
        self.gen = gen
        self.node = node
        self.inc = node.inc
        self.name = name


class Endpoint:
    """Anything that receives events: a node process, the database, the gateway.

    ``rate`` is its monotonic clock rate relative to virtual time; ``mono()`` its monotonic
    clock; ``wall()`` its wall clock (offset by clock-skew faults; the cores never read it).
    """

    def __init__(self, world: World, name: str, drift: float = 0.0) -> None:
        self.world = world
        self.name = name
        self.rate = 1.0 + drift
        self.t0 = world.now
        self.mono0 = 1000.0 + 997.0 * world.rng.random()
        self.wall_offset = 0.0
        self.inc = 0
        self.alive = True
        self.paused = False
        self.backlog: list[tuple[Callable[[Any], None], Any]] = []

    def mono(self) -> float:
        return self.mono0 + (self.world.now - self.t0) * self.rate

    def wall(self) -> float:
        return 1_790_000_000.0 + self.world.now + self.wall_offset

    def virtual_at(self, local: float) -> float:
        """The virtual time at which this clock shows ``local``."""
        return self.t0 + (local - self.mono0) / self.rate

    def resume_order(self, backlog: list[tuple[Callable[[Any], None], Any]]
                     ) -> list[tuple[Callable[[Any], None], Any]]:
        """The order in which a resumed node handles what queued up while it was paused."""
        return backlog


class World:
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0.0
        self.events = 0
        self._heap: list[tuple] = []
        self._seq = 0
        self._soon: deque[tuple] = deque()
        self.stopped = False
        self.trace: list[tuple] = []
        self._unguarded: dict[int, tuple[Fut, Endpoint, int, float]] = {}
        # bound methods made once (not one per event)
        self._step_cb = self._step
        self._timeout_cb = self._fut_timeout

    # -- scheduling ----------------------------------------------------------------------
    def at(self, t: float, fn: Callable[[Any], None], arg: Any = None) -> None:
        """A world event (not bound to any node)."""
        self._seq += 1
        heappush(self._heap, (t, self._seq, None, 0, fn, arg))

    def at_node(self, t: float, node: Endpoint, inc: int, fn: Callable[[Any], None],
                arg: Any = None) -> None:
        """An event for ``node`` as it was in incarnation ``inc``."""
        self._seq += 1
        heappush(self._heap, (t, self._seq, node, inc, fn, arg))

    def soon(self, fn: Callable[..., None], *args: Any) -> None:
        self._soon.append((fn, args))

    def note(self, who: str, fmt: str, *args: Any) -> None:
        """Append a trace line (formatted only when printed)."""
        self.trace.append((self.now, who, fmt, args))

    # -- tasks ---------------------------------------------------------------------------
    def spawn(self, node: Endpoint, gen: TaskGen, name: str = "") -> Task:
        task = Task(gen, node, name)
        self._soon.append((self._step_cb, (task, None, None)))
        return task

    def _step(self, task: Task, value: Any = None, exc: BaseException | None = None) -> None:
        """Resume ``task`` (also the event of a sleep ending: ``_step(task)``)."""
        node = task.node
        inc = task.inc
        if node.inc != inc or not node.alive:
            return
        try:
            cmd = task.gen.send(value) if exc is None else task.gen.throw(exc)
        except StopIteration:
            return
        self._seq = seq = self._seq + 1
        kind = cmd[0]
        if kind == SLEEP:
            d = cmd[1]
            if d < 0.0:
                d = 0.0
            heappush(self._heap, (self.now + d / node.rate, seq, node, inc, self._step_cb,
                                  task))
            return
        fut: Fut = cmd[1]
        if fut.done:
            self._soon.append((self._step_cb, (task, fut.value, fut.exc)))
            return
        fut.task = task
        if kind == WAIT:
            fut.soft = True
        timeout = cmd[2]
        if timeout is not None:
            deadline = self.now + timeout / node.rate
            if len(cmd) > 3 and cmd[3]:
                fut.gkey = seq
                self._unguarded[seq] = (fut, node, inc, deadline)
            else:
                heappush(self._heap, (deadline, seq, node, inc, self._timeout_cb, fut))

    def arm_timers(self) -> None:
        """A fault starts: give every await that relied on a fault-free path its timer."""
        for key, (fut, node, inc, deadline) in self._unguarded.items():
            fut.gkey = 0
            if not fut.done:
                heappush(self._heap, (max(deadline, self.now), key, node, inc,
                                      self._timeout_cb, fut))
        self._unguarded.clear()

    def _fut_timeout(self, fut: Fut) -> None:
        """A timer event. Resolving appends the task's step to the (empty: this is the
        event) ``soon`` queue, which runs it next; so it is stepped here at once."""
        if fut.done:
            return
        fut.done = True
        if fut.gkey:
            del self._unguarded[fut.gkey]
        task = fut.task
        if fut.soft:
            fut.value = TIMED_OUT
            if task is not None:
                self._step(task, TIMED_OUT)
        else:
            fut.exc = exc = SimTimeout()
            if task is not None:
                self._step(task, None, exc)

    def resolve(self, fut: Fut, value: Any = None) -> None:
        if fut.done:
            return
        fut.done = True
        fut.value = value
        if fut.gkey:
            del self._unguarded[fut.gkey]
        if fut.task is not None:
            self._soon.append((self._step_cb, (fut.task, value, None)))

    def fail(self, fut: Fut, exc: BaseException) -> None:
        if fut.done:
            return
        fut.done = True
        fut.exc = exc
        if fut.gkey:
            del self._unguarded[fut.gkey]
        if fut.task is not None:
            self._soon.append((self._step_cb, (fut.task, None, exc)))

    # -- node lifecycle --------------------------------------------------------------------
    def pause(self, node: Endpoint) -> None:
        node.paused = True

    def resume(self, node: Endpoint) -> None:
        node.paused = False
        backlog, node.backlog = node.backlog, []
        for fn, arg in node.resume_order(backlog):
            self.at_node(self.now, node, node.inc, fn, arg)

    # -- main loop -------------------------------------------------------------------------
    def run(self, until: float, after_event: Callable[[], None] | None = None) -> None:
        """Process events up to virtual time ``until`` (or until ``stopped``)."""
        heap = self._heap
        soon = self._soon
        popleft = soon.popleft
        n = 0
        while heap and not self.stopped:
            ev = heappop(heap)
            t = ev[0]
            if t > until:
                heappush(heap, ev)
                break
            node = ev[2]
            self.now = t
            if node is not None:
                if node.inc != ev[3] or not node.alive:
                    continue
                if node.paused:
                    node.backlog.append((ev[4], ev[5]))
                    continue
            n += 1
            ev[4](ev[5])
            while soon:
                fn, args = popleft()
                fn(*args)
            if after_event is not None:
                after_event()
        self.events += n
        if not self.stopped and self.now < until:
            self.now = until
