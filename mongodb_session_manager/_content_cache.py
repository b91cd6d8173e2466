"""A process-wide, bounded cache of large content bytes, so a resume need not download them again.

GridFS files of large content are immutable: each is written once under a fresh ObjectId and
only ever deleted (with its session). So their bytes can be kept in memory and served to the
next read without asking the server whether they changed. A web app that builds a manager per
request resumes the session on every turn; without this cache every turn would download each
20 MB image again.

The cache holds at most ``max_bytes`` bytes of file content and evicts the least recently used
files first. Repositories asking for the same bound share one cache per process (each worker
process has its own); a bound of 0 means no cache. Entries are dropped when this package deletes
the files (:func:`forget`, on every cache of the process). A forked child starts with every cache
empty and new locks. Nothing here does I/O.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from ._fork import in_forked_child
from .errors import ConfigurationError

__all__ = [
    "DEFAULT_LARGE_CONTENT_CACHE_BYTES",
    "ContentCache",
    "forget",
    "shared_cache",
    "validate_cache_bytes",
]

DEFAULT_LARGE_CONTENT_CACHE_BYTES = 256 * 1024 * 1024

# A file's key: (database name, bucket name, file id). The id alone is unique in practice; the
# bucket keeps two databases' copies (a restored dump) apart.
Key = tuple[str, str, Any]


class ContentCache:
    """Bytes of GridFS files by key, least recently used evicted first; thread-safe."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = validate_cache_bytes(max_bytes)
        self._empty()
        _instances.add(self)

    def _empty(self) -> None:
        self._entries: OrderedDict[Key, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ContentCache(max_bytes={self.max_bytes}, files={len(self)}, bytes={self.size_bytes})"

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        """The content bytes held now (never more than :attr:`max_bytes`)."""
        return self._bytes

    def get_many(self, keys: Iterable[Key]) -> dict[Key, bytes]:
        """The cached bytes of those ``keys`` it holds; each hit becomes the most recently used."""
        found: dict[Key, bytes] = {}
        with self._lock:
            for key in keys:
                data = self._entries.get(key)
                if data is not None:
                    self._entries.move_to_end(key)
                    found[key] = data
        return found

    def put_many(self, files: Mapping[Key, bytes]) -> None:
        """Keep ``files``, evicting the least recently used; a file larger than the bound is skipped."""
        with self._lock:
            for key, data in files.items():
                size = len(data)
                if size > self.max_bytes:
                    continue
                previous = self._entries.pop(key, None)
                if previous is not None:
                    self._bytes -= len(previous)
                self._entries[key] = bytes(data)
                self._bytes += size
                while self._bytes > self.max_bytes:
                    _, evicted = self._entries.popitem(last=False)
                    self._bytes -= len(evicted)

    def discard(self, keys: Iterable[Key]) -> None:
        """Drop ``keys`` (deleted files)."""
        with self._lock:
            for key in keys:
                data = self._entries.pop(key, None)
                if data is not None:
                    self._bytes -= len(data)

    def clear(self) -> None:
        """Drop everything (e.g. to time a cold read)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0


def validate_cache_bytes(value: Any) -> int:
    """The cache bound in bytes: an int of at least 0 (0: no cache; a ``bool`` is not one)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(
            f"large_content_cache_bytes must be an int >= 0 (bytes, 0 turns the cache off), got {value!r}"
        )
    return value


_caches: dict[int, ContentCache] = {}
_caches_lock = threading.Lock()
_instances: weakref.WeakSet[ContentCache] = weakref.WeakSet()


def shared_cache(max_bytes: int) -> ContentCache | None:
    """The process's cache of bound ``max_bytes`` (made on first use); None for 0 (no cache)."""
    if validate_cache_bytes(max_bytes) == 0:
        return None
    with _caches_lock:
        cache = _caches.get(max_bytes)
        if cache is None:
            cache = _caches[max_bytes] = ContentCache(max_bytes)
        return cache


def forget(keys: Iterable[Key]) -> None:
    """Drop deleted files from every cache of the process (repositories may use different bounds)."""
    keys = list(keys)
    with _caches_lock:
        caches = list(_caches.values())
    for cache in caches:
        cache.discard(keys)


@in_forked_child
def _after_fork_in_child() -> None:
    # Another thread of the parent may have held a lock mid-update at the fork: new locks, and
    # no entries or byte count that update may have left half done.
    global _caches_lock
    _caches_lock = threading.Lock()
    for cache in list(_instances):
        cache._empty()
