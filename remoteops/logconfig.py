"""Logging set up in one place, for the CLI and for every worker process.

The library itself adds no handlers (``logging.getLogger(__name__)`` only).
``setup_logging`` is called once per process: by the CLI, and by each analysis
worker through its pool initializer, so each process builds its own
``ConcurrentRotatingFileHandler``; the handler's lock file keeps writes and
rotations from several processes correct.

Without ``--debug`` no handler ever prints a traceback (see ``_NoTracebacks``).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

__all__ = [
    "NOTICE",
    "LogSettings",
    "PrintableFormatter",
    "default_log_path",
    "hold_stderr",
    "release_stderr",
    "setup_logging",
]

_FILE_FORMAT = "%(asctime)s %(process)d %(threadName)s %(levelname)s %(name)s: %(message)s"
_MARKER = "_remoteops_handler"
_NOTICE_ATTR = "remoteops_notice"

#: ``extra=`` for a record addressed to the operator about their input (a pattern term that
#: matches nothing, an empty ``@file``): on stderr it is one plain line,
#: ``remoteops: warning: MESSAGE``, with no logger name; the log file gets it as usual.
#: Every warning and error of remoteops' own loggers is shown so, marked or not: what a
#: person reads never carries a logger's name (``WARNING remoteops.transfer:``).
NOTICE = MappingProxyType({_NOTICE_ATTR: True})


def _is_notice(record: logging.LogRecord) -> bool:
    if getattr(record, _NOTICE_ATTR, False):
        return True
    return record.levelno >= logging.WARNING and record.name.split(".")[0] == "remoteops"


def _is_not_notice(record: logging.LogRecord) -> bool:
    return not _is_notice(record)


class _NoticeHandler(logging.Handler):
    """Writes notices to stderr as one line each, without the logger's name."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from remoteops.printable import printable

            text = printable(" ".join(record.getMessage().split()))
            if record.exc_info:  # only with --debug: the filter drops it otherwise
                text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            # sys.stderr looked up now: a live progress display may have redirected it.
            sys.stderr.write(f"remoteops: {record.levelname.lower()}: {text}\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


class _Held:
    """Log records held back from stderr while ``-q`` waits to learn how the run ends.

    A quiet run that succeeds prints nothing at all, so cron sends no mail:
    its warnings (a pattern term that matches nothing, a file a transfer
    skipped) go to the log file only. A quiet run that fails shows them on
    stderr after all, before its summary. At most ``LIMIT`` records are kept;
    the rest are counted and said in one line.
    """

    LIMIT = 1000

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = False
        self.records: list[tuple[logging.Handler, logging.LogRecord]] = []
        self.more = 0

    def keep(self, handler: logging.Handler, record: logging.LogRecord) -> bool:
        """Hold ``record`` for ``handler`` if holding; True when it was held (or counted)."""
        with self.lock:
            if not self.active:
                return False
            if len(self.records) < self.LIMIT:
                self.records.append((handler, record))
            else:
                self.more += 1
            return True


_held = _Held()


class _HoldFilter(logging.Filter):
    """The last filter of a stderr handler: holds its records while :func:`hold_stderr` is on."""

    def __init__(self, handler: logging.Handler) -> None:
        super().__init__()
        self._handler = handler

    def filter(self, record: logging.LogRecord) -> bool:
        return not _held.keep(self._handler, record)


def hold_stderr() -> None:
    """Hold log records meant for stderr (the log file still gets them at once), until
    :func:`release_stderr`. For ``-q``: nothing is printed unless the run fails."""
    with _held.lock:
        _held.active = True


def release_stderr(*, show: bool) -> None:
    """Stop holding; print what was held on stderr if ``show``, else drop it."""
    with _held.lock:
        if not _held.active:
            return
        _held.active = False
        records, _held.records = _held.records, []
        more, _held.more = _held.more, 0
    if not show:
        return
    for handler, record in records:
        handler.handle(record)
    if more:
        sys.stderr.write(f"remoteops: {more} more log messages are not shown here\n")
        sys.stderr.flush()


class PrintableFormatter(logging.Formatter):
    """A formatter that shows control characters in messages escaped.

    Messages quote what hosts sent (remote paths, errors): escaped, they can
    neither drive a terminal showing the log nor forge log lines with a newline.
    A traceback (``--debug``) keeps its lines.
    """

    def formatMessage(self, record: logging.LogRecord) -> str:
        from remoteops.printable import printable

        record.message = printable(record.message)
        return super().formatMessage(record)


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


class _NoTracebacks(logging.Filter):
    """Keeps tracebacks out of a handler: installed on every handler unless ``--debug``.

    When paramiko's transport thread ends on an error (a host that never sends
    its banner, sends garbage or an SSH-1 banner, resets the connection, or
    whose socket the connect deadline closed), paramiko logs the error and then
    its traceback one line per record, all at ERROR. The worker waiting on that
    transport gets the same error and reports it as the host's one-line result,
    naming the host, which paramiko's lines do not: so paramiko's ERROR records
    are dropped (``--debug`` shows them). A remoteops record that carries an
    exception keeps its message and gains a one-line summary of the exception
    instead of the traceback. Records are shared by every handler of a process,
    and all of them carry this filter, so changing one in place is safe.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("paramiko") and record.levelno >= logging.ERROR:
            return False
        if record.exc_info or record.exc_text or record.stack_info:
            error = record.exc_info[1] if record.exc_info else None
            summary = f" ({type(error).__name__}: {error})" if error is not None else ""
            record.msg = f"{record.getMessage()}{summary}".replace("\n", " ")
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
        return True


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    """``threading.excepthook``: an exception that ends a thread goes to the log handlers.

    Python's default hook prints the traceback straight to stderr, past every
    handler and its traceback filter. Logged, it is one line without
    ``--debug`` (stderr and the log file) and the whole traceback with it.
    """
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread is not None else "a thread"
    logging.getLogger("remoteops").error(
        "internal error in thread %s; rerun with --debug for the traceback",
        name,
        exc_info=args.exc_value or True,
    )


def _quiet(handler: logging.Handler, settings: LogSettings) -> None:
    """Give ``handler`` the traceback filter unless ``--debug`` (and take it off with it)."""
    for old in [f for f in handler.filters if isinstance(f, _NoTracebacks)]:
        handler.removeFilter(old)
    if not settings.debug:
        handler.addFilter(_NoTracebacks())


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
        release_stderr(show=False)  # a new command: nothing held from an earlier one
        stderr_handler.setLevel(_stderr_level(settings))
        stderr_handler.addFilter(_is_not_notice)
        setattr(stderr_handler, _MARKER, True)
        _quiet(stderr_handler, settings)
        stderr_handler.addFilter(_HoldFilter(stderr_handler))
        root.addHandler(stderr_handler)
        notices = _NoticeHandler(_stderr_level(settings))
        notices.addFilter(_is_notice)
        notices.addFilter(_HoldFilter(notices))
        setattr(notices, _MARKER, True)
        _quiet(notices, settings)
        root.addHandler(notices)

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
        file_handler.setFormatter(PrintableFormatter(_FILE_FORMAT))
        setattr(file_handler, _MARKER, True)
        _quiet(file_handler, settings)
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
    # The logger passes on only what some handler keeps, so a debug line that
    # every handler would drop is never built (one LogRecord per host and call
    # site otherwise). A handler added later must lower this level to its own.
    # A handler at NOTSET (0) keeps everything; a logger at 0 would defer to the root's.
    lowest = min((h.level for h in root.handlers), default=logging.WARNING)
    root.setLevel(max(lowest, 1))
    threading.excepthook = _log_thread_exception
    return root
