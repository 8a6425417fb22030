"""Logging set up in one place, for the CLI and for every worker process.

The library itself adds no handlers (``logging.getLogger(__name__)`` only).
``setup_logging`` is called once per process: by the CLI, and by each analysis
worker through its pool initializer, so each process builds its own
``ConcurrentRotatingFileHandler``; the handler's lock file keeps writes and
rotations from several processes correct.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LogSettings", "default_log_path", "setup_logging"]

_FILE_FORMAT = "%(asctime)s %(process)d %(threadName)s %(levelname)s %(name)s: %(message)s"
_MARKER = "_remoteops_handler"


def default_log_path(env: os._Environ[str] | dict[str, str] | None = None) -> Path:
    """Return ``$XDG_STATE_HOME/remoteops/remoteops.log`` (``~/.local/state`` by default)."""
    env = os.environ if env is None else env
    state = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "remoteops" / "remoteops.log"


@dataclass(frozen=True, slots=True)
class LogSettings:
    """What to log where. Picklable, so pool workers can rebuild the same setup."""

    log_file: Path | None = None
    file_level: int = logging.INFO
    verbosity: int = 0
    debug: bool = False
    max_bytes: int = 10 * 1024 * 1024
    backup_count: int = 5


def _stderr_level(settings: LogSettings) -> int:
    if settings.debug or settings.verbosity >= 2:
        return logging.DEBUG
    if settings.verbosity == 1:
        return logging.INFO
    return logging.WARNING


def setup_logging(
    settings: LogSettings, *, stderr_handler: logging.Handler | None = None
) -> logging.Logger:
    """Configure the ``remoteops`` and ``paramiko`` loggers for this process.

    ``stderr_handler`` is the CLI's handler on the shared stderr console (a
    RichHandler); workers pass none and log to the file only. Calling it again
    replaces what an earlier call installed. Returns the ``remoteops`` logger.
    """
    root = logging.getLogger("remoteops")
    for handler in list(root.handlers):
        if getattr(handler, _MARKER, False):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(logging.DEBUG)
    root.propagate = False

    if stderr_handler is not None:
        stderr_handler.setLevel(_stderr_level(settings))
        setattr(stderr_handler, _MARKER, True)
        root.addHandler(stderr_handler)

    if settings.log_file is not None:
        from concurrent_log_handler import ConcurrentRotatingFileHandler

        settings.log_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        file_handler = ConcurrentRotatingFileHandler(
            str(settings.log_file),
            mode="a",
            maxBytes=settings.max_bytes,
            backupCount=settings.backup_count,
            encoding="utf-8",
            use_gzip=False,
        )
        file_handler.setLevel(logging.DEBUG if settings.debug else settings.file_level)
        file_handler.setFormatter(logging.Formatter(_FILE_FORMAT))
        setattr(file_handler, _MARKER, True)
        root.addHandler(file_handler)

    # paramiko logs every negotiation step at DEBUG/INFO; keep it quiet unless asked.
    paramiko_logger = logging.getLogger("paramiko")
    paramiko_logger.setLevel(logging.DEBUG if settings.debug else logging.WARNING)
    paramiko_logger.propagate = False
    for handler in list(paramiko_logger.handlers):
        if getattr(handler, _MARKER, False):
            paramiko_logger.removeHandler(handler)
    for handler in root.handlers:
        paramiko_logger.addHandler(handler)
    return root
