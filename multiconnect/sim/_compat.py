"""Run the simulator under Python 3.9 interpreters (Debian 12's ``pypy3``, about 2× faster).

Nothing here is active on CPython with pymysql installed (the project's own setup). The
decision cores are written to import on 3.9 (e.g. ``Union[...]`` for the one type alias).
``multiconnect.db`` (whose exception and row types the simulated shells use) imports
pymysql at module level; the simulator never talks to a database, so where pymysql is not
installed a stub stands in whose ``connect`` raises ``ImportError``.

Under PyPy the JIT compiles sooner than its defaults (``JIT_PARAMS``): a schedule's paths
differ with its faults, so warm-up is long; with these, 300 schedules took ≈ 13 % less CPU.
PyPy's garbage collector sizes its young generation from the CPU's cache (1 MB here); a
schedule's events, tasks and futures outlive that, so a quarter of the CPU went to collecting
them. The command-line entry points run themselves again with ``GC_NURSERY`` (PyPy reads it
only at start): ``reexec_with_gc_nursery``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from typing import Any

JIT_PARAMS = "threshold=300,function_threshold=400,trace_eagerness=50"
#: PyPy's young generation for the simulator (PYPY_GC_NURSERY; a user's own value wins)
GC_NURSERY = "64M"


def reexec_with_gc_nursery(arguments: list[str]) -> None:
    """Under PyPy without ``PYPY_GC_NURSERY`` set: replace this process by ``pypy3
    *arguments`` with it set to ``GC_NURSERY`` (does not return). Elsewhere: nothing."""
    if sys.implementation.name != "pypy" or "PYPY_GC_NURSERY" in os.environ:
        return
    env = dict(os.environ, PYPY_GC_NURSERY=GC_NURSERY)
    sys.stdout.flush()  # what this process printed so far is not lost with it
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *arguments], env)


def _stub_pymysql() -> None:
    def connect(*_: Any, **__: Any) -> Any:
        raise ImportError("pymysql is not installed (stub from multiconnect.sim._compat)")

    root = types.ModuleType("pymysql")
    root.connect = connect  # type: ignore[attr-defined]
    for sub in ("cursors", "connections", "constants", "err"):
        mod = types.ModuleType(f"pymysql.{sub}")
        setattr(root, sub, mod)
        sys.modules[mod.__name__] = mod
    root.constants.CLIENT = types.SimpleNamespace(MULTI_STATEMENTS=0)  # type: ignore
    sys.modules["pymysql"] = root


def install() -> None:
    if sys.implementation.name == "pypy":
        import pypyjit  # type: ignore[import-not-found]

        pypyjit.set_param(JIT_PARAMS)
    if "pymysql" not in sys.modules and importlib.util.find_spec("pymysql") is None:
        _stub_pymysql()


install()
