"""``serve-db``: the embedded SecantusDB in the foreground until Ctrl-C or SIGTERM.

With ``--json`` each event is one JSON line on stdout (``listening`` with the URI, ``stopped``),
so a script can read the URI without parsing prose.
"""

from __future__ import annotations

import argparse
import errno
import json
import signal
import socket
import sys
import threading
from types import FrameType
from typing import Any

from ..embedded import EmbeddedServer, EmbeddedServerError
from ._common import EXIT_ERROR, EXIT_USAGE, CLIError

__all__ = ["serve_db"]

_POLL_SECONDS = 0.5
_IN_USE_MARKERS = ("address already in use", "errno 98", "eaddrinuse")


def serve_db(args: argparse.Namespace) -> int:
    _check_port_free(args.host, args.port)
    server = EmbeddedServer(storage_path=args.storage_path, host=args.host, port=args.port)
    stopping = threading.Event()

    def _on_sigterm(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        try:
            server.start()
        except EmbeddedServerError as exc:
            if any(marker in line.lower() for line in server.output_tail() for marker in _IN_USE_MARKERS):
                raise _port_in_use(args.host, args.port) from exc
            raise
        storage = "in memory" if args.storage_path is None else str(args.storage_path)
        _say(
            args,
            [
                f"SecantusDB listening on {server.uri}",
                f"pid {server.pid}, storage {storage}; press Ctrl-C to stop",
                f"export MONGODB_URI='{server.uri}'",
            ],
            event="listening",
            uri=server.uri,
            pid=server.pid,
            storage_path=None if args.storage_path is None else str(args.storage_path),
        )
        while server.running and not stopping.wait(_POLL_SECONDS):
            pass
        if not stopping.is_set():
            last = " | ".join(server.output_tail()[-3:]) or "no output"
            raise CLIError(f"the embedded server exited unexpectedly ({last})", EXIT_ERROR)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how this command is meant to end
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
    _say(args, ["SecantusDB stopped"], event="stopped")
    return 0


def _check_port_free(host: str, port: int) -> None:
    """Refuse a taken port up front: one clear line instead of the server's startup traceback."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise _port_in_use(host, port) from exc
            raise CLIError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", EXIT_USAGE) from exc


def _port_in_use(host: str, port: int) -> CLIError:
    return CLIError(
        f"port {port} on {host} is already in use: stop what listens there or pick another --port "
        "(--port 0 picks a free one)",
        EXIT_USAGE,
    )


def _say(args: argparse.Namespace, lines: list[str], **event: Any) -> None:
    if args.json:
        sys.stdout.write(json.dumps(event) + "\n")
    else:
        sys.stdout.write("".join(line + "\n" for line in lines))
    sys.stdout.flush()
