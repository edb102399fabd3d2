"""The data folder of `echonats run`: one run at a time, and a killed run's leftovers cleared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from echonats.devstack.datadir import DataDir, DataDirInUse


def test_a_second_run_on_the_same_folder_is_refused_until_the_first_releases_it(tmp_path: Path) -> None:
    first, second = DataDir(tmp_path), DataDir(tmp_path)
    first.acquire()
    with pytest.raises(DataDirInUse, match=rf"in use by another `echonats run` \(pid {os.getpid()}\)"):
        second.acquire()
    second.release()  # refused: it must not touch the holder's files
    first.record("nats", 123)
    assert (tmp_path / "pids").exists()
    first.release()
    assert not (tmp_path / "pids").exists()
    second.acquire()
    second.release()


def test_a_postgres_pid_file_no_process_of_ours_holds_is_removed(tmp_path: Path) -> None:
    (tmp_path / "postgres").mkdir()
    pid_file = tmp_path / "postgres" / "postmaster.pid"
    pid_file.write_text(f"{os.getpid()}\n/elsewhere\n")  # a live pid, but not running from the folder
    folder = DataDir(tmp_path)
    folder.acquire()
    try:
        assert not pid_file.exists()
    finally:
        folder.release()
