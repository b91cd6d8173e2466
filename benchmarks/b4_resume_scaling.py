"""B4: resume time against conversation length, with a 40-message sliding window.

Each stored session is what a long conversation leaves behind: ``n`` messages (ids 0..n-1, built
with the schema's document builders) and an agent whose sliding-window state says the first
``n - 40`` were removed from the context. A resume should read only the 40-message window.
"""

from __future__ import annotations

import time

from strands.types.content import Message
from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from mongodb_session_manager import MongoDBSessionManager, MongoDBSessionManagerFactory, schema

from ._common import REPLY, Context, Result, make_agent, ratio

WINDOW = 40
TARGET_RATIO = 1.5
AGENT_ID = "assistant"


def run(ctx: Context) -> Result:
    lengths = ctx.size.resume_messages
    shortest, longest = lengths[0], lengths[-1]
    result = Result(
        "B4",
        "Resume time vs stored conversation length (window 40)",
        f"{longest:,} messages within {TARGET_RATIO}x of {shortest:,}",
    )
    database = ctx.database("b4")
    factory = MongoDBSessionManagerFactory(client=ctx.client, database_name=database)
    for n in lengths:
        _seed(factory, f"b4-{n}", n)
    samples: dict[int, list[float]] = {n: [] for n in lengths}
    for _ in range(ctx.size.repeats):
        for n in lengths:  # interleaved, so drift of a shared machine hits every length alike
            samples[n].append(_resume_ms(ctx, database, f"b4-{n}"))
    for n in lengths:
        result.add(f"resume, {n:,} stored messages", samples[n], "ms")
    scaling = result.add(f"ratio {longest:,} / {shortest:,}", ratio(samples[longest], samples[shortest]), "x")
    result.notes.append("sync constructor + Agent(SlidingWindowConversationManager(window_size=40))")
    result.judge(
        scaling.median <= TARGET_RATIO, f"{longest:,} messages resume in {scaling.median:.2f}x the time"
    )
    return result


def _seed(factory: MongoDBSessionManagerFactory, session_id: str, n: int) -> None:
    """Create the session and agent for real, then store ``n`` messages and the window's state."""
    agent = make_agent(factory.create_session_manager(session_id), agent_id=AGENT_ID)
    repository = factory.repository
    repository.create_session(Session(session_id=session_id, session_type=SessionType.AGENT))
    repository.create_agent(session_id, SessionAgent.from_agent(agent))
    documents = [
        schema.message_document(session_id, AGENT_ID, SessionMessage.from_message(_message(i), i))
        for i in range(n)
    ]
    repository.messages_collection.insert_many(documents)
    state = {
        "__name__": "SlidingWindowConversationManager",
        "removed_message_count": n - WINDOW,
        "model_call_count": 0,
    }
    repository.collection.update_one(
        {"_id": session_id}, {"$set": {schema.agent_path(AGENT_ID, "conversation_manager_state"): state}}
    )


def _message(i: int) -> Message:
    if i % 2 == 0:
        return {"role": "user", "content": [{"text": f"question {i // 2}"}]}
    return {
        "role": "assistant",
        "content": [{"text": REPLY}],
        "metadata": {"usage": {"inputTokens": 50, "outputTokens": 60, "totalTokens": 110}},
    }


def _resume_ms(ctx: Context, database: str, session_id: str) -> float:
    start = time.perf_counter()
    agent = make_agent(MongoDBSessionManager(session_id, client=ctx.client, database_name=database))
    elapsed = (time.perf_counter() - start) * 1000
    if len(agent.messages) != WINDOW:
        raise AssertionError(f"{session_id}: resumed {len(agent.messages)} messages, expected {WINDOW}")
    return elapsed
