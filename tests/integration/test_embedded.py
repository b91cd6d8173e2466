"""EmbeddedServer starts a SecantusDB child process, answers ping, and never leaves it behind."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import time
from pathlib import Path

import pymongo
import pytest

from mongodb_session_manager.embedded import EmbeddedServer, EmbeddedServerError, start_embedded_server

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _ping(uri: str) -> float:
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        return float(client.admin.command("ping")["ok"])
    finally:
        client.close()


def test_start_ping_stop() -> None:
    server = start_embedded_server()
    try:
        assert server.running
        assert server.uri == f"mongodb://127.0.0.1:{server.port}/?retryWrites=false&directConnection=true"
        assert _ping(server.uri) == 1.0
        pid = server.pid
        assert pid is not None
    finally:
        server.stop()
    assert not server.running
    assert not _alive(pid)
    with pytest.raises(EmbeddedServerError, match="not running"):
        _ = server.uri


def test_context_manager_stops_the_process() -> None:
    with EmbeddedServer() as server:
        pid = server.pid
        assert pid is not None
        assert _ping(server.uri) == 1.0
    assert not _alive(pid)


def test_stop_is_idempotent_and_restart_works() -> None:
    server = EmbeddedServer()
    server.stop()  # never started
    server.start()
    server.start()  # already running: no second process
    first_pid = server.pid
    server.stop()
    server.stop()
    server.start()
    try:
        assert server.pid != first_pid
        assert _ping(server.uri) == 1.0
    finally:
        server.stop()


def test_on_disk_storage_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "data"
    with EmbeddedServer(storage_path=path) as server:
        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(server.uri)
        client.msm.things.insert_one({"_id": 1})
        client.close()
    with EmbeddedServer(storage_path=path) as server:
        client = pymongo.MongoClient(server.uri)
        assert client.msm.things.find_one({"_id": 1}) == {"_id": 1}
        client.close()


def test_uncreatable_storage_path_fails_clearly(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")

    with pytest.raises(EmbeddedServerError, match="Last server output") as info:
        EmbeddedServer(storage_path=blocker / "data", startup_timeout=20).start()
    assert "a-file" in str(info.value)


def test_process_that_exits_early_fails_with_its_output() -> None:
    command = [sys.executable, "-c", "import sys; print('boom: no such engine'); sys.exit(3)"]

    with pytest.raises(EmbeddedServerError, match=r"exited with code 3") as info:
        EmbeddedServer(command=command).start()
    assert "boom: no such engine" in str(info.value)


def test_silent_process_times_out_and_is_stopped() -> None:
    command = [sys.executable, "-c", "import time; print('warming up', flush=True); time.sleep(60)"]
    server = EmbeddedServer(command=command, startup_timeout=0.5)
    started = time.monotonic()

    with pytest.raises(EmbeddedServerError, match=r"within 0\.5 s") as info:
        server.start()
    assert "warming up" in str(info.value)
    assert time.monotonic() - started < 10
    assert not server.running


def test_missing_secantusdb_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda _name: None)

    with pytest.raises(EmbeddedServerError, match=r"mongodb-session-manager\[embedded\]"):
        EmbeddedServer().start()
