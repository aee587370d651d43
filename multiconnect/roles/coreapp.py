"""The coreapp role: secondary until the shard map gives it a shard; then it connects to the
gateway for that shard and serves message sends, self-fencing when it cannot confirm that it
still owns the shard (see :mod:`multiconnect.core.ownership` and docs/fencing.md).

The real :class:`OwnershipCore` decides; this role runs its actions (Confirm, Connect and
Ping as spawned tasks, Close as a spawned close unless the ``never-self-fence`` break is
on), keeps one gateway connection in ``self.conn``, and answers heartbeats and message
requests. Loops: ``ownership_loop``, ``liveness_loop``; ``start`` waits for the schema and
registers. The driver supplies the waits (see :mod:`multiconnect.roles`).
"""

from __future__ import annotations

from typing import Any

from .. import api_errors as E
from .. import schema
from ..config import NodeConfig
from ..core.ownership import Action, Close, Confirm, Connect, Gateway, OwnershipCore, Ping
from ..db import DatabaseError
from ..gateway_client import GatewayError, GatewayRefused
from ..settings import Settings
from .driver import ERROR, INFO, WARNING, Driver, Gen, Reply, envelope

SEND_TIMEOUT = 2.0
#: What a failed gateway call may raise (the simulated client raises GatewayError only).
GATEWAY_FAILURES = (TimeoutError, GatewayError, OSError)


class CoreappRole(Driver):
    """One coreapp's state and loops. The driver sets ``db_own`` and ``db_misc`` (its
    database connections, passed back to :meth:`db`) and provides :class:`Driver`'s methods
    and the ones below that raise ``NotImplementedError``. A gateway connection
    (``self.conn``) has ``conn_id``, ``epoch``, ``closed``, ``close_reason`` and an
    ``on_closed(conn)`` callback."""

    def __init__(self, cfg: NodeConfig) -> None:
        self.cfg = cfg
        self.settings = Settings(cfg.heartbeat_interval, cfg.unhealthy_interval)
        self.settings_version = 0
        self.own = self._new_core()
        self.conn: Any = None
        self.heartbeats: dict[str, float] = {}
        self.sent = 0
        self.never_fence = cfg.test_break == "never-self-fence"
        self.break_next_ping = 0.0
        self.db_own: Any = None
        self.db_misc: Any = None

    # ------------------------------------------------------------------ driver
    def wake(self) -> None:
        """Wake the ownership loop if it is waiting (it re-plans at once)."""
        raise NotImplementedError

    def wait_wake(self, seconds: float) -> Gen:
        """Wait until :meth:`wake` or ``seconds`` (a wake before this call does not count)."""
        raise NotImplementedError

    def gw_open(self, a: Connect) -> Gen:
        """Open and register a gateway connection for ``a``: the connection, or
        ``GatewayRefused`` (the gateway holds nothing of it) / another ``GatewayError`` or
        ``OSError`` (the connect may be queued there)."""
        raise NotImplementedError

    def gw_ping(self, conn: Any, timeout: float) -> Gen:
        raise NotImplementedError

    def gw_send(self, conn: Any, msg_id: str, to: str, text: str, timeout: float) -> Gen:
        raise NotImplementedError

    def gw_close(self, conn: Any) -> Gen:
        """Close ``conn`` (its ``on_closed`` fires); never raises."""
        raise NotImplementedError

    # ------------------------------------------------------------------ hooks
    def on_ownership_step(self) -> None:
        """The ownership loop applied the core's actions for this instant."""

    # ------------------------------------------------------------------ settings
    def _new_core(self) -> OwnershipCore:
        return OwnershipCore(
            self.cfg.name, ttl=self.settings.ownership_ttl,
            confirm_period=self.settings.confirm_period,
            ping_period=max(0.05, self.cfg.gateway_ping_timeout / 4),
            keepalive=self.cfg.gateway_ping_timeout)

    def _apply_settings(self, s: Settings) -> None:
        self.settings = s
        # a shorter TTL applies from the next confirmation on (never lengthens a past one)
        self.own.ttl = s.ownership_ttl
        self.own.confirm_period = s.confirm_period
        self.wake()

    # ------------------------------------------------------------------ ownership
    def ownership_loop(self) -> Gen:
        own, mono, execute = self.own, self.mono, self.execute
        while True:
            now = mono()
            execute(own.tick(now))
            if self.never_fence:
                self._break_keep_alive(now)
            self.on_ownership_step()
            wait = own.next_deadline(now) - mono()
            yield from self.wait_wake(max(wait, 0.01))

    def execute(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Confirm):
                self.spawn(self._confirm(a.ttl), "confirm")
            elif isinstance(a, Connect):
                self.spawn(self._connect(a), "connect")
            elif isinstance(a, Close):
                if self.never_fence and "shutdown" not in a.reason:
                    self.log(ERROR, "TEST BREAK never-self-fence: ignoring %s", a.reason)
                    continue
                self.log(INFO, "closing gateway connection: %s", a.reason)
                self.spawn(self._close(), "close")
            elif isinstance(a, Ping):
                self.spawn(self._ping(), "ping")
        self.wake()  # every input to the core re-plans the loop (next_deadline may be sooner)

    def _break_keep_alive(self, now: float) -> None:
        """TEST BREAK never-self-fence: keep acting on a connection the core no longer
        vouches for — ping it so the gateway's keepalive never drops it (the core pings only
        while valid)."""
        if self.conn is not None and not self.own.valid(now) and now >= self.break_next_ping:
            self.break_next_ping = now + max(0.05, self.cfg.gateway_ping_timeout / 4)
            self.spawn(self._ping(), "ping (test break)")

    def _confirm(self, ttl: float) -> Gen:
        sent = self.mono()
        try:
            row = yield from self.db(self.db_own, "confirm_ownership", self.cfg.name, ttl)
        except DatabaseError as e:
            self.log(WARNING, "ownership confirmation failed: %s", e)
            self.execute(self.own.confirm_failed(self.mono()))
            self.wake()
            return
        before = (self.own.shard, self.own.epoch)
        self.execute(self.own.confirmed(sent, self.mono(), row))
        self.wake()  # the next confirmation is due h/2 from now: replan the loop
        if (self.own.shard, self.own.epoch) != before:
            self.log(INFO, "shard map: now %s", "secondary" if self.own.shard is None else
                     f"primary for shard {self.own.shard} (epoch {self.own.epoch})")

    def _connect(self, a: Connect) -> Gen:
        """One connect attempt (``OwnershipCore.connect_pending``): it waits for the
        gateway's answer however long that takes. A Close that arrives meanwhile is applied
        when the attempt ends (what opens is closed at once); until then the core stays
        CLOSING, so it never starts a second attempt while one may be queued at the gateway."""
        try:
            conn = yield from self.gw_open(a)
        except (GatewayError, OSError) as e:
            self.log(WARNING, "gateway connect failed: %s", e)
            # refused: the gateway holds nothing of this attempt; any other end may leave
            # the connect queued there (the core's ghost wait)
            self.execute(self.own.gateway_down(
                self.mono(), f"connect failed: {e}",
                gateway_ended=isinstance(e, GatewayRefused)))
            return
        self.conn = conn
        conn.on_closed = self._on_closed
        if self.own.gateway is Gateway.CLOSING:
            self.log(INFO, "closing the gateway connection opened meanwhile (conn %s)",
                     conn.conn_id)
            yield from self._close()
            return
        self.log(INFO, "connected to gateway for shard %d (epoch %d, conn %s)", a.shard,
                 a.epoch, conn.conn_id)
        self.execute(self.own.gateway_up(self.mono(), a.epoch))

    def _on_closed(self, conn: Any) -> None:
        if self.conn is conn:
            self.conn = None
            self.log(INFO, "gateway connection closed: %s", conn.close_reason)
            self.execute(self.own.gateway_down(self.mono(), str(conn.close_reason)))

    def _close(self) -> Gen:
        conn = self.conn
        if conn is None:
            if self.own.connect_pending:
                return  # _connect closes what it opens and then reports the gateway down
            self.execute(self.own.gateway_down(self.mono(), "closed"))
            return
        yield from self.gw_close(conn)
        if self.conn is conn:  # on_closed did not fire
            self._on_closed(conn)

    def _ping(self) -> Gen:
        conn = self.conn
        if conn is None:
            return
        self.own.wrote(self.mono())  # a ping is written before its first wait
        try:
            yield from self.gw_ping(conn, max(0.2, self.cfg.gateway_ping_timeout / 2))
        except GATEWAY_FAILURES as e:
            self.log(WARNING, "gateway ping failed: %s", e)
            yield from self._close()

    # ------------------------------------------------------------------ background
    def liveness_loop(self) -> Gen:
        """Liveness row every liveness_interval (60 s × scale, as documented); settings are
        re-read every heartbeat interval."""
        cfg = self.cfg
        next_touch = self.mono()
        while True:
            try:
                if self.mono() >= next_touch:
                    yield from self.db(self.db_misc, "touch_node", cfg.name)
                    next_touch = self.mono() + cfg.liveness_interval
                settings, version = yield from self.db(self.db_misc, "read_settings")
                if version != self.settings_version:
                    self._apply_settings(settings)
                    self.settings_version = version
            except DatabaseError as e:
                self.log(WARNING, "liveness write failed: %s", e)
                # retry at the settings pace, not in a tight loop against a refusing database
                next_touch = max(next_touch, self.mono() + min(
                    cfg.liveness_interval, self.settings.heartbeat_interval))
            yield from self.sleep(min(max(0.05, next_touch - self.mono()),
                                      self.settings.heartbeat_interval))

    def wait_for_schema(self) -> Gen:
        """Until the database schema has this node's version (a node never writes to a
        schema it does not know)."""
        want = self.cfg.schema_version or schema.LATEST
        last = None
        while True:
            try:
                version = yield from self.db(self.db_misc, "schema_version")
            except DatabaseError as e:
                msg = f"database unavailable ({e})"
            else:
                if version == want:
                    return
                msg = f"schema version {version}, this node needs {want}"
            if msg != last:
                self.log(INFO, "waiting: %s", msg)
                last = msg
            yield from self.sleep(0.5)

    def start(self) -> Gen:
        """Wait for the schema, register as a secondary, start the loops."""
        cfg = self.cfg
        yield from self.wait_for_schema()
        while True:
            try:
                yield from self.db(self.db_misc, "register_node", cfg.name, "coreapp",
                                   cfg.advertise_address, cfg.heartbeat_address,
                                   cfg.container_id)
                break
            except DatabaseError as e:
                self.log(WARNING, "registration failed: %s", e)
                yield from self.sleep(0.5)
        self.log(INFO, "coreapp %s up (secondary; heartbeat port %d)", cfg.name,
                 cfg.heartbeat_port)
        self.spawn(self.ownership_loop(), "ownership")
        self.spawn(self.liveness_loop(), "liveness")

    # ------------------------------------------------------------------ HTTP
    def status(self) -> dict[str, Any]:
        now = self.mono()
        return {
            "node": self.cfg.name,
            "role": "coreapp",
            "gateway_status": self.own.gateway_status(),
            "shard": self.own.shard,
            "epoch": self.own.epoch,
            "ownership_valid_for": round(max(0.0, self.own.valid_until - now), 3)
            if self.own.shard is not None else None,
            "confirm_attempt_for": round(now - self.own.confirm_began, 3)
            if self.own.confirming else None,
            "sent": self.sent,
            "wall_time": self.wall(),
        }

    def heartbeat_received(self, master: str, check: bool) -> Reply:
        """GET /v1/heartbeat?master=…[&check=1]."""
        self.heartbeats[master] = self.mono()
        if check and not self.own.confirming:
            # a master just changed the shard map: confirm now instead of at the next period
            self.own.next_confirm = self.mono()
            self.wake()
        return 200, self.status()

    def message(self, body: Any) -> Gen:
        """POST /internal/messages ``{"id","to","body","shard"}`` (``body`` None: not JSON)."""
        try:
            msg_id, to, text, shard = body["id"], body["to"], body["body"], int(body["shard"])
        except (KeyError, TypeError, ValueError):
            return envelope(400, E.INVALID_PARAMETER, 'body must be {"id","to","body","shard"}')
        now = self.mono()
        name = self.cfg.name
        if self.own.shard != shard:
            return envelope(409, E.NOT_PRIMARY_COREAPP,
                            f"{name} is not primary for shard {shard}", title="Not Primary Coreapp")
        conn = self.conn
        if conn is None or not self.own.may_send(shard, now):
            # paused, cut off or still fencing: re-check ownership before anything is sent
            self.wake()
            return envelope(503, E.SERVICE_NOT_READY,
                            f"{name}: ownership of shard {shard} not confirmed "
                            f"or gateway not connected ({self.own.gateway_status()})")
        self.own.wrote(self.mono())  # a send is written before its first wait
        try:
            yield from self.gw_send(conn, msg_id, to, text, SEND_TIMEOUT)
        except GATEWAY_FAILURES as e:
            # the message may have left before the failure: "unknown", never "not sent"
            return envelope(504, E.INTERNAL_ERROR, f"gateway send failed: {e}")
        self.sent += 1
        return 200, {"id": msg_id, "shard": shard, "epoch": conn.epoch}
