"""Scratch folders for work too large for memory (a Shopify bulk result, a store's first load).

A folder is removed when its work ends, also on an error. A process killed mid-way (a crashed
run worker, a SIGKILL) cannot remove its own, and a first load's scratch is gigabytes: each
folder's name carries its process id, and every new one first removes the folders of processes
that no longer run. A folder whose process id was taken by another live process is kept (the
safe side); the next sweep after that one ends removes it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PREFIX = "clv-scratch-"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: running
        return True
    return True


def _owner(path: Path) -> int | None:
    head = path.name[len(PREFIX):].split("-", 1)[0]
    return int(head) if head.isdigit() else None


def sweep(root: Path | None = None) -> list[Path]:
    """Remove the scratch folders under `root` (the system's temp folder) of processes that no
    longer run; returns them."""
    removed = []
    for path in Path(root or tempfile.gettempdir()).glob(f"{PREFIX}*"):
        pid = _owner(path)
        if pid is None or pid == os.getpid() or not path.is_dir() or _running(pid):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


@contextmanager
def scratch_dir(purpose: str, root: Path | None = None) -> Iterator[Path]:
    """A new folder `clv-scratch-<pid>-<purpose>-<random>` for the block's files, removed after it."""
    sweep(root)
    path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-{purpose}-", dir=root))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
