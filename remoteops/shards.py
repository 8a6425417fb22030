"""Process shards (``--procs N|auto``): one run's hosts split over worker processes.

Talking to hosts is I/O-bound and runs in threads, but each connection's key
exchange and crypto are CPU work under one GIL: one process handles about
200 connections a second whatever the machine has. With ``--procs N`` the
parent splits the targets into N interleaved shards (host 0, N, 2N, ... to the
first, so a slow group is spread over all), forks N workers, and each runs
the normal threaded :class:`~remoteops.execution.Executor` on its share,
``--forks`` divided among them. Each worker sends every host's result (and,
for a command whose output is shown live, its lines) over its pipe as that
host finishes; the parent yields them to the same output path as one
process, so output, ``--gather``, JSON Lines, ``--out-dir``, retry files,
analysis, history and exit codes are those of one process.

Why ``fork``: the workers are forked before any thread of the run starts
(checked; with a thread alive the run stays in one process), so they inherit
the targets, the settings and the operation (a closure) without pickling
anything, and secrets never leave memory; a fork costs about 2 ms where a
``spawn`` or ``forkserver`` worker pays a new interpreter and its imports
(about 0.3 s each; measured by benchmarks/procs_bench.py).

Stopping: ``cancel()`` (Ctrl-C, SIGTERM in the parent) sends SIGTERM to every
worker, which cancels its executor (running commands are stopped on their
hosts and report ``interrupted``, hosts not started ``skipped``). Workers
ignore SIGINT: a Ctrl-C at the terminal reaches the whole process group, and
the parent alone decides. A worker whose parent is gone (its pipe closes)
cancels too. Workers' log records are written by the parent's handlers. A
worker that dies (``kill -9``) is noticed when its pipe
closes: its hosts already reported keep their results, the others are
reported ``failed``, "interrupted: worker process died", and never run again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import math
import os
import resource
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, Pipe, wait
from typing import TYPE_CHECKING, Any, NoReturn, Self

from remoteops.errors import UsageError

if TYPE_CHECKING:
    from pathlib import Path

    from remoteops.execution import CommandSpec, Executor
    from remoteops.results import HostResult
    from remoteops.session import LineSink
    from remoteops.target import Target

__all__ = [
    "BREAK_EVEN_HOSTS",
    "Operation",
    "ProgressSink",
    "ShardedExecutor",
    "StandIn",
    "choose_procs",
    "operate",
    "parse_procs",
    "shard",
    "split",
]

logger = logging.getLogger(__name__)

# The host count from which two processes beat one (``--procs auto``), measured by
# benchmarks/procs_bench.py (`run -- true`, interleaved rounds) on the 2-core test
# machine, whose lab sshds share the client's cores (~8.5 ms of server CPU per
# connection against ~3.6-5.5 ms of client CPU). At -f 50: two processes took 1.06x
# the wall time of one on 50 hosts, 1.04x on 100 and 200, 1.02x on 400, 0.97x on
# 1,000. At the default --forks (256 in flight, where ``auto`` is used; session 7):
# 1.01x on 400 hosts, 0.93x on 700, 0.97x on 1,000 (rounds 0.95-1.01x), with the
# client CPU per host -9.8% (5.51 -> 4.97 ms; earlier series gave +11.5% and
# +20.8%: run-to-run spread is +-15% here). The crossing lies between 400 and 1,000
# hosts within that noise; 1,000 is kept as the size where two processes won in
# every series. A shard itself costs little (a fork: 2-3.4 ms); on this machine
# the servers take the cores.
BREAK_EVEN_HOSTS = 1000

ProgressSink = Callable[[str, int, int], None]
"""A transfer's progress callback: (host, bytes moved, files done)."""

Operation = Callable[["Executor", "LineSink | None", "ProgressSink | None"], Iterable["HostResult"]]
"""One operation on an executor's targets: given the executor, a live line sink
and a progress sink (either may be None), it yields each host's result."""

_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
# Each turn of the parent's wait ends after this long (Ctrl-C stays prompt).
_TURN_S = 0.25
# How long close() waits for a worker it stopped (stopping remote commands takes
# seconds: TERM, then KILL), before killing it.
_STOP_WAIT_S = 30.0


def parse_procs(value: str | None) -> int | None:
    """``--procs``: a number of processes (1 or more), or ``auto`` (None)."""
    if value is None or value.strip().lower() == "auto":
        return None
    try:
        count = int(value.strip())
    except ValueError:
        count = 0
    if count < 1:
        raise UsageError(f"--procs {value!r}: give a number of processes (1 or more) or auto")
    return count


def cores() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


def choose_procs(requested: int | None, hosts: int, forks: int) -> int:
    """How many processes a run of ``hosts`` hosts, ``forks`` at once, uses.

    ``auto`` (None): one below :data:`BREAK_EVEN_HOSTS` hosts, then one per core,
    each with at least half that many hosts. Never more than there are hosts,
    or hosts worked on at once.
    """
    if requested is None:
        wanted = 1 if hosts < BREAK_EVEN_HOSTS else min(cores(), hosts // (BREAK_EVEN_HOSTS // 2))
    else:
        wanted = requested
    return max(1, min(wanted, hosts, forks))


def split(targets: list[Target], count: int) -> list[list[Target]]:
    """``count`` interleaved shards: target i goes to shard i mod count."""
    return [targets[index::count] for index in range(count)]


@dataclass(slots=True)
class _Worker:
    """One shard seen from the parent: its process, its pipe, its hosts not yet reported."""

    pid: int
    conn: Connection
    unfinished: dict[str, Target]
    reaped: bool = False
    how: str = ""
    send_lock: threading.Lock = field(default_factory=threading.Lock)

    def signal(self, signum: int) -> None:
        if not self.reaped:  # a reaped PID may belong to someone else by now
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def send(self, message: tuple[Any, ...]) -> None:
        with self.send_lock, contextlib.suppress(OSError, ValueError):
            self.conn.send(message)

    def end(self, timeout: float) -> None:
        """Reap the worker, waiting up to ``timeout`` seconds for it to exit; then kill it."""
        deadline = time.monotonic() + timeout
        self.reap(block=False)
        while not self.reaped and time.monotonic() < deadline:
            time.sleep(0.02)
            self.reap(block=False)
        if not self.reaped:
            self.signal(signal.SIGKILL)
            self.reap(block=True)

    def reap(self, *, block: bool) -> None:
        if self.reaped:
            return
        try:
            pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            pid, status = self.pid, 0
        if pid == 0:
            return
        self.reaped = True
        if os.WIFSIGNALED(status):
            self.how = f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
        elif os.WEXITSTATUS(status):
            self.how = f"exit code {os.WEXITSTATUS(status)}"


class StandIn:
    """What stands in for the :class:`~remoteops.execution.Executor` the command line
    built, running its operations elsewhere (processes, a cluster): that executor
    gives the targets and every setting, holds the run's Ctrl-C and drain events,
    and never connects itself. A context manager; subclasses define ``close``."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self.targets = executor.targets

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop what runs elsewhere, then close the executor."""
        self.executor.close()

    @property
    def forks(self) -> int:
        """How many hosts are worked on at once, over all the shards."""
        return self.executor.forks

    @property
    def cancel_event(self) -> threading.Event:
        """Set by ``cancel()`` (a playbook stops between steps on it)."""
        return self.executor.cancel_event

    @property
    def drain_event(self) -> threading.Event:
        """Set by ``drain()``."""
        return self.executor.drain_event

    @property
    def drain_reason(self) -> str:
        """Why ``drain()`` was called."""
        return self.executor.drain_reason


class ShardedExecutor(StandIn):
    """An :class:`~remoteops.execution.Executor`'s run spread over ``procs`` worker processes.

    It stands in for the executor the command line built (``run_command``,
    ``ping``, ``operate``, ``cancel``, ``drain``, a context manager); that
    executor gives the targets and every setting and never connects itself.
    """

    def __init__(self, executor: Executor, procs: int) -> None:
        super().__init__(executor)
        self.procs = procs
        self._workers: list[_Worker] = []

    def cancel(self) -> None:
        """Stop every shard: no host starts, running commands are stopped (signal-safe)."""
        self.executor.cancel()
        for worker in self._workers:
            worker.signal(signal.SIGTERM)

    def drain(self, reason: str) -> None:
        """Start no more hosts in any shard; those started finish."""
        self.executor.drain(reason)
        for worker in self._workers:
            worker.send(("drain", reason))

    def close(self) -> None:
        """Stop and reap the workers still running, then close the executor.

        A worker still running is told to stop (its remote commands are stopped)
        and given :data:`_STOP_WAIT_S` to end; then it is killed.
        """
        for worker in self._workers:
            worker.reap(block=False)
            worker.signal(signal.SIGTERM)
            worker.conn.close()  # a worker writing to it now fails instead of blocking
        deadline = time.monotonic() + _STOP_WAIT_S
        for worker in self._workers:
            worker.end(max(0.0, deadline - time.monotonic()))
        self.executor.close()

    def run_command(
        self,
        spec: CommandSpec,
        *,
        on_line: LineSink | None = None,
        out_dir: Path | None = None,
    ) -> Iterator[HostResult]:
        """As ``Executor.run_command``; ``out_dir`` is started once, here, for all shards."""
        from remoteops.outdir import continue_run, start_run

        if out_dir is not None:
            start_run(out_dir)

        def op(executor: Executor, line: LineSink | None, _: ProgressSink | None) -> Any:
            if out_dir is not None:
                continue_run(out_dir)
            return executor.run_command(spec, on_line=line, out_dir=out_dir)

        return self.operate(op, on_line=on_line)

    def ping(self) -> Iterator[HostResult]:
        """As ``Executor.ping``."""
        return self.operate(lambda executor, _line, _progress: executor.ping())

    def operate(
        self,
        op: Operation,
        *,
        on_line: LineSink | None = None,
        progress: ProgressSink | None = None,
    ) -> Iterator[HostResult]:
        """Start the shards now (before any thread of the run starts) and yield each
        host's result as its shard reports it."""
        if self._workers:
            raise RuntimeError("a ShardedExecutor runs one operation")
        if threading.active_count() > 1:
            # Forking a threaded process can copy a lock some thread holds.
            logger.info("--procs: threads are running; this run stays in one process")
            return iter(op(self.executor, on_line, progress))
        shards = split(self.targets, self.procs)
        forks = max(1, math.ceil(self.forks / self.procs))
        # Keys are parsed here, once for all the workers; an encrypted key's
        # passphrase is asked for once, not by each worker at the same time.
        for path in dict.fromkeys(p for t in self.targets for p in t.identity_files):
            self.executor.credentials.key(path)
        # What start-up made lives on in every worker: frozen, the workers' cyclic
        # collector never walks it, so its pages stay shared with this process
        # instead of being copied on the first collection (cli.runtime.drive
        # freezes it too, for this process).
        gc.freeze()
        for index, share in enumerate(shards):
            self._workers.append(self._start(index, share, forks, op, on_line, progress))
        return self._collect(on_line, progress)

    def _start(
        self,
        index: int,
        share: list[Target],
        forks: int,
        op: Operation,
        on_line: LineSink | None,
        progress: ProgressSink | None,
    ) -> _Worker:
        parent_end, child_end = Pipe(duplex=True)
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:  # the worker: never returns
                _worker_main(
                    child_end,
                    [parent_end, *(worker.conn for worker in self._workers)],
                    share,
                    self.executor,
                    forks,
                    op,
                    lines=on_line is not None,
                    progress=progress is not None,
                    sigmask=previous,
                    name=f"shard {index + 1}/{self.procs}",
                )
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        child_end.close()
        return _Worker(pid, parent_end, {t.name: t for t in share})

    def _collect(
        self, on_line: LineSink | None, progress: ProgressSink | None
    ) -> Iterator[HostResult]:
        from remoteops.execution import host_result

        pending = list(self._workers)
        try:
            while pending:
                ready = wait([worker.conn for worker in pending], timeout=_TURN_S)
                for worker in [w for w in pending if w.conn in ready]:
                    try:
                        message = worker.conn.recv()
                    except Exception:  # EOF, or a message cut short by the worker's death
                        message = ("lost",)
                    kind = message[0]
                    if kind == "result":
                        result: HostResult = message[1]
                        worker.unfinished.pop(result.host, None)
                        yield result
                    elif kind == "line" and on_line is not None:
                        on_line(*message[1:])
                    elif kind == "progress" and progress is not None:
                        progress(*message[1:])
                    elif kind == "log":
                        record: logging.LogRecord = message[1]
                        logging.getLogger(record.name).handle(record)
                    elif kind in ("done", "lost"):
                        pending.remove(worker)
                        worker.end(_STOP_WAIT_S)
                        why = f"interrupted: worker process died ({worker.how or 'no report'})"
                        for name, target in list(worker.unfinished.items()):
                            del worker.unfinished[name]
                            yield host_result(target, "failed", error=why)
        finally:
            self.close()


def _worker_main(
    conn: Connection,
    inherited: list[Connection],
    share: list[Target],
    parent: Executor,
    forks: int,
    op: Operation,
    *,
    lines: bool,
    progress: bool,
    sigmask: set[int | signal.Signals],
    name: str,
) -> NoReturn:
    """A shard: run ``op`` on ``share`` with the parent's settings, report over ``conn``.

    ``inherited``: the parent's ends of the pipes, closed here: a copy held by a
    worker would keep another worker from seeing its pipe close when the parent
    is gone.
    """
    code = 1
    try:
        # The command line keeps the cyclic collector off while it starts
        # (cli.app.main); a worker may be forked before the parent turns it back
        # on, and its run of many hosts makes the cycles paramiko leaves.
        gc.enable()
        for other in inherited:
            other.close()
        from remoteops.execution import Executor

        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides on a Ctrl-C
        executor = Executor(
            share,
            credentials=parent.credentials,
            settings=parent.settings,
            timeouts=parent.timeouts,
            limits=dataclasses.replace(parent.limits, max_workers=forks),
        )
        signal.signal(signal.SIGTERM, lambda _signum, _frame: executor.cancel())
        signal.pthread_sigmask(signal.SIG_SETMASK, sigmask)
        lock = threading.Lock()

        def send(*message: Any) -> None:
            with lock:
                conn.send(message)

        def listen() -> None:
            try:
                while True:
                    kind, *rest = conn.recv()
                    if kind == "drain":
                        executor.drain(rest[0])
            except (EOFError, OSError):
                executor.cancel()  # the parent is gone: stop

        threading.Thread(target=listen, name=f"{name} control", daemon=True).start()
        _forward_logs(send)
        line_sink = (lambda host, stream, data: send("line", host, stream, data)) if lines else None
        progress_sink = (
            (lambda host, nbytes, files: send("progress", host, nbytes, files))
            if (progress)
            else None
        )
        start = time.monotonic()
        with executor:
            for result in op(executor, line_sink, progress_sink):
                send("result", result)
        send("done")
        usage = resource.getrusage(resource.RUSAGE_SELF)
        logger.debug(
            "%s: %d hosts in %.2fs, %.2fs of CPU",
            name,
            len(share),
            time.monotonic() - start,
            usage.ru_utime + usage.ru_stime,
        )
        code = 0
    except BaseException:
        logger.debug("%s failed", name, exc_info=True)
    finally:
        os._exit(code)


class _Forward(logging.Handler):
    """In a worker: each log record goes to the parent, whose handlers write it (the
    log file, stderr above a progress display, held back under ``-q``)."""

    def __init__(self, send: Callable[..., None]) -> None:
        super().__init__()
        self._send = send

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if record.exc_info:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.msg, record.args, record.exc_info = record.getMessage(), None, None
            self._send("log", record)
        except Exception:
            self.handleError(record)


def _forward_logs(send: Callable[..., None]) -> None:
    """Put :class:`_Forward` in place of the handlers this process was forked with."""
    forward = _Forward(send)
    for name in ("remoteops", "paramiko"):
        logger_ = logging.getLogger(name)
        for handler in list(logger_.handlers):
            logger_.removeHandler(handler)
        logger_.addHandler(forward)


def operate(
    executor: Executor | ShardedExecutor,
    op: Operation,
    *,
    on_line: LineSink | None = None,
    progress: ProgressSink | None = None,
) -> Iterator[HostResult]:
    """Run ``op`` on ``executor``: over its shards, or in this process."""
    if isinstance(executor, ShardedExecutor):
        return executor.operate(op, on_line=on_line, progress=progress)
    return iter(op(executor, on_line, progress))


def shard(executor: Executor, requested: int | None) -> Executor | ShardedExecutor:
    """``executor`` spread over the processes ``--procs`` asks for (itself for one)."""
    count = choose_procs(requested, len(executor.targets), executor.forks)
    if count <= 1:
        return executor
    logger.info("--procs: %d hosts over %d processes", len(executor.targets), count)
    return ShardedExecutor(executor, count)
