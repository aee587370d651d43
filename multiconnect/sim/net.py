"""Simulated network: links between endpoints and connections over them.

Model (the harness's toxiproxy world): every connection is opened by a client over the link
``client->server``; data client→server is the link's *upstream*, server→client its
*downstream*. Each message takes a base delay (0.2–1 ms) plus the link's fault effects:
latency ± jitter and, under loss, TCP retransmission delays (0.2 s doubling). Data on one
connection arrives in order (FIFO per direction); separate connections (each HTTP request,
every reconnect) can overtake each other, which is how reordering happens. ``extra_cap``
bounds the extra delay on a link (coreapp→gateway links: fencing.md assumption A3). Faults:

- *cut* (toxiproxy proxy disabled): open connections are reset at both ends at once, new ones
  are refused;
- *drop* (blackhole / one-way, a ``timeout: 0`` toxic): data in that direction vanishes,
  connections stay open;
- *latency*/*jitter* and *loss*.

Two models of how a close (EOF/FIN) travels. ``model="toxiproxy"`` (default, what the harness
runs): a close passes every toxic at once, only after data already queued on that connection
(FIFO), and removing a ``timeout`` toxic (blackhole/one-way heal) closes every connection that
went through it (the toxic's ``Cleanup``); data held by a latency toxic goes on when the toxic is
removed (the effect's ``until``). ``model="tcp"`` (netem, a firewall DROP): a FIN is
delayed, retransmitted and dropped like data, and connections survive a heal; data dropped
there is never delivered, so a connection whose client asked its kernel to give up on a
silent peer (``Conn.abort_after``: TCP keepalive and user timeout) and that lost anything
in either direction is aborted at the client that long after the loss (the client sees a
reset; the server is not told). Through toxiproxy the proxy acknowledges everything, so this
never happens there.
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappush
from typing import Any

from .world import Endpoint, World

EOF = None
BASE_MIN = 0.0002
BASE_SPAN = 0.0008


class Link:
    __slots__ = ("name", "client", "server", "effects", "cut", "drop_up", "drop_down",
                 "lat_up", "lat_down", "loss", "extra_cap", "conns", "faulty")

    def __init__(self, name: str, client: str, server: str, extra_cap: float) -> None:
        self.name = name
        self.client = client
        self.server = server
        self.effects: dict[int, tuple[str, dict[str, Any]]] = {}
        self.extra_cap = extra_cap
        self.conns: dict[int, Conn] = {}
        self._recompute()

    def _recompute(self) -> None:
        self.cut = self.drop_up = self.drop_down = False
        self.loss = 0.0
        self.lat_up = []   # (latency, jitter, until) per latency effect on this direction
        self.lat_down = []
        for kind, p in self.effects.values():
            if kind == "cut":
                self.cut = True
            elif kind == "drop":
                self.drop_up = self.drop_up or p["stream"] in ("up", "both")
                self.drop_down = self.drop_down or p["stream"] in ("down", "both")
            elif kind == "latency":
                lat = (p["latency"], p["jitter"], p.get("until", float("inf")))
                if p["stream"] in ("up", "both"):
                    self.lat_up.append(lat)
                if p["stream"] in ("down", "both"):
                    self.lat_down.append(lat)
            elif kind == "loss":
                self.loss = max(self.loss, p["loss"])
        self.faulty = bool(self.effects)


class Conn:
    """One TCP connection. ``on_client``/``on_server`` get ``(conn, msg)``; ``msg is EOF``
    means the peer closed or the connection was reset. ``c_end`` says how the client's side
    ended: ``"closed"`` (its own close), ``"crash"`` (its process died), ``"eof"`` (the peer
    or the network ended it)."""

    __slots__ = ("id", "link", "client", "server", "cinc", "sinc", "c_open", "s_open",
                 "broken", "last_up", "last_down", "on_client", "on_server", "state", "c_end",
                 "abort_after", "aborting")

    def __init__(self, cid: int, link: Link, client: Endpoint, server: Endpoint,
                 on_client: Callable[[Conn, Any], None],
                 on_server: Callable[[Conn, Any], None]) -> None:
        self.id = cid
        self.link = link
        self.client = client
        self.server = server
        self.cinc = client.inc
        self.sinc = server.inc
        self.c_open = True
        self.s_open = True
        self.broken = False
        self.last_up = 0.0
        self.last_down = 0.0
        self.on_client = on_client
        self.on_server = on_server
        self.state: Any = None  # the server's per-connection state
        self.c_end: str | None = None
        self.abort_after: float | None = None  # the client's dead-peer timeout, if set
        self.aborting = False


class Net:
    def __init__(self, world: World, model: str = "toxiproxy") -> None:
        self.world = world
        self.eof_passes_drop = model == "toxiproxy"
        self.flush_on_heal = model == "toxiproxy"
        self.lost_aborts = model == "tcp"  # a connection that lost data is aborted (above)
        self.links: dict[str, Link] = {}
        self._next_conn = 1
        self.by_node: dict[str, dict[int, Conn]] = {}
        self.refused: dict[str, int] = {}   # link -> connection attempts refused
        self._arrive_server_cb = self._arrive_server  # bound once, not per message
        self._arrive_client_cb = self._arrive_client

    def add_link(self, client: str, server: str, extra_cap: float = float("inf")) -> Link:
        name = f"{client}->{server}"
        link = self.links[name] = Link(name, client, server, extra_cap)
        return link

    def link(self, client: str, server: str) -> Link:
        return self.links[f"{client}->{server}"]

    # -- delays ----------------------------------------------------------------------------
    def delay(self, link: Link, up: bool, eof: bool = False) -> float | None:
        """Delay of one message on ``link`` now, or None if it is dropped."""
        rng = self.world.rng
        d = BASE_MIN + BASE_SPAN * rng.random()
        if not link.faulty:
            return d
        if link.cut:
            return None
        if eof and self.eof_passes_drop:
            return d  # toxiproxy passes a close through every toxic at once (after queued data)
        if link.drop_up if up else link.drop_down:
            return None
        extra = 0.0
        now = self.world.now
        for lat, jitter, until in (link.lat_up if up else link.lat_down):
            e = lat + jitter * (2.0 * rng.random() - 1.0) if jitter else lat
            if self.flush_on_heal and e > until - now:
                e = until - now  # the toxic lets queued data go when it is removed
            if e > 0.0:
                extra += e
        if link.loss:
            rto = 0.2
            for _ in range(6):
                if rng.random() >= link.loss:
                    break
                extra += rto
                rto *= 2.0
        return d + min(max(extra, 0.0), link.extra_cap)

    # -- connections -------------------------------------------------------------------------
    def open(self, link: Link, client: Endpoint, server: Endpoint,
             on_client: Callable[[Conn, Any], None],
             on_server: Callable[[Conn, Any], None]) -> Conn | None:
        """Open a connection now; None if refused (the link is cut)."""
        if link.cut:
            self.refused[link.name] = self.refused.get(link.name, 0) + 1
            return None
        conn = Conn(self._next_conn, link, client, server, on_client, on_server)
        self._next_conn += 1
        link.conns[conn.id] = conn
        self.by_node.setdefault(client.name, {})[conn.id] = conn
        return conn

    def send(self, conn: Conn, up: bool, msg: Any) -> bool:
        """Send ``msg`` (or EOF) from the client (``up``) or the server; False if dropped."""
        if conn.broken or not (conn.c_open if up else conn.s_open):
            return False
        w = self.world
        if conn.link.faulty:
            d = self.delay(conn.link, up, msg is EOF)
            if d is None:
                if self.lost_aborts and conn.abort_after is not None and not conn.aborting:
                    conn.aborting = True
                    w.at_node(w.now + conn.abort_after, conn.client, conn.cinc,
                              self._abort_client, conn)
                return False
        else:
            d = BASE_MIN + BASE_SPAN * w.rng.random()
        t = w.now + d
        w._seq = seq = w._seq + 1  # World.at_node, inlined
        if up:
            if t < conn.last_up:
                t = conn.last_up
            conn.last_up = t
            heappush(w._heap, (t, seq, conn.server, conn.sinc, self._arrive_server_cb,
                               (conn, msg)))
        else:
            if t < conn.last_down:
                t = conn.last_down
            conn.last_down = t
            heappush(w._heap, (t, seq, conn.client, conn.cinc, self._arrive_client_cb,
                               (conn, msg)))
        return True

    def close_client(self, conn: Conn) -> None:
        """The client closes: FIN after any data already sent; it hears nothing more."""
        if conn.c_open:
            self.send(conn, True, EOF)
            conn.c_open = False
            conn.c_end = "closed"
            self._forget(conn)

    def close_server(self, conn: Conn) -> None:
        if conn.s_open:
            self.send(conn, False, EOF)
            conn.s_open = False
            self._forget(conn)

    def _forget(self, conn: Conn) -> None:
        if not conn.c_open and not conn.s_open:
            conn.link.conns.pop(conn.id, None)
            node_conns = self.by_node.get(conn.client.name)
            if node_conns is not None:
                node_conns.pop(conn.id, None)

    def _arrive_server(self, arg: tuple[Conn, Any]) -> None:
        conn, msg = arg
        if not conn.s_open:
            return
        if msg is EOF:
            conn.s_open = False
            self._forget(conn)
        elif conn.broken:
            return
        conn.on_server(conn, msg)

    def _arrive_client(self, arg: tuple[Conn, Any]) -> None:
        conn, msg = arg
        if not conn.c_open:
            return
        if msg is EOF:
            conn.c_open = False
            conn.c_end = "eof"
            self._forget(conn)
        elif conn.broken:
            return
        conn.on_client(conn, msg)

    def _abort_client(self, conn: Conn) -> None:
        """The client's kernel gives up on a peer that acknowledged nothing (tcp model)."""
        if conn.c_open and not conn.broken:
            self._arrive_client((conn, EOF))

    def reset(self, conn: Conn) -> None:
        """Both ends see the connection end at once (proxy disabled)."""
        if conn.broken:
            return
        conn.broken = True
        w = self.world
        if conn.c_open:
            w.at_node(w.now + BASE_MIN, conn.client, conn.cinc, self._arrive_client,
                      (conn, EOF))
        if conn.s_open:
            w.at_node(w.now + BASE_MIN, conn.server, conn.sinc, self._arrive_server,
                      (conn, EOF))

    def node_died(self, node: Endpoint) -> None:
        """A node process died: the kernel closes its sockets (FIN after queued data)."""
        for conn in list(self.by_node.get(node.name, {}).values()):
            if conn.c_open:
                self.send(conn, True, EOF)
                conn.c_open = False
                conn.c_end = "crash"
                self._forget(conn)

    # -- faults ------------------------------------------------------------------------------
    def add_effect(self, link: Link, fid: int, kind: str, params: dict[str, Any]) -> None:
        link.effects[fid] = (kind, params)
        link._recompute()
        if kind == "cut":
            for conn in list(link.conns.values()):
                self.reset(conn)

    def remove_effect(self, link: Link, fid: int) -> None:
        effect = link.effects.pop(fid, None)
        if effect is not None:
            link._recompute()
            if effect[0] == "drop" and self.eof_passes_drop:
                for conn in list(link.conns.values()):
                    self.reset(conn)
