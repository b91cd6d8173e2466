"""Every ```python block in docs/*.md and the README runs, as written, against a real server.

Each block is a self-contained script: it runs in a subprocess with ``MONGODB_URI`` set to the
session's server and ``MSM_DATABASE`` to a fresh database, and must exit 0. Blocks that are not
meant to run use another language tag (```bash, ```text, ```yaml, ...); an untagged fence or
a ```py one is refused, so no Python slips through untested.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```(?P<lang>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
ALLOWED_LANGUAGES = {"python", "bash", "text", "yaml", "json", "javascript", "http", "toml", "mermaid"}


@dataclass(frozen=True)
class Snippet:
    page: str
    line: int
    language: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def _snippets() -> list[Snippet]:
    found: list[Snippet] = []
    for page in [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]:
        text = page.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append(Snippet(page.name, line, match.group("lang").strip(), match.group("body")))
    return found


PYTHON = [snippet for snippet in _snippets() if snippet.language == "python"]


def test_docs_exist_and_have_python() -> None:
    pages = {path.name for path in DOCS.glob("*.md")}
    assert pages >= {
        "index.md",
        "getting-started.md",
        "concepts.md",
        "schema.md",
        "streaming.md",
        "fastapi.md",
        "metrics.md",
        "configuration.md",
        "deployment.md",
        "testing.md",
    }
    assert len(PYTHON) >= 10


def test_every_fence_is_tagged_with_a_known_language() -> None:
    bad = [f"{s.id} ({s.language or 'untagged'})" for s in _snippets() if s.language not in ALLOWED_LANGUAGES]
    assert not bad, f"tag these fences ```python (tested) or ```text/```bash (not run): {bad}"


def test_relative_links_resolve() -> None:
    broken = []
    for page in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.name} -> {target}")
    assert not broken


@pytest.mark.parametrize("snippet", PYTHON, ids=[snippet.id for snippet in PYTHON])
def test_python_snippet_runs(snippet: Snippet, mongodb_uri: str, database_name: str, tmp_path: Path) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(snippet.code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "MSM_MODEL"}
    env.update(
        MONGODB_URI=mongodb_uri,
        MSM_DATABASE=database_name,
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, (
        f"{snippet.id} failed\n--- code ---\n{snippet.code}\n--- stdout ---\n{result.stdout}"
        f"\n--- stderr ---\n{result.stderr}"
    )
