"""Where a run happened: machine, server and package versions, for RESULTS.md."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import pymongo


def describe(client: pymongo.MongoClient[dict[str, Any]], *, embedded: bool) -> dict[str, str]:
    build = client.admin.command("buildInfo")
    if "secantusVersion" in build:
        server = f"SecantusDB {build['secantusVersion']} (reports MongoDB {build.get('version')})"
    else:
        server = f"MongoDB {build.get('version')}"
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, {_memory()}, {_cpu_model()}",
        "os": platform.platform(),
        "server": f"{server}, {'embedded child process' if embedded else 'MONGODB_URI'}",
        "python": platform.python_version(),
        "pymongo": _version("pymongo"),
        "strands-agents": _version("strands-agents"),
        "mongodb-session-manager": _version("mongodb-session-manager"),
    }


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def _memory() -> str:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
    return "unknown RAM"


def _cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
