"""Searching a user's messages: the repositories (sync and async) and ``sessions search``."""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any

import pymongo
import pytest
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from mongodb_session_manager import (
    AsyncMongoDBSessionRepository,
    InvalidSessionInputError,
    MessageMatch,
    MongoDBSessionRepository,
)
from mongodb_session_manager.cli import main


def _store(repository: MongoDBSessionRepository, session_id: str, user_id: str, *texts: str) -> None:
    repository.create_session(Session(session_id, SessionType.AGENT), user_id=user_id)
    repository.create_agent(session_id, SessionAgent("assistant", {}, {}))
    for message_id, text in enumerate(texts):
        role = "user" if message_id % 2 == 0 else "assistant"
        message = {"role": role, "content": [{"text": text}]}
        repository.write_message(session_id, "assistant", SessionMessage(message, message_id))  # type: ignore[arg-type]


@pytest.fixture
def repository(mongodb_uri: str, database_name: str) -> MongoDBSessionRepository:
    repository = MongoDBSessionRepository(mongodb_uri, database_name)
    _store(repository, "alice-1", "alice", "Book me a hotel in Paris", "Done: Hotel du Nord, PARIS 10e.")
    _store(repository, "alice-2", "alice", "What is 2+2?", "4")
    _store(repository, "bob-1", "bob", "I love paris in spring")
    tool = {
        "role": "user",
        "content": [
            {
                "toolResult": {
                    "toolUseId": "t",
                    "status": "success",
                    "content": [{"text": "weather in Paris: sun"}],
                }
            }
        ],
    }
    repository.write_message("alice-2", "assistant", SessionMessage(tool, 2))  # type: ignore[arg-type]
    return repository


def test_search_finds_a_users_messages_case_insensitively_newest_first(
    repository: MongoDBSessionRepository,
) -> None:
    matches = repository.search_messages("paris", user_id="alice")

    assert [(m.session_id, m.message_id, m.role) for m in matches] == [
        ("alice-2", 2, "user"),  # a tool result's text counts too
        ("alice-1", 1, "assistant"),
        ("alice-1", 0, "user"),
    ]
    assert matches[1] == MessageMatch(
        "alice-1", "assistant", 1, "assistant", "Done: Hotel du Nord, PARIS 10e.", matches[1].created_at
    )
    assert isinstance(matches[1].created_at, datetime)
    assert matches[1].created_at.tzinfo is not None


def test_search_without_a_user_looks_in_every_session_and_stops_at_the_limit(
    repository: MongoDBSessionRepository,
) -> None:
    everyone = repository.search_messages("PARIS")
    assert {m.session_id for m in everyone} == {"alice-1", "alice-2", "bob-1"}
    assert len(repository.search_messages("paris", limit=2)) == 2
    assert repository.search_messages("paris", user_id="carol") == []


def test_the_text_is_matched_literally_never_as_a_pattern(repository: MongoDBSessionRepository) -> None:
    assert [m.text for m in repository.search_messages("2+2", user_id="alice")] == ["What is 2+2?"]
    assert repository.search_messages("h.tel", user_id="alice") == []
    assert repository.search_messages(".*", user_id="alice") == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"text": ""}, "non-empty"),
        ({"text": "   "}, "non-empty"),
        ({"text": 42}, "non-empty"),
        ({"text": "x" * 300}, "at most 256"),
        ({"text": "paris", "limit": 0}, "limit"),
        ({"text": "paris", "limit": 101}, "limit"),
        ({"text": "paris", "limit": True}, "limit"),
        ({"text": "paris", "user_id": ""}, "user_id"),
    ],
)
def test_bad_search_input_is_refused_before_any_read(
    mongodb_uri: str, database_name: str, arguments: dict[str, Any], message: str
) -> None:
    # Nothing listens on this port: a refusal that happens before any I/O is immediate.
    repository = MongoDBSessionRepository(
        "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=200", database_name
    )
    text = arguments.pop("text")
    with pytest.raises(InvalidSessionInputError, match=message):
        repository.search_messages(text, **arguments)


async def test_the_async_repository_searches_the_same_way(
    repository: MongoDBSessionRepository, mongodb_uri: str, database_name: str
) -> None:
    async_repository = AsyncMongoDBSessionRepository(mongodb_uri, database_name)
    try:
        found = await async_repository.search_messages("paris", user_id="alice")
        with pytest.raises(InvalidSessionInputError):
            await async_repository.search_messages("", user_id="alice")
    finally:
        await async_repository.close()
    assert found == repository.search_messages("paris", user_id="alice")


def _cli(
    mongodb_uri: str, database_name: str, capsys: pytest.CaptureFixture[str], *argv: str
) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["--uri", mongodb_uri, "--database", database_name, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_sessions_search_prints_matches_and_json(
    repository: MongoDBSessionRepository,
    mongodb_uri: str,
    database_name: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MONGODB_URI", raising=False)
    code, out, _ = _cli(mongodb_uri, database_name, capsys, "sessions", "search", "paris", "--user", "alice")
    assert code == 0
    assert "alice-1  assistant#1  assistant" in out
    assert "Done: Hotel du Nord, PARIS 10e." in out
    assert out.rstrip().endswith("3 match(es)")
    assert "bob-1" not in out

    code, out, _ = _cli(
        mongodb_uri, database_name, capsys, "sessions", "search", "PARIS", "--limit", "1", "--json"
    )
    assert code == 0
    (match,) = json.loads(out)["matches"]
    assert set(match) == {"session_id", "agent_id", "message_id", "role", "text", "created_at"}
    assert match["session_id"] in {"alice-1", "alice-2", "bob-1"}
    assert match["created_at"].endswith("Z") or "+00:00" in match["created_at"]


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (("sessions", "search", "paris", "--limit", "0"), "limit"),
        (("sessions", "search", ""), "non-empty"),
        (("sessions", "search", "paris", "--limit", "many"), "invalid int"),
    ],
)
def test_sessions_search_refuses_bad_arguments_with_a_usage_error(
    mongodb_uri: str,
    database_name: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: tuple[str, ...],
    fragment: str,
) -> None:
    monkeypatch.delenv("MONGODB_URI", raising=False)
    code, out, err = _cli(mongodb_uri, database_name, capsys, *argv, "--json")
    assert code == 2
    assert fragment in out + err


@pytest.mark.requires_mongodb
def test_a_text_index_answers_the_search_by_whole_words(
    repository: MongoDBSessionRepository,
    mongo_client: pymongo.MongoClient[dict[str, Any]],
    database_name: str,
) -> None:
    if not os.environ.get("MONGODB_URI") or "secantusVersion" in mongo_client.admin.command("buildInfo"):
        pytest.skip("needs MONGODB_URI pointing at a mongod: SecantusDB has no text indexes")
    messages = mongo_client[database_name]["sessions_messages"]
    messages.create_index([("message.content.text", "text")], name="message_text")
    fresh = MongoDBSessionRepository(client=mongo_client, database_name=database_name)

    assert {m.session_id for m in fresh.search_messages("paris", user_id="alice")} == {"alice-1"}
    assert fresh.search_messages("pari", user_id="alice") == []  # words, not substrings
