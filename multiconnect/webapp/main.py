"""The webapp process (``python -m multiconnect webapp``): open the media store and the
database pool, serve the API, bootstrap, and run until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ..config import NodeConfig
from ..media import MediaError, open_media_store
from ..shell import install_stop, start_site
from .handlers import Webapp, WebappDeps, WebappOptions
from .store import MysqlStore

log = logging.getLogger("multiconnect.webapp")


async def run(cfg: NodeConfig) -> None:
    """Serve the API until SIGTERM/SIGINT."""
    stop = asyncio.Event()
    install_stop(stop)
    try:
        media = open_media_store(cfg.media_path, cfg.media_timeout)  # no I/O yet
    except (ValueError, MediaError) as e:
        log.error("WA_MEDIA_PATH: %s", e)
        raise SystemExit(2) from None
    store = MysqlStore(cfg.db)
    webapp = Webapp(cfg, WebappDeps(
        store=store, media_factory=lambda: media,
        options=WebappOptions(media_guard=2 * cfg.media_timeout + 1.0)))
    runner = await start_site(webapp.app(), cfg.api_port, cfg, tls=bool(cfg.tls_cert))
    log.info("webapp %s listening on %d%s", cfg.name, cfg.api_port,
             " (TLS)" if cfg.tls_cert else "")
    try:
        if await webapp.bootstrap(stop):
            await stop.wait()
    finally:
        log.info("stopping")
        await runner.cleanup()
        store.close()
        with contextlib.suppress(Exception):
            media.close()
