"""StoreConfig: where a repository's client comes from, which collections it uses, who closes it.

Every constructor that talks to MongoDB (repositories, the manager, the factory) takes the same
arguments: a ``connection_string`` *or* a ``client``, a ``database_name``, a ``collection_name``
and, only with a connection string, pymongo client options. They are checked here, once.

Ownership has one rule: a client built from a connection string by the sync side comes from the
process-wide pool (which closes it at exit); a client built by an async repository is its own
and closed by it; a client you pass in stays yours.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._redact import redact_uri
from .errors import ConfigurationError
from .schema import DEFAULT_COLLECTION_NAME, DEFAULT_DATABASE_NAME, CollectionNames

__all__ = ["StoreConfig", "connection_string_from_env"]

ENV_URI = "MONGODB_URI"
_DATABASE_NAME_FORBIDDEN = frozenset(' ./\\"')  # MongoDB's rule for database names
ENV_DATABASE = "MSM_DATABASE"


def connection_string_from_env(default: str | None = None) -> str | None:
    """``MONGODB_URI`` from the environment (the one place the package reads it), else ``default``."""
    return os.environ.get(ENV_URI) or default


@dataclass(frozen=True)
class StoreConfig:
    """The connection half of every constructor, validated once."""

    connection_string: str | None = None
    client: Any = None
    database_name: str = DEFAULT_DATABASE_NAME
    collection_name: str = DEFAULT_COLLECTION_NAME
    client_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.client is None) == (self.connection_string is None):
            raise ConfigurationError("pass connection_string=... or client=... (one of them, not both)")
        if self.client is not None and self.client_options:
            raise ConfigurationError(
                f"client options {sorted(self.client_options)} cannot apply to a client you passed in"
            )
        for name in ("database_name", "collection_name"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or "\x00" in value or "$" in value:
                raise ConfigurationError(f"{name} must be a non-empty name without '$', got {value!r}")
        if any(char in self.database_name for char in _DATABASE_NAME_FORBIDDEN):
            raise ConfigurationError(
                f"database_name must not contain any of ' ./\\\"', got {self.database_name!r}"
            )

    @property
    def names(self) -> CollectionNames:
        return CollectionNames.for_base(self.collection_name)

    @property
    def borrowed(self) -> bool:
        """True when the caller passed the client in: it is never closed here."""
        return self.client is not None

    def __repr__(self) -> str:
        where = redact_uri(self.connection_string) if self.connection_string else "client"
        return (
            f"StoreConfig({where!r}, database_name={self.database_name!r}, "
            f"collection_name={self.collection_name!r})"
        )
