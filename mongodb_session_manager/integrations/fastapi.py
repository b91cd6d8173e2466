"""FastAPI: a lifespan that owns the global factory, and a session manager per request.

Needs the ``fastapi`` extra (``pip install 'mongodb-session-manager[fastapi]'``)::

    app = FastAPI(lifespan=session_manager_lifespan(os.environ["MONGODB_URI"], "chat_db"))

    @app.post("/chat/{session_id}")
    async def chat(prompt: str, manager: MongoDBSessionManager = Depends(get_session_manager)):
        agent = Agent(agent_id="assistant", session_manager=manager)
        return sse_response(stream_sse(agent, prompt, session_manager=manager))

The factory is created and its indexes ensured once, at startup, on an I/O thread; each request
gets a manager built (and its session preloaded) off the event loop, closed after the response
has been sent, so it outlives a streamed body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

try:
    from fastapi import HTTPException
    from fastapi.responses import JSONResponse, StreamingResponse
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "mongodb_session_manager.integrations.fastapi needs FastAPI; "
        "install the extra: pip install 'mongodb-session-manager[fastapi]'"
    ) from exc

from .. import schema
from .._error_text import sanitize_error_message
from .._io import run_io
from ..errors import (
    InvalidSessionInputError,
    MongoDBSessionError,
    SessionBusyError,
    SessionNotFoundError,
    StoreUnavailableError,
)
from ..factory import close_global_factory, get_global_factory, initialize_global_factory
from ..manager import MongoDBSessionManager

__all__ = [
    "HTTP_STATUS",
    "SSE_HEADERS",
    "ClosingStreamingResponse",
    "add_exception_handlers",
    "get_session_manager",
    "http_status",
    "session_manager_dependency",
    "session_manager_lifespan",
    "sse_response",
    "text_response",
]

DEFAULT_POOL_OPTIONS: Mapping[str, Any] = {"maxPoolSize": 100}
# No caching, and no buffering by proxies such as nginx: frames must reach the browser as sent.
SSE_HEADERS: Mapping[str, str] = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


# What a caller does next, as an HTTP status (see the tree in :mod:`..errors`).
HTTP_STATUS: Mapping[type[MongoDBSessionError], int] = {
    InvalidSessionInputError: 400,
    SessionNotFoundError: 404,
    SessionBusyError: 409,
    StoreUnavailableError: 503,
}


def http_status(error: MongoDBSessionError) -> int:
    """The HTTP status for one of this package's errors (500 for the rest)."""
    for kind, status in HTTP_STATUS.items():
        if isinstance(error, kind):
            return status
    return 500


def add_exception_handlers(app: Any) -> None:
    """Answer this package's errors as JSON with their status: bad input 400, unknown session 404,
    a session busy with another writer 409, the store unreachable 503.

    The body is ``{"detail": "..."}`` (the error's sanitised message), as FastAPI's own errors are.
    """

    async def handle(request: Any, exc: Exception) -> JSONResponse:
        assert isinstance(exc, MongoDBSessionError)
        status = http_status(exc)
        detail = sanitize_error_message(str(exc)) if status < 500 else type(exc).__name__
        return JSONResponse({"detail": detail}, status_code=status)

    app.add_exception_handler(MongoDBSessionError, handle)


def session_manager_lifespan(
    connection_string: str | None = None,
    database_name: str = schema.DEFAULT_DATABASE_NAME,
    collection_name: str = schema.DEFAULT_COLLECTION_NAME,
    *,
    client: Any = None,
    ensure_indexes: bool = True,
    **client_options: Any,
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A ``FastAPI(lifespan=...)`` that initialises the global factory and closes it at shutdown.

    ``client_options`` go to pymongo (default ``maxPoolSize=100`` when building from a URI).
    """
    if client is None:
        client_options = {**DEFAULT_POOL_OPTIONS, **client_options}

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        await run_io(
            initialize_global_factory,
            connection_string,
            database_name,
            collection_name,
            client=client,
            ensure_indexes=ensure_indexes,
            **client_options,
        )
        try:
            yield
        finally:
            await run_io(close_global_factory)

    return lifespan


def session_manager_dependency(
    *, agent_id: str | None = None, **overrides: Any
) -> Callable[[str], AsyncIterator[MongoDBSessionManager]]:
    """A dependency giving each request a manager for its ``session_id`` (path or query parameter).

    With ``agent_id`` the agent's messages are preloaded, so building the ``Agent`` does no I/O.
    ``overrides`` are :class:`MongoDBSessionManager` options. A bad session id answers 400, a
    session another writer holds 409.
    """

    async def dependency(session_id: str) -> AsyncIterator[MongoDBSessionManager]:
        try:
            manager = await get_global_factory().acreate_session_manager(
                session_id, agent_id=agent_id, **overrides
            )
        except (InvalidSessionInputError, SessionBusyError) as exc:
            raise HTTPException(status_code=http_status(exc), detail=str(exc)) from exc
        try:
            yield manager
        finally:
            await manager.aclose()

    return dependency


get_session_manager = session_manager_dependency()
"""The default dependency: ``manager: MongoDBSessionManager = Depends(get_session_manager)``."""


class ClosingStreamingResponse(StreamingResponse):
    """A ``StreamingResponse`` that closes its generator as soon as the response ends.

    Starlette leaves a generator abandoned by a client disconnect (ASGI 2.4 servers) to the
    garbage collector, which may close it only after the request's dependencies were torn down,
    i.e. after the session manager closed. Closing it here lets it store the partial reply first.
    """

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()


def text_response(chunks: AsyncIterator[str]) -> StreamingResponse:
    """Stream text chunks (e.g. :func:`~mongodb_session_manager.stream_text`) as ``text/plain``."""
    return ClosingStreamingResponse(chunks, media_type="text/plain; charset=utf-8")


def sse_response(frames: AsyncIterator[str]) -> StreamingResponse:
    """Stream SSE frames (e.g. :func:`~mongodb_session_manager.stream_sse`) as ``text/event-stream``."""
    return ClosingStreamingResponse(frames, media_type="text/event-stream", headers=dict(SSE_HEADERS))
