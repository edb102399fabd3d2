"""The persistent folder of `echonats run`: PostgreSQL's data directory and the JetStream store.

Layout (``ECHONATS_DATA_DIR``, default ``.echonats`` in the working directory)::

    postgres/   PostgreSQL data directory (initdb on first use)
    nats/       nats-server's JetStream store
    lock        held (flock) by the run using the folder; holds its pid
    pids        the services' pids, for recovering from a run that was killed

Two runs on one folder would corrupt it: the second one is refused while the first holds the lock.
The lock is an ``flock``, so the kernel drops it when its holder dies however it dies — a killed run
never leaves a stale lock behind. What a killed run can leave is its services, still shutting down
on their parent-death signal, and PostgreSQL's ``postmaster.pid``: the next run waits for (then
kills) the services listed in ``pids`` that still run from this folder, and removes a
``postmaster.pid`` that no live process holds, so it starts by itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import time
from pathlib import Path

from echonats.model.errors import EchonatsError

log = logging.getLogger(__name__)

ORPHAN_GRACE_S = 10.0  # a service on its parent-death signal finishes its shutdown within this


class DataDirInUse(EchonatsError):
    code = "data_dir_in_use"


class DataDir:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.postgres = self.root / "postgres"
        self.nats = self.root / "nats"
        self._lock_fd: int | None = None
        self._pids: dict[str, int] = {}

    def acquire(self) -> None:
        """Lock the folder for this run and clean up after a run that was killed."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DataDirInUse(
                f"{self.root} is in use by another `echonats run` (pid {holder}); stop it, set "
                "ECHONATS_DATA_DIR to another folder, or use --ephemeral"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd
        self._stop_orphans()
        self._remove_stale_postmaster_pid()

    def release(self) -> None:
        if self._lock_fd is None:  # not ours (e.g. acquire refused): leave the holder's files alone
            return
        with contextlib.suppress(FileNotFoundError):
            (self.root / "pids").unlink()
        self._pids.clear()
        os.close(self._lock_fd)  # closing the descriptor drops the flock
        self._lock_fd = None

    def record(self, name: str, pid: int) -> None:
        """Remember a service's pid (written at once: the run may be killed at any moment)."""
        self._pids[name] = pid
        path = self.root / "pids"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(self._pids))
        temporary.replace(path)

    @property
    def has_postgres_cluster(self) -> bool:
        return (self.postgres / "PG_VERSION").is_file()

    # -- recovery ----------------------------------------------------------------------------------
    def _stop_orphans(self) -> None:
        try:
            recorded = json.loads((self.root / "pids").read_text())
        except (OSError, ValueError):
            return
        orphans = {
            name: pid for name, pid in recorded.items() if isinstance(pid, int) and _runs_from(pid, self.root)
        }
        if not orphans:
            return
        log.warning("waiting for services of a killed run to stop: %s", orphans)
        deadline = time.monotonic() + ORPHAN_GRACE_S
        while orphans and time.monotonic() < deadline:
            orphans = {name: pid for name, pid in orphans.items() if _runs_from(pid, self.root)}
            time.sleep(0.05)  # polling other processes' exit, bounded by the deadline
        for name, pid in orphans.items():
            log.warning("killing %s (pid %d), left running by a killed run", name, pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _remove_stale_postmaster_pid(self) -> None:
        pid_file = self.postgres / "postmaster.pid"
        try:
            first_line = pid_file.read_text().split("\n", 1)[0]
        except OSError:
            return
        holder = int(first_line) if first_line.strip().lstrip("-").isdigit() else 0
        if holder and _runs_from(abs(holder), self.root):
            raise DataDirInUse(f"PostgreSQL (pid {abs(holder)}) still runs on {self.postgres}")
        # We hold the folder's lock and no process runs from it: the file is a killed run's. A pid
        # reused by an unrelated process would otherwise make PostgreSQL refuse to start.
        pid_file.unlink()


def _runs_from(pid: int, root: Path) -> bool:
    """Whether pid is alive and its command line names a path inside root (so: one of ours)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and str(root).encode() in argv
