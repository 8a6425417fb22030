"""The run-time machinery every command shares: the consoles (rich, built lazily),
``-q``, Ctrl-C/SIGTERM handling, progress displays, consuming a run's results and
finishing it (analysis, JSON summary, retry file, summary, exit code).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from remoteops.cli.findings import analysis_exit_code, analysis_summary, emit_analysis
from remoteops.exitcodes import ExitCode
from remoteops.logconfig import hold_stderr, release_stderr
from remoteops.outputs import watch

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from contextlib import AbstractContextManager
    from pathlib import Path

    from remoteops.cli.record import RunRecord
    from remoteops.results import HostResult, RunResult

__all__ = [
    "HostProgress",
    "Interrupts",
    "ProgressDisplay",
    "StderrBytes",
    "cluster_outcome",
    "drive",
    "finish",
    "go_quiet",
    "hidden_after_broken_pipe",
    "settle_heap",
    "state",
    "stderr",
    "stdout",
]

# The logger of the command line (log files name it remoteops.cli).
logger = logging.getLogger("remoteops.cli")


@dataclass(slots=True)
class _State:
    debug: bool = False
    verbosity: int = 0
    lock_fd: int | None = None
    live: Any = None  # the progress display on the terminal, while one is up


state = _State()


class _LazyConsole:
    """A rich Console built on first use: importing rich costs ~50 ms of every start,
    and a run whose output goes to files or pipes never needs it.

    Attribute access is passed on; rich's own classes (a progress display, the
    log handler) are given the real Console from :meth:`get`, since they also
    use it as a context manager, which a stand-in cannot be.
    """

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._console: Any = None

    def get(self) -> Any:
        """The rich Console itself, built now if it was not yet."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._kwargs)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


# Soft wrap: a long line (a JSON line, an error) printed above a progress display
# is left for the terminal to wrap, not cut into several lines.
# markup=False: what they print holds paths and host names, where [...] is text, not style.
stderr: Any = _LazyConsole(stderr=True, highlight=False, soft_wrap=True, markup=False)

stdout: Any = _LazyConsole(highlight=False, soft_wrap=True, markup=False)


def go_quiet(quiet: bool) -> None:
    """``-q``: from now on hold stderr's log messages; ``finish`` shows them only on failure."""
    if quiet:
        hold_stderr()


def hidden_after_broken_pipe(result: HostResult) -> bool:
    """True for a host not started because an output pipe closed: the summary's one
    folded line names them all, instead of one line per host."""
    return result.status == "skipped" and bool(watch().closed)


class Interrupts:
    """First SIGINT/SIGTERM: cancel the run; a second SIGINT: exit at once.

    Each says so in one line naming what is being stopped (``stopping``); only
    after Ctrl-C does it offer a second Ctrl-C (a SIGTERM comes from a program,
    which is told nothing it could type). While :meth:`prompting` is active
    (``play --step`` waiting for an answer) a signal also raises
    KeyboardInterrupt, which ends the prompt: a blocking read would otherwise
    just resume.
    """

    def __init__(self, cancel: Any, *, stopping: str = "remote commands") -> None:
        self._cancel = cancel
        self._stopping = stopping
        self.code: ExitCode | None = None
        self._previous: dict[int, Any] = {}
        self._prompting = False

    def __enter__(self) -> Interrupts:
        import signal

        def handler(signum: int, frame: object) -> None:
            if self.code is not None and signum == signal.SIGINT:
                _restore_terminal()
                os._exit(ExitCode.SIGINT)
            self.code = ExitCode.SIGINT if signum == signal.SIGINT else ExitCode.SIGTERM
            if signum == signal.SIGINT:
                said = f"interrupted; stopping {self._stopping} (Ctrl-C again to quit now)"
            else:
                said = f"terminated (SIGTERM); stopping {self._stopping}"
            _say(("\n" if self._prompting else "") + f"remoteops: {said}")  # off a prompt's line
            self._cancel()
            if self._prompting:
                raise KeyboardInterrupt

        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, handler)
        return self

    @contextlib.contextmanager
    def prompting(self) -> Iterator[None]:
        """Within this block an interruption raises KeyboardInterrupt after cancelling;
        so does entering it after one (Ctrl-C typed as the question was being asked)."""
        self._prompting = True
        try:
            if self.code is not None:
                raise KeyboardInterrupt
            yield
        finally:
            self._prompting = False

    def __exit__(self, *exc: object) -> None:
        import signal

        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


def _say(message: str) -> None:
    """One line on stderr from a signal handler: above a progress display if one is up,
    straight to the descriptor if stderr was in the middle of a write, or rich in the
    middle of importing what printing needs (the handler runs inside that import)."""
    try:
        stderr.print(message, markup=False)
    except (RuntimeError, ImportError):  # a reentrant write or a half-done import
        with contextlib.suppress(OSError):
            os.write(2, f"{message}\n".encode())


def _restore_terminal() -> None:
    """Before an immediate exit: erase a progress display still up and show the cursor.

    Written straight to the descriptor, taking no lock: it runs in a signal
    handler, possibly while the display's own thread is drawing.
    """
    if state.live is None:
        return
    state.live = None
    with contextlib.suppress(OSError):
        os.write(2, b"\r\x1b[2K\x1b[?25h")


class ProgressDisplay:
    """A rich progress display on stderr, only when stderr is a terminal (never in cron or pipes).

    While it is up the cursor is hidden, and what the command writes to stderr
    (and to stdout when that is a terminal too) is printed above it instead of
    tearing it. It is always taken down, cursor shown: on leaving the ``with``
    block, whatever the way out, and by :func:`_restore_terminal` before an
    immediate exit (a second Ctrl-C). Subclasses give the columns and the task.
    """

    def __init__(self, *, enabled: bool) -> None:
        self._enabled = enabled and sys.stderr.isatty()
        self._progress: Any = None
        self._task: Any = None

    def _columns(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def _first_task(self) -> tuple[str, float | None]:
        """The description and total of the one task shown."""
        raise NotImplementedError

    def __enter__(self) -> Any:
        if not self._enabled:
            return self
        from rich.progress import Progress

        progress = Progress(
            *self._columns(),
            console=stderr.get(),
            transient=True,
            redirect_stdout=sys.stdout.isatty(),
            redirect_stderr=True,
        )
        state.live = progress
        try:
            progress.start()
            description, total = self._first_task()
            self._task = progress.add_task(description, total=total)
        except BaseException:
            progress.stop()
            state.live = None
            raise
        self._progress = progress
        return self

    def _update(self, **fields: Any) -> None:
        progress = self._progress
        if progress is not None:
            progress.update(self._task, **fields)

    @property
    def shown(self) -> bool:
        """Whether the display is up."""
        return self._progress is not None

    def __exit__(self, *exc: object) -> None:
        progress, self._progress = self._progress, None
        if progress is not None:
            try:
                progress.stop()
            finally:
                state.live = None


class StderrBytes:
    """stderr as a byte stream for :class:`~remoteops.report.LivePrinter`.

    Bytes go to the real stream; while a progress display is up (rich's proxy
    stands in sys.stderr) lines go through the proxy, printed above the display.
    """

    def write(self, data: bytes) -> int:
        stream = sys.stderr
        if hasattr(stream, "rich_proxied_file"):
            stream.write(data.decode("utf-8", errors="replace"))
            return len(data)
        return stream.buffer.write(data)

    def flush(self) -> None:
        sys.stderr.flush()


class HostProgress(ProgressDisplay):
    """Hosts done out of all, with the failures so far."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        super().__init__(enabled=enabled)
        self._total = total
        self._done = 0
        self._failed = 0

    def _columns(self) -> tuple[Any, ...]:
        from rich.progress import BarColumn, MofNCompleteColumn, TimeElapsedColumn

        return (
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )

    def _first_task(self) -> tuple[str, float | None]:
        return "hosts", self._total

    def advance(self, is_ok: bool) -> None:
        """Count one finished host."""
        self._done += 1
        self._failed += 0 if is_ok else 1
        label = f"hosts ({self._failed} failed)" if self._failed else "hosts"
        self._update(advance=1, description=label)


def settle_heap() -> None:
    """Start-up is over, the work begins: the cyclic garbage collector, off since
    :func:`remoteops.cli.app.main` began (start-up makes many objects and no garbage
    worth collecting: ~12 ms of CPU saved), is on again for the work. What start-up
    made (modules, the inventory, the targets) lives until exit: frozen first, it
    is out of the collector's way, and the full collections a run of many hosts
    triggers do not walk it again (~25 ms of CPU on 200)."""
    gc.freeze()
    gc.enable()


def drive(
    results: Iterable[HostResult],
    *,
    cancel: Callable[[], None],
    on_result: Callable[[HostResult], None],
    progress: AbstractContextManager[Any] | None = None,
) -> RunResult:
    """Consume a run's results as they come, under Ctrl-C/SIGTERM handling.

    ``on_result`` renders each host; the returned RunResult carries the
    duration and, if the run was interrupted, the signal's exit code.
    """
    from remoteops.results import RunResult

    settle_heap()
    run = RunResult()
    start = time.monotonic()
    with Interrupts(cancel) as interrupts, progress or contextlib.nullcontext():
        for result in results:
            run.add(result)
            on_result(result)
    run.duration_s = time.monotonic() - start
    run.interrupted_by = interrupts.code
    return run


def cluster_outcome(executor: Any, run: Any) -> None:
    """After a ``--cluster`` run whose scheduler went away: one line saying so, and exit
    code 2 (the results shown are kept; docs/exit-codes.md)."""
    lost = getattr(executor, "lost", None)
    if lost is None:
        return
    if run.interrupted_by is None:
        run.interrupted_by = ExitCode.USAGE
    sys.stderr.write(
        f"remoteops: error: --cluster {executor.address}: {lost}; the results above are partial\n"
    )
    sys.stderr.flush()


def _write_retry_file(path: Path, hosts: list[str]) -> None:
    from remoteops.fileops import write_atomic

    # A short temporary name of its own: a retry file whose name is near the file
    # system's limit must not fail on a longer temporary one.
    temp = path.parent / f".remoteops-retry.{os.getpid()}.tmp"
    write_atomic(path, "".join(f"{h}\n" for h in hosts).encode(), mode=None, temp=temp)


def finish(
    run: Any,
    *,
    as_json: bool,
    json_writer: Any,
    retry_file: Path | None,
    analysis: Any = None,
    fail_on_findings: bool = False,
    quiet: bool = False,
    record: RunRecord | None = None,
) -> NoReturn:
    """End a command that talked to hosts: analysis, JSON summary, retry file, the
    summary on stderr, the log's outcome, and the exit code.

    The summary goes to stderr unless the exit code is 0 and ``--json`` or ``-q``
    was given; with ``-q`` nothing at all is printed on success (held warnings
    are dropped; they are in the log), and on failure the warnings come first.
    ``record`` (history, ``--metrics``, ``--report``) is finished with the exit code.
    """
    from remoteops.report import render_summary

    if watch().closed and run.interrupted_by is None:
        run.interrupted_by = ExitCode.BROKEN_PIPE
    code = run.exit_code
    summary_more: tuple[str, list[str]] = ("", [])
    if analysis is not None:
        code = analysis_exit_code(code, analysis, fail_on_findings=fail_on_findings)
        summary_more = analysis_summary(analysis, fail_on_findings=fail_on_findings)
    release_stderr(show=code != ExitCode.OK)
    if analysis is not None:
        emit_analysis(analysis, as_json=as_json, json_writer=json_writer, tables=not quiet)
        if as_json:
            json_writer.summary(run, exit_code=code, findings=len(analysis.findings))
    elif as_json:
        json_writer.summary(run)
    if retry_file is not None:
        try:
            _write_retry_file(retry_file, sorted(run.failed_hosts))
        except OSError as exc:  # checked before the run; the disk may still fill up
            from remoteops.argcheck import shown

            failure = f"--retry-file {shown(retry_file)}: {exc.strerror}"
            sys.stderr.write(f"remoteops: error: {failure}\n")
            logger.error("%s", failure)
    first, *problems = render_summary(run).splitlines()
    suffix, more_problems = summary_more
    summary = "\n".join([first + suffix, *problems, *more_problems]) + "\n"
    if code != ExitCode.OK or not (as_json or quiet):
        sys.stderr.write(summary)
        sys.stderr.flush()
    if watch().closed and code not in (ExitCode.SIGINT, ExitCode.SIGTERM):
        code = ExitCode.BROKEN_PIPE  # also when the pipe closed under the lines just written
        skipped = run.counts()["skipped"]
        watch().announce(
            f"{watch().reason}: no host was started after that; {len(run) - skipped} "
            f"finished, {skipped} not started (exit code {code})"
        )
    if record is not None:
        if analysis is not None:
            record.analysis(analysis.to_json())
        record.finish(run, code)
    # The log keeps what cron's mail may not: the outcome and every failure.
    first, *failures = summary.splitlines()
    logger.info("%s; exit code %d", first, code)
    for line in failures:
        logger.info("%s", line.strip())
    raise typer.Exit(code)
