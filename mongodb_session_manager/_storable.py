"""Can BSON hold this value, and read it back equal? One pure check, run on every write.

pymongo refuses some Python values only deep inside ``insert``/``update`` (``InvalidDocument``
for a NUL in a key or an unknown type, ``UnicodeEncodeError`` for a lone surrogate,
``OverflowError`` for an int past 64 bits), MongoDB refuses documents nested deeper than 100
levels, and some values are stored but come back different (a dict with ``$ref`` and ``$id``
reads back as a ``DBRef``). :func:`check_storable` finds the first such part before anything is
sent and raises :class:`~.errors.InvalidSessionInputError` naming its dotted path, so a caller
learns *which* field to fix and nothing is half-written.

What passes round-trips exactly: ``None``, ``bool``, ``int`` in int64 range, ``float``, ``str``,
``bytes`` (BSON Binary), ``datetime`` and the ``bson`` types; ``dict`` with ``str`` keys; ``list``
(a ``tuple`` is stored as a list).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

import bson
from bson.binary import Binary
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.objectid import ObjectId
from bson.timestamp import Timestamp

from ._large_content import DeferredContent
from .errors import InvalidSessionInputError

__all__ = ["MAX_DEPTH", "check_metadata", "check_storable", "first_unstorable"]

# MongoDB refuses documents nested more than 100 levels (each object or array adds one). A value
# is stored up to 4 levels down (``agents.<id>.state.<key>``): 90 leaves room for that.
MAX_DEPTH = 90

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_SCALARS = (
    type(None),
    bool,
    float,
    bytes,
    datetime.datetime,
    Binary,
    ObjectId,
    Decimal128,
    Int64,
    Timestamp,
    bson.regex.Regex,
    bson.min_key.MinKey,
    bson.max_key.MaxKey,
)
_EXACT_SCALARS = frozenset(_SCALARS)


def check_storable(value: Any, path: str, *, metadata: bool = False) -> None:
    """Raise ``InvalidSessionInputError`` naming the first part of ``value`` BSON cannot round-trip.

    ``path`` names ``value`` itself (``"message"``, ``"state"``); the error names the dotted path
    of the bad part below it (``"message.content.0.toolUse.input.k"``). With ``metadata=True``,
    keys that start with ``$`` or contain ``.`` are refused too: metadata is queried by key
    (``list_sessions(metadata=...)``), and such keys cannot be matched.
    """
    found = _walk(value, 0, metadata)
    if found is not None:
        parts, why = found
        where = ".".join([path, *reversed(parts)])  # an empty key shows as a trailing "."
        raise InvalidSessionInputError(f"{where}: {why}; nothing was written")


def check_metadata(metadata: Mapping[str, Any] | None) -> None:
    """:func:`check_storable` for session metadata (``"metadata"``, with the key rules)."""
    if metadata:
        check_storable(metadata, "metadata", metadata=True)


def first_unstorable(value: Any, *, metadata: bool = False) -> tuple[str, str] | None:
    """``(dotted path, reason)`` of the first part BSON cannot round-trip, or None if all can."""
    found = _walk(value, 0, metadata)
    if found is None:
        return None
    parts, why = found
    return ".".join(reversed(parts)), why


# The walker returns the path reversed (innermost part first): appending on the way out is
# cheaper than building a path on the way in for values that are fine, the common case.
_Found = tuple[list[str], str] | None


def _walk(value: Any, depth: int, metadata: bool) -> _Found:
    kind = type(value)
    if kind is str:
        return None if value.isascii() or _encodes(value) else ([], "a str with a lone surrogate")
    if kind is int:
        return None if _INT64_MIN <= value <= _INT64_MAX else ([], "an int outside the 64-bit range")
    if kind in _EXACT_SCALARS:  # before the Mapping check: an ABC check is slow for a leaf
        return None
    if kind is dict or kind is list or kind is tuple or isinstance(value, Mapping):
        if depth >= MAX_DEPTH:
            return [], f"nested deeper than {MAX_DEPTH} levels"
        if kind is list or kind is tuple:
            return _walk_items(enumerate(value), None, depth + 1, metadata)
        return _walk_items(value.items(), value, depth + 1, metadata)
    if isinstance(value, _SCALARS):
        return None
    if isinstance(value, int):  # an int subclass (an IntEnum): stored as its value
        return _walk(int(value), depth, metadata)
    if isinstance(value, str):
        return _walk(str(value), depth, metadata)
    if kind is DeferredContent:
        return [], (
            "large content not read yet (a DeferredContent) cannot be stored: "
            "`await manager.load(agent)` puts its bytes back"
        )
    return [], f"a {kind.__name__} cannot be stored (use str, int, float, bool, None, bytes, dict or list)"


def _walk_items(items: Any, mapping: Mapping[Any, Any] | None, depth: int, metadata: bool) -> _Found:
    """The items of one container (``mapping`` is None for a list); common scalars are checked inline."""
    for key, item in items:
        if mapping is not None:
            if type(key) is not str and not isinstance(key, str):
                return [repr(key)], f"keys must be str, got {type(key).__name__}"
            if "\x00" in key or metadata or key == "$ref" or not key.isascii():
                bad_key = _bad_key(key, metadata)
                if bad_key is None and key == "$ref" and "$id" in mapping:
                    bad_key = "a dict with '$ref' and '$id' reads back as a DBRef"
                if bad_key is not None:
                    return [_printable(key)], bad_key
        kind = type(item)
        if kind is str:
            if item.isascii() or _encodes(item):
                continue
        elif kind is int:
            if _INT64_MIN <= item <= _INT64_MAX:
                continue
        elif kind is float or kind is bool or item is None:
            continue
        found = _walk(item, depth, metadata)
        if found is not None:
            found[0].append(str(key))
            return found
    return None


def _bad_key(key: str, metadata: bool) -> str | None:
    if "\x00" in key:
        return "a key with a NUL character"
    if not key.isascii() and not _encodes(key):
        return "a key with a lone surrogate"
    if metadata and (key.startswith("$") or "." in key or not key):
        return "metadata keys must be non-empty and must not start with '$' or contain '.'"
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(key: str) -> str:
    """A key as it can appear in an error message (NULs and surrogates escaped)."""
    return key.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
