"""Retention: prune whole idle sessions (dry run, per user, archived first), and keep_last_messages."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pymongo
import pytest
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from strands import Agent
from strands.agent.conversation_manager import SlidingWindowConversationManager

from mongodb_session_manager import (
    AsyncMongoDBSessionRepository,
    InvalidSessionInputError,
    MongoDBSessionManager,
    MongoDBSessionRepository,
)
from mongodb_session_manager.cli import main
from mongodb_session_manager.testing import ScriptedModel

Client = pymongo.MongoClient[dict[str, Any]]
Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(mongodb_uri: str, database_name: str, capsys: pytest.CaptureFixture[str]) -> Cli:
    def run(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["--uri", mongodb_uri, "--database", database_name, *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def converse(client: Client, database_name: str, session_id: str, turns: int, **options: Any) -> None:
    manager = MongoDBSessionManager(session_id, client=client, database_name=database_name, **options)
    agent = Agent(
        agent_id="assistant",
        model=ScriptedModel([f"Reply {n}." for n in range(turns)]),
        session_manager=manager,
        callback_handler=None,
    )
    for n in range(turns):
        agent(f"prompt {n}")
    manager.close()


def idle_for(client: Client, database_name: str, session_id: str, days: int) -> None:
    """Make a session look last active ``days`` ago."""
    when = datetime.now(timezone.utc) - timedelta(days=days)
    client[database_name].sessions.update_one({"_id": session_id}, {"$set": {"updated_at": when}})


def raw(client: Client, database_name: str, session_id: str) -> tuple[bytes, list[bytes]]:
    """The session's stored bytes: its document and its messages in order."""
    options: CodecOptions[RawBSONDocument] = CodecOptions(document_class=RawBSONDocument)
    database = client[database_name]
    session = database.get_collection("sessions", codec_options=options).find_one({"_id": session_id})
    messages = database.get_collection("sessions_messages", codec_options=options).find(
        {"session_id": session_id}, sort=[("agent_id", 1), ("message_id", 1)]
    )
    assert session is not None
    return session.raw, [message.raw for message in messages]


@pytest.fixture
def three_sessions(client: Client, database_name: str) -> None:
    """old-a (alice, 40 days idle), old-b (bob, 40 days), fresh (alice, active now)."""
    converse(client, database_name, "old-a", 2, user_id="alice")
    converse(client, database_name, "old-b", 1, user_id="bob")
    converse(client, database_name, "fresh", 1, user_id="alice")
    idle_for(client, database_name, "old-a", 40)
    idle_for(client, database_name, "old-b", 40)


@pytest.mark.usefixtures("three_sessions")
def test_a_dry_run_reports_and_deletes_nothing(client: Client, database_name: str) -> None:
    repository = MongoDBSessionRepository(client=client, database_name=database_name)
    report = repository.prune(timedelta(days=30), dry_run=True)
    assert report.dry_run
    assert sorted(report.session_ids) == ["old-a", "old-b"]
    assert (report.sessions, report.messages) == (2, 6)
    assert client[database_name].sessions.count_documents({}) == 3
    assert client[database_name].sessions_messages.count_documents({}) == 8


@pytest.mark.usefixtures("three_sessions")
def test_prune_deletes_whole_idle_sessions_of_one_user(client: Client, database_name: str) -> None:
    repository = MongoDBSessionRepository(client=client, database_name=database_name)
    report = repository.prune(timedelta(days=30), user_id="alice")
    assert (report.session_ids, report.sessions, report.messages) == (("old-a",), 1, 4)
    assert sorted(s["session_id"] for s in repository.list_sessions()) == ["fresh", "old-b"]
    assert client[database_name].sessions_messages.count_documents({"session_id": "old-a"}) == 0


@pytest.mark.usefixtures("three_sessions")
def test_an_archive_reimports_byte_exact(
    client: Client, database_name: str, tmp_path: Path, cli: Cli
) -> None:
    before = {session_id: raw(client, database_name, session_id) for session_id in ("old-a", "old-b")}
    code, out, err = cli("sessions", "prune", "--older-than", "30d", "--archive", str(tmp_path), "--json")
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert sorted(report["session_ids"]) == ["old-a", "old-b"]
    assert report["messages"] == 6
    assert sorted(Path(path).name for path in report["archived"]) == ["old-a.json", "old-b.json"]
    assert client[database_name].sessions.count_documents({"_id": {"$in": ["old-a", "old-b"]}}) == 0

    for session_id in ("old-a", "old-b"):
        code, _, err = cli("sessions", "import", str(tmp_path / f"{session_id}.json"))
        assert (code, err) == (0, "")
        assert raw(client, database_name, session_id) == before[session_id]


@pytest.mark.usefixtures("three_sessions")
async def test_the_async_repository_prunes_the_same(mongodb_uri: str, database_name: str) -> None:
    repository = AsyncMongoDBSessionRepository(mongodb_uri, database_name=database_name)
    try:
        report = await repository.prune(timedelta(days=30), user_id="bob")
        assert (report.session_ids, report.messages) == (("old-b",), 2)
    finally:
        await repository.close()


def test_the_cli_prints_what_a_dry_run_would_delete(client: Client, database_name: str, cli: Cli) -> None:
    converse(client, database_name, "old", 1)
    idle_for(client, database_name, "old", 3)
    code, out, _ = cli("sessions", "prune", "--older-than", "2d", "--dry-run")
    assert code == 0
    assert out.startswith("would delete 1 session(s)")
    assert client[database_name].sessions.count_documents({"_id": "old"}) == 1
    code, _, err = cli("sessions", "prune", "--older-than", "soon")
    assert code == 2
    assert "30d" in err


@pytest.mark.parametrize("bad", [timedelta(0), 30, "30d"])
def test_bad_older_than_is_refused(client: Client, database_name: str, bad: Any) -> None:
    repository = MongoDBSessionRepository(client=client, database_name=database_name)
    with pytest.raises(InvalidSessionInputError, match="older_than"):
        repository.prune(bad)


def test_keep_last_messages_deletes_what_left_the_window_long_ago(client: Client, database_name: str) -> None:
    window = 4
    manager = MongoDBSessionManager("long", client=client, database_name=database_name, keep_last_messages=2)
    agent = Agent(
        agent_id="assistant",
        model=ScriptedModel([f"Reply {n}." for n in range(6)]),
        session_manager=manager,
        conversation_manager=SlidingWindowConversationManager(
            window_size=window, should_truncate_results=False
        ),
        callback_handler=None,
    )
    for n in range(6):
        agent(f"prompt {n}")
    manager.close()

    stored = client[database_name].sessions.find_one({"_id": "long"})
    assert stored is not None
    removed = stored["agents"]["assistant"]["conversation_manager_state"]["removed_message_count"]
    assert removed > 2
    ids = [m["message_id"] for m in client[database_name].sessions_messages.find({"session_id": "long"})]
    assert sorted(ids) == list(range(removed - 2, 12))

    resumed = MongoDBSessionManager("long", client=client, database_name=database_name, keep_last_messages=2)
    again = Agent(
        agent_id="assistant", model=ScriptedModel([]), session_manager=resumed, callback_handler=None
    )
    assert [m["content"][0]["text"] for m in again.messages] == [
        m["content"][0]["text"] for m in agent.messages
    ]
