"""Reference implementation of the multiconnect high-availability node roles.

Roles: ``master`` (lease holder promotes coreapps), ``coreapp`` (one connected per shard),
``webapp`` (REST API, routes by the shard map) and ``gateway`` (stand-in for the WhatsApp
servers). Decision logic lives in :mod:`multiconnect.core` (sans-IO, clock injected); the role
modules are thin asyncio shells around it.
"""

__version__ = "0.1.0"
