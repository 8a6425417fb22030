"""Writing a local file so that a reader sees the old one or the new one, never half of
one, and taking an flock within a deadline: what the retry file, the metrics file, the
HTML report, the run lock and the lab's files share (docs/files.md).

known_hosts has its own writer (:mod:`remoteops.hostkeys`): it must keep another
user's ownership and fall back to appending in place.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["flock_within", "write_atomic"]

_POLL_S = 0.05


def write_atomic(
    path: Path,
    data: bytes,
    *,
    mode: int | None = 0o644,
    temp: Path | None = None,
    sync: bool = True,
) -> None:
    """Write ``data`` to ``temp`` beside ``path`` (default ``.NAME.PID.tmp``), then rename
    it over ``path``.

    ``mode``: the file's permission bits whatever the umask; None: those a new file
    gets (0666 less the umask). ``sync``: fsync the file before the rename and the
    directory after it, so the new file survives a power cut. The temporary file is
    never followed if it is a link; on any failure it is removed and ``path`` is
    left as it was. Raises OSError.
    """
    if temp is None:
        temp = path.with_name(f".{path.name[:200]}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(temp, flags, 0o666 if mode is None else 0o600)
        try:
            if mode is not None:
                os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    if sync:
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def flock_within(fd: int, seconds: float) -> bool:
    """Take an exclusive flock on ``fd`` within ``seconds`` (0: one try); False if another
    process kept it that long."""
    deadline = time.monotonic() + max(seconds, 0.0)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(_POLL_S, left))
