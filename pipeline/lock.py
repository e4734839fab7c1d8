"""The per-workspace lock, taken by every command that opens the warehouse.

`flock` on a file beside the warehouse: the kernel releases it when the holder dies, even by
kill -9, so a crashed run never leaves a stale lock behind.

- A command that writes (ingest, run, purge, demo) takes it exclusively and writes who holds it
  (command, pid, since) into the file.
- A command that only reads (explain, rejects, runs) takes it shared: any number of readers at
  once, none while a writer holds it. DuckDB cannot open a file that another process is writing,
  so without this a reader started during a run fails with a misleading "cannot open" error.
- Busy: `LockedError` (exit 6) naming the holder, at once, or after `wait` seconds of retrying.
- Re-entrant within a process: the CLI takes the lock before importing the heavy modules, and
  the library functions it calls take it again as a no-op.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pipeline.errors import LockedError

POLL_SECONDS = 0.2

# Locks this process holds: lock file -> (mode, depth). flock locks belong to an open file, so a
# second open of the same file in this process would conflict with the first.
_held: dict[Path, list] = {}


def lock_path_of(warehouse: Path) -> Path:
    return Path(str(warehouse) + ".lock")


def _holder(fd: int) -> str:
    """Who holds the lock, as written by the exclusive holder: 'iom run (pid 123) since ...'."""
    raw = os.pread(fd, 512, 0).decode(errors="replace").strip()
    try:
        info = json.loads(raw)
        return f"`iom {info['command']}` (pid {info['pid']}) since {info['since']}"
    except (ValueError, KeyError, TypeError):
        return f"another process (pid {raw})" if raw.isdigit() else "another process"


def _try(fd: int, exclusive: bool) -> bool:
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _busy_message(fd: int, exclusive: bool) -> str:
    # Exclusive and refused: a writer holds it, or only readers do (a shared probe then succeeds).
    if exclusive and _try(fd, exclusive=False):
        fcntl.flock(fd, fcntl.LOCK_UN)
        return "the workspace is being read by another command (explain, rejects, runs or report)"
    return f"the workspace is locked by {_holder(fd)}"


@contextmanager
def workspace_lock(
    warehouse: Path, command: str = "run", shared: bool = False, wait: float = 0.0
) -> Iterator[Path]:
    """Hold the workspace lock for `command`; shared for readers. Retry for `wait` seconds."""
    lock_path = lock_path_of(Path(warehouse)).absolute()
    held = _held.get(lock_path)
    if held is not None:
        if held[0] == "shared" and not shared:
            raise RuntimeError("cannot take the workspace lock exclusively while this process holds it shared")
        held[1] += 1
        try:
            yield lock_path
        finally:
            held[1] -= 1
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + max(wait, 0.0)
        while not _try(fd, exclusive=not shared):
            if time.monotonic() >= deadline:
                waited = f" (waited {wait:g} s)" if wait > 0 else ""
                raise LockedError(
                    _busy_message(fd, exclusive=not shared) + waited,
                    hint="wait for it to finish, or pass --wait SECONDS to wait for it; the lock is released "
                    "automatically when that process ends",
                ) from None
            time.sleep(POLL_SECONDS)
        if not shared:
            since = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"command": command, "pid": os.getpid(), "since": since}).encode(), 0)
        _held[lock_path] = ["shared" if shared else "exclusive", 1]
        try:
            yield lock_path
        finally:
            del _held[lock_path]
    finally:
        os.close(fd)  # closing the descriptor releases the lock
