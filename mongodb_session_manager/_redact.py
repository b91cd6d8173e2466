"""Keep passwords out of logs, reprs and error messages."""

from __future__ import annotations

import re

_USERINFO = re.compile(r"(?P<scheme>mongodb(?:\+srv)?://)(?P<user>[^:@/]*):(?P<password>[^@/]*)@")


def redact_uri(text: str) -> str:
    """Mask the password of every connection string in ``text``: ``mongodb://user:***@host``."""
    return _USERINFO.sub(r"\g<scheme>\g<user>:***@", text)
