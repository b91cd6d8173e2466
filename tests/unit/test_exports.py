"""The public face: ``__all__`` of the package and of every public module says exactly what is public."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import types

import pytest

import mongodb_session_manager


def public_modules() -> list[str]:
    """Every module of the package none of whose path parts starts with ``_``."""
    names = []
    for info in pkgutil.walk_packages(mongodb_session_manager.__path__, "mongodb_session_manager."):
        if not any(part.startswith("_") for part in info.name.split(".")[1:]):
            names.append(info.name)
    return sorted(names)


def test_all_is_exactly_the_public_names_of_the_package_sorted() -> None:
    package = mongodb_session_manager
    public = {
        name
        for name, value in vars(package).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and name != "annotations"
    }
    assert package.__all__ == sorted(public)


def test_every_public_name_of_the_package_is_importable() -> None:
    for name in mongodb_session_manager.__all__:
        assert getattr(mongodb_session_manager, name) is not None


def test_the_package_has_a_version() -> None:
    version = mongodb_session_manager.__version__
    assert version == "0+unknown" or re.match(r"\d+\.\d+", version), version


def test_the_guides_names_are_public() -> None:
    for name in (
        "create_mongodb_session_manager",
        "MongoDBSessionManager",
        "MongoDBSessionRepository",
        "MongoDBSessionManagerFactory",
        "initialize_global_factory",
        "get_global_factory",
        "close_global_factory",
    ):
        assert name in mongodb_session_manager.__all__


def test_every_error_of_the_tree_is_public() -> None:
    from mongodb_session_manager import errors

    for name, value in vars(errors).items():
        if inspect.isclass(value) and issubclass(value, errors.MongoDBSessionError):
            assert name in mongodb_session_manager.__all__, name


def test_there_are_public_modules() -> None:
    assert "mongodb_session_manager.errors" in public_modules()


@pytest.mark.parametrize("module_name", public_modules())
def test_a_public_modules_all_lists_what_it_defines(module_name: str) -> None:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # an optional extra is not installed
        pytest.fail(f"{module_name} does not import: {exc}")
    assert hasattr(module, "__all__"), f"{module_name} declares no __all__"
    exported = list(module.__all__)
    missing = [name for name in exported if not hasattr(module, name)]
    assert not missing, f"{module_name}.__all__ names what it does not have: {missing}"
    defined = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == module_name
    }
    assert defined <= set(exported), f"{module_name}.__all__ lacks {sorted(defined - set(exported))}"
