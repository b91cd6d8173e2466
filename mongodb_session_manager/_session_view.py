"""A manager's window on one session: the session document is read once and served from memory.

Strands' ``RepositorySessionManager`` reads the session, then each agent, then its messages.
The session document holds the agents, so after one read the agent lookups cost nothing and a
resume is two round trips: the session document, then the message window. Writes go straight
through to the shared repository.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from strands.types.session import Session, SessionAgent, SessionMessage

from . import schema

if TYPE_CHECKING:
    from .repository import MongoDBSessionRepository


class SessionView:
    """Serves ``read_session``/``read_agent``/``list_messages`` for one session; delegates the rest."""

    def __init__(
        self,
        repository: MongoDBSessionRepository,
        session_id: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        document: Mapping[str, Any] | None = None,
    ) -> None:
        self._repository = repository
        self._session_id = session_id
        self._metadata = metadata
        self._document: Mapping[str, Any] | None = document
        self._loaded = document is not None
        self._windows: dict[tuple[str, int], list[SessionMessage]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._repository, name)

    @property
    def document(self) -> Mapping[str, Any] | None:
        if not self._loaded:
            self._document = self._repository.load_session_document(self._session_id)
            self._loaded = True
        return self._document

    def read_session(self, session_id: str, **kwargs: Any) -> Session | None:
        if session_id != self._session_id:
            return self._repository.read_session(session_id, **kwargs)
        document = self.document
        return None if document is None else schema.session_from_document(document)

    def create_session(self, session: Session, **kwargs: Any) -> Session:
        kwargs.setdefault("metadata", self._metadata)
        created = self._repository.create_session(session, **kwargs)
        self._document = schema.session_document(session, metadata=self._metadata)
        self._loaded = True
        return created

    def read_agent(self, session_id: str, agent_id: str, **kwargs: Any) -> SessionAgent | None:
        if session_id != self._session_id:
            return self._repository.read_agent(session_id, agent_id, **kwargs)
        agent = self._agent_document(agent_id)
        return None if agent is None else schema.agent_from_document(agent_id, agent)

    def list_messages(
        self, session_id: str, agent_id: str, limit: int | None = None, offset: int = 0, **kwargs: Any
    ) -> list[SessionMessage]:
        preloaded = self._windows.pop((agent_id, offset), None)
        if preloaded is not None and limit is None and session_id == self._session_id:
            return preloaded
        kwargs.setdefault("contiguous", self._ids_are_contiguous(agent_id))
        return self._repository.list_messages(session_id, agent_id, limit=limit, offset=offset, **kwargs)

    def preload_messages(self, agent_id: str) -> None:
        """Fetch the window ``initialize`` will ask for (offset from the stored conversation manager)."""
        agent = self._agent_document(agent_id)
        if agent is None:
            return
        offset = int((agent.get("conversation_manager_state") or {}).get("removed_message_count", 0))
        self._windows[(agent_id, offset)] = self._repository.list_messages(
            self._session_id, agent_id, offset=offset, contiguous=self._ids_are_contiguous(agent_id)
        )

    def _agent_document(self, agent_id: str) -> Mapping[str, Any] | None:
        agents: Mapping[str, Any] = (self.document or {}).get("agents") or {}
        agent: Mapping[str, Any] | None = agents.get(agent_id)
        return agent

    def _ids_are_contiguous(self, agent_id: str) -> bool:
        # Ids stay 0..n-1 until concurrent writers collide; then the counter appears.
        agent = self._agent_document(agent_id)
        return agent is not None and "next_message_id" not in agent
