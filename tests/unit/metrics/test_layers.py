"""The metrics modules import one way: capture <- models <- pipelines <- flows <- query."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import mongodb_session_manager.metrics as metrics

ORDER = ("capture", "models", "pipelines", "flows", "query")


def _sibling_imports(name: str) -> set[str]:
    """The metrics modules ``name`` imports, type-only imports included."""
    module = importlib.import_module(f"mongodb_session_manager.metrics.{name}")
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module is None:
                found.update(alias.name for alias in node.names)
            else:
                found.add(node.module.split(".")[0])
    return found & set(ORDER)


@pytest.mark.parametrize("name", ORDER)
def test_a_module_imports_only_the_ones_below_it(name: str) -> None:
    below = set(ORDER[: ORDER.index(name)])
    assert _sibling_imports(name) <= below


@pytest.mark.parametrize("name", ORDER)
def test_every_metrics_module_declares_all(name: str) -> None:
    module = importlib.import_module(f"mongodb_session_manager.metrics.{name}")
    exported = module.__all__
    assert exported
    for item in exported:
        assert hasattr(module, item)


def test_the_package_exports_what_its_modules_define() -> None:
    assert metrics.__all__ == sorted(metrics.__all__)
    for name in metrics.__all__:
        assert getattr(metrics, name) is not None
