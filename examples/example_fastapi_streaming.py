"""A FastAPI chat service that streams replies and keeps every conversation in MongoDB.

    POST /chat?session_id=...        {"prompt": "..."}  -> the reply as plain text, streamed
    POST /chat/sse?session_id=...    {"prompt": "..."}  -> Server-Sent Events: token..., done
    GET  /sessions?user_id=...&after=...                 -> a page of sessions and the next cursor
    GET  /sessions/{session_id}                          -> the stored messages
    GET  /sessions/{session_id}/metrics                  -> per-turn metrics and totals

Runs offline as-is: the model is a ScriptedModel (deterministic replies, real streaming) unless
``MSM_MODEL`` names a model id (e.g. a Bedrock model id), and the database is ``MONGODB_URI``
or, when unset, an embedded SecantusDB started by the app's lifespan.

    python examples/example_fastapi_streaming.py          # serves on http://127.0.0.1:8000
    curl -N -X POST 'http://127.0.0.1:8000/chat/sse?session_id=demo' \\
         -H 'content-type: application/json' -d '{"prompt": "Hello"}'

A client that goes away mid-reply leaves the partial reply stored, marked incomplete, and the
next request on the same session continues the conversation.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack, asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from strands import Agent
from strands.types.content import Messages

from mongodb_session_manager import (
    AsyncMetricsQuery,
    AsyncMongoDBSessionRepository,
    MongoDBSessionManager,
    stream_sse,
    stream_text,
)
from mongodb_session_manager.embedded import local_mongodb
from mongodb_session_manager.integrations.fastapi import (
    add_exception_handlers,
    session_manager_dependency,
    session_manager_lifespan,
    sse_response,
    text_response,
)
from mongodb_session_manager.streaming import json_safe
from mongodb_session_manager.testing import ScriptedModel

DATABASE = os.environ.get("MSM_DATABASE", "chat_db")
AGENT_ID = "assistant"


# Each request gets its own manager, built off the event loop with the conversation preloaded,
# and closed once the streamed response has been sent.
SessionManager = Annotated[MongoDBSessionManager, Depends(session_manager_dependency(agent_id=AGENT_ID))]


# A client that retries (a timeout, a double click) sends the same Idempotency-Key: the turn runs
# once and the retry gets the stored reply. Requests on one session take turns (one writer each).
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=256)]


class ChatRequest(BaseModel):
    prompt: str = Field(min_length=1)  # a body without one answers 422, before anything is stored


def scripted_reply(messages: Messages) -> str:
    """A deterministic reply that shows the model saw the whole conversation."""
    user_turns = [m for m in messages if m["role"] == "user" and any("text" in b for b in m["content"])]
    said = " ".join(b["text"] for b in user_turns[-1]["content"] if "text" in b) if user_turns else ""
    return f"Turn {len(user_turns)}: you said {said!r}. I remember all {len(messages)} messages so far."


def default_model() -> Any:
    """``MSM_MODEL`` (Strands resolves the id) or a ScriptedModel streaming word by word."""
    return os.environ.get("MSM_MODEL") or ScriptedModel(respond=scripted_reply, chunk_delay=0.02)


def create_app(
    connection_string: str | None = None,
    *,
    database_name: str = DATABASE,
    model: Callable[[], Any] = default_model,
) -> FastAPI:
    """The app; ``connection_string`` defaults to ``MONGODB_URI`` or an embedded SecantusDB."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with ExitStack() as stack:
            # Starting the embedded server blocks for a moment, before any request is served.
            uri = connection_string or stack.enter_context(local_mongodb())
            async with (
                session_manager_lifespan(uri, database_name)(app),
                AsyncMongoDBSessionRepository(uri, database_name) as repository,
            ):
                app.state.repository = repository  # reads on the event loop, for the GET endpoints
                yield

    app = FastAPI(title="Streaming chat on MongoDB", lifespan=lifespan)
    add_exception_handlers(app)  # bad ids 400, unknown sessions 404, a busy session 409

    def new_agent(manager: MongoDBSessionManager) -> Agent:
        return Agent(agent_id=AGENT_ID, model=model(), session_manager=manager, callback_handler=None)

    @app.post("/chat")
    async def chat(
        request: ChatRequest, manager: SessionManager, idempotency_key: IdempotencyKey = None
    ) -> StreamingResponse:
        """The reply as plain text, streamed as it is generated."""
        agent = new_agent(manager)
        reply = stream_text(agent, request.prompt, session_manager=manager, idempotency_key=idempotency_key)
        return text_response(reply)

    @app.post("/chat/sse")
    async def chat_sse(
        request: ChatRequest, manager: SessionManager, idempotency_key: IdempotencyKey = None
    ) -> StreamingResponse:
        """The reply as Server-Sent Events, ending with the turn's metrics."""
        agent = new_agent(manager)
        frames = stream_sse(agent, request.prompt, session_manager=manager, idempotency_key=idempotency_key)
        return sse_response(frames)

    @app.get("/sessions")
    async def sessions(
        user_id: str | None = None, after: str | None = None, limit: int = 20
    ) -> dict[str, Any]:
        """Sessions, most recently active first, one keyset page; pass ``next_cursor`` as ``after``."""
        repository: AsyncMongoDBSessionRepository = app.state.repository
        page = await repository.page_sessions(user_id=user_id, after=after, limit=limit)
        return {"sessions": json_safe(page.sessions), "next_cursor": page.next_cursor}

    @app.get("/sessions/{session_id}")
    async def session_messages(session_id: str, agent_id: str = AGENT_ID) -> dict[str, Any]:
        """The stored conversation (an incomplete reply carries ``metadata.custom.incomplete``)."""
        repository: AsyncMongoDBSessionRepository = app.state.repository
        snapshot = await repository.load_session(session_id, agent_id)  # one round trip
        if snapshot is None:
            raise HTTPException(status_code=404, detail=f"session {session_id!r} does not exist")
        return {
            "session_id": session_id,
            "agent_id": agent_id,
            "messages": [json_safe(message.to_dict()) for message in snapshot.window],
        }

    @app.get("/sessions/{session_id}/metrics")
    async def session_metrics(
        session_id: str,
        skip: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> dict[str, Any]:
        """Per-turn metrics (tokens, latency, tools) and the session's running totals."""
        repository: AsyncMongoDBSessionRepository = app.state.repository
        metrics = await AsyncMetricsQuery(repository).session_metrics(session_id, skip=skip, limit=limit)
        dumped: dict[str, Any] = metrics.model_dump(mode="json")
        return dumped

    return app


app = create_app()


if __name__ == "__main__":
    try:
        import uvicorn
    except ImportError:
        print("uvicorn is not installed. Install it and run:")
        print("    pip install uvicorn")
        print("    uvicorn example_fastapi_streaming:app --app-dir examples")
    else:
        uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")))
