"""``shard-setup`` against a server: refused outside a cluster, idempotent on a ``mongos``."""

from __future__ import annotations

import json
from typing import Any

import pymongo
import pytest

from mongodb_session_manager.cli import main
from mongodb_session_manager.cli.shard_setup import is_mongos


def test_it_refuses_to_shard_a_server_that_is_not_a_mongos(
    mongodb_uri: str,
    mongo_client: pymongo.MongoClient[dict[str, Any]],
    database_name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if is_mongos(mongo_client):
        pytest.skip("MONGODB_URI is a mongos: test_shard_setup_on_a_cluster_is_idempotent covers it")
    code = main(["shard-setup", "--uri", mongodb_uri, "--database", database_name])
    assert code == 2
    assert "needs a mongos" in capsys.readouterr().err
    assert database_name not in mongo_client.list_database_names()  # nothing was run


@pytest.mark.requires_mongodb
def test_shard_setup_on_a_cluster_is_idempotent(
    mongodb_uri: str,
    mongo_client: pymongo.MongoClient[dict[str, Any]],
    database_name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if not is_mongos(mongo_client):
        pytest.skip("needs MONGODB_URI pointing at a mongos (hello answers isdbgrid)")
    args = ["shard-setup", "--json", "--uri", mongodb_uri, "--database", database_name]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert all(step["result"] == "applied" for step in first["steps"])
    assert main(args) == 0
    again = json.loads(capsys.readouterr().out)
    shardings = [step for step in again["steps"] if "shardCollection" in step["command"]]
    assert [step["result"] for step in shardings] == ["already"] * 3
    for step in shardings:
        entry = mongo_client["config"]["collections"].find_one({"_id": step["command"]["shardCollection"]})
        assert entry is not None
        assert dict(entry["key"]) == step["command"]["key"]
