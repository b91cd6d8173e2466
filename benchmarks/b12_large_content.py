"""B12: resuming sessions whose messages hold large images (GridFS), 1 against 10 of them.

Two sessions are stored through the repository: one with a single message holding a 20 MB
image (5 MB at tiny size), one with ten such messages. Each resume (``load_session``: the
session, its window and every image read back) is timed and the bytes checked, twice over:

- **cold**: a repository with ``large_content_cache_bytes=0``, so every image is downloaded
  (one find of the file documents, then one of their chunks per 64 MiB of content);
- **warm**: the repository that stored them, whose process-wide content cache holds the bytes
  since their upload (what every turn of a web app that resumes the session per request sees).

Target (issue 14): the ten-image session resumes in under 2x the one-image session's time. A
cold resume has to move every byte, so its ratio follows the bytes; both are reported, and the
verdict says which one meets the target (on the median of the paired runs' ratios).
"""

from __future__ import annotations

import os
import statistics
import time

from strands.types.session import Session, SessionAgent, SessionMessage, SessionType

from mongodb_session_manager import MongoDBSessionRepository

from ._common import Context, Result, ratio

TARGET = 2.0
MANY = 10
# Warm resumes take a millisecond or two, where one descheduling is a large share: more runs,
# and the verdict on the median ratio of paired runs (the worst is reported beside it).
WARM_REPEATS = 25


def run(ctx: Context) -> Result:
    megabytes = 5 if ctx.size.name == "tiny" else 20
    result = Result(
        "B12", f"Resume: 1 vs {MANY} messages with a {megabytes} MB image (GridFS)", f"< {TARGET}x"
    )
    database_name = ctx.database("b12")
    warm = MongoDBSessionRepository(client=ctx.client, database_name=database_name)
    cold = MongoDBSessionRepository(
        client=ctx.client, database_name=database_name, large_content_cache_bytes=0
    )
    image = os.urandom(megabytes * 1024 * 1024)
    store_s = {count: _store(warm, f"b12-{count}", count, image) for count in (1, MANY)}
    medians: dict[str, float] = {}
    worst: dict[str, float] = {}
    for label, repository, repeats in (("cold", cold, ctx.size.repeats), ("warm", warm, WARM_REPEATS)):
        timings = _resumes(repository, image, max(repeats, ctx.size.repeats))
        result.add(f"{label} resume, 1 image message", timings[1], "ms")
        result.add(f"{label} resume, {MANY} image messages", timings[MANY], "ms")
        ratios = ratio(timings[MANY], timings[1])
        result.add(f"{label} ratio {MANY} / 1", ratios, "x")
        medians[label], worst[label] = statistics.median(ratios), max(ratios)
    met = {label for label, value in medians.items() if value < TARGET}
    why = "; ".join(
        f"{label} (cache {'filled' if label == 'warm' else 'empty'}): {MANY} images resume in "
        f"{medians[label]:.2f}x the time of one (median; worst {worst[label]:.2f}x), "
        f"target {'met' if label in met else 'missed'}"
        for label in medians
    )
    result.judge(met == set(medians), why)
    result.notes.append(
        f"stored 1 image in {store_s[1]:.2f} s, {MANY} in {store_s[MANY]:.2f} s ({megabytes} MB each); "
        "cold: every byte is downloaded (a find of the file documents, one of the chunks per 64 MiB, "
        "their getMores), so its ratio follows the bytes; "
        "warm: the process-wide cache of large content (large_content_cache_bytes, 256 MiB default)"
    )
    return result


def _resumes(repository: MongoDBSessionRepository, image: bytes, repeats: int) -> dict[int, list[float]]:
    """Resume timings (ms) of the 1- and the MANY-image session; the bytes checked every time."""
    timings: dict[int, list[float]] = {1: [], MANY: []}
    for count in (1, MANY):  # untimed: the first command of a run pays for connections and caches
        repository.load_session(f"b12-{count}", "assistant")
    for _ in range(repeats):
        for count in (1, MANY):
            start = time.perf_counter()
            snapshot = repository.load_session(f"b12-{count}", "assistant")
            timings[count].append((time.perf_counter() - start) * 1000)
            assert snapshot is not None
            assert len(snapshot.window) == count
            assert all(
                stored.message["content"][0]["image"]["source"]["bytes"] == image
                for stored in snapshot.window
            )
    return timings


def _store(repository: MongoDBSessionRepository, session_id: str, count: int, image: bytes) -> float:
    repository.create_session(Session(session_id, SessionType.AGENT))
    repository.create_agent(session_id, SessionAgent("assistant", {}, {}))
    start = time.perf_counter()
    for message_id in range(count):
        message = {"role": "user", "content": [{"image": {"format": "png", "source": {"bytes": image}}}]}
        repository.write_message(session_id, "assistant", SessionMessage(message, message_id))  # type: ignore[arg-type]
    return time.perf_counter() - start
