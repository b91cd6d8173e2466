"""A process whose server went away still exits at once: nothing waits for the dead server."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).parents[2]

# A pooled manager, a factory and an async repository, all used, then the server is killed.
SCRIPT = textwrap.dedent(
    """
    import asyncio, os, signal, sys, time
    from strands import Agent
    from mongodb_session_manager import (
        AsyncMongoDBSessionRepository, MongoDBSessionManager, initialize_global_factory,
    )
    from mongodb_session_manager.embedded import EmbeddedServer
    from mongodb_session_manager.testing import ScriptedModel

    server = EmbeddedServer().start()
    manager = MongoDBSessionManager("exit", connection_string=server.uri, database_name="exit_db")
    agent = Agent(agent_id="a", model=ScriptedModel(["hi"]), session_manager=manager, callback_handler=None)
    agent("hello")
    manager.close()
    factory = initialize_global_factory(server.uri, "exit_db")
    factory.repository.read_session("exit")

    async def read_async():
        repository = AsyncMongoDBSessionRepository(server.uri, "exit_db")
        await repository.read_session("exit")
        return repository

    repository = asyncio.run(read_async())
    os.kill(server.pid, signal.SIGKILL)
    time.sleep(0.5)  # the monitors notice
    print("server gone", flush=True)
    """
)


def test_a_process_exits_within_two_seconds_after_its_server_went_away() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        line = process.stdout.readline()
        gone = time.monotonic()
        try:
            process.wait(timeout=60)
        finally:
            process.kill()
        exited = time.monotonic() - gone
        errors = process.stderr.read()
    assert line.strip() == "server gone", errors
    assert process.returncode == 0, errors
    assert exited < 2.0, f"the process took {exited:.1f} s to exit"
