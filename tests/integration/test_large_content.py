"""Binary content past the threshold lives in GridFS and comes back byte-exact.

A 20 MB image (past MongoDB's 16 MiB document limit) is stored through the manager, resumed,
listed, read, exported and imported; deleting the session removes its files and chunks; a
plain turn still costs two round trips.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pymongo
import pytest
from strands import Agent
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from mongodb_session_manager import (
    AsyncMongoDBSessionRepository,
    MongoDBSessionManager,
    MongoDBSessionRepository,
)
from mongodb_session_manager.cli import main
from mongodb_session_manager.errors import ConfigurationError
from mongodb_session_manager.testing import CommandCounter, ScriptedModel

BIG = os.urandom(20 * 1024 * 1024)
SMALL = os.urandom(1024)


def _image(data: bytes) -> dict[str, Any]:
    return {"image": {"format": "png", "source": {"bytes": data}}}


def _image_bytes(message: Any) -> bytes:
    return next(block["image"]["source"]["bytes"] for block in message["content"] if "image" in block)


def _agent(manager: MongoDBSessionManager, replies: list[str]) -> Agent:
    return Agent(
        agent_id="assistant", model=ScriptedModel(replies), session_manager=manager, callback_handler=None
    )


def _files(client: pymongo.MongoClient[dict[str, Any]], database_name: str) -> tuple[int, int]:
    database = client[database_name]
    return (
        database["sessions_files.files"].count_documents({}),
        database["sessions_files.chunks"].count_documents({}),
    )


def test_a_20_mb_image_is_stored_in_gridfs_and_resumed_byte_exact(
    mongodb_uri: str, mongo_client: pymongo.MongoClient[dict[str, Any]], database_name: str
) -> None:
    manager = MongoDBSessionManager("big", connection_string=mongodb_uri, database_name=database_name)
    agent = _agent(manager, ["A fine picture."])
    agent([{"text": "What is in this picture?"}, _image(BIG)])
    assert _image_bytes(agent.messages[0]) is BIG  # the agent's messages keep the caller's bytes
    manager.close()

    stored = mongo_client[database_name]["sessions_messages"].find_one({"message_id": 0})
    assert stored is not None
    reference = stored["message"]["content"][1]["image"]["source"]["bytes"]
    assert reference.collection == "sessions_files"
    assert reference.length == len(BIG)
    files = mongo_client[database_name]["sessions_files.files"].find_one({"_id": reference.id})
    assert files is not None
    assert files["metadata"] == {"session_id": "big", "agent_id": "assistant", "kind": "image"}

    resumed = _agent(
        MongoDBSessionManager("big", connection_string=mongodb_uri, database_name=database_name), []
    )
    assert _image_bytes(resumed.messages[0]) == BIG
    assert resumed.messages[1]["content"] == [{"text": "A fine picture."}]

    repository = MongoDBSessionRepository(mongodb_uri, database_name)
    assert _image_bytes(repository.list_messages("big", "assistant")[0].message) == BIG
    read = repository.read_message("big", "assistant", 0)
    assert read is not None
    assert _image_bytes(read.message) == BIG


async def test_invoke_async_stores_and_resumes_a_large_document_block(
    mongodb_uri: str, database_name: str
) -> None:
    manager = MongoDBSessionManager("big-async", connection_string=mongodb_uri, database_name=database_name)
    agent = _agent(manager, ["Read it."])
    document = {"document": {"format": "pdf", "name": "report", "source": {"bytes": BIG}}}
    await agent.invoke_async([{"text": "Summarise this."}, document])
    await manager.aclose()

    repository = AsyncMongoDBSessionRepository(mongodb_uri, database_name)
    try:
        snapshot = await repository.load_session("big-async", "assistant")
        assert snapshot is not None
        assert snapshot.window[0].message["content"][1] == document
    finally:
        await repository.close()


def _session(repository: MongoDBSessionRepository, session_id: str) -> None:
    repository.create_session(Session(session_id, SessionType.AGENT))
    repository.create_agent(session_id, SessionAgent("assistant", {}, {}))


def test_the_repositories_split_only_blocks_past_the_threshold(
    mongodb_uri: str, mongo_client: pymongo.MongoClient[dict[str, Any]], database_name: str
) -> None:
    repository = MongoDBSessionRepository(mongodb_uri, database_name, large_content_threshold=4096)
    _session(repository, "mixed")
    tool_result = {"toolResult": {"toolUseId": "t1", "status": "success", "content": [_image(BIG)]}}
    message = {
        "role": "user",
        "content": [_image(SMALL), tool_result, {"video": {"format": "mp4", "source": {"bytes": BIG}}}],
    }
    repository.write_message("mixed", "assistant", SessionMessage(message, 0))  # type: ignore[arg-type]

    assert _files(mongo_client, database_name)[0] == 2  # the two 20 MB blocks, not the 1 KB image
    stored = mongo_client[database_name]["sessions_messages"].find_one({"session_id": "mixed"})
    assert stored is not None
    assert stored["message"]["content"][0] == _image(SMALL)
    assert repository.list_messages("mixed", "assistant")[0].message == message

    with pytest.raises(ConfigurationError, match="large_content_threshold"):
        MongoDBSessionRepository(mongodb_uri, database_name, large_content_threshold=0)


async def test_the_async_repository_stores_and_reads_large_blocks(
    mongodb_uri: str, mongo_client: pymongo.MongoClient[dict[str, Any]], database_name: str
) -> None:
    repository = AsyncMongoDBSessionRepository(mongodb_uri, database_name)
    try:
        await repository.create_session(Session("async-big", SessionType.AGENT))
        await repository.create_agent("async-big", SessionAgent("assistant", {}, {}))
        message = {"role": "user", "content": [_image(BIG)]}
        await repository.write_message("async-big", "assistant", SessionMessage(message, 0))  # type: ignore[arg-type]
        assert _files(mongo_client, database_name)[0] == 1
        listed = await repository.list_messages("async-big", "assistant")
        assert _image_bytes(listed[0].message) == BIG
        assert await repository.delete_session("async-big")
        assert _files(mongo_client, database_name) == (0, 0)
    finally:
        await repository.close()


def test_delete_session_removes_the_files_and_their_chunks(
    mongodb_uri: str, mongo_client: pymongo.MongoClient[dict[str, Any]], database_name: str
) -> None:
    repository = MongoDBSessionRepository(mongodb_uri, database_name)
    for session_id in ("doomed", "kept"):
        _session(repository, session_id)
        message = {"role": "user", "content": [_image(BIG)]}
        repository.write_message(session_id, "assistant", SessionMessage(message, 0))  # type: ignore[arg-type]
    files, chunks = _files(mongo_client, database_name)
    assert files == 2
    assert chunks > 2

    assert repository.delete_session("doomed")
    assert _files(mongo_client, database_name) == (1, chunks // 2)
    assert _image_bytes(repository.list_messages("kept", "assistant")[0].message) == BIG


def test_export_holds_the_bytes_and_import_uploads_them_again(
    mongodb_uri: str,
    mongo_client: pymongo.MongoClient[dict[str, Any]],
    database_name: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repository = MongoDBSessionRepository(mongodb_uri, database_name)
    _session(repository, "moved")
    message = {"role": "user", "content": [{"text": "keep this"}, _image(BIG)]}
    repository.write_message("moved", "assistant", SessionMessage(message, 0))  # type: ignore[arg-type]
    target = tmp_path / "moved.json"
    common = ["--uri", mongodb_uri, "--database", database_name]

    assert main(["sessions", "export", "moved", "--output", str(target), *common]) == 0
    exported = json.loads(target.read_text())
    assert "$binary" in json.dumps(exported["messages"][0]["message"]["content"][1])
    assert "$ref" not in target.read_text()

    repository.delete_session("moved")
    assert _files(mongo_client, database_name) == (0, 0)
    assert main(["sessions", "import", str(target), *common]) == 0
    capsys.readouterr()
    assert _files(mongo_client, database_name)[0] == 1
    assert repository.list_messages("moved", "assistant")[0].message == message


async def test_a_plain_turn_still_costs_two_round_trips_and_a_large_one_adds_only_its_upload(
    counted_client: pymongo.MongoClient[dict[str, Any]], counter: CommandCounter, database_name: str
) -> None:
    manager = MongoDBSessionManager("rt-big", client=counted_client, database_name=database_name)
    agent = _agent(manager, ["warm", "plain", "pictured"])
    await agent.invoke_async("warm up")
    counter.take()

    await agent.invoke_async("hi")
    assert len(counter.take()) == 2
    await agent.invoke_async([{"text": "look"}, _image(BIG)])
    await manager.aclose()
    commands = counter.take_targets()
    uploads = [name for name, target in commands if str(target).startswith("sessions_files")]
    own = [name for name, target in commands if not str(target).startswith("sessions_files")]
    assert len(own) == 2  # the turn's own writes, as for a plain turn
    assert set(uploads) <= {"insert", "listIndexes", "createIndexes", "find"}


def test_files_of_sessions_the_ttl_monitor_removed_are_swept(
    mongodb_uri: str, mongo_client: pymongo.MongoClient[dict[str, Any]], database_name: str
) -> None:
    repository = MongoDBSessionRepository(mongodb_uri, database_name)
    for session_id in ("expired", "alive"):
        _session(repository, session_id)
        message = {"role": "user", "content": [_image(BIG)]}
        repository.write_message(session_id, "assistant", SessionMessage(message, 0))  # type: ignore[arg-type]
    # What the TTL monitor does: the documents go, the GridFS files do not.
    mongo_client[database_name]["sessions"].delete_one({"_id": "expired"})
    mongo_client[database_name]["sessions_messages"].delete_many({"session_id": "expired"})

    assert repository.sweep_files() == 0  # younger than the grace period: a first write may be running
    assert repository.sweep_files(older_than=timedelta(microseconds=1)) == 1
    assert _files(mongo_client, database_name)[0] == 1
    assert _image_bytes(repository.list_messages("alive", "assistant")[0].message) == BIG


def test_prune_and_erase_user_delete_the_files_too(
    mongodb_uri: str, mongo_client: pymongo.MongoClient[dict[str, Any]], database_name: str, tmp_path: Path
) -> None:
    repository = MongoDBSessionRepository(mongodb_uri, database_name)
    for session_id, user_id in (("old", "ann"), ("ann-2", "ann"), ("bea-1", "bea")):
        repository.create_session(Session(session_id, SessionType.AGENT), user_id=user_id)
        repository.create_agent(session_id, SessionAgent("assistant", {}, {}))
        message = {"role": "user", "content": [_image(BIG)]}
        repository.write_message(session_id, "assistant", SessionMessage(message, 0))  # type: ignore[arg-type]
    sessions = mongo_client[database_name]["sessions"]
    sessions.update_one({"_id": "old"}, {"$set": {"updated_at": datetime(2020, 1, 1, tzinfo=timezone.utc)}})

    report = repository.prune(timedelta(days=30), archive_to=tmp_path)
    assert report.session_ids == ("old",)
    assert _files(mongo_client, database_name)[0] == 2
    archived = json.loads(Path(report.archived[0]).read_text())
    assert "$ref" not in json.dumps(archived)  # the archive holds the bytes, as an export does

    receipt = repository.erase_user("ann")
    assert receipt.session_ids == ("ann-2",)
    files = mongo_client[database_name]["sessions_files.files"].find({}, {"metadata": 1})
    assert [file["metadata"]["session_id"] for file in files] == ["bea-1"]


def test_sessions_show_describes_large_content_by_size_without_reading_it(
    mongodb_uri: str, database_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    repository = MongoDBSessionRepository(mongodb_uri, database_name)
    _session(repository, "shown")
    message = {"role": "user", "content": [{"text": "see"}, _image(BIG)]}
    repository.write_message("shown", "assistant", SessionMessage(message, 0))  # type: ignore[arg-type]
    common = ["--uri", mongodb_uri, "--database", database_name]
    capsys.readouterr()

    assert main(["sessions", "show", "shown", *common]) == 0
    assert "[image png, 20,971,520 bytes in GridFS]" in capsys.readouterr().out
    assert main(["sessions", "show", "shown", "--json", *common]) == 0
    shown = json.loads(capsys.readouterr().out)
    reference = shown["messages"][0]["message"]["content"][1]["image"]["source"]["bytes"]
    assert reference["$ref"] == "sessions_files"
    assert reference["length"] == len(BIG)
