"""The node roles' orchestration, written once and run by two drivers.

Model. A role (:class:`~multiconnect.roles.master.MasterRole`,
:class:`~multiconnect.roles.coreapp.CoreappRole`) holds the node's state and its loops as
**generators**: every wait goes through a method the driver provides and the role reaches with
``yield from`` (``self.db(conn, "fn", *args)``, ``self.sleep(seconds)``,
``self.heartbeat(...)``, the gateway calls); ``self.spawn(gen, name)`` starts a task;
``self.mono()`` is the node's monotonic clock; ``self.log(level, fmt, *args)`` its log.
All decisions are the cores' (:mod:`multiconnect.core`); the SQL is :mod:`multiconnect.db`'s.

Drivers:
- the containers (``multiconnect/master.py``, ``coreapp.py``): each wait yields one
  awaitable, which :func:`multiconnect.shell.drive` awaits on asyncio; aiohttp wraps the
  roles' HTTP methods, which return ``(status, body)``;
- the simulator (``multiconnect/sim/master.py``, ``coreapp.py``): each wait yields the
  simulated world's commands (virtual time, simulated database and network).

Hooks named ``on_*`` are no-ops here; the simulator overrides them to check invariants at
the instant they can break.
"""
