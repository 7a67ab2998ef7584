"""Scratch folders: removed after their work, also on an error, and a killed process's by the next one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from clv_platform.core.scratch import PREFIX, scratch_dir, sweep


def _dead_pid() -> int:
    """The id of a process that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_scratch_folder_is_removed_after_its_work_and_on_an_error(tmp_path):
    with scratch_dir("orders", root=tmp_path) as folder:
        (folder / "fetched.duckdb").write_bytes(b"x" * 100)
        assert folder.parent == tmp_path and folder.name.startswith(f"{PREFIX}{os.getpid()}-orders-")
    assert not folder.exists()
    with pytest.raises(RuntimeError):
        with scratch_dir("orders", root=tmp_path) as failed:
            (failed / "part").write_text("half a load")
            raise RuntimeError("the fetch failed")
    assert not failed.exists() and list(tmp_path.iterdir()) == []


def test_the_folders_of_killed_processes_are_removed_by_the_next_one(tmp_path):
    killed = tmp_path / f"{PREFIX}{_dead_pid()}-bulk-orders-abc"
    killed.mkdir()
    (killed / "result.jsonl").write_text("{}\n")
    running = tmp_path / f"{PREFIX}{os.getppid()}-orders-def"  # the parent (pytest's runner) runs
    running.mkdir()
    ours = tmp_path / f"{PREFIX}{os.getpid()}-orders-ghi"  # an open block of this process
    ours.mkdir()
    other = tmp_path / "clv-orders-xyz"  # not a scratch folder's name: never touched
    other.mkdir()
    with scratch_dir("orders", root=tmp_path) as folder:
        assert not killed.exists() and running.exists() and ours.exists() and other.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([running.name, ours.name, other.name])
    assert not folder.exists() and sweep(tmp_path) == []
