"""Reset: each connection on a link is reset when data first crosses it in ``stream`` (default
``downstream``: the server's first answer), ``after`` ms later (toxiproxy ``reset_peer``
toxic). That data is lost; the client gets a TCP RST (connection reset by peer) and the
server side is closed. With the default stream the client's request reaches the server but
no answer comes back: a connect the server has registered ends, for the client, without an
answer. Heal removes the toxic; new connections pass again.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.nemesis.base import Fault, FaultContext, as_tuple
from harness.nemesis.common import add_toxics, remove_toxics
from harness.nemesis.registry import register


@register
@dataclass
class Reset(Fault):
    link: str | tuple[str, ...]
    after: int = 0
    stream: str = "downstream"

    kind = "reset"
    chaos = None  # not drawn by random schedules (their seeds stay as they were)

    def start(self, ctx: FaultContext) -> None:
        if self.after < 0:
            raise ValueError("after is milliseconds >= 0")
        links = ctx.resolve_link_specs(as_tuple(self.link))
        self.targets = links
        add_toxics(ctx, self, links, "reset_peer", self.stream, {"timeout": int(self.after)})

    def heal(self, ctx: FaultContext) -> None:
        remove_toxics(ctx, self)
