"""The installed distribution's version, for ``__version__`` and the driver handshake."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "mongodb-session-manager"


def package_version() -> str:
    """The installed version of this package, or ``0+unknown`` when running from a source tree."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"
