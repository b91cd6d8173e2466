"""Passwords never survive redaction, whatever shape the connection string has."""

from __future__ import annotations

from urllib.parse import quote_plus

import pytest

from mongodb_session_manager._redact import password_forms, redact_connection_string, redact_uri, scrub

PASSWORD = "Zq7/s@c:ret"  # every character a URI parser could stumble on


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("mongodb://ops:hunter22@db:27017/app", "mongodb://ops:***@db:27017/app"),
        ("MONGODB://ops:hunter22@db/", "MONGODB://ops:***@db/"),
        ("Mongodb://ops:hunter22@db/", "Mongodb://ops:***@db/"),
        ("mongodb+srv://ops:hunter22@cluster.example.net/", "mongodb+srv://ops:***@cluster.example.net/"),
        (f"mongodb://ops:{quote_plus(PASSWORD)}@db/?tls=true", "mongodb://ops:***@db/?tls=true"),
        # Unescaped '/', '@' and ':' (pymongo refuses these): everything up to the last '@' goes.
        (f"mongodb://ops:{PASSWORD}@db:27017/app", "mongodb://ops:***@db:27017/app"),
        ("mongodb://ops:p@ss@db/", "mongodb://ops:***@db/"),
        ("mongodb://ops:a:b:c@db/", "mongodb://ops:***@db/"),
        ("mongodb://db:27017/app?replicaSet=rs0", "mongodb://db:27017/app?replicaSet=rs0"),
        (
            "mongodb://x509user@db/?authMechanism=MONGODB-X509",
            "mongodb://x509user@db/?authMechanism=MONGODB-X509",
        ),
    ],
)
def test_every_shape_loses_its_password(uri: str, expected: str) -> None:
    assert redact_uri(uri) == expected
    assert redact_connection_string(uri) == expected
    assert redact_uri(f"failed to reach {uri} (timeout)") == f"failed to reach {expected} (timeout)"


def test_a_connection_string_without_a_scheme() -> None:
    assert redact_connection_string(f"ops:{PASSWORD}@db:27017") == "ops:***@db:27017"
    assert redact_connection_string("db:27017") == "db:27017"


def test_two_connection_strings_on_one_line() -> None:
    text = "from mongodb://a:one1@h1/ to MONGODB://b:two2@h2/"
    assert redact_uri(text) == "from mongodb://a:***@h1/ to MONGODB://b:***@h2/"


def test_password_forms_are_as_written_and_decoded() -> None:
    encoded = quote_plus(PASSWORD)
    assert set(password_forms(f"mongodb://ops:{encoded}@db/")) == {encoded, PASSWORD}
    assert password_forms(f"ops:{PASSWORD}@db") == [PASSWORD]
    assert password_forms("mongodb://db/") == []
    assert password_forms("mongodb://user@db/") == []


def test_scrub_removes_a_password_a_driver_quoted_on_its_own() -> None:
    secrets = password_forms(f"mongodb://ops:{quote_plus(PASSWORD)}@db/")
    assert scrub(f"bad user info {PASSWORD!r} in mongodb://ops:x%2Fy@db/", secrets) == (
        "bad user info '***' in mongodb://ops:***@db/"
    )
