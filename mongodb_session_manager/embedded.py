"""Start and stop a local SecantusDB server as a child process.

SecantusDB (``pip install 'mongodb-session-manager[embedded]'``) speaks the MongoDB wire protocol,
so demos and the test suite run without Docker or a mongod install. The server runs in its own
process, never in ours: a crash or a slow query there cannot stall the application's event loop.

The child is never left behind: `EmbeddedServer.stop` runs from ``__exit__`` and from an
``atexit`` handler (so Ctrl-C ends it too), and on Linux the child also asks the kernel for
``SIGTERM`` when its parent dies (``PR_SET_PDEATHSIG``), which covers a ``SIGKILL``ed parent.
"""

from __future__ import annotations

import atexit
import collections
import ctypes
import ctypes.util
import importlib.util
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from ._driver_errors import translate_driver_errors
from .errors import EmbeddedServerError, InvalidSessionInputError, MongoDBSessionError
from .pool import MongoDBConnectionPool

logger = logging.getLogger(__name__)

__all__ = ["EmbeddedServer", "EmbeddedServerError", "local_mongodb", "start_embedded_server"]

_EXECUTABLE_NAME = "secantusd-py"
_MEMORY = ":memory:"
_LISTENING = re.compile(r"secantus listening on (?P<host>[^\s:]+):(?P<port>\d+)")
_TAIL_LINES = 40
_STOP_TIMEOUT = 5.0
_PR_SET_PDEATHSIG = 1
_INSTALL_HINT = "pip install 'mongodb-session-manager[embedded]'"


class EmbeddedServer:
    """A SecantusDB server in a child process, listening on a free local port.

    Use it as a context manager, or call `start` and `stop` yourself::

        with EmbeddedServer() as server:
            client = pymongo.MongoClient(server.uri)

    ``storage_path=None`` keeps the data in memory (gone when the server stops); a directory keeps
    it across restarts. ``port=0`` picks a free port. ``command`` replaces the server command line
    prefix (the executable and any interpreter arguments) and exists for tests and unusual installs.
    ``server_args`` are extra ``secantusd-py`` flags, e.g. ``("--cache-size", "4G")``.
    """

    def __init__(
        self,
        *,
        storage_path: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 30.0,
        command: Sequence[str] | None = None,
        server_args: Sequence[str] = (),
    ) -> None:
        if (
            not isinstance(startup_timeout, (int, float))
            or isinstance(startup_timeout, bool)
            or startup_timeout <= 0
        ):
            raise InvalidSessionInputError("startup_timeout must be positive")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise InvalidSessionInputError("port must be between 0 (any free port) and 65535")
        self._storage_path = _MEMORY if storage_path is None else str(storage_path)
        self._host = host
        self._requested_port = port
        self._startup_timeout = startup_timeout
        self._command = list(command) if command is not None else None
        self._server_args = [str(arg) for arg in server_args]
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self._listening = threading.Event()
        self._port: int | None = None
        self._lock = threading.Lock()

    # -- public surface -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port the running server listens on."""
        if self._port is None or not self.running:
            raise EmbeddedServerError("the embedded server is not running; call start() first")
        return self._port

    @property
    def uri(self) -> str:
        """A connection string for the running server (direct connection, no retryable writes)."""
        return f"mongodb://{self._host}:{self.port}/?retryWrites=false&directConnection=true"

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs, else None."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        """Whether the child process is alive."""
        return self._process is not None and self._process.poll() is None

    def output_tail(self) -> list[str]:
        """The last lines the server wrote (stdout and stderr merged), oldest first."""
        return list(self._tail)

    def start(self) -> EmbeddedServer:
        """Launch the server and wait until it answers ``ping``; a no-op when already running.

        Raises `EmbeddedServerError` with the server's last output lines when the process exits,
        does not come up within ``startup_timeout``, or SecantusDB is not installed.
        """
        with self._lock:
            if self.running:
                return self
            argv = [
                *self._server_command(),
                *("--host", self._host, "--port", str(self._requested_port)),
                *("--storage-path", self._storage_path),
                *self._server_args,
            ]
            self._tail.clear()
            self._listening.clear()
            self._port = None
            self._process = _spawn(argv)
            atexit.register(self.stop)
            self._reader = threading.Thread(
                target=self._drain, name=f"secantusd-output-{self._process.pid}", daemon=True
            )
            self._reader.start()
            try:
                self._wait_until_ready(time.monotonic() + self._startup_timeout)
            except BaseException:
                self._stop_locked()
                raise
            logger.info("pid=<%s>, port=<%s> | embedded SecantusDB started", self._process.pid, self._port)
            return self

    def stop(self) -> None:
        """Terminate the server (kill it after 5 s); safe to call any number of times."""
        with self._lock:
            self._stop_locked()

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"port={self._port}" if self.running else "stopped"
        return f"EmbeddedServer(storage_path={self._storage_path!r}, {state})"

    # -- internals ------------------------------------------------------------------------------

    def _server_command(self) -> list[str]:
        """The executable (and interpreter arguments) that runs the server."""
        if self._command is not None:
            return self._command
        return _find_server_command()

    def _drain(self) -> None:
        """Read the child's output until it closes, so the pipe never fills and blocks the server."""
        process = self._process
        if process is None or process.stdout is None:
            return
        for raw in process.stdout:
            line = raw.rstrip()
            self._tail.append(line)
            if not self._listening.is_set():
                match = _LISTENING.search(line)
                if match:
                    self._port = int(match.group("port"))
                    self._listening.set()
            logger.debug("secantusd | %s", line)

    def _wait_until_ready(self, deadline: float) -> None:
        """Wait for the "listening" line, then for a successful ``ping``."""
        while not self._listening.wait(timeout=0.05):
            self._check_alive()
            if time.monotonic() >= deadline:
                raise self._failure(f"did not report a listening port within {self._startup_timeout:g} s")
        while True:
            self._check_alive()
            error = _ping(self.uri, timeout=max(0.1, min(2.0, deadline - time.monotonic())))
            if error is None:
                return
            if time.monotonic() >= deadline:
                raise self._failure(f"did not answer ping within {self._startup_timeout:g} s ({error})")
            time.sleep(0.05)

    def _check_alive(self) -> None:
        process = self._process
        if process is not None and process.poll() is not None:
            if self._reader is not None:
                self._reader.join(timeout=1.0)  # collect the last words before reporting them
            raise self._failure(f"exited with code {process.returncode} during startup")

    def _failure(self, what: str) -> EmbeddedServerError:
        tail = "\n".join(f"    {line}" for line in self._tail) or "    (no output)"
        return EmbeddedServerError(
            f"embedded SecantusDB (storage_path={self._storage_path!r}) {what}. Last server output:\n{tail}"
        )

    def _stop_locked(self) -> None:
        process, self._process = self._process, None
        atexit.unregister(self.stop)
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                logger.warning("pid=<%s> | embedded SecantusDB ignored SIGTERM, killing it", process.pid)
                process.kill()
                process.wait()
        if self._reader is not None:
            self._reader.join(timeout=1.0)
            self._reader = None
        if process.stdout is not None:
            process.stdout.close()
        logger.info(
            "pid=<%s>, returncode=<%s> | embedded SecantusDB stopped", process.pid, process.returncode
        )


@contextmanager
def local_mongodb(*, storage_path: str | Path | None = None) -> Iterator[str]:
    """Yield a connection string: ``MONGODB_URI`` when set, else a SecantusDB started for the block.

    What the demo, the examples and the CLI use so they run on a fresh machine with no MongoDB.
    """
    configured = os.environ.get("MONGODB_URI")
    if configured:
        yield configured
        return
    with EmbeddedServer(storage_path=storage_path) as server:
        try:
            yield server.uri
        finally:
            MongoDBConnectionPool.default().close(server.uri)


def start_embedded_server(*, storage_path: str | Path | None = None) -> EmbeddedServer:
    """Start an `EmbeddedServer` and return it running; the caller stops it (or atexit does)."""
    return EmbeddedServer(storage_path=storage_path).start()


def _find_server_command() -> list[str]:
    """Locate ``secantusd-py``: next to this interpreter, then on PATH, then via the module."""
    beside = Path(sys.executable).parent / _EXECUTABLE_NAME
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    on_path = shutil.which(_EXECUTABLE_NAME)
    if on_path is not None:
        return [on_path]
    if importlib.util.find_spec("secantus") is not None:
        # Installed without its console script (e.g. --no-binary tooling): run the entry point.
        return [sys.executable, "-c", "import sys; from secantus.cli import main; sys.exit(main())"]
    raise EmbeddedServerError(
        f"SecantusDB is not installed, so the embedded server cannot start. Install it with: {_INSTALL_HINT}"
    )


def _spawn(argv: list[str]) -> subprocess.Popen[str]:
    """Start the server process with merged, line-buffered text output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            env=env,
            start_new_session=True,  # Ctrl-C reaches us, not the server: we stop it in order
            preexec_fn=_parent_death_signal(),  # only calls prctl
        )
    except OSError as exc:
        raise EmbeddedServerError(
            f"could not run the embedded server command {argv[0]!r}: {exc}. Install it with: {_INSTALL_HINT}"
        ) from exc


def _parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes Linux send the child SIGTERM when the parent dies, else None.

    The kernel ties the signal to the *thread* that forked, so it is set only from the main thread;
    a server started from a worker thread would otherwise die with that thread.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    # Resolved here, in the parent, so the forked child does as little as possible before exec.
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()

    def _arm() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return _arm


def _ping(uri: str, *, timeout: float) -> str | None:
    """Run ``ping`` once; None on success, else a short reason."""
    import pymongo  # a base dependency; imported here to keep module import cheap

    timeout_ms = max(100, int(timeout * 1000))
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
        uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms
    )
    try:
        with translate_driver_errors("ping"):
            client.admin.command("ping")
    except MongoDBSessionError as exc:
        return str(exc)
    finally:
        client.close()
    return None
