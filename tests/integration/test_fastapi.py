"""The FastAPI example app, end to end: streamed chats stored in MongoDB, resumed, interrupted.

httpx's ``ASGITransport`` runs the app to completion and hands back the whole body at once, so
it cannot show streaming or a client that leaves mid-reply. Those tests drive the ASGI app
directly, as a server does (``StreamedRequest``): body chunks are read as the app sends them,
and "disconnecting" makes ``receive()`` answer ``http.disconnect``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pymongo
import pytest
from fastapi import FastAPI
from starlette.requests import ClientDisconnect

from mongodb_session_manager.testing import ScriptedModel

Client = pymongo.MongoClient[dict[str, Any]]

EXAMPLE = Path(__file__).parents[2] / "examples" / "example_fastapi_streaming.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_fastapi_streaming", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = load_example()


class Models:
    """Hands each request's Agent a ScriptedModel and keeps them, to see what the model was sent."""

    def __init__(self, chunk_delay: float = 0.0) -> None:
        self.chunk_delay = chunk_delay
        self.made: list[ScriptedModel] = []

    def __call__(self) -> ScriptedModel:
        model = ScriptedModel(respond=example.scripted_reply, chunk_delay=self.chunk_delay)
        self.made.append(model)
        return model


@pytest.fixture
def models() -> Models:
    return Models()


@pytest.fixture
async def app(mongodb_uri: str, database_name: str, models: Models) -> AsyncIterator[FastAPI]:
    application: FastAPI = example.create_app(mongodb_uri, database_name=database_name, model=models)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        yield client


def stored(mongo_client: Client, database_name: str, session_id: str) -> list[dict[str, Any]]:
    return list(
        mongo_client[database_name].sessions_messages.find(
            {"session_id": session_id}, sort=[("message_id", 1)]
        )
    )


def text_of(document: dict[str, Any]) -> str:
    return "".join(block.get("text", "") for block in document["message"]["content"])


class StreamedRequest:
    """One request driven like an ASGI server does, reading the response body as it is sent."""

    def __init__(
        self, app: FastAPI, path: str, query: str, body: dict[str, Any], *, spec_version: str = "2.3"
    ) -> None:
        self._payload = json.dumps(body).encode()
        self._sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._gone = asyncio.Event()
        self._request_read = False
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": spec_version},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(b"content-type", b"application/json"), (b"host", b"test")],
            "client": ("127.0.0.1", 50000),
            "server": ("test", 80),
        }
        self._raise_on_send = spec_version >= "2.4"  # ASGI 2.4: send() raises once the client left
        self.task = asyncio.create_task(app(scope, self._receive, self._send))

    async def _send(self, message: dict[str, Any]) -> None:
        if self._gone.is_set() and self._raise_on_send:
            raise OSError("client disconnected")
        await self._sent.put(message)

    async def _receive(self) -> dict[str, Any]:
        if not self._request_read:
            self._request_read = True
            return {"type": "http.request", "body": self._payload, "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def next_chunk(self) -> bytes:
        """The next non-empty piece of the body, as soon as the app sends it."""
        while True:
            message = await asyncio.wait_for(self._sent.get(), timeout=10)
            if message["type"] == "http.response.start":
                assert message["status"] == 200
            elif message["body"] or not message.get("more_body"):
                return bytes(message["body"])

    async def disconnect(self) -> None:
        self._gone.set()
        with contextlib.suppress(ClientDisconnect):
            await asyncio.wait_for(self.task, timeout=10)


async def eventually(check: Callable[[], bool], *, seconds: float = 5.0) -> None:
    """Wait for a write that finishes on an I/O thread after the request has ended."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "the write never landed"
        await asyncio.sleep(0.02)


async def test_ten_concurrent_chats_are_each_stored_completely(
    http: httpx.AsyncClient, models: Models, mongo_client: Client, database_name: str
) -> None:
    models.chunk_delay = 0.01  # interleave the streams

    async def chat(number: int) -> str:
        response = await http.post(
            "/chat", params={"session_id": f"user-{number}"}, json={"prompt": f"n{number}"}
        )
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        return response.text

    replies = await asyncio.gather(*(chat(number) for number in range(10)))

    for number, reply in enumerate(replies):
        assert reply == f"Turn 1: you said 'n{number}'. I remember all 1 messages so far."
        messages = stored(mongo_client, database_name, f"user-{number}")
        assert [(m["role"], text_of(m)) for m in messages] == [("user", f"n{number}"), ("assistant", reply)]
        assert messages[-1]["event_loop_metrics"]["status"] == "completed"


async def test_a_resumed_session_gives_the_model_the_whole_conversation(
    http: httpx.AsyncClient, models: Models, mongo_client: Client, database_name: str
) -> None:
    first = await http.post("/chat", params={"session_id": "user-1"}, json={"prompt": "My name is Ana"})
    second = await http.post("/chat", params={"session_id": "user-1"}, json={"prompt": "What is my name?"})

    assert first.text == "Turn 1: you said 'My name is Ana'. I remember all 1 messages so far."
    assert second.text == "Turn 2: you said 'What is my name?'. I remember all 3 messages so far."
    sent_to_model = models.made[1].calls[0].messages
    assert [(m["role"], m["content"][0]["text"]) for m in sent_to_model] == [
        ("user", "My name is Ana"),
        ("assistant", first.text),
        ("user", "What is my name?"),
    ]
    assert len(stored(mongo_client, database_name, "user-1")) == 4


async def test_sse_frames_are_json_and_end_with_the_turns_metrics(
    http: httpx.AsyncClient, models: Models
) -> None:
    response = await http.post("/chat/sse", params={"session_id": "sse-1"}, json={"prompt": "Hello"})

    assert response.headers["content-type"].startswith("text/event-stream")
    frames = [json.loads(line[len("data: ") :]) for line in response.text.split("\n\n") if line]
    assert {frame["type"] for frame in frames[:-1]} == {"token"}
    assert (
        "".join(frame["data"] for frame in frames[:-1])
        == "Turn 1: you said 'Hello'. I remember all 1 messages so far."
    )
    done = frames[-1]
    assert done["type"] == "done"
    assert done["metrics"]["status"] == "completed"
    assert done["metrics"]["accumulated_usage"] == dict(models.made[0].calls[0].usage)

    metrics = (await http.get("/sessions/sse-1/metrics")).json()
    assert metrics["totals"]["turns"] == 1
    assert metrics["totals"]["output_tokens"] == done["metrics"]["accumulated_usage"]["outputTokens"]
    messages = (await http.get("/sessions/sse-1")).json()["messages"]
    assert [m["message"]["role"] for m in messages] == ["user", "assistant"]


async def test_chunks_reach_the_client_while_the_model_is_still_writing(
    app: FastAPI, models: Models, mongo_client: Client, database_name: str
) -> None:
    models.chunk_delay = 0.05
    request = StreamedRequest(app, "/chat", "session_id=live-1", {"prompt": "Hi"})

    first = await request.next_chunk()

    assert first == b"Turn "
    assert not request.task.done()
    assert [m["role"] for m in stored(mongo_client, database_name, "live-1")] == [
        "user"
    ]  # reply not done yet
    body = first
    while chunk := await request.next_chunk():
        body += chunk
    assert body.decode() == "Turn 1: you said 'Hi'. I remember all 1 messages so far."


@pytest.mark.parametrize(
    ("spec_version", "reason"),
    [
        ("2.3", "cancelled"),  # Starlette notices http.disconnect and cancels the stream (uvicorn today)
        ("2.4", "disconnected"),  # send() raises; the response closes the generator
    ],
)
async def test_a_client_that_leaves_mid_reply_leaves_a_partial_reply_and_a_valid_conversation(
    app: FastAPI,
    http: httpx.AsyncClient,
    models: Models,
    mongo_client: Client,
    database_name: str,
    spec_version: str,
    reason: str,
) -> None:
    models.chunk_delay = 0.05
    request = StreamedRequest(
        app, "/chat/sse", "session_id=gone-1", {"prompt": "Tell me a story"}, spec_version=spec_version
    )
    first = await request.next_chunk()

    await request.disconnect()

    assert json.loads(first.decode()[len("data: ") :]) == {"type": "token", "data": "Turn "}
    await eventually(lambda: len(stored(mongo_client, database_name, "gone-1")) == 2)
    partial = stored(mongo_client, database_name, "gone-1")[-1]
    assert partial["incomplete"]["reason"] == reason
    full = "Turn 1: you said 'Tell me a story'. I remember all 1 messages so far."
    assert text_of(partial).startswith("Turn ")
    assert full.startswith(text_of(partial))
    assert text_of(partial) != full

    models.chunk_delay = 0.0
    again = await http.post("/chat", params={"session_id": "gone-1"}, json={"prompt": "Go on"})
    assert again.text == "Turn 2: you said 'Go on'. I remember all 3 messages so far."
    assert [m["role"] for m in models.made[-1].calls[0].messages] == ["user", "assistant", "user"]
    assert len(stored(mongo_client, database_name, "gone-1")) == 4


async def test_a_bad_session_id_is_a_client_error(http: httpx.AsyncClient) -> None:
    response = await http.post("/chat", params={"session_id": "x" * 600}, json={"prompt": "Hi"})

    assert response.status_code == 400
    assert "session_id" in response.json()["detail"]


def test_without_fastapi_the_import_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if FastAPI were not installed
    monkeypatch.setitem(sys.modules, "fastapi.responses", None)
    monkeypatch.delitem(sys.modules, "mongodb_session_manager.integrations.fastapi", raising=False)

    with pytest.raises(ImportError, match=r"mongodb-session-manager\[fastapi\]"):
        importlib.import_module("mongodb_session_manager.integrations.fastapi")


async def test_the_session_list_pages_with_cursors(http: httpx.AsyncClient) -> None:
    for session_id in ("chat-a", "chat-b", "chat-c"):
        assert (
            await http.post("/chat", params={"session_id": session_id}, json={"prompt": "hi"})
        ).status_code == 200

    first = (await http.get("/sessions", params={"limit": 2})).json()
    rest = (await http.get("/sessions", params={"limit": 2, "after": first["next_cursor"]})).json()

    assert [s["session_id"] for s in first["sessions"]] == ["chat-c", "chat-b"]
    assert [s["session_id"] for s in rest["sessions"]] == ["chat-a"]
    assert rest["next_cursor"] is None


async def test_five_concurrent_requests_on_one_session_take_turns(
    http: httpx.AsyncClient, models: Models, mongo_client: Client, database_name: str
) -> None:
    """Double submits, two tabs: every turn runs after the one before it, on a strict model."""
    models.chunk_delay = 0.005
    prompts = [f"question {n}" for n in range(5)]

    replies = await asyncio.gather(
        *(http.post("/chat", params={"session_id": "tabs"}, json={"prompt": p}) for p in prompts)
    )

    assert [reply.status_code for reply in replies] == [200] * 5
    documents = stored(mongo_client, database_name, "tabs")
    assert [d["message_id"] for d in documents] == list(range(10))
    assert [d["role"] for d in documents] == ["user", "assistant"] * 5
    for number, (prompt, reply) in enumerate(zip(documents[::2], documents[1::2], strict=True), start=1):
        # Each reply sits right after its own prompt, and its turn saw every turn stored before it.
        assert (
            text_of(reply) == f"Turn {number}: you said {text_of(prompt)!r}. "
            f"I remember all {2 * number - 1} messages so far."
        )


async def test_a_retried_request_with_the_same_idempotency_key_runs_once(
    http: httpx.AsyncClient, mongo_client: Client, database_name: str
) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = await http.post(
        "/chat", params={"session_id": "retry"}, json={"prompt": "Book it"}, headers=headers
    )
    again = await http.post(
        "/chat", params={"session_id": "retry"}, json={"prompt": "Book it"}, headers=headers
    )

    assert first.text == again.text == "Turn 1: you said 'Book it'. I remember all 1 messages so far."
    assert [text_of(d) for d in stored(mongo_client, database_name, "retry")] == ["Book it", first.text]
