"""The process-wide cache of large content bytes: bounded by bytes, least recently used out first."""

from __future__ import annotations

import multiprocessing
import threading
from multiprocessing.connection import Connection

import pytest

from mongodb_session_manager._content_cache import ContentCache, forget, shared_cache
from mongodb_session_manager.errors import ConfigurationError


def _key(name: str) -> tuple[str, str, str]:
    return ("chat", "sessions_files", name)


def test_it_evicts_the_least_recently_used_files_until_the_bytes_fit() -> None:
    cache = ContentCache(max_bytes=10)
    cache.put_many({_key("a"): b"aaaa", _key("b"): b"bbbb"})
    assert cache.get_many([_key("a")]) == {_key("a"): b"aaaa"}  # a is now the most recent

    cache.put_many({_key("c"): b"cccc"})  # 12 bytes: b, the least recently used, goes
    assert cache.get_many([_key("a"), _key("b"), _key("c")]) == {_key("a"): b"aaaa", _key("c"): b"cccc"}
    assert (len(cache), cache.size_bytes) == (2, 8)

    cache.put_many({_key("big"): b"x" * 11})  # larger than the bound: never kept
    assert cache.get_many([_key("big")]) == {}
    assert cache.size_bytes == 8


def test_putting_a_file_again_counts_its_bytes_once() -> None:
    cache = ContentCache(max_bytes=10)
    cache.put_many({_key("a"): b"aaaa"})
    cache.put_many({_key("a"): b"aaaa"})
    assert (len(cache), cache.size_bytes) == (1, 4)


def test_deleted_files_leave_every_cache_of_the_process() -> None:
    small, large = shared_cache(1000), shared_cache(2000)
    assert small is not None
    assert large is not None
    assert shared_cache(1000) is small  # one cache per bound
    assert shared_cache(0) is None  # 0: no cache
    small.put_many({_key("gone"): b"g", _key("kept"): b"k"})
    large.put_many({_key("gone"): b"g"})

    forget([_key("gone")])
    assert small.get_many([_key("gone"), _key("kept")]) == {_key("kept"): b"k"}
    assert large.get_many([_key("gone")]) == {}
    small.clear()
    assert (len(small), small.size_bytes) == (0, 0)


@pytest.mark.parametrize("bad", [-1, True, 2.5, "1MB", None])
def test_a_bound_other_than_an_int_of_at_least_zero_is_refused(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="large_content_cache_bytes"):
        ContentCache(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="large_content_cache_bytes"):
        shared_cache(bad)  # type: ignore[arg-type]


def test_threads_sharing_it_never_push_it_past_its_bound() -> None:
    cache = ContentCache(max_bytes=1000)

    def worker(thread: int) -> None:
        for index in range(500):
            cache.put_many({_key(f"{thread}-{index}"): b"x" * (index % 90 + 1)})
            cache.get_many([_key(f"{thread}-{index - 3}")])
            if index % 7 == 0:
                cache.discard([_key(f"{thread}-{index - 1}")])

    threads = [threading.Thread(target=worker, args=(thread,)) for thread in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    held = list(cache._entries.values())
    assert cache.size_bytes == sum(len(data) for data in held) <= 1000


def _child_uses(cache: ContentCache, answer: Connection) -> None:
    cache.put_many({_key("child"): b"cc"})
    answer.send((cache.get_many([_key("parent"), _key("child")]), shared_cache(1000) is not None))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork here")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")  # 3.12+
def test_a_child_forked_while_a_thread_holds_the_lock_starts_empty_and_unlocked() -> None:
    cache = ContentCache(max_bytes=10)
    cache.put_many({_key("parent"): b"pp"})
    receive, send = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.get_context("fork").Process(target=_child_uses, args=(cache, send))
    with cache._lock:  # another thread mid-update, as far as the child can tell
        child.start()
    try:
        assert receive.poll(10), "the child deadlocked on the cache's lock"
        assert receive.recv() == ({_key("child"): b"cc"}, True)
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
    assert cache.get_many([_key("parent")]) == {_key("parent"): b"pp"}  # the parent's is untouched
