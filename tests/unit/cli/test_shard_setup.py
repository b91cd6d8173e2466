"""``shard-setup --dry-run --json``: the commands agree with the index definitions in the schema."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mongodb_session_manager import schema
from mongodb_session_manager.cli import main


def _plan(capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    assert main(["shard-setup", "--dry-run", "--json", "--database", "chat", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def _shardings(plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        step["command"]["shardCollection"]: step["command"]["key"]
        for step in plan["steps"]
        if "shardCollection" in step["command"]
    }


def test_dry_run_shards_sessions_messages_and_file_chunks_with_the_schema_keys(
    capsys: pytest.CaptureFixture[str],
) -> None:
    plan = _plan(capsys)
    assert plan["dry_run"] is True
    assert plan["steps"][0]["command"] == {"enableSharding": "chat"}
    assert _shardings(plan) == {
        "chat.sessions": {"_id": "hashed"},
        "chat.sessions_messages": {"session_id": 1, "agent_id": 1},
        "chat.sessions_files.chunks": {"files_id": 1, "n": 1},
    }


def test_each_shard_key_is_backed_by_an_index_created_before_it(capsys: pytest.CaptureFixture[str]) -> None:
    plan = _plan(capsys)
    created: dict[str, list[dict[str, Any]]] = {}
    for step in plan["steps"]:
        command = step["command"]
        if "createIndexes" in command:
            created.setdefault(f"chat.{command['createIndexes']}", []).extend(command["indexes"])
        if "shardCollection" in command:
            key = list(command["key"].items())
            indexes = created.get(command["shardCollection"], [])
            assert any(list(index["key"].items())[: len(key)] == key for index in indexes), command


def test_every_unique_index_keeps_the_shard_key_as_its_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    """A cluster enforces a unique index only under a ranged shard key that prefixes it."""
    plan = _plan(capsys)
    keys = _shardings(plan)
    unique = [spec for spec in schema.MESSAGE_INDEXES if spec.options.get("unique")]
    message_key = list(keys["chat.sessions_messages"].items())
    for spec in unique:
        assert list(spec.keys)[: len(message_key)] == message_key
    assert "hashed" not in keys["chat.sessions_messages"].values()
    assert schema.FILE_CHUNKS_INDEX.options["unique"]
    assert list(keys["chat.sessions_files.chunks"].items()) == list(schema.FILE_CHUNKS_INDEX.keys)


def test_the_key_vault_and_the_rollups_stay_unsharded_with_a_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    plan = _plan(capsys, "--key-vault-namespace", "encryption.__keyVault")
    kept = {row["namespace"]: row["reason"] for row in plan["unsharded"]}
    assert "keyAltNames" in kept["encryption.__keyVault"]
    assert "chat.sessions_rollups" in kept
    assert "encryption.__keyVault" not in _shardings(plan)


def test_the_collection_option_names_every_namespace(capsys: pytest.CaptureFixture[str]) -> None:
    plan = _plan(capsys, "--collection", "chats")
    assert set(_shardings(plan)) == {"chat.chats", "chat.chats_messages", "chat.chats_files.chunks"}


def test_the_human_output_is_mongosh_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shard-setup", "--dry-run", "--database", "chat"]) == 0
    out = capsys.readouterr().out
    command = '{shardCollection: "chat.sessions_messages", key: {session_id: 1, agent_id: 1}}'
    assert f"db.adminCommand({command})" in out
