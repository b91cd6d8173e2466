"""Run the benchmarks: ``python -m benchmarks.run [--size tiny|default] [--only B1,B3]``.

All measures run in one process against one server: ``MONGODB_URI`` when set, else an embedded
SecantusDB. On two or more cores the server runs under ``taskset -c 1`` and this process (and the
children it spawns) on core 0: the stand-in for a database on another host (``--no-pin`` shares
the cores). A full default run writes ``benchmarks/RESULTS.md``; other runs write to
``benchmarks/.results/``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from mongodb_session_manager.embedded import EmbeddedServer, local_mongodb

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
    # A SIGTERM unwinds like Ctrl-C, so the server and B6's child processes are stopped too.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--size", choices=sorted(SIZES), default="default")
    parser.add_argument("--only", default="", help="comma-separated measures, e.g. B1,B3")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and client to cores")
    args = parser.parse_args(argv)
    only = [key.strip().upper() for key in args.only.split(",") if key.strip()]
    unknown = sorted(set(only) - set(MEASURES))
    if unknown:
        parser.error(f"unknown measures {unknown}; choose from {sorted(MEASURES)}")
    load_before = _load_average()
    command = "python -m benchmarks.run " + " ".join(argv if argv is not None else sys.argv[1:])
    start = time.perf_counter()
    with benchmark_server(pin=not args.no_pin) as (uri, placement):
        environment, results = run_all(uri, args.size, only)
    environment["placement"] = placement
    environment["load before"] = load_before
    environment["load after"] = _load_average()
    environment["command"] = command.strip()
    environment["size"] = args.size
    environment["wall time"] = f"{time.perf_counter() - start:.0f} s"
    report = markdown(results, environment)
    full_run = args.size == "default" and not only and not args.no_pin
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


# A bounded oplog, as any deployment has (the test servers run with the same). Unbounded, the
# in-memory server's oplog grows through the run and the server slows down in phases (every
# variant of B6 dropped from ~115 to ~45 turns/s at times, making paired ratios noise).
SERVER_ARGS = ("--cache-size", "4G", "--oplog-retention-seconds", "30", "--oplog-max-entries", "20000")


@contextmanager
def benchmark_server(*, pin: bool) -> Iterator[tuple[str, str]]:
    """The server's URI and where server and client run (cores)."""
    cores = sorted(os.sched_getaffinity(0))
    executable = shutil.which("secantusd-py") or str(Path(sys.executable).parent / "secantusd-py")
    if os.environ.get("MONGODB_URI") or not pin or len(cores) < 2 or not shutil.which("taskset"):
        with local_mongodb() as uri:
            yield uri, f"not pinned: server and client share cores {cores}"
        return
    server_core, client_core = cores[1], cores[0]
    command = ["taskset", "-c", str(server_core), executable]
    with EmbeddedServer(command=command, server_args=SERVER_ARGS) as server:
        _pin_this_process(client_core)
        try:
            yield (
                server.uri,
                (
                    f"server `taskset -c {server_core} secantusd-py --storage-path :memory: "
                    f"{' '.join(SERVER_ARGS)}`, "
                    f"client (this process, its threads and spawned children) on core {client_core}"
                ),
            )
        finally:
            _pin_this_process(*cores)


def _pin_this_process(*cores: int) -> None:
    """``taskset -c`` for this process: every existing thread, and so every later one."""
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            os.sched_setaffinity(int(task.name), set(cores))


def _load_average() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        one, five, fifteen = os.getloadavg()
        return f"load average: {one:.2f}, {five:.2f}, {fifteen:.2f}"


if __name__ == "__main__":
    raise SystemExit(main())
