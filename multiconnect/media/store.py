"""The media store's contract: what an item is, the errors, and the async interface.

Model. A media item is two files in one flat directory: ``<id>`` (the bytes) and ``<id>.type``
(the content type, ASCII). ``put`` writes each file under a unique temporary name
(:func:`tmp_name`, ``.<name>.<random>.tmp``) and renames it into place, data first, type
second, so a reader sees either no item or the complete data; a missing ``.type`` reads as
``application/octet-stream``. Ids are ``uuid4().hex``; ``get`` accepts ``[0-9a-f-]{8,64}`` and
treats anything else as not found, so no id can name a path outside the directory.
"""

from __future__ import annotations

import abc
import re
import secrets

DEFAULT_TIMEOUT = 3.0
DEFAULT_CONTENT_TYPE = "application/octet-stream"
DEFAULT_MAX_SIZE = 16 * 1024 * 1024
TYPE_MAX = 255

_ID_RE = re.compile(r"[0-9a-f-]{8,64}")
_CONTENT_TYPE_RE = re.compile(r"[\x21-\x7e][\x20-\x7e]*")


class MediaError(Exception):
    """Base class of every error the media store raises."""


class MediaNotFound(MediaError):
    """No media with that id (or the id is not a valid media id)."""


class MediaUnavailable(MediaError):
    """The store could not be reached or did not answer in time; the message says what failed."""


class MediaInvalid(MediaError, ValueError):
    """The caller's input is unacceptable (content type, explicit id)."""


class MediaTooLarge(MediaInvalid):
    """The data is larger than the store's ``max_size``."""


def is_valid_media_id(media_id: object) -> bool:
    """True for strings that may name a media item (``[0-9a-f-]{8,64}``)."""
    return isinstance(media_id, str) and _ID_RE.fullmatch(media_id) is not None


def normalize_content_type(content_type: str | None) -> str:
    """Return the content type to store: printable ASCII, at most 255 characters.

    Empty or ``None`` becomes ``application/octet-stream``; anything else invalid raises
    ``MediaInvalid``.
    """
    ct = (content_type or "").strip()
    if not ct:
        return DEFAULT_CONTENT_TYPE
    if len(ct) > TYPE_MAX or _CONTENT_TYPE_RE.fullmatch(ct) is None:
        raise MediaInvalid(
            f"content type must be printable ASCII of at most {TYPE_MAX} characters: {ct[:40]!r}"
        )
    return ct



def tmp_name(name: str) -> str:
    """A unique temporary name for ``name`` in the same directory: ``.<name>.<random>.tmp``."""
    return f".{name}.{secrets.token_hex(6)}.tmp"


def decode_type(raw: bytes) -> str:
    """The content type read from a ``.type`` file; anything unreadable is the default."""
    try:
        return normalize_content_type(raw.decode("ascii"))
    except (UnicodeDecodeError, MediaInvalid):
        return DEFAULT_CONTENT_TYPE


class MediaStore(abc.ABC):
    """Async media store used by the webapp; every call returns or raises within ``timeout``."""

    timeout: float

    @abc.abstractmethod
    async def put(self, data: bytes, content_type: str, *, media_id: str | None = None) -> str:
        """Store ``data``; return its id (new ``uuid4().hex`` unless ``media_id`` is given,
        in which case that item is replaced)."""

    @abc.abstractmethod
    async def get(self, media_id: str) -> tuple[bytes, str]:
        """Return ``(data, content_type)``; ``MediaNotFound`` for unknown or invalid ids."""

    @abc.abstractmethod
    async def check(self) -> None:
        """Return if the store is reachable and usable, else raise ``MediaUnavailable``."""

    def describe(self) -> str:
        """Where the media lives, for messages and logs."""
        return type(self).__name__

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release idle resources (connections); the store stays usable."""
