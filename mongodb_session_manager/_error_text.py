"""What of an exception may be stored or shown: its type and message, nothing of the process.

A turn's error is stored with its metrics and served by apps (``/sessions/{id}/metrics``), so
it must not carry what only the server should know: file paths, object reprs with memory
addresses (``<Task pending coro=<...> at 0x7f...>``), tracebacks. :func:`error_summary` keeps the
type name and the first part of the message with those removed.
"""

from __future__ import annotations

import re

__all__ = ["MAX_MESSAGE_LENGTH", "error_summary", "sanitize_error_message"]

MAX_MESSAGE_LENGTH = 500

# Innermost ``<Name ...>`` first, so nested reprs (``<Task ... coro=<f() running at ...>>``) fold.
_REPR = re.compile(r"<(\w[\w.]*)[^<>\n]*>")
# ``at 0x7f...``, a bare ``0x7f...``, and anyio's ``Cancelled by cancel scope 7f...`` (an id()).
_ADDRESS = re.compile(r"\s*\bat 0x[0-9a-fA-F]+|\b0x[0-9a-fA-F]{6,}\b|(?<=cancel scope) [0-9a-f]{6,}\b")
# An absolute path with at least one directory: /srv/app/x.py, C:\app\x.py, ~/x/y. Not the path
# of a URL (``https://host/a/b``: its slashes follow ``:`` or a name).
_PATH = re.compile(r"(?<![\w:/\\.])(?:[A-Za-z]:[\\/]|~/|/)(?:[^\s\\/'\"<>:,;()]+[\\/])+[^\s\\/'\"<>:,;()]*")
_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\s*File \"", re.MULTILINE)
_HIDDEN_OPEN, _HIDDEN_CLOSE = "\x02", "\x03"


def sanitize_error_message(message: str) -> str:
    """``message`` without tracebacks, file paths, memory addresses and object reprs' insides."""
    cut = _TRACEBACK.search(message)
    if cut is not None:
        message = message[: cut.start()]
    message = _ADDRESS.sub("", message)
    message = _PATH.sub("[path]", message)
    while True:
        folded = _REPR.sub(lambda m: f"{_HIDDEN_OPEN}{m[1]}{_HIDDEN_CLOSE}", message)
        if folded == message:
            break
        message = folded
    message = message.replace(_HIDDEN_OPEN, "<").replace(_HIDDEN_CLOSE, ">")
    message = " ".join(message.split())
    if len(message) > MAX_MESSAGE_LENGTH:
        message = message[: MAX_MESSAGE_LENGTH - 3] + "..."
    return message


def error_summary(error: BaseException) -> dict[str, str]:
    """``{"type": ..., "message": ...}``: what a turn record (or an HTTP error body) may hold."""
    return {"type": type(error).__name__, "message": sanitize_error_message(str(error))}
