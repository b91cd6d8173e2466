"""``serve-db``: the embedded SecantusDB in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from ..embedded import EmbeddedServer
from ._common import EXIT_ERROR, CLIError

__all__ = ["serve_db"]

_POLL_SECONDS = 0.5


def serve_db(args: argparse.Namespace) -> int:
    server = EmbeddedServer(storage_path=args.storage_path, host=args.host, port=args.port)
    stopping = threading.Event()

    def _on_sigterm(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        server.start()
        storage = "in memory" if args.storage_path is None else str(args.storage_path)
        _say(f"SecantusDB listening on {server.uri}")
        _say(f"pid {server.pid}, storage {storage}; press Ctrl-C to stop")
        _say(f"export MONGODB_URI='{server.uri}'")
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
    _say("SecantusDB stopped")
    return 0


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
