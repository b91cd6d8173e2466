"""Strands values <-> BSON values.

Strands keeps timestamps as ISO-8601 strings; MongoDB stores them as dates so they sort,
range-query and expire (TTL). Bytes need no work: pymongo stores ``bytes`` as BSON Binary and
gives ``bytes`` back, a third smaller than the base64 Strands' own ``to_dict`` produces.
"""

from __future__ import annotations

from datetime import datetime, timezone

from .errors import InvalidSessionInputError

__all__ = ["from_bson_datetime", "to_bson_datetime"]


def to_bson_datetime(value: str | datetime | None) -> datetime:
    """An ISO string or datetime as an aware UTC datetime (now, if missing).

    Raises `InvalidSessionInputError` for anything else, e.g. a string that is not ISO 8601.
    """
    if value is None:
        return datetime.now(timezone.utc)
    moment = value if isinstance(value, datetime) else _parse_iso(value)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _parse_iso(value: object) -> datetime:
    if not isinstance(value, str):
        kind = type(value).__name__
        raise InvalidSessionInputError(f"a timestamp must be an ISO 8601 str or a datetime, got {kind}")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise InvalidSessionInputError(f"not an ISO 8601 timestamp: {value[:64]!r}") from None


def from_bson_datetime(value: datetime | str | None) -> str:
    """A stored date as the ISO string Strands expects (naive dates from the driver are UTC)."""
    if value is None:
        return datetime.now(timezone.utc).isoformat()
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.isoformat()
