"""The analysis stage: a bounded queue fed by the run, drained into a process pool.

The SSH side is I/O-bound and runs in threads; analysis is CPU-bound and runs
in worker processes (the GIL would serialise threads). ``submit()`` puts a
finished host on a bounded queue (it blocks when analysis falls behind: back
pressure, not unbounded memory); a feeder thread plans tasks (one per
document, or one per byte range of a big file for splittable analyzers) and
keeps a few of them in flight in a ``ProcessPoolExecutor`` started with
``forkserver`` (never ``fork`` from a threaded process). The workers start in
a thread of their own (the forkserver is a new interpreter that imports the
analyzers: 0.1-0.3 s); until they are up, the feeder runs the tasks of built-in
analyzers in this process. It starts them only after running tasks here for a
moment: when all the input is queued and the rest would take this process less
than the workers are worth, no worker starts.
``finish()`` waits for both and reduces the partial results in this process.

A worker that dies takes the whole pool down (``BrokenProcessPool``): the pool
is rebuilt and every task that was in flight is run again, alone, one
analyzer at a time, so only the input that kills a worker twice is reported
as an error. ``cancel()`` (Ctrl-C) and ``close()`` terminate and reap the
workers, and the forkserver when no stage is left.

Given a Dask ``distributed`` client (``cluster=``, ``--cluster``), the same
tasks go to the cluster's workers instead of the pool: a worker on another
machine cannot read this machine's files, so each task carries its bytes (a
file is read in its byte ranges of at most ``chunk_size``, and a task of
whole-document analyzers carries the whole document, as a pool worker would
read it); two tasks per worker thread are in flight, and at most
``CLUSTER_INFLIGHT_BYTES`` of them (one task at least), so memory stays
bounded. ``cancel()`` cancels the tasks in flight. Results are reduced here,
as with the pool, so they are the same.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from remoteops.analysis import prefilter
from remoteops.analysis.builtins import BUILTINS
from remoteops.analysis.model import AnalysisReport, AnalyzerSpec, Document, Section
from remoteops.analysis.registry import check_spec, parse_spec, resolve
from remoteops.analysis.worker import Task, init_worker, run_task, worker_ready
from remoteops.logconfig import LogSettings
from remoteops.results import HostResult

if TYPE_CHECKING:
    from distributed import Client
    from distributed import Future as _ClusterFuture

    ClusterFuture = _ClusterFuture[list[tuple[int, bool, Any]]]

__all__ = ["CLUSTER_INFLIGHT_BYTES", "AnalysisStage", "default_workers"]

logger = logging.getLogger(__name__)

INLINE_MAX: Final = 64 * 1024
CHUNK_SIZE: Final = 16 * 1024 * 1024
_DONE: Final = object()
# The bytes of documents in flight to a cluster at most (one task whatever its size).
CLUSTER_INFLIGHT_BYTES: Final = 256 * 1024 * 1024
# A task carrying more than this sends its document to a worker ahead of the task
# (Client.scatter), not inside the task through the scheduler.
_SCATTER_OVER: Final = 1024 * 1024
# Seconds to fetch a finished task's result from its worker (a few KiB).
_RESULT_TIMEOUT: Final = 60.0
_CRASHED: Final = (
    "the analysis worker process died on this input (killed, out of memory or a crash "
    "in native code); the other inputs were analysed"
)
_CRASHED_ON_CLUSTER: Final = (
    "the cluster's workers died on this input (killed, out of memory or a crash in native "
    "code, on every worker that tried it); the other inputs were analysed"
)

_forkserver_users = 0


class _Cancelled(Exception):
    """The stage was cancelled while the feeder was about to start work."""


_forkserver_lock = threading.Lock()


def default_workers() -> int:
    """One worker per CPU this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _log_settings() -> LogSettings | None:
    """The log file this process writes to, for workers to write to the same one."""
    for handler in logging.getLogger("remoteops").handlers:
        filename = getattr(handler, "baseFilename", None)
        if filename and getattr(handler, "_remoteops_handler", False):
            return LogSettings(log_file=Path(filename), file_level=handler.level)
    return None


def _context() -> Any:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["remoteops.analysis.worker"])
    _main_is_remoteops_module()
    return ctx


def _main_is_remoteops_module() -> None:
    """Run as the ``remoteops`` command, ``__main__`` counts as ``remoteops.__main__``.

    The command's script only calls :func:`remoteops.cli.console_main`, as
    ``python -m remoteops`` does. But a script has no module name, so
    ``multiprocessing`` would run it again in every new worker (importing the
    whole command line: ~100 ms of CPU each, for nothing the workers use);
    under the module's name it leaves ``__main__`` alone, as for ``-m``.
    """
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None:
        return
    cli = sys.modules.get("remoteops.cli")
    entry = getattr(cli, "console_main", None)
    if entry is None or getattr(main, "console_main", None) is not entry:
        return
    from importlib.util import find_spec

    with contextlib.suppress(ImportError, ValueError):
        main.__spec__ = find_spec("remoteops.__main__")


def _stop_forkserver() -> None:
    """Stop the forkserver this process started, and anything it forked that is left."""
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    pid = getattr(server, "_forkserver_pid", None)
    if server is None or not isinstance(pid, int):
        return
    for child in _children(pid):
        with contextlib.suppress(OSError):
            os.kill(child, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.close(server._forkserver_alive_fd)  # the forkserver exits at EOF
    # It holds nothing to clean up (its socket is abstract, or unlinked below),
    # and a graceful exit tears its interpreter down first (30-50 ms): kill it.
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    for attempt in range(10_000):
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == 0 and time.monotonic() < deadline:
                time.sleep(0.001 * 2 ** min(attempt, 6))  # gone within a millisecond or two
                continue
        break
    address = server._forkserver_address
    if isinstance(address, str) and not address.startswith("\0"):
        with contextlib.suppress(OSError):
            os.unlink(address)
    server._forkserver_pid = None
    server._forkserver_alive_fd = None
    server._forkserver_address = None


def _children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (Linux /proc; empty elsewhere).

    The kernel lists the children of a single-threaded process (such as the
    forkserver) in one file; without it, every process's stat is read.
    """
    try:
        listed = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(child) for child in listed.split()]
    except (OSError, ValueError):
        pass
    found = []
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
    return found


def _runs_here(task: Task) -> bool:
    """Whether ``task`` may run in this process: built-in analyzers only.

    A plugin may crash its process (native code, ``os._exit``), which a worker
    may do and this process may not.
    """
    return all(name in BUILTINS for _index, name, _config in task.items)


# Run tasks here this long (seconds) before deciding whether to start workers,
# and start none when the rest would take less than _POOL_WORTH here.
# Measured (benchmarks/analyze_bench.py, 2 CPUs): the workers are up 0.13-0.35 s
# after the pool starts, and that start slows this process meanwhile.
_PROBE: Final = 0.04
_PROBE_UNFINISHED: Final = 0.1  # while finish() is still to come
_POOL_WORTH: Final = 0.5


def _task_bytes(task: Task) -> int:
    """The bytes of the input ``task`` reads (its range, its file or its data)."""
    doc = task.doc
    if doc.data is not None:
        return len(doc.data)
    if doc.path is None:
        return 0
    if doc.end is not None:
        return doc.end - doc.start
    try:
        return os.stat(doc.path).st_size - doc.start
    except OSError:
        return 0


def _kill_pool(pool: ProcessPoolExecutor) -> None:
    """Terminate and reap every worker of ``pool``, then shut it down.

    Workers go first: a worker still starting up must not find the pool's
    queues already gone (shutdown alone would also wait for running tasks).
    """
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for proc in processes:
        with contextlib.suppress(OSError, ValueError):
            proc.terminate()
    for proc in processes:
        with contextlib.suppress(ValueError):
            proc.join(5)
            if proc.is_alive():
                proc.kill()
                proc.join(5)
    pool.shutdown(wait=False, cancel_futures=True)


class AnalysisStage:
    """Run analyzers over results as they arrive, in a process pool; a context manager.

    ``specs`` are ``AnalyzerSpec``s or ``"NAME[:ARGS]"`` strings (checked now:
    ``UsageError`` for bad ones). ``workers``: processes in the pool (default:
    one per CPU); ``0`` runs the analyzers in this process, in a thread.
    ``cluster``: a Dask ``distributed.Client`` whose workers run the tasks
    instead (``workers`` is then unused); the caller closes it.

    ```python
    with AnalysisStage(["group:normalize", "grep:ERROR"]) as stage:
        for result in executor.run_command(spec):
            stage.submit(result)
        report = stage.finish()
    print(report.render_text())
    ```
    """

    def __init__(
        self,
        specs: Sequence[AnalyzerSpec | str],
        *,
        workers: int | None = None,
        queue_size: int = 64,
        inline_max: int = INLINE_MAX,
        chunk_size: int = CHUNK_SIZE,
        log_settings: LogSettings | None = None,
        cluster: Client | None = None,
    ) -> None:
        self.specs = [parse_spec(s) if isinstance(s, str) else s for s in specs]
        self._configs = [check_spec(s) for s in self.specs]
        self.workers = default_workers() if workers is None else workers
        self._inline_max = inline_max
        self._chunk_size = chunk_size
        self._log_settings = log_settings if log_settings is not None else _log_settings()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, queue_size))
        self._cancelled = threading.Event()
        self._partials: list[list[tuple[Document, Any]]] = [[] for _ in self.specs]
        self._errors: list[list[dict[str, Any]]] = [[] for _ in self.specs]
        self._feeder: threading.Thread | None = None
        # Set by the feeder as it ends. Not Thread.is_alive(): after a join() that
        # KeyboardInterrupt broke, is_alive() can say False while the thread runs.
        self._feeder_done = threading.Event()
        self._pool: ProcessPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._spill_dir: Path | None = None
        self._uses_forkserver = False
        self._closed = False
        # Tasks this process ran itself while the pool's workers were starting.
        self.tasks_run_here = 0
        self._pool_starter: threading.Thread | None = None
        self._pool_ready = threading.Event()
        self._finished = False
        self.on_document_done: Callable[[Document], None] | None = None
        self._cluster = cluster
        # Why the cluster's scheduler was lost during the analysis (then stopped), or None.
        self.cluster_lost: str | None = None

    # ------------------------------------------------------------------ public

    def on_cluster(self, client: Client | None) -> AnalysisStage:
        """Run the analyzers on ``client``'s workers (None: locally); before ``start()``.

        Returns the stage, for ``with stage.on_cluster(client):``.
        """
        assert self._feeder is None, "on_cluster() after start()"
        self._cluster = client
        return self

    def __enter__(self) -> AnalysisStage:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the feeder thread (the pool starts with the first task)."""
        if self._feeder is None:
            self._feeder = threading.Thread(target=self._feed, name="analysis-feeder", daemon=True)
            self._feeder.start()

    def submit(
        self,
        result: HostResult,
        *,
        paths: Mapping[str, str | Path] | None = None,
        name: str = "stdout",
    ) -> None:
        """Queue one host for analysis; blocks while the queue is full (back pressure).

        Without ``paths`` the host's stdout is analysed as the document ``name``
        (large outputs are spilled to a private temporary file and reach
        workers by path); with
        ``paths`` ({document name: local file}) those files are analysed
        instead, by path, e.g. an ``--out-dir`` file or downloaded files.
        """
        base = Document(result.host, name, status=result.status, exit_code=result.exit_code)
        if paths is not None:
            for name, path in paths.items():
                self.submit_document(replace(base, name=name, path=str(path)))
            return
        if len(result.stdout) > self._inline_max:
            self.submit_document(replace(base, path=self._spill(result)))
        else:
            self.submit_document(replace(base, data=result.stdout))

    def submit_document(self, doc: Document) -> None:
        """Queue one document (lower level than ``submit``)."""
        if self._feeder is None:
            self.start()
        for _ in range(10**9):
            if self._cancelled.is_set():
                return
            try:
                self._queue.put(doc, timeout=0.2)
                return
            except queue.Full:
                continue

    def finish(self) -> AnalysisReport:
        """Wait until every queued document is analysed; reduce and return the report."""
        if not self._finished:
            self._finished = True
            if self._feeder is not None:
                self._put_done()
                while not self._feeder_done.wait(0.2):
                    pass
        return self._report()

    def cancel(self) -> None:
        """Stop analysing (safe from a signal handler: it only sets a flag)."""
        self._cancelled.set()

    def cancel_with(self, other: Callable[[], None]) -> Callable[[], None]:
        """A cancel function that calls ``other`` (e.g. ``Executor.cancel``) and ``cancel``."""

        def cancel_both() -> None:
            other()
            self.cancel()

        return cancel_both

    def close(self) -> None:
        """Stop the feeder and the workers (terminated and reaped); remove spilled files."""
        if self._closed:
            return
        self._closed = True
        if self._feeder is not None:
            self._cancelled.set()
            prefilter.stop(self._feeder.ident)  # a grep it runs ends now (killed, reaped)
            # The feeder ends at its next check; a worker it is starting may take a
            # while on a loaded machine, and must not outlive the forkserver.
            for _ in range(1200):
                if self._feeder_done.wait(0.1):
                    break
        starter = self._pool_starter
        if starter is not None:  # it may be starting a worker, which must not be left
            starter.join(120)
        self._drop_pool()
        if self._uses_forkserver:
            global _forkserver_users
            with _forkserver_lock:
                _forkserver_users -= 1
                if _forkserver_users == 0:
                    _stop_forkserver()
        if self._spill_dir is not None:
            shutil.rmtree(self._spill_dir, ignore_errors=True)

    # ------------------------------------------------------------------ parent side

    def _put_done(self) -> None:
        for _ in range(10**9):
            if self._cancelled.is_set() or self._feeder_done.is_set():
                return
            try:
                self._queue.put(_DONE, timeout=0.2)
                return
            except queue.Full:
                continue

    def _spill(self, result: HostResult) -> str:
        if self._spill_dir is None:
            self._spill_dir = Path(tempfile.mkdtemp(prefix="remoteops-analysis-"))
        path = self._spill_dir / f"{len(os.listdir(self._spill_dir))}.out"
        with open(path, "xb") as fh:
            fh.write(result.stdout)
        return str(path)

    def _report(self) -> AnalysisReport:
        report = AnalysisReport(interrupted=self._cancelled.is_set())
        for index, spec in enumerate(self.specs):
            try:
                section = resolve(spec.name).reduce(
                    spec, self._configs[index], self._partials[index]
                )
            except Exception as exc:
                logger.debug("analyzer %s: reduce failed", spec, exc_info=True)
                section = Section(spec, "failed")
                section.errors.append(
                    {"host": "-", "document": None, "error": f"{type(exc).__name__}: {exc}"}
                )
            section.errors.extend(self._errors[index])
            report.sections.append(section)
        return report

    def _plan(self, doc: Document) -> list[Task]:
        split: list[tuple[int, str, Any]] = []
        whole: list[tuple[int, str, Any]] = []
        for index, spec in enumerate(self.specs):
            item = (index, spec.name, self._configs[index])
            (split if resolve(spec.name).splittable else whole).append(item)
        size = 0
        if doc.path is not None and split:
            try:
                size = os.stat(doc.path).st_size
            except OSError as exc:
                self._record_error([(i, n, c) for i, n, c in split + whole], doc, str(exc))
                return []
        if size <= self._chunk_size:
            return [Task(doc, tuple(split + whole))]
        tasks = [
            Task(replace(doc, start=start, end=min(start + self._chunk_size, size)), tuple(split))
            for start in range(0, size, self._chunk_size)
        ]
        if whole:
            tasks.append(Task(doc, tuple(whole)))
        return tasks

    def _record(self, task: Task, outcome: list[tuple[int, bool, Any]]) -> None:
        key = replace(task.doc, data=None)
        for index, ok, value in outcome:
            if ok:
                self._partials[index].append((key, value))
            else:
                self._errors[index].append(
                    {"host": task.doc.host, "document": task.doc.name, "error": value}
                )
        if self.on_document_done is not None:
            self.on_document_done(key)

    def _record_error(self, items: list[tuple[int, str, Any]], doc: Document, error: str) -> None:
        for index, _name, _config in items:
            self._errors[index].append({"host": doc.host, "document": doc.name, "error": error})

    # ------------------------------------------------------------------ feeder thread

    def _ensure_pool(self) -> ProcessPoolExecutor:
        with self._pool_lock:
            if self._closed or self._cancelled.is_set():  # the pool is (being) dropped
                raise _Cancelled
            if self._pool is None:
                if not self._uses_forkserver:
                    global _forkserver_users
                    with _forkserver_lock:
                        _forkserver_users += 1
                    self._uses_forkserver = True
                self._pool = ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=_context(),
                    initializer=init_worker,
                    initargs=(self._log_settings, list(sys.path)),
                )
            return self._pool

    def _submit(self, task: Task) -> Future[list[tuple[int, bool, Any]]]:
        if self._cancelled.is_set():
            raise _Cancelled
        try:
            return self._ensure_pool().submit(run_task, task)
        except BrokenProcessPool:
            self._drop_pool()
            return self._ensure_pool().submit(run_task, task)

    def _drop_pool(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            _kill_pool(pool)

    def _feed(self) -> None:
        try:
            if self._cluster is not None:
                self._feed_cluster(self._cluster)
            elif self.workers == 0:
                self._feed_inline()
            else:
                self._feed_pool()
        except _Cancelled:
            pass
        except Exception as exc:
            if self._cancelled.is_set():
                logger.debug("analysis feeder stopped while cancelled: %r", exc)
            else:
                logger.exception("analysis stopped by an internal error")
                self._cancelled.set()
        finally:
            if self._cancelled.is_set():
                self._drop_pool()
            self._feeder_done.set()

    def _next(self, timeout: float) -> Any:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _take_input(self, pending: deque[Task], timeout: float) -> bool:
        """Plan the next document queued (waiting up to ``timeout``) into ``pending``;
        False once the input has ended."""
        item = self._next(timeout)
        if item is _DONE:
            return False
        if item is not None:
            pending.extend(self._plan(item))
        return True

    def _feed_inline(self) -> None:
        while not self._cancelled.is_set():
            doc = self._next(0.2)
            if doc is _DONE:
                return
            if doc is not None:
                for task in self._plan(doc):
                    if self._cancelled.is_set():
                        return
                    self._record(task, run_task(task))

    def _feed_pool(self) -> None:
        limit = self.workers * 2
        pending: deque[Task] = deque()
        retry: deque[Task] = deque()
        inflight: dict[Future[list[tuple[int, bool, Any]]], Task] = {}
        input_open = True
        for _ in range(10**9):  # the pool starts with the first task
            if self._cancelled.is_set() or pending or not input_open:
                break
            input_open = self._take_input(pending, 0.2)
        if not pending:
            return
        input_open = self._work_before_the_pool(pending, input_open)
        if not pending and not input_open:
            return  # all done here: cheaper than starting workers
        self._start_pool()
        input_open = self._work_while_the_pool_starts(pending, input_open)
        while not self._cancelled.is_set():
            # Retries run alone, so a second crash can only be theirs.
            if retry and not inflight:
                task = retry.popleft()
                inflight[self._submit(task)] = task
            while not retry and pending and len(inflight) < limit:
                task = pending.popleft()
                inflight[self._submit(task)] = task
            if input_open and not retry and not pending and len(inflight) < limit:
                input_open = self._take_input(pending, 0.05 if inflight else 0.2)
                if pending:
                    continue
            if inflight:
                done, _ = wait(list(inflight), timeout=0.1, return_when=FIRST_COMPLETED)
                broken = False
                for future in done:
                    task = inflight.pop(future)
                    error = future.exception()
                    if error is None:
                        self._record(task, future.result())
                    elif isinstance(error, BrokenProcessPool):
                        broken = True
                        self._crashed(task, retry)
                    else:
                        self._record_error(list(task.items), task.doc, f"{error!r}")
                if broken:
                    # The broken pool fails every other task in flight; they run again too.
                    for future, task in list(inflight.items()):
                        del inflight[future]
                        if future.done() and not future.cancelled() and not future.exception():
                            self._record(task, future.result())
                        else:
                            self._crashed(task, retry)
                    self._drop_pool()
            elif not input_open and not pending and not retry:
                return

    def _feed_cluster(self, client: Client) -> None:
        """Send the tasks to the cluster's workers; see the module's docstring."""
        threads = sum(client.nthreads().values())
        logger.info("analysis: tasks go to the cluster's workers (%d threads)", threads)
        limit = 2 * max(1, threads)
        finished: queue.Queue[ClusterFuture] = queue.Queue()
        pending: deque[Task] = deque()
        inflight: dict[ClusterFuture, tuple[Task, int]] = {}
        inflight_bytes = 0
        input_open = True
        try:
            while not self._cancelled.is_set():
                while pending and len(inflight) < limit and not self._cancelled.is_set():
                    size = _task_bytes(pending[0])
                    if inflight and inflight_bytes + size > CLUSTER_INFLIGHT_BYTES:
                        break
                    task = pending.popleft()
                    future = self._submit_to_cluster(client, task)
                    if future is not None:
                        inflight[future] = (task, size)
                        inflight_bytes += size
                        future.add_done_callback(finished.put)
                if input_open and not pending and len(inflight) < limit:
                    input_open = self._take_input(pending, 0.05 if inflight else 0.2)
                    if pending:
                        continue
                if inflight:
                    try:
                        future = finished.get(timeout=0.1)
                    except queue.Empty:
                        self._check_scheduler(client)
                        continue
                    task, size = inflight.pop(future)
                    inflight_bytes -= size
                    self._collect(future, task)
                elif not input_open and not pending:
                    return
        finally:
            if inflight:  # cancelled, or an internal error: nothing is left running
                with contextlib.suppress(Exception):
                    client.cancel(list(inflight))

    def _submit_to_cluster(self, client: Client, task: Task) -> ClusterFuture | None:
        """Submit ``task`` with its document's bytes in it (None: the file could not
        be read, recorded as the analyzers' error, as a worker would report it)."""
        doc = task.doc
        if doc.data is None and doc.path is not None:
            try:
                data = doc.read()
            except OSError as exc:
                self._record_error(list(task.items), doc, f"{type(exc).__name__}: {exc}")
                return None
            task = replace(task, doc=replace(doc, data=data, path=None, start=0, end=None))
        if len(task.doc.data or b"") > _SCATTER_OVER:
            [carried] = client.scatter([task], hash=False)
            return client.submit(run_task, carried, pure=False)
        return client.submit(run_task, task, pure=False)

    def _check_scheduler(self, client: Client) -> bool:
        """Whether ``client`` still has its scheduler; if not, stop as Ctrl-C would
        (what was analysed is kept) and say why in ``cluster_lost``."""
        if client.status in ("running", "newly-created"):
            return True
        if self.cluster_lost is None:
            self.cluster_lost = "the scheduler went away during the analysis"
            logger.info("cluster: %s (client %s)", self.cluster_lost, client.status)
        self._cancelled.set()
        return False

    def _collect(self, future: ClusterFuture, task: Task) -> None:
        """Record the outcome of a cluster task: its result, or its error for its analyzers."""
        try:
            outcome = future.result(timeout=_RESULT_TIMEOUT)
        except Exception as exc:
            if self._cluster is not None and not self._check_scheduler(self._cluster):
                return  # not analysed, as after Ctrl-C: not an error of this input
            if type(exc).__name__ == "KilledWorker":
                error = _CRASHED_ON_CLUSTER
            else:
                error = f"{type(exc).__name__}: {exc}"
            logger.debug("Host %r: cluster task failed: %r", task.doc.host, exc)
            self._record_error(list(task.items), task.doc, error)
            return
        self._record(task, outcome)

    def _start_pool(self) -> None:
        """Start the pool's workers in a thread of their own (see below)."""
        self._pool_starter = threading.Thread(
            target=self._start_workers, name="analysis-pool-start", daemon=True
        )
        self._pool_starter.start()

    def _start_workers(self) -> None:
        # The first task sent to a new pool waits for the forkserver: a new
        # interpreter that imports the analyzers (0.1-0.3 s of CPU) before it
        # forks a worker. Sent from here, that wait costs the feeder nothing.
        try:
            pool = self._ensure_pool()
            started = [pool.submit(worker_ready) for _ in range(self.workers)]
            for _ in range(3000):
                if not wait(started, timeout=0.1).not_done or self._cancelled.is_set():
                    break
        except (_Cancelled, BrokenProcessPool, RuntimeError) as exc:
            logger.debug("analysis pool start: %r", exc)
        finally:
            self._pool_ready.set()

    def _work_while_the_pool_starts(self, pending: deque[Task], input_open: bool) -> bool:
        """Run tasks in this process until the workers are up; returns ``input_open``.

        Only built-in analyzers run here: a plugin may crash its process.
        """
        for _ in range(10**9):
            if self._pool_ready.is_set() or self._cancelled.is_set():
                break
            if not pending:
                if not input_open:
                    break
                input_open = self._take_input(pending, 0.02)
                continue
            if not self._run_here(pending):
                self._pool_ready.wait(0.05)
        return input_open

    def _work_before_the_pool(self, pending: deque[Task], input_open: bool) -> bool:
        """Run tasks here for a moment, and on to the end when that is sooner than
        the pool would be worth it; returns ``input_open``.

        Starting the workers costs a new interpreter that imports the analyzers
        (0.1-0.3 s of CPU, taken from this process's work on 2 CPUs), and only
        the work left after it is shared. So this process runs tasks for at least
        ``_PROBE`` seconds, measuring its bytes per second; once all the input is
        queued (``finish()`` was called, which it waits ``_PROBE_UNFINISHED`` for)
        and what is left would take less than ``_POOL_WORTH`` seconds here, it does
        it all and no worker is started. Otherwise (a run still feeding the stage,
        or more work) the workers start, this process working on until they are up.
        """
        started = time.monotonic()
        done_bytes = 0
        for _ in range(10**9):
            if self._cancelled.is_set() or not pending or not _runs_here(pending[0]):
                return input_open
            task = pending[0]
            self._run_here(pending)
            if done_bytes == 0 and time.monotonic() - started < _PROBE:
                # A short first task is mostly warming up (compiling, allocating): not measured.
                started = time.monotonic()
                done_bytes = 1
            else:
                done_bytes += _task_bytes(task)
            for _ in range(10**6):  # plan what is queued; wait a moment for more
                if not input_open or pending:
                    break
                if self._queue.empty() and time.monotonic() - started >= _PROBE_UNFINISHED:
                    break
                input_open = self._take_input(pending, 0.01)
            elapsed = time.monotonic() - started
            if not pending and not input_open:
                return input_open
            if elapsed < _PROBE or (not self._finished and elapsed < _PROBE_UNFINISHED):
                continue  # (the submitting thread may be waiting for the GIL)
            if not self._finished:
                return input_open  # more may come: the workers are worth starting
            for _ in range(10**6):  # all the input is queued: plan it
                if not input_open:
                    break
                waited = self._queue.empty()
                input_open = self._take_input(pending, 0.01)
                if waited and input_open:
                    return input_open  # the end of the input is not there yet
            left = sum(map(_task_bytes, pending)) * elapsed / done_bytes
            if left >= _POOL_WORTH or not all(map(_runs_here, pending)):
                return input_open
            while pending and not self._cancelled.is_set():  # sooner here than with workers
                self._run_here(pending)
            return input_open
        return input_open

    def _run_here(self, pending: deque[Task]) -> bool:
        """Run the next pending task in this process if it may (see ``_runs_here``)."""
        if not _runs_here(pending[0]):
            return False
        task = pending.popleft()
        self._record(task, run_task(task))
        self.tasks_run_here += 1
        return True

    def _crashed(self, task: Task, retry: deque[Task]) -> None:
        if task.alone:
            logger.warning(
                "Host %r: analysis worker died on %s (%s)",
                task.doc.host,
                task.doc.name,
                ", ".join(name for _, name, _ in task.items),
            )
            self._record_error(list(task.items), task.doc, _CRASHED)
            return
        for item in task.items:
            retry.append(Task(task.doc, (item,), alone=True))
