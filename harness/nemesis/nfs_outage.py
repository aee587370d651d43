"""NFS outage: the shared media store becomes unavailable to the webapps. Variants as in
:mod:`db_outage`: ``links`` (default; every ``*->nfs`` link cut: the webapps' NFS client is
refused at once), ``blackhole`` (their calls hang until ``WA_MEDIA_TIMEOUT``), ``pause`` (the
server frozen), ``stop`` (refused: the export is a tmpfs). Skipped on topologies whose media
store is a Docker volume, and never drawn there by random schedules. Targets: ``["nfs"]``.
Expected effect: media calls fail fast with the error envelope (503, code 1011) and work
again after heal."""

from __future__ import annotations

from dataclasses import dataclass

from harness.nemesis.base import Fault, FaultContext
from harness.nemesis.db_outage import outage_heal, outage_start
from harness.nemesis.draw import Draw
from harness.nemesis.registry import register
from harness.spec import Topology


@register
@dataclass
class NfsOutage(Fault):
    variant: str = "links"

    kind = "nfs-outage"
    chaos = 150

    @classmethod
    def draw(cls, d: Draw) -> NfsOutage:
        return cls(variant=d.rng.choice(("links", "blackhole", "pause")))

    @classmethod
    def usable(cls, topology: Topology) -> bool:
        return topology.media == "nfs"

    def start(self, ctx: FaultContext) -> None:
        outage_start(ctx, self, "nfs", self.variant, "/export")

    def heal(self, ctx: FaultContext) -> None:
        outage_heal(ctx, self, "nfs", self.variant)
