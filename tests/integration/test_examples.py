"""Every script in ``examples/`` runs as a user would run it, and leaves what it claims in MongoDB.

Each example runs as ``python examples/<name>.py`` in a subprocess against the session's server
(``MONGODB_URI``) and a fresh database (``MSM_DATABASE``), with the scripted model. The test
checks the exit code, the lines the example prints, and the documents it stored. Examples with
their own tests (the FastAPI app) and ``_``-prefixed helpers are skipped; any other new example
must get an entry in ``EXPECTED`` or this test fails.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymongo
import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
TESTED_ELSEWHERE = {"example_fastapi_streaming.py"}

Database = Any  # pymongo Database[dict[str, Any]]


def _examples() -> list[str]:
    return sorted(
        path.name
        for path in EXAMPLES.glob("*.py")
        if not path.name.startswith("_") and path.name not in TESTED_ELSEWHERE
    )


def _messages(db: Database, session_id: str) -> list[dict[str, Any]]:
    return list(db["sessions_messages"].find({"session_id": session_id}, sort=[("message_id", 1)]))


def _texts(documents: list[dict[str, Any]]) -> list[str]:
    return ["".join(block.get("text", "") for block in d["message"]["content"]) for d in documents]


# --- per-example checks of the database ---------------------------------------------------------


def _check_basic_streaming(db: Database) -> None:
    stored = _messages(db, "basic-streaming")
    assert [d["role"] for d in stored] == ["user", "assistant"]
    assert _texts(stored)[0] == "Explain async programming in Python"


def _check_complete_persistence(db: Database) -> None:
    stored = _messages(db, "complete-persistence")
    # Two turns, each stored exactly once although the example also appends both messages by hand.
    assert [d["message_id"] for d in stored] == [0, 1, 2, 3]
    assert [d["role"] for d in stored] == ["user", "assistant", "user", "assistant"]
    assert _texts(stored) == [
        "Hello!",
        "Hi! What would you like to talk about?",
        "Tell me about MongoDB.",
        "MongoDB is a document database: it stores JSON-like documents.",
    ]
    for document in stored:
        assert isinstance(document["message"]["content"], list)
        assert all(isinstance(block, dict) for block in document["message"]["content"])
    session = db["sessions"].find_one({"_id": "complete-persistence"})
    assert session["totals"]["turns"] == 2
    turns = [d for d in stored if "event_loop_metrics" in d]
    assert [d["message_id"] for d in turns] == [1, 3]


def _check_resume_session(db: Database) -> None:
    stored = _messages(db, "resume-session")
    assert [d["role"] for d in stored] == ["user", "assistant", "user", "assistant"]
    assert _texts(stored)[3].startswith("We have 2 earlier messages")
    assert db["sessions"].count_documents({"_id": "resume-session"}) == 1


def _check_metrics_capture(db: Database) -> None:
    stored = _messages(db, "metrics-capture")
    # user, assistant (toolUse), user (toolResult), assistant: the final text is not stored twice.
    assert [d["role"] for d in stored] == ["user", "assistant", "user", "assistant"]
    assert "toolUse" in stored[1]["message"]["content"][0]
    assert "toolResult" in stored[2]["message"]["content"][0]
    turns = [d for d in stored if "event_loop_metrics" in d]
    assert [d["message_id"] for d in turns] == [3]
    record = turns[0]["event_loop_metrics"]
    assert record["status"] == "completed"
    assert record["model_calls"] == 2
    assert record["tool_calls"] == 1
    assert record["tools"]["get_weather"]["calls"] == 1
    assert record["accumulated_metrics"]["latencyMs"] == 120 + 250
    totals = db["sessions"].find_one({"_id": "metrics-capture"})["totals"]
    assert totals["turns"] == 1
    assert totals["toolCalls"] == 1
    assert totals["totalTokens"] == record["accumulated_usage"]["totalTokens"]


def _check_accessing_metrics(db: Database) -> None:
    reports = {"_id": {"$in": ["report-1", "report-2", "report-3"]}}
    assert db["sessions"].count_documents(reports) == 3
    turns = {"session_id": reports["_id"], "event_loop_metrics": {"$exists": True}}
    assert db["sessions_messages"].count_documents(turns) == 6


def _check_error_handling(db: Database) -> None:
    stored = _messages(db, "error-handling")
    assert [d["role"] for d in stored] == ["user", "assistant", "user", "assistant"]
    assert stored[1]["incomplete"] == {"reason": "error"}
    assert _texts(stored)[1] == "Here are three ideas: first, cache "
    assert "incomplete" not in stored[3]
    assert stored[1]["event_loop_metrics"]["status"] == "failed"  # the record closes the broken turn


def _check_timeout(db: Database) -> None:
    stored = _messages(db, "timeout")
    assert [d["role"] for d in stored] == ["user", "assistant"]
    assert stored[1]["incomplete"] == {"reason": "timeout"}
    partial = _texts(stored)[1]
    full = " ".join(f"word{n}" for n in range(100))
    assert full.startswith(partial)
    assert 0 < len(partial) < len(full)


def _check_factory_pattern(db: Database) -> None:
    people = {"_id": {"$in": ["alice", "bob", "carol"]}}
    assert sorted(d["_id"] for d in db["sessions"].find(people, {"_id": 1})) == ["alice", "bob", "carol"]
    assert len(_messages(db, "alice")) == 4
    assert len(_messages(db, "bob")) == 2


def _check_buffering(db: Database) -> None:
    stored = _messages(db, "buffering")
    assert [d["role"] for d in stored] == ["user", "assistant", "user", "assistant"]
    story = " ".join(f"word{n}" for n in range(1, 26))
    assert _texts(stored)[1] == _texts(stored)[3] == story


def _check_async_context_manager(db: Database) -> None:
    stored = _messages(db, "async-context-manager")
    assert [d["role"] for d in stored] == ["user", "assistant"]
    assert _texts(stored)[1] == "Context managers make sure clean-up happens."


# name -> (lines or regexes expected in stdout, database check)
EXPECTED: dict[str, tuple[list[str], Callable[[Database], None]]] = {
    "basic_streaming.py": (
        ["Response: Async code lets one thread", "Stored messages: 2"],
        _check_basic_streaming,
    ),
    "complete_persistence.py": (
        ["Assistant: Hi! What would you like to talk about?", "  3 assistant: [{'text': 'MongoDB is"],
        _check_complete_persistence,
    ),
    "resume_session.py": (
        ["Restored 2 messages from MongoDB", "Assistant: We have 2 earlier messages"],
        _check_resume_session,
    ),
    "metrics_capture.py": (
        ["Status: completed", "Model calls: 2, cycles: 2", "Latency: 370 ms", "Tool get_weather: 1 call(s)"],
        _check_metrics_capture,
    ),
    "accessing_metrics.py": (
        [
            "Latency: 300ms",
            "report-1: 3 turns",
            "All sessions: 6 turns",
            "Model scripted-model: 6 turns",
            "Top session report-1",
        ],
        _check_accessing_metrics,
    ),
    "error_handling.py": (
        [
            "[Error during streaming: ScriptedModelError]",
            "assistant: Here are three ideas: first, cache  (incomplete)",
        ],
        _check_error_handling,
    ),
    "timeout.py": (
        [
            "[Response timeout - streaming stopped]",
            r"re:Stopped after [0-2]\.\d s",
            "incomplete={'reason': 'timeout'}",
        ],
        _check_timeout,
    ),
    "factory_pattern.py": (
        ["You said: Hi, I am Alice", "You said: Me again", "Pool size: 100", "Sessions stored: 3"],
        _check_factory_pattern,
    ),
    "buffering.py": (
        [
            "write 1: 'word1 word2",
            "3 writes to the client",
            r"re:stream_text: \d+ writes, 25 words",
            "Stored reply equals what was sent: True",
        ],
        _check_buffering,
    ),
    "async_context_manager.py": (
        ["Assistant: Context managers make sure clean-up happens.", "Stored messages after the block: 2"],
        _check_async_context_manager,
    ),
}


def run_example(name: str, mongodb_uri: str, database_name: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"MSM_MODEL"}}
    env.update(
        MONGODB_URI=mongodb_uri,
        MSM_DATABASE=database_name,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_every_example_has_expectations() -> None:
    assert _examples() == sorted(EXPECTED), "add the new example to EXPECTED (or remove the stale entry)"


@pytest.mark.parametrize("name", _examples())
def test_example_runs_and_persists(
    name: str, mongodb_uri: str, database_name: str, mongo_client: pymongo.MongoClient[dict[str, Any]]
) -> None:
    result = run_example(name, mongodb_uri, database_name)
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
    lines, check = EXPECTED[name]
    for expected in lines:
        if expected.startswith("re:"):
            assert re.search(expected[3:], result.stdout), f"{expected!r} not in:\n{result.stdout}"
        else:
            assert expected in result.stdout, f"{expected!r} not in:\n{result.stdout}"
    db = mongo_client[database_name]
    check(db)
    # Whatever the example did: each message once, content as Strands' list of blocks.
    for document in db["sessions_messages"].find():
        assert isinstance(document["message"]["content"], list)
    keys = [(d["session_id"], d["agent_id"], d["message_id"]) for d in db["sessions_messages"].find()]
    assert len(keys) == len(set(keys))


def test_every_example_runs_after_every_other_on_one_database(
    mongodb_uri: str, database_name: str, mongo_client: pymongo.MongoClient[dict[str, Any]]
) -> None:
    """One server, one database, all examples in a row: none trips over another's sessions."""
    for name in _examples():
        result = run_example(name, mongodb_uri, database_name)
        assert result.returncode == 0, f"{name} failed after the others:\n{result.stdout}\n{result.stderr}"
    for name in _examples():
        EXPECTED[name][1](mongo_client[database_name])
