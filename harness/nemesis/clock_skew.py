"""Clock skew: move a node's wall clock (``time.time()``) with libfaketime.

Node containers preload libfaketime with ``FAKETIME_TIMESTAMP_FILE=/run/faketime/offset``,
``FAKETIME_CACHE_DURATION=1`` and ``FAKETIME_DONT_FAKE_MONOTONIC=1``: writing an offset such
as ``+60`` or ``-120.5`` (seconds) into that file moves the wall clock of every process in the
container within a second (libfaketime re-reads it at most once a second); monotonic clocks
are untouched. Modes:

- ``jump``: the offset is written once at start;
- ``drift``: the offset is reached in ``steps`` equal steps spread over ``over`` seconds
  (step i of 1..steps at (i-1)·over/steps), a clock running fast or slow;

heal writes ``+0`` (also into a stopped container, through the Docker archive API), so the
clock is true again. Only node containers (masters, coreapps, webapps) carry libfaketime.
"""

from __future__ import annotations

import io
import tarfile
import threading
import time
from dataclasses import dataclass

from harness.nemesis.base import Fault, FaultContext, FaultSkipped
from harness.nemesis.common import container, status
from harness.nemesis.draw import Draw
from harness.nemesis.registry import register

OFFSET_FILE = "/run/faketime/offset"
MODES = ("jump", "drift")


def offset_text(seconds: float) -> str:
    """libfaketime's relative offset syntax: ``+60``, ``-0.25``, ``+0``."""
    text = f"{seconds:+.3f}".rstrip("0").rstrip(".")
    return "+0" if text in ("+", "-", "-0", "+0") else text


def write_offset(ctx: FaultContext, name: str, seconds: float) -> None:
    c = container(ctx, name)
    text = offset_text(seconds)
    if status(c) == "running":
        res = c.exec_run(["sh", "-c", f"printf '%s\\n' '{text}' > {OFFSET_FILE}"])
        if res.exit_code != 0:
            raise RuntimeError(f"writing {text} into {name}:{OFFSET_FILE} failed: "
                               f"{res.output.decode(errors='replace').strip()}")
        return
    data = (text + "\n").encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(OFFSET_FILE.rsplit("/", 1)[1])
        info.size, info.mode = len(data), 0o666
        tar.addfile(info, io.BytesIO(data))
    if not c.put_archive(OFFSET_FILE.rsplit("/", 1)[0], buf.getvalue()):
        raise RuntimeError(f"could not write {OFFSET_FILE} into stopped {name}")


@register
@dataclass
class ClockSkew(Fault):
    target: str
    offset: float = 60.0
    mode: str = "jump"
    over: float = 10.0
    steps: int = 10

    kind = "clock-skew"
    chaos = 60

    @classmethod
    def draw(cls, d: Draw) -> ClockSkew:
        mode = d.rng.choice(MODES)
        offset = float(d.rng.choice((-300, -120, -30, -5, 5, 30, 120, 300)))
        return cls(d.rng.choice(d.nodes), offset=offset, mode=mode, over=round(d.duration, 3),
                   steps=d.rng.randint(3, 10))

    def start(self, ctx: FaultContext) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.mode == "drift" and (self.steps < 1 or self.over <= 0):
            raise ValueError("drift needs steps >= 1 and over > 0")
        name = ctx.resolve(self.target)
        roles = set(ctx.node_names())
        if name not in roles:
            raise FaultSkipped(f"{name} has no libfaketime (only masters, coreapps, webapps)")
        ctx.claim("clock", name)
        self.targets = [name]
        self._stop = threading.Event()
        self._errors: list[str] = []
        if self.mode == "jump":
            write_offset(ctx, name, self.offset)
            return
        write_offset(ctx, name, self.offset / self.steps)
        self._thread = threading.Thread(target=self._drift, args=(ctx, name), daemon=True,
                                        name=f"drift-{name}")
        self._thread.start()

    def _drift(self, ctx: FaultContext, name: str) -> None:
        t0, dt = time.monotonic(), self.over / self.steps
        for i in range(2, self.steps + 1):
            if self._stop.wait(max(0.0, t0 + (i - 1) * dt - time.monotonic())):
                return
            try:
                write_offset(ctx, name, self.offset * i / self.steps)
            except Exception as e:  # noqa: BLE001 - recorded at heal
                self._errors.append(f"step {i}: {e}")

    def heal(self, ctx: FaultContext) -> None:
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()
        thread = getattr(self, "_thread", None)
        if thread is not None:
            thread.join(timeout=10)
        for name in self.targets:
            write_offset(ctx, name, 0.0)
        if getattr(self, "_errors", None):
            raise RuntimeError("drift steps failed: " + "; ".join(self._errors))
