"""The package's import graph: no circles, and no layer imports a layer above it.

The graph is read from the source with ``ast`` (nothing is imported): every ``import`` and
``from ... import``, relative or absolute, anywhere in a module: at the top, inside functions,
in ``try`` blocks and in ``if TYPE_CHECKING:`` blocks. Type-only imports count, for circles
and for layers alike: the names still have to resolve (for mypy, and for a reader), and a
circle through a ``TYPE_CHECKING`` block is one refactor away from a circular import at run
time.

Only the imports a module writes are edges. Importing ``pkg.a.b`` also runs ``pkg/__init__``
and ``pkg/a/__init__``; those implicit imports are left out (with them, every module would
depend on the package's ``__init__``, which imports nearly everything).

A module's layer is decided by the first part of its name inside the package, so
``metrics_query``, ``_metrics_flows`` and a ``metrics/`` package (with all its submodules) sit in
the same layer, and so do ``_cli_sessions`` and ``cli/sessions``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import mongodb_session_manager

PACKAGE = "mongodb_session_manager"
PACKAGE_DIR = Path(mongodb_session_manager.__file__).parent

# Lowest first. A module may import modules of its own layer and of the layers below it.
LAYERS: dict[str, frozenset[str]] = {
    "foundation": frozenset(
        {
            "errors",
            "_fork",
            "_types",
            "_validation",
            "_redact",
            "_version",
            "codec",
            "config",
            "schema",
            "_driver_errors",
            "_plans",
            "_index_registry",
            "_storable",
            "_large_content",
            "_content_cache",
            "_search",
            "_error_text",
            "_lifecycle",
            "lifecycle",
            "_export",
            "masking",
            "encryption",
            "_encryption",
        }
    ),
    "storage": frozenset({"repository", "async_repository", "_repository_core", "pool"}),
    "core": frozenset({"manager", "_strands_compat", "_io", "_repair", "factory"}),
    "app": frozenset({"metrics", "metrics_query", "streaming", "integrations", "testing", "embedded"}),
    "tools": frozenset({"cli", "demo", "__main__"}),
    # The public face: it imports from every layer, and nothing in the package imports it.
    "face": frozenset({"__init__"}),
}
# Flat modules of a family that is (or is becoming) a package: ``_metrics_models`` -> metrics.
FAMILY_PREFIXES = {"_metrics_": "metrics", "_cli_": "cli"}
LAYER_ORDER = list(LAYERS)
# What the issue names outright: the storage layer knows nothing of these.
STORAGE_NEVER_IMPORTS = ("metrics", "metrics_query", "cli", "demo", "integrations")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGE, *parts])


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def first_part(module: str) -> str:
    """``mongodb_session_manager.cli.sessions`` -> ``cli``; the package itself -> ``__init__``."""
    parts = module.split(".")[1:]
    if not parts:
        return "__init__"
    for prefix, family in FAMILY_PREFIXES.items():
        if parts[0].startswith(prefix):
            return family
    return parts[0]


# Placed by their own path: the manager's per-turn bookkeeping is pure and sits with the core.
SUBMODULE_LAYERS = {"metrics.capture": "core"}


def layer_of(module: str) -> str | None:
    own = SUBMODULE_LAYERS.get(".".join(module.split(".")[1:3]))
    if own is not None:
        return own
    part = first_part(module)
    return next((layer for layer, parts in LAYERS.items() if part in parts), None)


def imported_modules(module: str, path: Path, known: set[str]) -> Iterator[tuple[str, int]]:
    """Every package module ``module`` imports, with the line it does it on."""
    is_package = path.name == "__init__.py"
    package_parts = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            elif node.module == PACKAGE or (node.module or "").startswith(PACKAGE + "."):
                target = node.module or ""
            else:
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                yield (submodule if submodule in known else target), node.lineno


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported module: first line}, package modules only."""
    found = modules()
    known = set(found)
    graph: dict[str, dict[str, int]] = {}
    for module, path in found.items():
        edges: dict[str, int] = {}
        for target, line in imported_modules(module, path, known):
            if target != module:
                edges.setdefault(target, line)
        graph[module] = edges
    return graph


GRAPH = import_graph()


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in graph.get(module, {}):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(found)


def describe(module: str, target: str) -> str:
    return (
        f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)}) at line {GRAPH[module][target]}"
    )


def test_the_graph_is_read() -> None:
    assert f"{PACKAGE}.errors" in GRAPH[f"{PACKAGE}.schema"]
    assert f"{PACKAGE}.errors" in GRAPH[PACKAGE]
    assert len(GRAPH) > 20


def test_every_import_names_a_module_that_exists() -> None:
    missing = [
        f"{module} imports {target}"
        for module, edges in GRAPH.items()
        for target in edges
        if target not in GRAPH
    ]
    assert not missing


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(module for module in GRAPH if layer_of(module) is None)
    assert not unplaced, f"add these to LAYERS in {Path(__file__).name}: {unplaced}"


def test_no_import_circles() -> None:
    circles = [
        " <-> ".join(circle)
        + ": "
        + "; ".join(
            describe(module, target) for module in circle for target in GRAPH[module] if target in circle
        )
        for circle in cycles(GRAPH)
    ]
    assert not circles, "\n".join(circles)


def test_lower_layers_never_import_higher_ones() -> None:
    upward = [
        describe(module, target)
        for module, edges in sorted(GRAPH.items())
        for target in sorted(edges)
        if LAYER_ORDER.index(layer_of(target) or "face") > LAYER_ORDER.index(layer_of(module) or "face")
    ]
    assert not upward, "\n".join(upward)


def test_storage_never_imports_metrics_cli_or_integrations() -> None:
    storage = [module for module in GRAPH if layer_of(module) == "storage"]
    assert storage
    offending = [
        describe(module, target)
        for module in sorted(storage)
        for target in sorted(GRAPH[module])
        if first_part(target) in STORAGE_NEVER_IMPORTS
    ]
    assert not offending, "\n".join(offending)


def test_nothing_in_the_package_imports_its_face() -> None:
    importers = sorted(module for module, edges in GRAPH.items() if PACKAGE in edges)
    assert not importers


# --- the checker checks -----------------------------------------------------------------------


def test_cycles_are_found() -> None:
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}
    assert cycles(graph) == [["a", "b", "c"]]


@pytest.mark.parametrize(
    ("module", "layer"),
    [
        (f"{PACKAGE}.metrics", "app"),
        (f"{PACKAGE}.metrics.capture", "core"),
        (f"{PACKAGE}.metrics_query", "app"),
        (f"{PACKAGE}._metrics_flows", "app"),
        (f"{PACKAGE}.cli", "tools"),
        (f"{PACKAGE}.cli._parser", "tools"),
        (f"{PACKAGE}._cli_sessions", "tools"),
        (f"{PACKAGE}.demo", "tools"),
        (f"{PACKAGE}.integrations.fastapi", "app"),
        (f"{PACKAGE}._repository_core", "storage"),
        (PACKAGE, "face"),
    ],
)
def test_old_flat_names_and_new_packages_share_a_layer(module: str, layer: str) -> None:
    assert layer_of(module) == layer


def test_relative_imports_resolve_inside_function_bodies_and_type_checking_blocks(tmp_path: Path) -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import schema\n"
        "from .. import errors\n"
        "if TYPE_CHECKING:\n"
        "    from .capture import TurnTracker\n"
        "def later():\n"
        "    import mongodb_session_manager.pool\n"
        "    from mongodb_session_manager.cli import main\n"
    )
    path = tmp_path / "flows.py"
    path.write_text(source, encoding="utf-8")
    known = {f"{PACKAGE}.metrics.schema", f"{PACKAGE}.metrics.capture", f"{PACKAGE}.errors"}
    found = {target for target, _ in imported_modules(f"{PACKAGE}.metrics.flows", path, known)}
    assert found == {
        f"{PACKAGE}.metrics.schema",
        f"{PACKAGE}.errors",
        f"{PACKAGE}.metrics.capture",
        f"{PACKAGE}.pool",
        f"{PACKAGE}.cli",
    }
