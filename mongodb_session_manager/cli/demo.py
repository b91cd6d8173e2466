"""``mongodb-session-manager demo``: a conversation streamed, stored, restored and measured.

Three turns stream token by token (one calls a real Strands tool), every message lands in
MongoDB as it arrives, then a second session manager on a new client restores the history and
the turns' metrics are read back. Offline by default (a `ScriptedModel`); ``--model`` runs a
real Strands model id instead when a provider is configured. Without ``--uri`` or
``MONGODB_URI`` an embedded SecantusDB is started for the demo and stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Mapping
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from strands import Agent, tool
from strands.models import Model

from .._redact import redact_connection_string
from ..embedded import local_mongodb
from ..errors import MongoDBSessionError
from ..manager import MongoDBSessionManager
from ..testing import ScriptedModel, ScriptedResponse, ScriptedToolCall
from ._common import EXIT_ERROR, CLIError, configured_uri, connect
from ._hints import command_line
from ._output import (
    describe_block,
    make_console,
    print_json,
    render_conversation,
    totals_table,
    turn_rows,
    turns_table,
)
from ._parser import PROG
from .sessions import conversation

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["AGENT_ID", "CHUNK_DELAY", "PROMPTS", "SYSTEM_PROMPT", "get_weather", "run_demo", "scripted_model"]

AGENT_ID = "demo"
PROMPTS = (
    "Hi! What are you?",
    "What's the weather like in Lisbon right now?",
    "What did I ask you about a moment ago?",
)
SYSTEM_PROMPT = "You are a concise assistant. Use the get_weather tool for weather questions."
CHUNK_DELAY = 0.02

_WEATHER = {"lisbon": "21 °C, sunny, light breeze from the Atlantic", "oslo": "4 °C, drizzle"}


@tool
def get_weather(city: str) -> str:
    """Current weather in a city (a fixed table: this is a demo).

    Args:
        city: Name of the city, e.g. "Lisbon".
    """
    return f"{city}: {_WEATHER.get(city.strip().lower(), '18 °C, partly cloudy')}"


def scripted_model(*, chunk_delay: float = CHUNK_DELAY) -> ScriptedModel:
    """The demo's model: four scripted calls for three turns (the second turn calls the tool)."""
    return ScriptedModel(
        [
            ScriptedResponse(
                text="Hello! I am a Strands agent whose memory lives in MongoDB: every message you "
                "see is stored as it streams, together with what each turn cost."
            ),
            ScriptedResponse(
                text="Let me check the forecast.",
                tool_calls=[ScriptedToolCall("get_weather", {"city": "Lisbon"})],
            ),
            ScriptedResponse(text="It is 21 °C and sunny in Lisbon, with a light breeze from the Atlantic."),
            ScriptedResponse(
                text="You asked about the weather in Lisbon. I remember it because this "
                "conversation is kept in MongoDB, one document per message."
            ),
        ],
        model_id="scripted-demo-model",
        chunk_delay=chunk_delay,
    )


def run_demo(args: argparse.Namespace) -> int:
    """The ``demo`` command: converse, restore with a new manager, print the metrics.

    With ``--json`` nothing streams to the terminal; one JSON document reports the run.
    """
    console = make_console(quiet=args.json)
    session_id: str = args.session_id or f"demo-{uuid4().hex[:10]}"
    with ExitStack() as stack:
        embedded = not configured_uri(args)
        if args.uri:
            uri, origin = args.uri, "--uri"
        elif not embedded:
            uri, origin = os.environ["MONGODB_URI"], "MONGODB_URI"
        else:
            console.print("Starting an embedded SecantusDB (set MONGODB_URI to use your own server)...")
            uri, origin = (
                stack.enter_context(local_mongodb()),
                "embedded SecantusDB, stopped when the demo ends",
            )
        shown = redact_connection_string(uri)
        console.print(f"[bold]Server[/bold]: {_escape(shown)} ({origin})", soft_wrap=True)
        console.print(f"[bold]Session[/bold]: {_escape(session_id)} in {args.database}.{args.collection}\n")

        client = stack.enter_context(connect(uri))
        manager = MongoDBSessionManager(
            session_id,
            client=client,
            database_name=args.database,
            collection_name=args.collection,
            metadata={"source": "mongodb-session-manager demo"},
        )
        agent = _agent(args, manager)
        try:
            asyncio.run(_converse(agent, console))
        except (MongoDBSessionError, CLIError, KeyboardInterrupt):
            raise
        except Exception as exc:
            if args.model is None:
                raise
            raise CLIError(
                f"the model {args.model!r} failed: {type(exc).__name__}: {exc}", EXIT_ERROR
            ) from exc
        finally:
            manager.close()
        client.close()

        console.rule("Restored by a new session manager on a new client")
        restored_client = stack.enter_context(connect(uri))
        restored = MongoDBSessionManager(
            session_id, client=restored_client, database_name=args.database, collection_name=args.collection
        )
        with restored:
            messages = list(_agent(args, restored).messages)
            document = restored.repository.load_session_document(session_id) or {}
            turns = turn_rows(conversation(restored.repository, session_id))
        if not args.json:  # drawing needs rich; the JSON report does not
            render_conversation(console, messages)
            console.print(f"({len(messages)} messages restored)\n")
            console.print(turns_table(turns, title="Metrics per turn"))
            console.print(totals_table(document.get("totals") or {}))
        hint = None if embedded else command_line(args, "sessions", "show", session_id, uri=uri)
        if hint is not None:
            console.print(f"\nSee it again: {_escape(hint)}", soft_wrap=True)
        else:
            console.print(
                f"\nTo keep sessions after the demo: {PROG} serve-db, then set MONGODB_URI", soft_wrap=True
            )
    if args.json:
        print_json(
            {
                "server": shown,
                "embedded": embedded,
                "database": args.database,
                "collection": args.collection,
                "session_id": session_id,
                "messages": messages,
                "turns": turns,
                "totals": document.get("totals") or {},
                "see_again": hint,
            }
        )
    return 0


def _agent(args: argparse.Namespace, manager: MongoDBSessionManager) -> Agent:
    model: Model | str = args.model or scripted_model(chunk_delay=args.chunk_delay)
    return Agent(
        model=model,
        agent_id=AGENT_ID,
        tools=[get_weather],
        system_prompt=SYSTEM_PROMPT,
        session_manager=manager,
        callback_handler=None,
    )


async def _converse(agent: Agent, console: Console) -> None:
    """Stream each prompt's reply to the terminal as it arrives."""
    for prompt in PROMPTS:
        console.print(f"[bold cyan]     user:[/bold cyan] {_escape(prompt)}")
        console.print("[bold green]assistant:[/bold green] ", end="")
        async for event in agent.stream_async(prompt):
            if "data" in event:
                console.print(str(event["data"]), end="", markup=False, soft_wrap=True)
            elif "message" in event:
                _print_tool_blocks(console, event["message"])
        console.print("\n")


def _print_tool_blocks(console: Console, message: Mapping[str, Any]) -> None:
    for block in message.get("content") or []:
        if "toolUse" in block or "toolResult" in block:
            console.print(f"\n           {describe_block(block)}", markup=False, style="yellow", end="")
    if message.get("role") == "user":  # a tool result: the reply goes on
        console.print("\n           ", end="")


def _escape(text: str) -> str:
    try:
        from rich.markup import escape
    except ImportError:  # --json: nothing is drawn, so rich may be absent
        return text
    return escape(text)
