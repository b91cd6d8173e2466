"""Results as Markdown: one table per measure, verdicts spelled out (a miss says MISSED)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ._common import Result


def markdown(results: Sequence[Result], environment: Mapping[str, str] | None = None) -> str:
    lines: list[str] = []
    if environment is not None:
        lines += [
            "# Benchmark results",
            "",
            "Written by `python -m benchmarks.run`; do not edit by hand.",
            "",
        ]
        lines += [f"- **{name}**: {value}" for name, value in environment.items()]
        lines += [
            "",
            "## Summary",
            "",
            "| measure | target | verdict | headline (median) |",
            "|---|---|---|---|",
        ]
        lines += [f"| {r.key} {r.title} | {r.target} | **{r.verdict}** | {_headline(r)} |" for r in results]
        lines.append("")
    for result in results:
        lines += [
            f"## {result.key}: {result.title}",
            "",
            f"Target: {result.target} -> **{result.verdict}**",
            "",
        ]
        if result.rows:
            lines += ["| quantity | min | median | max | unit | runs |", "|---|---:|---:|---:|---|---:|"]
            for row in result.rows:
                low, mid, high = row.cells()
                lines.append(f"| {row.label} | {low} | {mid} | {high} | {row.unit} | {len(row.samples)} |")
            lines.append("")
        lines += [f"- {note}" for note in result.notes]
        lines.append("")
    return "\n".join(lines)


def _headline(result: Result) -> str:
    if result.verdict == "NOT MEASURED" or not result.rows:
        return result.notes[0] if result.notes else "-"
    return result.notes[0].split(": ", 1)[-1] if result.notes else "-"
