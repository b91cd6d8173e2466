"""The example app answers bad input with a 4xx JSON error, over ASGI and over real HTTP.

Unknown sessions are 404, bad ids and paging 400/422, a chat body without a prompt 422 with
nothing stored; the package's errors map to statuses in the FastAPI integration.
"""

from __future__ import annotations

import importlib.util
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pymongo
import pytest
import uvicorn
from fastapi import FastAPI

from mongodb_session_manager import SessionBusyError
from mongodb_session_manager.integrations.fastapi import http_status
from mongodb_session_manager.testing import ScriptedModel

EXAMPLE = Path(__file__).parents[2] / "examples" / "example_fastapi_streaming.py"


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_fastapi_streaming_errors", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = _load_example()

Client = pymongo.MongoClient[dict[str, Any]]

# (method, path, body, status)
BAD_REQUESTS: list[tuple[str, str, Any, int]] = [
    ("GET", "/sessions/nope", None, 404),
    ("GET", "/sessions/nope/metrics", None, 404),
    ("GET", "/sessions/known?agent_id=bad.agent", None, 400),
    ("GET", "/sessions/known?agent_id=%24where", None, 400),
    ("GET", "/sessions/known/metrics?limit=-1", None, 422),
    ("GET", "/sessions/known/metrics?limit=100000", None, 422),
    ("GET", "/sessions/known/metrics?skip=-1", None, 422),
    ("GET", f"/sessions/{'x' * 600}", None, 400),
    ("GET", f"/sessions/{'x' * 600}/metrics", None, 400),
    ("POST", f"/chat?session_id={'x' * 600}", {"prompt": "hi"}, 400),
    ("POST", "/chat?session_id=fresh", {}, 422),
    ("POST", "/chat/sse?session_id=fresh", {"prompt": ""}, 422),
    ("POST", "/chat?session_id=fresh", {"text": "hi"}, 422),
]


def scripted() -> ScriptedModel:
    return ScriptedModel(respond=example.scripted_reply)


@pytest.fixture
async def app(mongodb_uri: str, database_name: str) -> AsyncIterator[FastAPI]:
    application: FastAPI = example.create_app(mongodb_uri, database_name=database_name, model=scripted)
    async with application.router.lifespan_context(application):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://t"
        ) as http:
            assert (await http.post("/chat?session_id=known", json={"prompt": "hello"})).status_code == 200
        yield application


def assert_answers(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "detail" in response.json()
    assert "Traceback" not in response.text


def assert_nothing_stored_for_fresh(client: Client, database_name: str) -> None:
    assert client[database_name]["sessions"].find_one({"_id": "fresh"}) is None
    assert client[database_name]["sessions_messages"].count_documents({"session_id": "fresh"}) == 0


@pytest.mark.parametrize(("method", "path", "body", "status"), BAD_REQUESTS, ids=lambda v: str(v)[:40])
async def test_bad_input_over_asgi_is_a_4xx_json_error(
    app: FastAPI, client: Client, database_name: str, method: str, path: str, body: Any, status: int
) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        assert_answers(await http.request(method, path, json=body), status)
    assert_nothing_stored_for_fresh(client, database_name)


@pytest.fixture
def served(mongodb_uri: str, database_name: str) -> Iterator[str]:
    """The example app under uvicorn on a loopback port, in a thread."""
    application = example.create_app(mongodb_uri, database_name=database_name, model=scripted)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(application, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            threading.Event().wait(0.05)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_bad_input_over_real_http_is_a_4xx_json_error(
    served: str, client: Client, database_name: str
) -> None:
    with httpx.Client(base_url=served, timeout=10) as http:
        assert http.post("/chat?session_id=known", json={"prompt": "hello"}).status_code == 200
        assert http.get("/sessions/known").json()["messages"][0]["message"]["role"] == "user"
        for method, path, body, status in BAD_REQUESTS:
            assert_answers(http.request(method, path, json=body), status)
    assert_nothing_stored_for_fresh(client, database_name)


def test_a_busy_session_is_409() -> None:
    assert http_status(SessionBusyError("session_id=<s> | another writer holds it")) == 409


async def test_a_busy_session_in_the_dependency_answers_409(
    mongodb_uri: str, database_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    application = example.create_app(mongodb_uri, database_name=database_name, model=scripted)
    async with application.router.lifespan_context(application):
        from mongodb_session_manager.factory import get_global_factory

        async def busy(*args: Any, **kwargs: Any) -> Any:
            raise SessionBusyError("session_id=<s> | another writer holds this session")

        monkeypatch.setattr(get_global_factory(), "acreate_session_manager", busy)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://t"
        ) as http:
            assert_answers(await http.post("/chat?session_id=s", json={"prompt": "hi"}), 409)
