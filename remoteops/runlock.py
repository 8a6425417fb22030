"""``--lock FILE``: one run at a time per lock file, for cron.

The lock is an exclusive ``flock`` on FILE, held until the process exits, so a
run that dies for any reason releases it; nothing has to clean up a stale lock.
The holder writes its PID into the file so that the refusal can name it.
"""

from __future__ import annotations

import os
from pathlib import Path

from remoteops.errors import LockHeldError, UsageError
from remoteops.fileops import flock_within

__all__ = ["acquire_run_lock"]


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return ""
    return f" (pid {text})" if text.isdigit() else ""


def acquire_run_lock(path: Path, *, wait: float = 0.0) -> int:
    """Take the lock on ``path`` within ``wait`` seconds; return the fd that holds it.

    Raises LockHeldError (exit 75) when another process keeps it past ``wait``,
    UsageError when the file cannot be opened.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise UsageError(
            f"--lock {path}: cannot open the lock file ({exc.strerror}); "
            "choose a path in a writable directory"
        ) from None
    if not flock_within(fd, wait):
        os.close(fd)
        raise LockHeldError(
            f"another run holds the lock {path}{_holder(path)}; nothing was "
            "contacted (wait for it with --lock-wait SECONDS)"
        )
    # Only the holder writes, so the PID is never torn between two runs.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd
