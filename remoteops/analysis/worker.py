"""What runs inside an analysis worker process: its initializer and one task.

Imported by the forkserver ahead of time (``set_forkserver_preload``), so a
new worker starts with the analyzers already imported.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

# Imported here, not in init_worker: the forkserver preloads this module, so
# each new worker starts with it imported.
if sys.platform == "linux":
    import ctypes
else:  # pragma: no cover - not Linux
    ctypes = None  # type: ignore[assignment]

from remoteops.analysis import prefilter
from remoteops.analysis.model import Document
from remoteops.analysis.registry import resolve
from remoteops.logconfig import LogSettings, setup_logging

__all__ = ["Task", "init_worker", "run_task", "worker_ready"]

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class Task:
    """One document (or byte range) and the analyzers to run over it.

    ``items`` holds (spec index, analyzer name, config) triples; ``alone`` marks
    a retry after a crash, run with no other task in flight.
    """

    doc: Document
    items: tuple[tuple[int, str, Any], ...]
    alone: bool = False


def init_worker(log_settings: LogSettings | None, sys_path: list[str]) -> None:
    """Worker set-up: the parent's log file and import path; Ctrl-C is the parent's job.

    The terminal sends SIGINT to the whole process group; the parent stops the
    workers itself, so they ignore it instead of printing tracebacks. If the
    forkserver (this process's parent) dies, the kernel kills the worker too.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    prefilter.install_worker_handler()  # terminated, it ends the grep it runs first
    if ctypes is not None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - best effort
            pass
    _close_forkserver_alive_fd()
    for entry in sys_path:
        if entry not in sys.path:
            sys.path.append(entry)
    if log_settings is not None:
        setup_logging(log_settings)
    logger.debug("analysis worker %d started", os.getpid())


def _close_forkserver_alive_fd() -> None:
    """Drop this worker's copy of the forkserver's "alive" pipe.

    The forkserver exits when every copy is closed; if workers kept theirs, a
    parent that dies without cleaning up (SIGKILL) would leave the forkserver
    and, through it, the workers running forever. Without it the forkserver
    exits with the parent, and PDEATHSIG then ends the workers.
    """
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    fd = getattr(server, "_forkserver_alive_fd", None)
    if server is not None and isinstance(fd, int):
        with contextlib.suppress(OSError):
            os.close(fd)
        server._forkserver_alive_fd = None


def run_task(task: Task) -> list[tuple[int, bool, Any]]:
    """Run each analyzer of ``task`` over its document: (index, ok, partial or error text).

    An exception in one analyzer is that analyzer's error for this document only.
    """
    out: list[tuple[int, bool, Any]] = []
    for index, name, config in task.items:
        try:
            out.append((index, True, resolve(name).map(config, task.doc)))
        except Exception as exc:
            logger.debug("Host %r: analyzer %s failed", task.doc.host, name, exc_info=True)
            logger.warning(
                "Host %r: analyzer %s failed on %s: %s: %s",
                task.doc.host,
                name,
                task.doc.name,
                type(exc).__name__,
                exc,
            )
            out.append((index, False, f"{type(exc).__name__}: {exc}"))
    return out


def worker_ready() -> int:
    """Nothing: sent to start a worker. Returns its process id."""
    return os.getpid()
