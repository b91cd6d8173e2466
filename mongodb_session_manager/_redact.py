"""Keep passwords out of logs, reprs and error messages.

Two entry points:

- :func:`redact_uri` masks the password of every ``mongodb://`` or ``mongodb+srv://`` connection
  string inside free text (the scheme in any case: ``MONGODB://``, ``Mongodb://``).
- :func:`redact_connection_string` masks one string that is known to be a connection string,
  with or without its scheme (``user:pw@host`` too).

Both split the user info off the way pymongo's own parser does (the part before the first
``/`` or ``?``, up to its last ``@``). A password that breaks that rule (an unescaped ``/``,
``?`` or ``@``) makes the string unparsable for pymongo, and then everything from the scheme up
to the last ``@`` goes: too much is masked rather than too little. :func:`password_forms` gives
the password as written and percent-decoded, for callers that scrub text they cannot parse
(a driver's error message quoting a decoded password).
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

from pymongo.errors import InvalidURI
from pymongo.uri_parser import parse_userinfo

__all__ = ["MASK", "password_forms", "redact_connection_string", "redact_uri", "scrub"]

MASK = "***"
_SCHEME = re.compile(r"mongodb(?:\+srv)?://", re.IGNORECASE)
_AUTHORITY_END = re.compile(r"[/?]")
# Passwords shorter than this are only masked inside connection strings, not wherever they occur:
# scrubbing "ab" from every line would mangle output and protect nothing.
_MIN_SCRUBBED = 4


def _userinfo_end(rest: str) -> int:
    """Where the user info of a scheme-less connection string ends (its ``@``), or -1 if none."""
    authority = _AUTHORITY_END.split(rest, maxsplit=1)[0]
    if "@" in authority:
        return authority.rindex("@")
    return rest.rfind("@")  # fail closed: a raw '/', '?' or '@' in the password


def _mask(rest: str) -> str:
    """``user:pw@host...`` -> ``user:***@host...`` (``rest`` has no scheme)."""
    end = _userinfo_end(rest)
    if end < 0:
        return rest
    user, colon, _ = rest[:end].partition(":")
    if not colon:
        return rest  # a user name alone (X.509, Kerberos): nothing secret
    return f"{user}:{MASK}{rest[end:]}"


def redact_connection_string(uri: str) -> str:
    """One connection string with its password masked, whether or not it has a scheme."""
    match = _SCHEME.match(uri)
    if match is None:
        return _mask(uri)
    return match.group(0) + _mask(uri[match.end() :])


def redact_uri(text: str) -> str:
    """Mask the password of every connection string in ``text``: ``mongodb://user:***@host``."""
    pieces: list[str] = []
    position = 0
    for match in _SCHEME.finditer(text):
        if match.start() < position:
            continue  # inside a connection string already masked
        end = match.end()
        while end < len(text) and not text[end].isspace() and not _SCHEME.match(text, end):
            end += 1
        pieces.append(text[position : match.end()])
        pieces.append(_mask(text[match.end() : end]))
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


def password_forms(uri: str) -> list[str]:
    """The password of a connection string as written and percent-decoded (longest first)."""
    match = _SCHEME.match(uri)
    rest = uri[match.end() :] if match else uri
    end = _userinfo_end(rest)
    if end < 0:
        return []
    userinfo = rest[:end]
    _, colon, written = userinfo.partition(":")
    if not colon or not written:
        return []
    try:
        decoded = parse_userinfo(userinfo)[1]
    except InvalidURI:  # unescaped characters: pymongo refuses it, decode it as it would
        decoded = unquote_plus(written)
    return sorted({written, decoded, unquote_plus(written)} - {""}, key=len, reverse=True)


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with connection strings masked and every (long enough) secret replaced."""
    text = redact_uri(text)
    for secret in secrets:
        if len(secret) >= _MIN_SCRUBBED:
            text = text.replace(secret, MASK)
    return text
