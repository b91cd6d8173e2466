"""The `mongodb-session-manager` command against a real server: every command, every error path."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pymongo
import pytest
from strands import Agent, tool

from mongodb_session_manager import MongoDBSessionManager
from mongodb_session_manager.cli import main
from mongodb_session_manager.cli import sessions as cli_sessions
from mongodb_session_manager.testing import ScriptedModel, ScriptedResponse, ScriptedToolCall

pytestmark = pytest.mark.integration

# A PNG header followed by bytes that are not valid UTF-8 (and a NUL): only a byte-exact copy matches.
IMAGE = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) + b"\x00\xff\xfe"
UNREACHABLE = "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=500"

Run = Callable[..., tuple[int, str, str]]


@tool
def weather(city: str) -> str:
    """Weather in a city.

    Args:
        city: The city.
    """
    return f"sunny in {city}"


@pytest.fixture
def cli(
    mongodb_uri: str, database_name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Run:
    """``cli("sessions", "list")`` runs the command on the test database: (exit code, stdout, stderr)."""
    monkeypatch.delenv("MONGODB_URI", raising=False)

    def run(*argv: str, connect: bool = True) -> tuple[int, str, str]:
        capsys.readouterr()
        options = ["--uri", mongodb_uri, "--database", database_name] if connect else []
        code = main([*options, *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def converse(
    uri: str,
    database: str,
    session_id: str,
    prompts: Sequence[Any],
    *,
    agent_id: str = "assistant",
    metadata: dict[str, Any] | None = None,
    responses: Sequence[ScriptedResponse | str] = (),
    model_id: str = "scripted-model",
) -> None:
    """Store a real conversation the way an app does: an Agent with the session manager."""
    with MongoDBSessionManager(
        session_id, connection_string=uri, database_name=database, metadata=metadata
    ) as manager:
        agent = Agent(
            model=ScriptedModel(responses, model_id=model_id),
            agent_id=agent_id,
            tools=[weather],
            session_manager=manager,
            callback_handler=None,
        )
        for prompt in prompts:
            agent(prompt)


@pytest.fixture
def stored(mongodb_uri: str, database_name: str) -> str:
    """A session with a tool call and a user message holding image bytes; yields its id."""
    converse(
        mongodb_uri,
        database_name,
        "with-image",
        [
            "What's the weather in Porto?",
            [
                {"text": "And what is in this picture?"},
                {"image": {"format": "png", "source": {"bytes": IMAGE}}},
            ],
        ],
        metadata={"tenant": "acme"},
        responses=[
            ScriptedResponse(text="Checking.", tool_calls=[ScriptedToolCall("weather", {"city": "Porto"})]),
            "It is sunny in Porto.",
            "A tiny test image.",
        ],
    )
    return "with-image"


def stored_documents(uri: str, database: str, session_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(uri)
    try:
        db = client[database]
        session = db.sessions.find_one({"_id": session_id})
        messages = list(db.sessions_messages.find({"session_id": session_id}, sort=[("message_id", 1)]))
    finally:
        client.close()
    assert session is not None
    return session, messages


# --- sessions list --------------------------------------------------------------------------------


def test_list_pages_and_filters(cli: Run, mongodb_uri: str, database_name: str) -> None:
    converse(mongodb_uri, database_name, "s-1", ["hi"], metadata={"tenant": "acme", "plan": "pro"})
    converse(mongodb_uri, database_name, "s-2", ["hi"], metadata={"tenant": "acme"}, agent_id="support")
    converse(mongodb_uri, database_name, "s-3", ["hi"], metadata={"tenant": "globex"})

    def ids(*argv: str) -> list[str]:
        code, out, err = cli("sessions", "list", "--json", *argv)
        assert (code, err) == (0, "")
        return [session["session_id"] for session in json.loads(out)["sessions"]]

    assert ids() == ["s-3", "s-2", "s-1"]  # most recently active first
    assert ids("--limit", "2") == ["s-3", "s-2"]
    assert ids("--limit", "2", "--skip", "2") == ["s-1"]
    assert ids("--meta", "tenant=acme") == ["s-2", "s-1"]
    assert ids("--meta", "tenant=acme", "--meta", "plan=pro") == ["s-1"]
    assert ids("--agent", "support") == ["s-2"]
    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).date().isoformat()
    assert ids("--since", tomorrow) == []
    assert ids("--until", tomorrow, "--meta", "tenant=globex") == ["s-3"]

    _, out, _ = cli("sessions", "list", "--json", "--limit", "1")
    page = json.loads(out)
    assert (page["total"], page["limit"], page["skip"]) == (3, 1, 0)
    assert page["sessions"][0]["totals"]["turns"] == 1
    assert page["sessions"][0]["metadata"] == {"tenant": "globex"}


def test_list_table_for_people(cli: Run, stored: str) -> None:
    code, out, err = cli("sessions", "list")

    assert (code, err) == (0, "")
    assert "Sessions (1-1 of 1)" in out
    assert "with-image" in out
    assert "tenant=acme" in out


def test_list_rejects_bad_dates_and_meta(cli: Run) -> None:
    code, _, err = cli("sessions", "list", "--since", "last tuesday")
    assert code == 2
    assert "not an ISO date" in err

    code, _, err = cli("sessions", "list", "--meta", "$where=1")
    assert code == 2
    assert "must not start with '$'" in err


# --- sessions show --------------------------------------------------------------------------------


def test_show_prints_the_conversation_and_its_turns(cli: Run, stored: str) -> None:
    code, out, err = cli("sessions", "show", stored)

    assert (code, err) == (0, "")
    assert "What's the weather in Porto?" in out
    assert '-> tool weather({"city": "Porto"})' in out
    assert "<- success" in out
    assert "sunny in Porto" in out
    assert f"[image png, {len(IMAGE):,} bytes]" in out
    assert "Turns" in out
    assert "weather x1" in out
    assert "Session totals" in out


def test_show_json(cli: Run, stored: str) -> None:
    code, out, _ = cli("sessions", "show", stored, "--json")

    assert code == 0
    shown = json.loads(out)
    assert shown["session"]["_id"] == stored
    assert [message["message"]["role"] for message in shown["messages"]] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    image = shown["messages"][4]["message"]["content"][1]["image"]["source"]["bytes"]
    assert base64.b64decode(image["base64"]) == IMAGE
    assert [turn["tool_calls"] for turn in shown["turns"]] == [1, 0]
    assert shown["turns"][0]["status"] == "completed"


# --- export / delete / import ---------------------------------------------------------------------


def test_export_delete_import_round_trip_is_byte_exact(
    cli: Run, stored: str, mongodb_uri: str, database_name: str, tmp_path: Path
) -> None:
    before = stored_documents(mongodb_uri, database_name, stored)
    target = tmp_path / "session.json"

    code, out, _ = cli("sessions", "export", stored, "-o", str(target))
    assert code == 0
    assert f"exported session {stored!r} (6 messages)" in out
    exported = json.loads(target.read_text(encoding="utf-8"))
    assert exported["format"] == "mongodb-session-manager/export"
    assert exported["session"]["created_at"]["$date"].endswith("Z")  # dates stay ISO-8601
    image = exported["messages"][4]["message"]["content"][1]["image"]["source"]["bytes"]
    assert base64.b64decode(image["$binary"]["base64"]) == IMAGE

    assert cli("sessions", "delete", stored, "--yes")[0] == 0
    assert cli("sessions", "show", stored)[0] == 4

    code, out, _ = cli("sessions", "import", str(target))
    assert code == 0
    assert f"imported session {stored!r} (6 messages)" in out
    after = stored_documents(mongodb_uri, database_name, stored)
    assert after == before
    assert after[1][4]["message"]["content"][1]["image"]["source"]["bytes"] == IMAGE


def test_export_to_stdout_is_the_same_document(cli: Run, stored: str, tmp_path: Path) -> None:
    code, out, _ = cli("sessions", "export", stored)
    assert code == 0
    target = tmp_path / "session.json"
    assert cli("sessions", "export", stored, "-o", str(target))[0] == 0

    from_stdout, from_file = json.loads(out), json.loads(target.read_text(encoding="utf-8"))
    assert from_stdout.pop("exported_at")["$date"]
    assert from_file.pop("exported_at")["$date"]
    assert from_stdout == from_file
    assert from_stdout["message_count"] == len(from_stdout["messages"]) == 6


def test_export_shows_progress_on_a_terminal(
    cli: Run, stored: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli_sessions, "PROGRESS_MIN_MESSAGES", 1)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    monkeypatch.setenv("FORCE_COLOR", "1")
    target = tmp_path / "session.json"

    code, out, _ = cli("sessions", "export", stored, "-o", str(target))

    assert code == 0
    assert "Exporting messages" in out
    assert len(json.loads(target.read_text(encoding="utf-8"))["messages"]) == 6
    assert not (tmp_path / "session.json.partial").exists()


def test_import_refuses_to_overwrite_unless_replace(cli: Run, stored: str, tmp_path: Path) -> None:
    target = tmp_path / "session.json"
    assert cli("sessions", "export", stored, "-o", str(target))[0] == 0

    code, _, err = cli("sessions", "import", str(target))
    assert code == 5
    assert "already exists; pass --replace" in err

    code, out, _ = cli("sessions", "import", str(target), "--replace")
    assert code == 0
    code, out, _ = cli("sessions", "show", stored, "--json")
    assert len(json.loads(out)["messages"]) == 6  # replaced, not doubled


def test_import_rejects_files_that_are_not_exports(cli: Run, tmp_path: Path) -> None:
    not_json = tmp_path / "notes.txt"
    not_json.write_text("hello", encoding="utf-8")
    other_json = tmp_path / "other.json"
    other_json.write_text('{"hello": "world"}', encoding="utf-8")

    code, _, err = cli("sessions", "import", str(not_json))
    assert code == 2
    assert "is not valid JSON" in err
    code, _, err = cli("sessions", "import", str(other_json))
    assert code == 2
    assert "not a mongodb-session-manager export" in err
    code, _, err = cli("sessions", "import", str(tmp_path / "missing.json"))
    assert code == 2
    assert "cannot read" in err


# --- delete ---------------------------------------------------------------------------------------


class FakeTerminal(io.StringIO):
    """Stdin that claims to be a terminal and holds the user's answer."""

    def isatty(self) -> bool:
        return True


def test_delete_asks_for_confirmation(cli: Run, stored: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", FakeTerminal("n\n"))
    code, _, err = cli("sessions", "delete", stored)
    assert code == 1
    assert f"Delete session {stored!r} and its 6 messages? [y/N]" in err
    assert cli("sessions", "show", stored)[0] == 0

    monkeypatch.setattr(sys, "stdin", FakeTerminal("y\n"))
    code, out, _ = cli("sessions", "delete", stored)
    assert code == 0
    assert f"deleted session {stored!r} (6 messages)" in out
    assert cli("sessions", "show", stored)[0] == 4


def test_delete_without_a_terminal_needs_yes(cli: Run, stored: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))  # piped input is not a confirmation

    code, _, err = cli("sessions", "delete", stored)

    assert code == 2
    assert "stdin is not a terminal; pass --yes" in err
    assert cli("sessions", "show", stored)[0] == 0


# --- metrics --------------------------------------------------------------------------------------


@pytest.fixture
def measured(mongodb_uri: str, database_name: str) -> None:
    """Three turns on model-a (one with a tool call), one turn on model-b by another agent."""
    converse(
        mongodb_uri,
        database_name,
        "m-1",
        ["weather?", "thanks", "bye"],
        responses=[
            ScriptedResponse(text="Looking.", tool_calls=[ScriptedToolCall("weather", {"city": "Oslo"})]),
            "Rainy.",
            "You're welcome.",
            "Bye.",
        ],
        model_id="model-a",
    )
    converse(mongodb_uri, database_name, "m-2", ["hello"], agent_id="support", model_id="model-b")


def test_metrics_json(cli: Run, measured: None) -> None:
    code, out, err = cli("metrics", "--format", "json", "--group-by", "model")

    assert (code, err) == (0, "")
    report = json.loads(out)
    assert report["summary"]["turns"] == 4
    assert report["summary"]["tool_calls"] == 1
    assert {group["key"]: group["turns"] for group in report["groups"]} == {"model-a": 3, "model-b": 1}
    code, out, _ = cli("metrics", "--json", "--agent", "support")
    assert json.loads(out)["summary"]["turns"] == 1


def test_metrics_csv(cli: Run, measured: None) -> None:
    code, out, _ = cli("metrics", "--format", "csv", "--group-by", "agent")

    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {row["key"]: int(row["turns"]) for row in rows} == {"assistant": 3, "support": 1}
    assert all(int(row["total_tokens"]) > 0 for row in rows)

    code, out, _ = cli("metrics", "--format", "csv", "--model", "model-b")
    (only,) = csv.DictReader(io.StringIO(out))
    assert only["turns"] == "1"


def test_metrics_table(cli: Run, measured: None) -> None:
    code, out, _ = cli("metrics", "--group-by", "day")

    assert code == 0
    assert "Summary" in out
    assert "By day" in out
    assert datetime.now(timezone.utc).strftime("%Y-%m-%d") in out


# --- errors ---------------------------------------------------------------------------------------


def test_missing_uri_is_one_clear_line(cli: Run) -> None:
    code, out, err = cli("sessions", "list", connect=False)

    assert code == 2
    assert out == ""
    assert (
        err == "mongodb-session-manager: error: no MongoDB connection string: pass --uri or set MONGODB_URI\n"
    )


@pytest.mark.parametrize(
    "uri",
    ["http://localhost:27017", "mongodb://admin:hunter2@localhost:99999/", "mongodb://"],
)
def test_bad_uri_exits_2_without_the_password(cli: Run, uri: str) -> None:
    code, out, err = cli("sessions", "list", "--uri", uri, connect=False)

    assert code == 2
    assert err.startswith("mongodb-session-manager: error: ")
    assert err.count("\n") == 1
    assert "hunter2" not in err + out
    assert "Traceback" not in err


def test_unreachable_server_exits_3_quickly(cli: Run) -> None:
    started = datetime.now(timezone.utc)
    code, _, err = cli(
        "sessions",
        "list",
        "--uri",
        "mongodb://user:s3cret@127.0.0.1:1/?serverSelectionTimeoutMS=500",
        connect=False,
    )

    assert code == 3
    assert "cannot reach MongoDB at mongodb://user:***@127.0.0.1:1/" in err
    assert "s3cret" not in err
    assert err.count("\n") == 1
    assert datetime.now(timezone.utc) - started < timedelta(seconds=10)


def test_unreachable_from_environment(cli: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONGODB_URI", UNREACHABLE)

    code, _, err = cli("metrics", "--json", connect=False)

    assert code == 3
    assert "cannot reach MongoDB" in err


@pytest.mark.parametrize(
    "argv",
    [("sessions", "show", "nope"), ("sessions", "export", "nope"), ("sessions", "delete", "nope", "--yes")],
)
def test_unknown_session_exits_4(cli: Run, argv: tuple[str, ...], database_name: str) -> None:
    code, _, err = cli(*argv)

    assert code == 4
    assert err == (f"mongodb-session-manager: error: session 'nope' not found in {database_name}.sessions\n")


def test_usage_errors_exit_2(cli: Run) -> None:
    assert cli("sessions", connect=False)[0] == 2
    assert cli("metrics", "--group-by", "week")[0] == 2
    assert cli("--help", connect=False)[0] == 0


def test_tables_need_rich_but_json_does_not(cli: Run, stored: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rich", None)
    monkeypatch.setitem(sys.modules, "rich.console", None)

    code, _, err = cli("sessions", "list")
    assert code == 1
    assert "pip install 'mongodb-session-manager[cli]'" in err
    code, out, _ = cli("sessions", "list", "--json")
    assert code == 0
    assert json.loads(out)["total"] == 1


# --- the installed entry point, for real ----------------------------------------------------------


def test_python_dash_m_runs_the_cli(stored: str, mongodb_uri: str, database_name: str) -> None:
    env = {key: value for key, value in os.environ.items() if key != "MONGODB_URI"}
    command = [sys.executable, "-m", "mongodb_session_manager", "sessions", "list", "--json"]
    result = subprocess.run(
        [*command, "--uri", mongodb_uri, "--database", database_name],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert [s["session_id"] for s in json.loads(result.stdout)["sessions"]] == [stored]


def test_serve_db_runs_until_sigterm(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "mongodb_session_manager", "serve-db", "--storage-path", str(tmp_path / "db")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("SecantusDB listening on mongodb://127.0.0.1:")
        uri = first.split(" on ", 1)[1].strip()
        pid = int(process.stdout.readline().split()[1].rstrip(","))
        client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
        try:
            assert client.admin.command("ping")["ok"] == 1.0
        finally:
            client.close()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "SecantusDB stopped" in out
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
