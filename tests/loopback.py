"""A loopback server socket for tests of what a client makes of a peer: ``state["mode"]``
decides what it does with each connection it accepts, and may change mid-test.

- ``hang``: keeps it open and silent (a server waiting for its client, a black hole);
- ``reset-after-read``: reads a request, then closes;
- ``close``: closes it at once (a proxy whose upstream refused).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def listening(mode: str = "hang") -> Iterator[tuple[int, dict[str, Any]]]:
    """(its port, its state) while it serves; every connection is closed at the end."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    conns: list[socket.socket] = []
    state: dict[str, Any] = {"mode": mode}
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                continue
            conns.append(c)
            if state["mode"] == "reset-after-read":
                c.recv(65536)
                c.close()
            elif state["mode"] == "close":
                c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1], state
    finally:
        stop.set()
        t.join(2)
        for c in conns:
            c.close()
        srv.close()
