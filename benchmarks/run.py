"""Run the benchmarks: ``python -m benchmarks.run [--size tiny|default] [--only B1,B3]``.

All measures run in one process against one server: ``MONGODB_URI`` when set, else an embedded
SecantusDB (``local_mongodb()``). A full default run writes ``benchmarks/RESULTS.md``; other
runs write to ``benchmarks/.results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

from mongodb_session_manager.embedded import local_mongodb

from . import (
    b1_round_trips,
    b2_resume_cost,
    b3_persistence,
    b4_resume_scaling,
    b5_loop_lag,
    b6_throughput,
    b7_metrics_query,
    b8_memory,
    b9_session_paging,
    b10_metrics_rollups,
    b11_lifecycle,
    b12_large_content,
)
from ._common import SIZES, Context, Result, counted_client
from ._environment import describe
from ._report import markdown

MEASURES: dict[str, Callable[[Context], Result]] = {
    "B1": b1_round_trips.run,
    "B2": b2_resume_cost.run,
    "B3": b3_persistence.run,
    "B4": b4_resume_scaling.run,
    "B5": b5_loop_lag.run,
    "B6": b6_throughput.run,
    "B7": b7_metrics_query.run,
    "B8": b8_memory.run,
    "B9": b9_session_paging.run,
    "B10": b10_metrics_rollups.run,
    "B11": b11_lifecycle.run,
    "B12": b12_large_content.run,
}
HERE = Path(__file__).parent


def run_all(uri: str, size: str, only: Sequence[str] = ()) -> tuple[dict[str, str], list[Result]]:
    """Run the chosen measures (all by default) on the server at ``uri``."""
    client, counter = counted_client(uri)
    ctx = Context(uri=uri, size=SIZES[size], client=client, counter=counter, run_id=uuid.uuid4().hex[:8])
    try:
        environment = describe(client, embedded=not os.environ.get("MONGODB_URI"))
        results = [_run_one(key, ctx) for key in (only or MEASURES)]
    finally:
        ctx.drop_databases()
        client.close()
    return environment, results


def _run_one(key: str, ctx: Context) -> Result:
    print(f"running {key} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        result = MEASURES[key](ctx)
    except Exception as exc:
        traceback.print_exc()
        result = Result(key, key, "-", verdict="NOT MEASURED", notes=[f"not measured: {exc!r}"])
    finally:
        ctx.drop_databases()
    result.notes.append(f"measure took {time.perf_counter() - start:.1f} s")
    print(markdown([result]), flush=True)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="default")
    parser.add_argument("--only", default="", help="comma-separated measures, e.g. B1,B3")
    args = parser.parse_args(argv)
    only = [key.strip().upper() for key in args.only.split(",") if key.strip()]
    unknown = sorted(set(only) - set(MEASURES))
    if unknown:
        parser.error(f"unknown measures {unknown}; choose from {sorted(MEASURES)}")
    command = "python -m benchmarks.run " + " ".join(argv if argv is not None else sys.argv[1:])
    start = time.perf_counter()
    with local_mongodb() as uri:
        environment, results = run_all(uri, args.size, only)
    environment["command"] = command.strip()
    environment["size"] = args.size
    environment["wall time"] = f"{time.perf_counter() - start:.0f} s"
    report = markdown(results, environment)
    full_run = args.size == "default" and not only
    target = HERE / "RESULTS.md" if full_run else HERE / ".results" / f"RESULTS-{args.size}.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(report)
    raw = HERE / ".results" / f"results-{args.size}.json"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text(
        json.dumps({"environment": environment, "results": [asdict(r) for r in results]}, indent=2)
    )
    print(f"\nwrote {target.relative_to(HERE.parent)}", file=sys.stderr)
    return 1 if any(result.verdict == "NOT MEASURED" for result in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
