"""B12: resuming sessions whose messages hold large images (GridFS), 1 against 10 of them.

Two sessions are stored through the repository: one with a single message holding a 20 MB
image (5 MB at tiny size), one with ten such messages. Each resume (``load_session``: the
session, its window and every image read back from GridFS) is timed and the bytes checked.
Target (issue 14): the ten-image session resumes in under 2x the one-image session's time.
A resume has to read every byte, so the ratio follows the bytes unless downloads overlap;
reported as measured.
"""

from __future__ import annotations

import os
import time

from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from mongodb_session_manager import MongoDBSessionRepository

from ._common import Context, Result, ratio

TARGET = 2.0
MANY = 10


def run(ctx: Context) -> Result:
    megabytes = 5 if ctx.size.name == "tiny" else 20
    result = Result(
        "B12", f"Resume: 1 vs {MANY} messages with a {megabytes} MB image (GridFS)", f"< {TARGET}x"
    )
    repository = MongoDBSessionRepository(client=ctx.client, database_name=ctx.database("b12"))
    image = os.urandom(megabytes * 1024 * 1024)
    store_s = {count: _store(repository, f"b12-{count}", count, image) for count in (1, MANY)}
    timings: dict[int, list[float]] = {1: [], MANY: []}
    for _ in range(ctx.size.repeats):
        for count in (1, MANY):
            start = time.perf_counter()
            snapshot = repository.load_session(f"b12-{count}", "assistant")
            timings[count].append((time.perf_counter() - start) * 1000)
            assert snapshot is not None
            assert len(snapshot.window) == count
            assert snapshot.window[-1].message["content"][0]["image"]["source"]["bytes"] == image
    result.add("resume, 1 image message", timings[1], "ms")
    result.add(f"resume, {MANY} image messages", timings[MANY], "ms")
    ratios = ratio(timings[MANY], timings[1])
    result.add(f"ratio {MANY} / 1", ratios, "x")
    worst = max(ratios)
    result.judge(worst < TARGET, f"{MANY} images resume in {worst:.2f}x the time of one at worst")
    result.notes.append(
        f"stored 1 image in {store_s[1]:.2f} s, {MANY} in {store_s[MANY]:.2f} s ({megabytes} MB each)"
    )
    return result


def _store(repository: MongoDBSessionRepository, session_id: str, count: int, image: bytes) -> float:
    repository.create_session(Session(session_id, SessionType.AGENT))
    repository.create_agent(session_id, SessionAgent("assistant", {}, {}))
    start = time.perf_counter()
    for message_id in range(count):
        message = {"role": "user", "content": [{"image": {"format": "png", "source": {"bytes": image}}}]}
        repository.write_message(session_id, "assistant", SessionMessage(message, message_id))  # type: ignore[arg-type]
    return time.perf_counter() - start
