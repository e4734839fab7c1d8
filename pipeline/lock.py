"""An exclusive, per-workspace lock for runs started by hand and by cron.

`flock` on a file beside the warehouse: the kernel releases it when the holder dies, even by
kill -9, so a crashed run never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import LockedError


@contextmanager
def workspace_lock(warehouse: Path) -> Iterator[Path]:
    lock_path = Path(str(warehouse) + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            raise LockedError(
                f"the workspace is locked by a run in progress (pid {holder})",
                hint="wait for it to finish; the lock is released automatically when that process ends",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield lock_path
    finally:
        os.close(fd)  # closing the descriptor releases the lock
