"""Process state across ``fork`` (gunicorn ``--preload``, Celery prefork, multiprocessing).

A forked child inherits the parent's memory but only the forking thread: a lock another thread
held stays held, and clients and threads belong to the parent. Each module that keeps such state
resets its own with :func:`in_forked_child`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

__all__ = ["in_forked_child"]


def in_forked_child(reset: Callable[[], None]) -> Callable[[], None]:
    """Run ``reset`` in a child process right after a fork, where the platform forks (a decorator)."""
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=reset)
    return reset
