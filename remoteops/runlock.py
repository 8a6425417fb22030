"""``--lock FILE``: one run at a time per lock file, for cron.

The lock is an exclusive ``flock`` on FILE, held until the process exits, so a
run that dies for any reason releases it; nothing has to clean up a stale lock.
The holder writes its PID into the file so that the refusal can name it.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from remoteops.errors import LockHeldError, UsageError

__all__ = ["acquire_run_lock"]

_POLL_S = 0.1


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
    deadline = time.monotonic() + max(wait, 0.0)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise LockHeldError(
                    f"another run holds the lock {path}{_holder(path)}; nothing was "
                    "contacted (wait for it with --lock-wait SECONDS)"
                ) from None
            time.sleep(min(_POLL_S, max(deadline - time.monotonic(), 0.0)))
    # Only the holder writes, so the PID is never torn between two runs.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd
