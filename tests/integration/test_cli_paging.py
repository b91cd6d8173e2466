"""``sessions list --user U --after CURSOR``: a user's sessions page by page from the command line."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pymongo
import pytest
from strands.types.session import Session, SessionType

from mongodb_session_manager import schema
from mongodb_session_manager.cli import main

START = datetime(2025, 3, 1, tzinfo=timezone.utc)


@pytest.fixture
def stored(mongo_client: pymongo.MongoClient[dict[str, Any]], database_name: str) -> None:
    documents = []
    for i in range(5):
        for user_id in ("ada", "bob"):
            document = schema.session_document(Session(f"{user_id}-{i}", SessionType.AGENT))
            documents.append({**document, "user_id": user_id, "updated_at": START + timedelta(minutes=i)})
    mongo_client[database_name]["sessions"].insert_many(documents)


def run(capsys: pytest.CaptureFixture[str], uri: str, database: str, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["--uri", uri, "--database", database, "sessions", "list", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.usefixtures("stored")
def test_list_walks_a_users_sessions_with_cursors(
    capsys: pytest.CaptureFixture[str], mongodb_uri: str, database_name: str
) -> None:
    seen, after = [], []
    while True:
        code, out, err = run(
            capsys, mongodb_uri, database_name, "--json", "--user", "ada", "--limit", "2", *after
        )
        assert (code, err) == (0, "")
        page = json.loads(out)
        seen += [session["session_id"] for session in page["sessions"]]
        if page["next_cursor"] is None:
            break
        after = ["--after", page["next_cursor"]]
    assert seen == ["ada-4", "ada-3", "ada-2", "ada-1", "ada-0"]

    code, out, _ = run(capsys, mongodb_uri, database_name, "--user", "bob", "--limit", "3")
    assert code == 0
    assert "bob-4" in out
    assert "ada-4" not in out
    assert "next page: --after " in out


def test_list_refuses_a_bad_cursor_and_skip_with_a_cursor(
    capsys: pytest.CaptureFixture[str], mongodb_uri: str, database_name: str
) -> None:
    code, _, err = run(capsys, mongodb_uri, database_name, "--after", "garbage!")
    assert code == 2
    assert "cursor" in err
    code, _, err = run(capsys, mongodb_uri, database_name, "--user", "ada", "--skip", "2")
    assert code == 2
    assert "--skip" in err
