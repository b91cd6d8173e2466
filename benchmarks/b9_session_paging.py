"""B9: keyset paging of one user's sessions: page 1 against page 200, and ``skip`` for contrast.

Seeds ``metric_turns`` session documents (100,000 at default size) with ``insert_many``, a fifth
of them one user's, and reads that user's page 1 and page 200 with ``page_sessions``. The cursor
of page 200 is the one page 199 hands out (built from the 199th page's last session, which the
benchmark checks against a ``skip`` listing). Target: page 200 within 1.5x of page 1.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any

from strands.types.session import Session, SessionType

from mongodb_session_manager import MongoDBSessionRepository, schema

from ._common import Context, Result, ratio

BATCH = 5_000
PAGES = 200
USER = "user-0"
TARGET = 1.5


def run(ctx: Context) -> Result:
    total = ctx.size.metric_turns
    mine = total // 5
    limit = max(1, min(50, mine // PAGES))
    result = Result("B9", f"Sessions: page 1 vs page {PAGES} of one user among {total:,}", f"<= {TARGET}x")
    repository = MongoDBSessionRepository(client=ctx.client, database_name=ctx.database("b9"))
    seed_s = _seed(repository, total)
    cursor = _cursor_before_page(repository, PAGES, limit)
    page = repository.page_sessions(user_id=USER, limit=limit, after=cursor)
    by_skip = _skip_page(repository, PAGES, limit)
    if [s["session_id"] for s in page.sessions] != by_skip:
        raise AssertionError("page_sessions and skip paging disagree on page 200")
    timings: dict[str, list[float]] = {"first": [], "last": [], "skip": []}
    for _ in range(ctx.size.repeats):
        timings["first"].append(_timed(lambda: repository.page_sessions(user_id=USER, limit=limit)))
        timings["last"].append(
            _timed(lambda: repository.page_sessions(user_id=USER, limit=limit, after=cursor))
        )
        timings["skip"].append(_timed(lambda: _skip_page(repository, PAGES, limit)))
    result.add(f"page_sessions page 1 ({limit} per page)", timings["first"], "ms")
    result.add(f"page_sessions page {PAGES}", timings["last"], "ms")
    result.add(f"skip paging, page {PAGES} (contrast)", timings["skip"], "ms")
    ratios = ratio(timings["last"], timings["first"])
    result.add(f"ratio page {PAGES} / page 1", ratios, "x")
    worst = max(ratios)
    result.judge(worst <= TARGET, f"page {PAGES} costs {worst:.2f}x page 1 at worst")
    result.notes.append(f"seeded {total:,} sessions ({mine:,} of {USER}) in {seed_s:.1f} s")
    return result


def _timed(call: Any) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def _seed(repository: MongoDBSessionRepository, total: int) -> float:
    repository.ensure_indexes()
    start = time.perf_counter()
    base = datetime(2025, 1, 1, tzinfo=timezone.utc)
    batch: list[dict[str, Any]] = []
    for n in range(total):
        document = schema.session_document(
            Session(f"b9-{n:07d}-{(n * 2654435761) % 2**32:08x}", SessionType.AGENT)
        )
        user_id = USER if n % 5 == 0 else f"user-{n % 997 + 1}"
        batch.append({**document, "user_id": user_id, "updated_at": base + timedelta(seconds=n)})
        if len(batch) == BATCH:
            repository.collection.insert_many(batch, ordered=False)
            batch = []
    if batch:
        repository.collection.insert_many(batch, ordered=False)
    return time.perf_counter() - start


def _skip_page(repository: MongoDBSessionRepository, page: int, limit: int) -> list[str]:
    documents = repository.collection.find(
        {"user_id": USER}, {"_id": 1}, sort=schema.SESSION_PAGE_SORT, skip=(page - 1) * limit, limit=limit
    )
    return [document["_id"] for document in documents]


def _cursor_before_page(repository: MongoDBSessionRepository, page: int, limit: int) -> str:
    """The cursor page ``page - 1`` hands out (seeded times are distinct, so no ids ride along)."""
    last = repository.collection.find_one(
        {"user_id": USER}, {"updated_at": 1}, sort=schema.SESSION_PAGE_SORT, skip=(page - 1) * limit - 1
    )
    assert last is not None
    return schema.PageCursor(last["updated_at"], (last["_id"],)).encode()
