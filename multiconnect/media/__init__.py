"""Media store: uploaded media on a shared directory or on an NFS export reached with libnfs.

One concept per module:

- :mod:`.store`: the contract (what an item is, valid ids and content types, the errors,
  :class:`MediaStore`).
- :mod:`.threaded`: the time bound every store keeps (a thread per call, a shared
  :class:`Deadline`, at most ``max_concurrency`` at once, ``max_stuck``).
- :mod:`.directory`: :class:`DirectoryMediaStore`, plain files in a (mounted) directory.
- :mod:`.nfs_url`: ``nfs://host[:port]/export[/dir]`` parsed into an :class:`NfsTarget`.
- :mod:`.libnfs`: the ctypes binding of libnfs 4.0 and one mounted context, with the facts of
  libnfs it works around.
- :mod:`.nfs`: :class:`NfsMediaStore`, its pool of contexts and its retry rule.
- :mod:`.factory`: :func:`open_media_store`, the store ``WA_MEDIA_PATH`` names.
"""

from .directory import DIR_CHUNK, DirectoryMediaStore
from .factory import open_media_store
from .libnfs import LIBNFS_NAME, NFS_READ_CHUNK, NFS_WRITE_CHUNK
from .nfs import NfsMediaStore
from .nfs_url import NFS_DEFAULT_PORT, NfsTarget, parse_nfs_url
from .store import (
    DEFAULT_CONTENT_TYPE,
    DEFAULT_MAX_SIZE,
    DEFAULT_TIMEOUT,
    TYPE_MAX,
    MediaError,
    MediaInvalid,
    MediaNotFound,
    MediaStore,
    MediaTooLarge,
    MediaUnavailable,
    is_valid_media_id,
    normalize_content_type,
)
from .threaded import DEFAULT_MAX_CONCURRENCY, DEFAULT_MAX_STUCK, Deadline

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_MAX_STUCK",
    "DEFAULT_TIMEOUT",
    "DIR_CHUNK",
    "LIBNFS_NAME",
    "NFS_DEFAULT_PORT",
    "NFS_READ_CHUNK",
    "NFS_WRITE_CHUNK",
    "TYPE_MAX",
    "Deadline",
    "DirectoryMediaStore",
    "MediaError",
    "MediaInvalid",
    "MediaNotFound",
    "MediaStore",
    "MediaTooLarge",
    "MediaUnavailable",
    "NfsMediaStore",
    "NfsTarget",
    "is_valid_media_id",
    "normalize_content_type",
    "open_media_store",
    "parse_nfs_url",
]
