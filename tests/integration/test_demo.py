"""`mongodb-session-manager demo`: streams, stores, restores, measures, and cleans up after itself."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import pymongo
import pytest

from mongodb_session_manager.cli import main

pytestmark = pytest.mark.integration


class RecordingStdout(io.StringIO):
    """Stdout that remembers each write, to see text arrive chunk by chunk."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def processes_with(marker: str) -> list[int]:
    """Pids of live processes whose environment holds ``marker`` (children inherit it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # exited meanwhile, or not ours to read
            continue
        if marker.encode() in environ:
            found.append(int(entry.name))
    return found


def demo_process(marker: str, *argv: str) -> subprocess.Popen[bytes]:
    """``python -m mongodb_session_manager demo`` with no MONGODB_URI, tagged with ``marker``."""
    env = {key: value for key, value in os.environ.items() if key != "MONGODB_URI"}
    env["MSM_DEMO_TEST_MARKER"] = marker
    return subprocess.Popen(
        [sys.executable, "-m", "mongodb_session_manager", "demo", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def test_demo_streams_stores_restores_and_measures(
    mongodb_uri: str,
    database_name: str,
    mongo_client: pymongo.MongoClient[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MONGODB_URI", mongodb_uri)
    stdout = RecordingStdout()
    monkeypatch.setattr(sys, "stdout", stdout)

    code = main(["demo", "--database", database_name, "--session-id", "demo-session"])

    out = stdout.getvalue()
    assert code == 0, out
    assert f"Server: {mongodb_uri} (MONGODB_URI)" in out
    # The first reply reached the terminal a word at a time, not as one block.
    assert "Hello! " in stdout.writes
    assert "MongoDB: " in stdout.writes
    assert '-> tool get_weather({"city": "Lisbon"})' in out
    assert "Lisbon: 21 °C, sunny" in out
    restored = out.split("Restored by a new session manager on a new client", 1)[1]
    assert "What did I ask you about a moment ago?" in restored
    assert "(8 messages restored)" in restored
    assert "Metrics per turn" in restored
    assert "get_weather x1" in restored
    assert "Session totals" in restored

    db = mongo_client[database_name]
    session = db.sessions.find_one({"_id": "demo-session"})
    assert session is not None
    assert session["metadata"] == {"source": "mongodb-session-manager demo"}
    assert session["totals"]["turns"] == 3
    assert session["totals"]["toolCalls"] == 1
    messages = list(db.sessions_messages.find({"session_id": "demo-session"}, sort=[("message_id", 1)]))
    assert [m["role"] for m in messages] == ["user", "assistant"] * 4
    turns = [m["event_loop_metrics"] for m in messages if "event_loop_metrics" in m]
    assert [turn["model_id"] for turn in turns] == ["scripted-demo-model"] * 3
    assert [turn["tool_calls"] for turn in turns] == [0, 1, 0]


def test_demo_without_mongodb_uri_starts_and_stops_an_embedded_server() -> None:
    marker = uuid4().hex
    started = time.monotonic()
    process = demo_process(marker)
    out, err = process.communicate(timeout=120)

    text = out.decode()
    assert process.returncode == 0, err.decode()
    assert time.monotonic() - started < 60
    assert "Starting an embedded SecantusDB" in text
    server_line = next(line for line in text.splitlines() if line.startswith("Server: "))
    assert "(embedded SecantusDB, stopped when the demo ends)" in server_line
    assert "(8 messages restored)" in text
    assert processes_with(marker) == []
    uri = server_line.split()[1]
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(uri, serverSelectionTimeoutMS=300)
    try:
        with pytest.raises(pymongo.errors.ServerSelectionTimeoutError):
            client.admin.command("ping")
    finally:
        client.close()


def test_ctrl_c_stops_the_demo_and_its_server() -> None:
    marker = uuid4().hex
    process = demo_process(marker, "--chunk-delay", "0.2")
    try:
        assert process.stdout is not None
        seen = b""
        deadline = time.monotonic() + 60
        while b"Hello!" not in seen and time.monotonic() < deadline:
            chunk = os.read(process.stdout.fileno(), 256)
            assert chunk, f"demo ended early: {seen.decode()}"
            seen += chunk
        assert len(processes_with(marker)) >= 2  # the demo and its server, mid-reply
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130
    assert err.decode().strip().endswith("mongodb-session-manager: error: interrupted")
    assert "Restored by" not in (seen + out).decode()
    assert processes_with(marker) == []
