"""mask=[...]: text is masked on its way to MongoDB; the running agent keeps the original."""

from __future__ import annotations

from typing import Any

import pymongo
import pytest
from strands import Agent, tool

from mongodb_session_manager import (
    InvalidSessionInputError,
    MongoDBSessionManager,
    MongoDBSessionManagerFactory,
)
from mongodb_session_manager.masking import CARD_NUMBER, EMAIL, IBAN, PHONE
from mongodb_session_manager.testing import ScriptedModel, ScriptedResponse, ScriptedToolCall

Client = pymongo.MongoClient[dict[str, Any]]

PII = {
    EMAIL: ("jane.doe@example.com", "[email]"),
    PHONE: ("+44 20 7946 0958", "[phone]"),
    CARD_NUMBER: ("4111 1111 1111 1111", "[card]"),
    IBAN: ("DE89 3704 0044 0532 0130 00", "[iban]"),
}


def stored_texts(client: Client, database_name: str, session_id: str) -> list[str]:
    messages = client[database_name].sessions_messages.find(
        {"session_id": session_id}, sort=[("message_id", 1)]
    )
    return [block["text"] for m in messages for block in m["message"]["content"] if "text" in block]


@pytest.mark.parametrize("mask", list(PII), ids=repr)
async def test_each_built_in_is_stored_masked_and_the_reply_sees_the_original(
    client: Client, database_name: str, mask: Any
) -> None:
    value, tag = PII[mask]
    factory = MongoDBSessionManagerFactory(client=client, database_name=database_name, mask=[mask])
    manager = factory.create_session_manager("s")
    agent = Agent(agent_id="assistant", model=ScriptedModel(), session_manager=manager, callback_handler=None)

    result = await agent.invoke_async(f"my details: {value}")
    await manager.aclose()

    assert str(result).strip() == f"You said: my details: {value}"  # the model saw the original
    assert agent.messages[0]["content"][0]["text"] == f"my details: {value}"  # and memory keeps it
    assert stored_texts(client, database_name, "s") == [f"my details: {tag}", f"You said: my details: {tag}"]

    resumed = MongoDBSessionManager("s", client=client, database_name=database_name)
    again = Agent(agent_id="assistant", model=ScriptedModel(), session_manager=resumed, callback_handler=None)
    await resumed.load(again)
    assert again.messages[0]["content"][0]["text"] == f"my details: {tag}"  # a resume sees masked text


@tool
def find_customer(email: str) -> str:
    """Look a customer up by email."""
    return f"{email} is Jane, phone +44 20 7946 0958"


def test_tool_input_and_result_are_masked(client: Client, database_name: str) -> None:
    manager = MongoDBSessionManager("t", client=client, database_name=database_name, mask=[EMAIL, PHONE])
    model = ScriptedModel(
        [
            ScriptedResponse(tool_calls=[ScriptedToolCall("find_customer", {"email": "jane@example.com"})]),
            "Found.",
        ]
    )
    agent = Agent(
        agent_id="assistant",
        model=model,
        tools=[find_customer],
        session_manager=manager,
        callback_handler=None,
    )
    agent("who is jane@example.com?")
    manager.close()

    stored = repr(list(client[database_name].sessions_messages.find({"session_id": "t"})))
    assert "jane@example.com" not in stored
    assert "7946" not in stored
    assert "{'email': '[email]'}" in stored
    assert "[email] is Jane, phone [phone]" in stored
    assert "jane@example.com is Jane" in repr(agent.messages)  # the agent keeps the original


@pytest.mark.parametrize("bad", [EMAIL, "EMAIL", [1], ["[email]"]])
def test_a_mask_must_be_a_list_of_callables(client: Client, bad: Any) -> None:
    with pytest.raises(InvalidSessionInputError, match="mask"):
        MongoDBSessionManager("s", client=client, mask=bad)


def test_a_guardrail_redaction_is_masked_on_its_way_to_storage_too(
    client: Client, database_name: str
) -> None:
    manager = MongoDBSessionManager("r", client=client, database_name=database_name, mask=[EMAIL])
    agent = Agent(
        agent_id="assistant", model=ScriptedModel(["Sure."]), session_manager=manager, callback_handler=None
    )
    agent("hello")
    manager.redact_latest_message(
        {"role": "assistant", "content": [{"text": "blocked; ask jane@example.com"}]}, agent
    )
    manager.close()
    latest = client[database_name].sessions_messages.find_one({"session_id": "r", "message_id": 1})
    assert latest is not None
    assert latest["redact_message"]["content"][0]["text"] == "blocked; ask [email]"
