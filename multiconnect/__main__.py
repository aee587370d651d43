"""``python -m multiconnect master|coreapp|webapp|gateway``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys

ROLES = ("master", "coreapp", "webapp", "gateway")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] not in ROLES:
        print(f"usage: python -m multiconnect {{{'|'.join(ROLES)}}}", file=sys.stderr)
        return 2
    role = argv[0]
    if role == "gateway":
        from . import gateway
        return gateway.main(os.environ)
    from .config import ConfigError, load
    try:
        cfg = load(role)
    except ConfigError as e:
        print(f"multiconnect {role}: invalid configuration: {e}", file=sys.stderr)
        return 2
    from .shell import setup_logging
    setup_logging(cfg)
    if cfg.role == "master":
        from .master import run
    elif cfg.role == "coreapp":
        from .coreapp import run
    else:
        from .webapp import run
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
