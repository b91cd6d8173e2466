"""Command lines the CLI suggests ("next page: ...", "see it again: ..."), built to run as printed.

A hint repeats the connection options the current command ran with: ``--database`` and
``--collection`` when they differ from the defaults, ``--uri`` when it was given on the command
line and holds no password. A password is never printed, so a hint for a ``--uri`` with one
says to set ``MONGODB_URI`` instead (the hint then runs as printed in a shell where it is set).
"""

from __future__ import annotations

import argparse
import os
import shlex

from .. import schema
from .._redact import password_forms
from ._parser import PROG

__all__ = ["command_line"]


def command_line(args: argparse.Namespace, *words: str, uri: str | None = None) -> str:
    """``mongodb-session-manager [connection options] words...``, shell-quoted.

    ``uri``: the server the command used when it was not ``--uri`` (the demo's embedded server);
    it is left out when ``MONGODB_URI`` already names it.
    """
    given = uri if uri is not None else getattr(args, "uri", None)
    parts = [PROG]
    needs_environment = False
    if given and given != os.environ.get("MONGODB_URI"):
        if password_forms(given):
            needs_environment = True
        else:
            parts += ["--uri", given]
    if args.database != schema.DEFAULT_DATABASE_NAME:
        parts += ["--database", args.database]
    if args.collection != schema.DEFAULT_COLLECTION_NAME:
        parts += ["--collection", args.collection]
    line = shlex.join([*parts, *words])
    if needs_environment:
        return f"{line}  (with MONGODB_URI set to your connection string)"
    return line
