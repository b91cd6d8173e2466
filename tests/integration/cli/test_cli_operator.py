"""What an operator runs: paging through a session, incomplete replies, metrics by status,
top sessions and tool usage, JSON from every command, hints that run as printed."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from strands import Agent, tool

from mongodb_session_manager import MongoDBSessionManager, create_mongodb_session_manager
from mongodb_session_manager.cli import main
from mongodb_session_manager.errors import StoreUnavailableError
from mongodb_session_manager.metrics import MetricsQuery
from mongodb_session_manager.repository import MongoDBSessionRepository
from mongodb_session_manager.streaming import stream_text
from mongodb_session_manager.testing import ScriptedModel, ScriptedResponse, ScriptedToolCall

pytestmark = pytest.mark.integration

Run = Callable[..., tuple[int, str, str]]
ENTRY_POINT = Path(sys.executable).parent / "mongodb-session-manager"
ISO_WITH_ZONE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


@tool
def lookup(term: str) -> str:
    """Look a term up.

    Args:
        term: The term.
    """
    return f"{term}: found"


@pytest.fixture
def cli(
    mongodb_uri: str, database_name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Run:
    """``cli(...)`` runs the command on the test database: (exit code, stdout, stderr)."""
    monkeypatch.delenv("MONGODB_URI", raising=False)

    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["--uri", mongodb_uri, "--database", database_name, *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def run_printed(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a command line exactly as the CLI printed it, through the installed entry point."""
    argv = shlex.split(command)
    assert argv[0] == "mongodb-session-manager"
    assert ENTRY_POINT.is_file()
    return subprocess.run(
        [str(ENTRY_POINT), *argv[1:]], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def clean_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "MONGODB_URI"}
    return {**env, **extra}


def converse(uri: str, database: str, session_id: str, prompts: list[str], **model: Any) -> None:
    with MongoDBSessionManager(session_id, connection_string=uri, database_name=database) as manager:
        agent = Agent(
            model=ScriptedModel(**model), tools=[lookup], session_manager=manager, callback_handler=None
        )
        for prompt in prompts:
            agent(prompt)


@pytest.fixture
def with_cancelled_turn(mongodb_uri: str, database_name: str) -> str:
    """Three completed turns (latency 100, 120, 140 ms) and one cancelled mid-reply, in one session."""
    manager = MongoDBSessionManager("ops-1", connection_string=mongodb_uri, database_name=database_name)
    model = ScriptedModel(
        [
            ScriptedResponse(text="One.", latency_ms=100),
            ScriptedResponse(
                text="Looking.", tool_calls=[ScriptedToolCall("lookup", {"term": "x"})], latency_ms=60
            ),
            ScriptedResponse(text="Found it.", latency_ms=60),
            ScriptedResponse(text="a slow reply " * 40, latency_ms=999),
            ScriptedResponse(text="Three.", latency_ms=140),
        ],
        chunk_delay=0.01,
    )
    agent = Agent(model=model, tools=[lookup], session_manager=manager, callback_handler=None)

    async def scenario() -> None:
        await agent.invoke_async("first")
        await agent.invoke_async("look x up")

        async def consume() -> None:
            async for _ in stream_text(agent, "tell me slowly", session_manager=manager):
                pass

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.1)  # a few chunks in
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
        await agent.invoke_async("third")

    try:
        asyncio.run(scenario())
    finally:
        manager.close()
    return "ops-1"


# --- sessions show: paging and incomplete replies ---------------------------------------------------


def test_show_pages_through_messages_and_the_next_page_hint_runs(
    cli: Run, mongodb_uri: str, database_name: str
) -> None:
    converse(mongodb_uri, database_name, "long", [f"question {n}" for n in range(5)], responses=["ok"] * 5)

    code, out, _ = cli("sessions", "show", "long", "--json", "--limit", "4", "--offset", "2")
    page = json.loads(out)
    assert code == 0
    assert (page["total_messages"], page["offset"], page["limit"], page["next_offset"]) == (10, 2, 4, 6)
    assert [m["message_id"] for m in page["messages"]] == [2, 3, 4, 5]
    assert page["messages"][0]["message"]["content"][0]["text"] == "question 1"

    code, out, _ = cli("sessions", "show", "long", "--limit", "4")
    assert code == 0
    assert "Messages 1-4 of 10" in out
    hint = next(line for line in out.splitlines() if line.startswith("Next page: "))
    result = run_printed(hint.removeprefix("Next page: "), clean_env())
    assert result.returncode == 0, result.stderr
    assert "Messages 5-8 of 10" in result.stdout
    assert "question 2" in result.stdout

    code, out, _ = cli("sessions", "show", "long", "--json", "--offset", "8")
    assert json.loads(out)["next_offset"] is None
    assert cli("sessions", "show", "long", "--limit", "0")[0] == 2
    assert cli("sessions", "show", "long", "--offset", "-1")[0] == 2


def test_show_marks_incomplete_replies(cli: Run, with_cancelled_turn: str) -> None:
    code, out, _ = cli("sessions", "show", with_cancelled_turn)
    assert code == 0
    assert "[incomplete reply: cancelled]" in out
    assert out.count("[incomplete reply:") == 1

    code, out, _ = cli("sessions", "show", with_cancelled_turn, "--json")
    shown = json.loads(out)
    (incomplete,) = shown["incomplete_message_ids"]
    message = next(m for m in shown["messages"] if m["message_id"] == incomplete)
    assert message["message"]["metadata"]["custom"] == {"incomplete": True, "reason": "cancelled"}
    assert "cancelled" in [turn["status"] for turn in shown["turns"]]


# --- metrics: statuses, latency, top sessions, tool usage --------------------------------------------


def test_cancelled_turns_count_but_stay_out_of_the_latency_stats(
    cli: Run, with_cancelled_turn: str, mongodb_uri: str, database_name: str
) -> None:
    repository = MongoDBSessionRepository(connection_string=mongodb_uri, database_name=database_name)
    try:
        summary = MetricsQuery(repository).summary()
    finally:
        repository.close()
    assert (summary.turns, summary.cancelled_turns, summary.failed_turns) == (4, 1, 0)
    assert summary.latency_avg_ms == pytest.approx(120.0)  # (100 + 120 + 140) / 3, not / 4
    assert summary.latency_p50_ms == 120

    code, out, _ = cli("metrics", "--json")
    report = json.loads(out)["summary"]
    assert code == 0
    assert (report["turns"], report["cancelled_turns"], report["latency_avg_ms"]) == (4, 1, 120.0)

    code, out, _ = cli("metrics")
    assert "cancelled" in out
    assert "failed" in out

    code, out, _ = cli("metrics", "top-sessions", "--by", "latency", "--json")
    (rank,) = json.loads(out)["sessions"]
    assert (rank["session_id"], rank["turns"], rank["latency_avg_ms"]) == (with_cancelled_turn, 4, 120.0)


@pytest.fixture
def three_sessions(mongodb_uri: str, database_name: str) -> None:
    converse(mongodb_uri, database_name, "small", ["hi"], responses=[ScriptedResponse("Hi.", input_tokens=5)])
    converse(
        mongodb_uri,
        database_name,
        "large",
        ["look a up", "look b up"],
        responses=[
            ScriptedResponse("A.", tool_calls=[ScriptedToolCall("lookup", {"term": "a"})], input_tokens=500),
            ScriptedResponse("Done.", input_tokens=500),
            ScriptedResponse("B.", tool_calls=[ScriptedToolCall("lookup", {"term": "b"})], input_tokens=500),
            ScriptedResponse("Done.", input_tokens=500),
        ],
    )
    converse(
        mongodb_uri, database_name, "medium", ["hi"], responses=[ScriptedResponse("Hi.", input_tokens=90)]
    )


def test_top_sessions(cli: Run, three_sessions: None) -> None:
    code, out, err = cli("metrics", "top-sessions", "--json", "--limit", "2")
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert report["by"] == "tokens"
    assert [rank["session_id"] for rank in report["sessions"]] == ["large", "medium"]
    assert report["sessions"][0]["turns"] == 2
    assert ISO_WITH_ZONE.match(report["sessions"][0]["first_turn_at"])

    code, out, _ = cli("metrics", "top-sessions", "--format", "csv")
    assert [row["session_id"] for row in csv.DictReader(io.StringIO(out))] == ["large", "medium", "small"]

    code, out, _ = cli("metrics", "top-sessions")
    assert code == 0
    assert "Top 10 sessions by tokens" in out
    assert out.index("large") < out.index("medium") < out.index("small")

    code, out, _ = cli("metrics", "--since", "2999-01-01", "top-sessions", "--json")
    assert json.loads(out)["sessions"] == []


def test_tool_usage(cli: Run, three_sessions: None) -> None:
    code, out, err = cli("metrics", "tool-usage", "--json")
    assert (code, err) == (0, "")
    (usage,) = json.loads(out)["tools"]
    assert (usage["name"], usage["turns"], usage["calls"], usage["successes"], usage["errors"]) == (
        "lookup",
        2,
        2,
        2,
        0,
    )

    code, out, _ = cli("metrics", "tool-usage")
    assert code == 0
    assert "Tool usage" in out
    assert "lookup" in out

    code, out, _ = cli("metrics", "tool-usage", "--format", "csv", "--agent", "nobody")
    assert out.splitlines() == ["name,turns,calls,successes,errors,time_ms"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("metrics", "top-sessions", "--by", "cost"), "invalid choice: 'cost'"),
        (("metrics", "top-sessions", "--limit", "0"), "must be between 1 and 1000"),
        (("metrics", "tool-usage", "--since", "yesterday"), "not an ISO date"),
        (("metrics", "top-sessions", "--meta", "$where=1"), "must not start with '$'"),
    ],
)
def test_metrics_actions_reject_bad_options(cli: Run, argv: tuple[str, ...], message: str) -> None:
    code, out, err = cli(*argv)
    assert (code, out) == (2, "")
    assert message in err


def test_metrics_since_after_until_is_a_usage_error_also_as_json(cli: Run) -> None:
    code, out, err = cli("--json", "metrics", "tool-usage", "--since", "2025-02-01", "--until", "2025-01-01")
    assert (code, out) == (2, "")
    error = json.loads(err)
    assert error["exit_code"] == 2
    assert "is after until" in error["error"]


# --- --json everywhere, dates with their zone ---------------------------------------------------------


def test_delete_import_export_answer_in_json(
    cli: Run, mongodb_uri: str, database_name: str, tmp_path: Path
) -> None:
    converse(mongodb_uri, database_name, "j-1", ["hi"], responses=["Hello."])
    target = tmp_path / "j-1.json"

    code, out, _ = cli("sessions", "export", "j-1", "-o", str(target), "--json")
    assert (code, json.loads(out)) == (0, {"exported": "j-1", "messages": 2, "file": str(target)})
    code, out, _ = cli("sessions", "delete", "j-1", "--yes", "--json")
    assert (code, json.loads(out)) == (0, {"deleted": "j-1", "messages": 2})
    code, out, _ = cli("sessions", "import", str(target), "--json")
    assert (code, json.loads(out)) == (0, {"imported": "j-1", "messages": 2, "replaced": False})
    code, out, _ = cli("sessions", "import", str(target), "--replace", "--json")
    assert json.loads(out)["replaced"] is True

    code, out, err = cli("sessions", "delete", "gone", "--yes", "--json")
    assert (code, out) == (4, "")
    assert json.loads(err) == {
        "error": f"session 'gone' not found in {database_name}.sessions",
        "exit_code": 4,
    }


def test_json_dates_carry_their_zone(cli: Run, mongodb_uri: str, database_name: str) -> None:
    converse(mongodb_uri, database_name, "d-1", ["hi"], responses=["Hello."])

    listed = json.loads(cli("sessions", "list", "--json")[1])["sessions"][0]
    shown = json.loads(cli("sessions", "show", "d-1", "--json")[1])
    dates = [
        listed["created_at"],
        listed["updated_at"],
        shown["session"]["created_at"],
        shown["messages"][0]["created_at"],
        shown["turns"][0]["started_at"],
    ]
    assert all(ISO_WITH_ZONE.match(value) for value in dates), dates


def test_demo_json_and_its_hint_runs_as_printed(
    mongodb_uri: str, database_name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONGODB_URI", mongodb_uri)

    code = main(
        ["demo", "--json", "--database", database_name, "--session-id", "demo-j", "--chunk-delay", "0"]
    )

    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    report = json.loads(out)  # the whole stdout is one JSON document: nothing streamed
    assert (report["session_id"], report["database"], report["embedded"]) == ("demo-j", database_name, False)
    assert len(report["messages"]) == 8
    assert report["totals"]["turns"] == 3
    assert [turn["tool_calls"] for turn in report["turns"]] == [0, 1, 0]
    assert report["see_again"] == f"mongodb-session-manager --database {database_name} sessions show demo-j"
    result = run_printed(report["see_again"], clean_env(MONGODB_URI=mongodb_uri))
    assert result.returncode == 0, result.stderr
    assert "What did I ask you about a moment ago?" in result.stdout


def test_demo_hint_with_uri_runs_as_printed(
    mongodb_uri: str, database_name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MONGODB_URI", raising=False)

    code = main(["--uri", mongodb_uri, "demo", "--database", database_name, "--session-id", "demo-u"])

    out = capsys.readouterr().out
    assert code == 0
    hint = next(line for line in out.splitlines() if line.startswith("See it again: "))
    result = run_printed(hint.removeprefix("See it again: "), clean_env())
    assert result.returncode == 0, result.stderr
    assert "Session demo-u" in result.stdout
    assert "(8 messages restored)" not in result.stdout  # it is `sessions show`, not another demo


def test_a_hint_never_carries_a_password(database_name: str) -> None:
    from mongodb_session_manager.cli._hints import command_line
    from mongodb_session_manager.cli._parser import parse_args

    args = parse_args(
        ["--uri", "mongodb://ops:s3cret-pw@db/", "--database", database_name, "sessions", "list"]
    )
    assert command_line(args, "sessions", "show", "x") == (
        f"mongodb-session-manager --database {database_name} sessions show x"
        "  (with MONGODB_URI set to your connection string)"
    )


# --- serve-db -----------------------------------------------------------------------------------------


def test_serve_db_json_lines(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "mongodb_session_manager", "serve-db", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    try:
        assert process.stdout is not None
        listening = json.loads(process.stdout.readline())
        assert listening["event"] == "listening"
        assert listening["uri"].startswith("mongodb://127.0.0.1:")
        assert listening["storage_path"] is None
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert [json.loads(line) for line in out.splitlines()] == [{"event": "stopped"}]


def test_serve_db_on_a_busy_port_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        code = main(["serve-db", "--port", str(port)])
        err = capsys.readouterr().err
        assert code == 2
        assert err == (
            f"mongodb-session-manager: error: port {port} on 127.0.0.1 is already in use: stop what "
            "listens there or pick another --port (--port 0 picks a free one)\n"
        )
        code = main(["serve-db", "--json", "--port", str(port)])
        assert json.loads(capsys.readouterr().err)["exit_code"] == code == 2
    assert main(["serve-db", "--port", "70000"]) == 2


# --- no server ----------------------------------------------------------------------------------------


def test_no_server_error_points_at_serve_db_and_mongodb_uri() -> None:
    manager = create_mongodb_session_manager(
        session_id="user-123",
        connection_string="mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=200",
        database_name="chat_db",
    )
    try:
        with pytest.raises(StoreUnavailableError) as caught:
            Agent(model=ScriptedModel(["hi"]), session_manager=manager, callback_handler=None)
    finally:
        manager.close()
    message = str(caught.value)
    assert "mongodb-session-manager serve-db" in message
    assert "MONGODB_URI" in message


def test_usage_errors_are_json_with_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--json", "metrics", "top-sessions", "--limit", "0"])

    assert code == 2
    assert json.loads(capsys.readouterr().err) == {
        "error": "argument --limit: must be between 1 and 1000: '0'",
        "exit_code": 2,
    }
    code = main(["metrics", "top-sessions", "--limit", "0"])
    err = capsys.readouterr().err
    assert err.startswith("usage: mongodb-session-manager metrics top-sessions")
    assert err.endswith(
        "mongodb-session-manager metrics top-sessions: error: "
        "argument --limit: must be between 1 and 1000: '0'\n"
    )


def test_demo_json_needs_no_rich(
    mongodb_uri: str, database_name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONGODB_URI", mongodb_uri)
    for name in ("rich", "rich.console", "rich.markup", "rich.table", "rich.text"):
        monkeypatch.setitem(sys.modules, name, None)

    code = main(["demo", "--json", "--database", database_name, "--chunk-delay", "0"])

    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert json.loads(out)["totals"]["turns"] == 3
