"""Rebuild the hourly rollups from the stored turn records (``metrics backfill``).

For turns stored before rollups existed, or written around the write path (an import of raw
documents). One aggregation groups every turn record by hour, agent and model and merges the
rows over the rollups, replacing the hours it covers; running it again gives the same rollups.
Turns written while it runs may be counted twice or not at all in their hour: run it when the
hours it rebuilds are quiet (typically once, after upgrading).
"""

from __future__ import annotations

from typing import Any

from .. import schema
from .._driver_errors import translate_driver_errors
from .pipelines import rollup_backfill_pipeline

__all__ = ["rebuild_rollups"]


def rebuild_rollups(repository: Any) -> int:
    """Rebuild the rollups of a sync repository; returns how many hourly documents there are."""
    repository.ensure_indexes()
    pipeline = rollup_backfill_pipeline(repository.rollups_collection.name, schema.ROLLUP_HOUR_FORMAT)
    with translate_driver_errors("backfill rollups"):
        list(repository.messages_collection.aggregate(pipeline))
        coverage = schema.rollup_coverage_update(schema.ROLLUPS_FROM_THE_START)
        repository.rollups_collection.update_one(*coverage, upsert=True)
        return int(repository.rollups_collection.count_documents({"hour": {"$type": "date"}}))
