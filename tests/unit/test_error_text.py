"""Stored and served error text: the error's type and message, nothing of the process."""

from __future__ import annotations

import asyncio

import pytest

from mongodb_session_manager._error_text import MAX_MESSAGE_LENGTH, error_summary, sanitize_error_message


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "[Errno 2] No such file or directory: '/srv/app/config.yaml'",
            "[Errno 2] No such file or directory: '[path]'",
        ),
        (r"cannot open C:\app\secrets\key.pem", "cannot open [path]"),
        ("bad value <object object at 0x7f3a2b1c4d50>", "bad value <object>"),
        ("Cancelled by cancel scope 7f3a2b1c4d50", "Cancelled by cancel scope"),
        ('boom\nTraceback (most recent call last):\n  File "/x/y.py", line 3, in f\nValueError: x', "boom"),
        ("GET https://api.example.com/v1/chat failed", "GET https://api.example.com/v1/chat failed"),
        ("ratio 1/2 and a < b > c", "ratio 1/2 and a < b > c"),
    ],
)
def test_paths_addresses_reprs_and_tracebacks_are_removed(message: str, expected: str) -> None:
    assert sanitize_error_message(message) == expected


async def test_a_task_repr_keeps_only_its_type() -> None:
    task = asyncio.create_task(asyncio.sleep(10))
    await asyncio.sleep(0)
    task.cancel()
    assert sanitize_error_message(f"cancelled {task!r}") == "cancelled <Task>"


def test_a_summary_is_type_and_bounded_message() -> None:
    summary = error_summary(ValueError("x" * 10_000))
    assert summary["type"] == "ValueError"
    assert len(summary["message"]) == MAX_MESSAGE_LENGTH
