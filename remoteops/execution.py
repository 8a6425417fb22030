"""The engine: one thread pool, one session pool, one failure guard for every operation.

An operation is a function of one host's open session that returns that
host's ``HostResult`` (``remoteops.operations``: run, ping;
``remoteops.transfer``: put, get; a playbook's steps). The ``Executor`` fans
it out and yields each result as soon as its host finishes, so later stages
(the report, the analysis process pool) work while slow hosts are still
answering. Talking to hosts is I/O-bound: threads spend their time waiting on
sockets, and the GIL is released meanwhile.

``fan_out(work, targets)`` is the one way in: ``work(lease)`` runs in the
pool for each of ``targets`` (default: all of the executor's), handed a
``Lease``: the host's session, when its work began, how long connecting took.
``run_command``, ``ping``, ``transfer.put``/``get`` and the playbook runner
(one call per step, on the live hosts of a batch) all go through it.

The session pool: one connection per host, opened on first use with the
run's retries, connect deadline and cancellation, handed to every later
operation on that host, and closed at ``close()``. A pooled connection found
dropped is replaced by a new one; one whose work failed with a ``HostError``
(or an unexpected error) is closed, not reused. The pool keeps at most
``forks`` connections (a playbook asks for one per host, ``hold_sessions``):
beyond that the one idle longest is closed first, so a one-shot run over
thousands of hosts holds no more connections than it works on at once.

The failure guard: a host that is not started (cancel, drain) ends
``skipped``; a ``HostError`` becomes that host's result (its status and
message); anything else an "internal error" result. A failing host never
stops the run. When the work's first channel never opened (the server did
not answer, refused, or had closed the connection: ``NOTHING_RAN_ERRORS``),
nothing ran on the host: the host gets the operation's ``unreachable``
result, except that a pooled connection found closed is replaced by a new
one and the work runs on it.

Cancellation: ``cancel()`` (the CLI calls it on the first Ctrl-C or SIGTERM)
stops hosts from starting (``skipped``) and stops running commands
(``interrupted``), which end their remote processes. ``drain()`` (the CLI calls
it when its output pipe closes) only stops hosts from starting: the work of
hosts already started runs to its end, so none is left half-done. Both are for
good: a later operation on the same executor starts no host.

Lifetime: an ``Executor`` runs any number of operations in a row (each with
its connect deadlines and cancellation) and is closed once, by leaving its
``with`` block or calling ``close()``; that closes the pooled connections and
ends the watchdog, the jump host connections and the ssh-agent connection.
Closing it while an operation runs stops that operation first, as
``cancel()`` does.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import random
import resource
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remoteops.errors import (
    CommandTimeoutError,
    ConnectError,
    HostError,
)
from remoteops.hostkeys import HostKeyStore
from remoteops.operations.command import CommandSpec, run_on, sudo_refusal
from remoteops.operations.ping import ping_on
from remoteops.outdir import start_run
from remoteops.results import HostResult, RunResult
from remoteops.session import (
    NOTHING_RAN_ERRORS,
    Credentials,
    LineSink,
    Session,
    SessionClosedError,
    SessionSettings,
    Watchdog,
    connect,
)
from remoteops.target import Target

__all__ = [
    "CommandSpec",
    "Executor",
    "Lease",
    "Limits",
    "Timeouts",
    "default_forks",
    "error_result",
    "host_result",
    "sudo_refusal",
]

logger = logging.getLogger(__name__)

MAX_DEFAULT_FORKS = 256


def default_forks(host_count: int, *, nofile: int | None = None) -> int:
    """The default ``--forks``: every host at once, up to 256 and the open-file limit.

    Each host in flight holds about 3 file descriptors (its socket and the
    pipe paramiko makes for a channel's fileno()); a quarter of the soft
    ``RLIMIT_NOFILE`` is kept for everything else.
    """
    if nofile is None:
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    by_files = max(1, (nofile * 3 // 4) // 3)
    return max(1, min(host_count, MAX_DEFAULT_FORKS, by_files))


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per-host deadlines in seconds (None: no deadline)."""

    connect: float | None = None
    command: float | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    """How much work runs at once, and retries."""

    max_workers: int | None = None
    retries: int = 0
    retry_backoff: float = 0.5


@dataclass(slots=True)
class Lease:
    """One host's pooled session as the engine hands it to an operation.

    ``start`` is when the engine began the host's work (``time.monotonic()``,
    before connecting); ``connect_s`` how long connecting took (0.0: the
    pool's connection was reused); ``cancel`` the executor's Ctrl-C event, for
    the operation to stop on. ``discard()`` asks the engine to close the
    connection after this work instead of keeping it (its state is unknown).
    """

    session: Session
    start: float
    connect_s: float
    cancel: threading.Event
    discarded: bool = False

    @property
    def target(self) -> Target:
        """The host."""
        return self.session.target

    @property
    def reused(self) -> bool:
        """True when the session is the pool's, opened by an earlier operation."""
        return self.connect_s == 0.0

    def discard(self) -> None:
        """Close the connection when this work ends; the next operation connects afresh."""
        self.discarded = True


Work = Callable[[Lease], HostResult]
"""One host's part of an operation: runs on its ``Lease``, returns its result."""

Unreachable = Callable[[Target, HostError, float], HostResult]
"""The result of a host the engine could not connect to: (target, error, start)."""


class _WorkerFlag(threading.local):
    """Per thread: True in the threads of an operation's pool."""

    active = False


class Executor:
    """Run per-host operations on many targets: a bounded thread pool, one session per host.

    A context manager: it runs any number of operations in a row and is closed
    once, on leaving the ``with`` block or by ``close()``.
    """

    def __init__(
        self,
        targets: Sequence[Target],
        *,
        store: HostKeyStore | Callable[[Target], HostKeyStore] | None = None,
        credentials: Credentials | None = None,
        settings: SessionSettings | None = None,
        timeouts: Timeouts | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.targets = list(targets)
        self._store = store
        self.credentials = credentials or Credentials()
        self.timeouts = timeouts or Timeouts()
        self.settings = settings or SessionSettings(connect_timeout=self.timeouts.connect)
        self.limits = limits or Limits()
        self.cancel_event = threading.Event()
        self.drain_event = threading.Event()
        self.drain_reason = ""
        self.watchdog = Watchdog()
        self._stores: dict[tuple[str, ...], HostKeyStore] = {}
        self._stores_lock = threading.Lock()
        self._jumps: dict[str, Session] = {}
        self._jump_locks: dict[str, threading.Lock] = {}
        self._jumps_lock = threading.Lock()
        # The session pool: idle connections by host name, the one idle longest
        # first; a leased one is out of it until its work ends.
        self._idle: OrderedDict[str, Session] = OrderedDict()
        self._leased = 0
        self._pool_lock = threading.Lock()
        self._pool_size = self.forks
        # The thread pools of the operations under way, and whether close() was called.
        self._operations: list[ThreadPoolExecutor] = []
        self._state_lock = threading.Lock()
        self._closed = False
        self._worker = _WorkerFlag()
        # Releases the pooled and jump connections, the watchdog and the agent once:
        # at close(), or when an executor nobody closed is garbage collected.
        self._release = weakref.finalize(
            self, _release, self.watchdog, self._idle, self._jumps, self.credentials
        )
        self._release.atexit = False  # at exit the process takes them all anyway

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        """True once ``close()`` was called: no operation can start any more."""
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this Executor is closed; make a new one to run more work")

    @property
    def forks(self) -> int:
        """How many hosts are worked on at once."""
        return self.limits.max_workers or default_forks(len(self.targets))

    def cancel(self) -> None:
        """Stop starting hosts and stop running commands."""
        self.cancel_event.set()

    def drain(self, reason: str) -> None:
        """Start no more hosts (they end ``skipped``, "not started: REASON"); let the
        hosts already started finish their work."""
        if not self.drain_event.is_set():
            self.drain_reason = reason
            self.drain_event.set()

    def _store_for(self, target: Target) -> HostKeyStore:
        """The known_hosts files of this target (built once per distinct list of files)."""
        if isinstance(self._store, HostKeyStore):
            return self._store
        if self._store is not None:
            return self._store(target)
        files = tuple(target.known_hosts_files)
        with self._stores_lock:
            store = self._stores.get(files)
            if store is None:
                store = self._stores[files] = HostKeyStore(list(files))
            return store

    # ------------------------------------------------------------------ connect

    def _jump_session(self, target: Target) -> Session | None:
        """The shared connection through the target's ProxyJump chain (None: direct)."""
        if not target.proxy_jump:
            return None
        previous: Session | None = None
        for index, hop in enumerate(target.proxy_jump):
            key = ",".join(str(h) for h in target.proxy_jump[: index + 1])
            with self._jumps_lock:
                lock = self._jump_locks.setdefault(key, threading.Lock())
            with lock:
                session = self._jumps.get(key)
                if session is None or not session.transport.is_active():
                    hop_target = Target(
                        name=f"{target.name} (jump {hop})",
                        address=hop.host,
                        port=hop.port or 22,
                        user=hop.user or target.user,
                        identity_files=target.identity_files,
                        identities_only=target.identities_only,
                        known_hosts_files=target.known_hosts_files,
                        connect_timeout=target.connect_timeout,
                    )
                    session = connect(
                        hop_target,
                        store=self._store_for(target),
                        credentials=self.credentials,
                        settings=self.settings,
                        watchdog=self.watchdog,
                        jump=previous,
                        cancel=self.cancel_event,
                    )
                    self._jumps[key] = session
            previous = session
        return previous

    def _connect(self, target: Target, cancel: threading.Event) -> Session:
        if not self._release.alive:
            raise RuntimeError("this Executor is closed; make a new one to run more work")
        attempts = self.limits.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                jump = self._jump_session(target)
                return connect(
                    target,
                    store=self._store_for(target),
                    credentials=self.credentials,
                    settings=self.settings,
                    watchdog=self.watchdog,
                    jump=jump,
                    cancel=cancel,
                )
            except (ConnectError, CommandTimeoutError) as exc:
                # Only connection failures are retried: never auth or host keys.
                exc.attempts = attempt
                if attempt >= attempts or cancel.is_set():
                    raise
                delay = self.limits.retry_backoff * (2 ** (attempt - 1))
                delay *= 0.5 + random.random()
                logger.info(
                    "Host %r: %s; retry %d/%d in %.1fs",
                    target.name,
                    exc,
                    attempt,
                    self.limits.retries,
                    delay,
                )
                if cancel.wait(delay):
                    raise
        raise AssertionError("unreachable")

    def open_session(self, target: Target, *, cancel: threading.Event | None = None) -> Session:
        """A new connection to ``target``, outside the pool: the caller closes it.

        Made with this run's retries, credentials and connect deadline; ``cancel``
        (default: this executor's) stops it. For work that must not wait for, or
        disturb, the host's pooled session (removing a failed transfer's files).
        """
        return self._connect(target, self.cancel_event if cancel is None else cancel)

    # ------------------------------------------------------------------ session pool

    def hold_sessions(self, count: int) -> None:
        """Keep up to ``count`` connections open between operations (default: ``forks``).

        A playbook holds one per host of its plays, so that every step of every
        batch reuses the connection its first step opened.
        """
        with self._pool_lock:
            self._pool_size = max(self._pool_size, count)

    def _lease(self, target: Target) -> tuple[Session, float]:
        """The host's pooled session, or a new one; and how long connecting took."""
        with self._pool_lock:
            session = self._idle.pop(target.name, None)
            self._leased += 1
        try:
            if session is not None:
                if session.transport.is_active():
                    return session, 0.0
                logger.info("Host %r: the pooled connection was dropped; reconnecting", target.name)
                session.close()
            self._make_room()
            start = time.monotonic()
            return self._connect(target, self.cancel_event), time.monotonic() - start
        except BaseException:
            with self._pool_lock:
                self._leased -= 1
            raise

    def _make_room(self) -> None:
        """Close the connections idle longest while the pool is full."""
        evicted: list[Session] = []
        with self._pool_lock:
            while self._idle and len(self._idle) + self._leased > self._pool_size:
                evicted.append(self._idle.popitem(last=False)[1])
        for session in evicted:
            session.close()

    def _give_back(self, lease: Lease) -> None:
        """The lease's work ended: keep its session for the next operation, or close it."""
        session = lease.session
        with self._pool_lock:
            self._leased -= 1
            keep = not lease.discarded and self._release.alive and session.transport.is_active()
            if keep:
                old = self._idle.pop(session.target.name, None)
                self._idle[session.target.name] = session
        if not keep:
            session.close()
            return
        if old is not None and old is not session:
            old.close()
        self._make_room()

    # ------------------------------------------------------------------ fan-out

    def fan_out(
        self,
        work: Work,
        targets: Sequence[Target] | None = None,
        *,
        unreachable: Unreachable | None = None,
        despite_drain: bool = False,
    ) -> Iterator[HostResult]:
        """Run ``work`` on each of ``targets`` (default: all) from the pool; yield each
        host's result as it finishes.

        ``work`` gets the host's ``Lease`` (its pooled session) and raises a
        HostError for a host that fails: it becomes that host's result. A host
        that cannot be connected to gets ``unreachable(target, error, start)``
        (default: a result with the error's status and message). With
        ``despite_drain`` every host starts even after ``drain()`` (a playbook's
        batch in flight runs to its end); ``cancel()`` still stops them.
        """
        self._check_open()
        chosen = self.targets if targets is None else list(targets)
        return self._fan_out_pool(work, chosen, unreachable or _unreachable, despite_drain)

    def _guarded(
        self, work: Work, target: Target, unreachable: Unreachable, despite_drain: bool
    ) -> HostResult:
        """One host's work under the failure guard, on a session leased from the pool."""
        self._worker.active = True
        if self.cancel_event.is_set():
            return host_result(target, "skipped", error="not started: the run was interrupted")
        if self.drain_event.is_set() and not despite_drain:
            return host_result(target, "skipped", error=f"not started: {self.drain_reason}")
        start = time.monotonic()
        lease: Lease | None = None
        try:
            for _ in range(2):  # a pooled connection found closed is replaced, once
                try:
                    session, connect_s = self._lease(target)
                except HostError as exc:
                    return unreachable(target, exc, start)
                lease = Lease(session, start, connect_s, self.cancel_event)
                opened = session.channels_opened
                try:
                    return work(lease)
                except NOTHING_RAN_ERRORS as exc:
                    if session.channels_opened != opened:
                        raise  # an earlier channel of this work ran something
                    lease.discard()
                    closed = lease.reused and isinstance(exc, SessionClosedError)
                    if not closed or self.cancel_event.is_set():
                        return unreachable(target, exc, start)
                    logger.info(
                        "Host %r: the pooled connection was closed (%s); reconnecting",
                        target.name,
                        exc,
                    )
                    self._give_back(lease)
                    lease = None
            raise AssertionError("a replaced connection is not replaced again")
        except HostError as exc:
            if lease is not None:
                lease.discard()
            return error_result(target, exc, duration=time.monotonic() - start)
        except Exception as exc:
            if lease is not None:
                lease.discard()
            logger.debug("Host %r: unexpected error", target.name, exc_info=True)
            logger.error("Host %r: internal error %r (--debug shows where)", target.name, exc)
            return host_result(
                target,
                "failed",
                error=f"internal error: {exc!r}",
                duration=time.monotonic() - start,
            )
        finally:
            if lease is not None:
                self._give_back(lease)

    def _fan_out_pool(
        self, work: Work, targets: list[Target], unreachable: Unreachable, despite_drain: bool
    ) -> Iterator[HostResult]:
        if not targets:
            return
        workers = min(self.forks, len(targets))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="host")
        futures: dict[Future[HostResult], Target] = {}
        # Each future puts itself here when done: waiting costs the same for the
        # last result as for the first (concurrent.futures.wait() sets up and takes
        # down a waiter on every pending future at each call).
        finished: queue.SimpleQueue[Future[HostResult]] = queue.SimpleQueue()
        try:
            # Registered and submitted under the lock: close() sees this operation
            # whole (and waits for it) or not at all (and it does not start).
            with self._state_lock:
                self._check_open()
                self._operations.append(pool)
                for target in targets:
                    future = pool.submit(self._guarded, work, target, unreachable, despite_drain)
                    futures[future] = target
                    future.add_done_callback(finished.put)
            for _ in range(len(futures)):
                while True:  # each turn ends with a result or 0.25 s (Ctrl-C stays prompt)
                    try:
                        done = finished.get(timeout=0.25)
                    except queue.Empty:
                        continue
                    break
                yield done.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=False)
            with self._state_lock:
                if pool in self._operations:
                    self._operations.remove(pool)
                last = self._closed and not self._operations
            if last:  # close() was called from one of this operation's hosts
                self._release()

    def close(self) -> None:
        """Close the pooled and jump host connections, the ssh-agent connection and the
        watchdog; once.

        An operation still under way is stopped first, as by ``cancel()``, and
        its hosts are waited for (called from one of its hosts, the release
        waits until the operation ends). Later calls do nothing; a later
        operation raises RuntimeError.
        """
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
            running = list(self._operations)
        if running:
            self.cancel_event.set()
            if self._worker.active:
                return  # waiting here for this very thread would never end
            for pool in running:
                pool.shutdown(wait=True, cancel_futures=False)
        self._release()

    # ------------------------------------------------------------------ operations

    def run_command(
        self,
        spec: CommandSpec,
        *,
        on_line: LineSink | None = None,
        out_dir: Path | None = None,
        on_bytes: Callable[[str, str, bytes], None] | None = None,
    ) -> Iterator[HostResult]:
        """Run ``spec`` on every target; yield each host's result as it finishes.

        With ``out_dir``, what the previous run wrote there is removed first
        (:mod:`remoteops.outdir`; ``UsageError`` if it cannot be), before any
        host is contacted. ``on_bytes(host, stream, data)`` gets each host's exact
        output as it arrives, and ``(host, "start", b"")`` as its command starts.
        """
        self._check_open()
        if out_dir is not None:
            start_run(out_dir)

        def work(lease: Lease) -> HostResult:
            host_bytes = None
            if on_bytes is not None:
                host = lease.target.name
                on_bytes(host, "start", b"")
                host_bytes = functools.partial(on_bytes, host)
            return run_on(
                lease.session,
                spec,
                cancel=self.cancel_event,
                timeout=self.timeouts.command,
                on_line=on_line,
                out_dir=out_dir,
                start=lease.start,
                on_bytes=host_bytes,
            )

        return self.fan_out(work)

    def ping(self) -> Iterator[HostResult]:
        """Connect and authenticate only; report round-trip time and server version."""

        def work(lease: Lease) -> HostResult:
            return ping_on(
                lease.session,
                watchdog=self.watchdog,
                connect_s=lease.connect_s,
                start=lease.start,
            )

        return self.fan_out(work)

    def run(self, spec: CommandSpec) -> RunResult:
        """Run ``spec`` everywhere and return the whole RunResult."""
        start = time.monotonic()
        result = RunResult()
        for host_result in self.run_command(spec):
            result.add(host_result)
        result.duration_s = time.monotonic() - start
        return result


def _release(
    watchdog: Watchdog,
    idle: OrderedDict[str, Session],
    jumps: dict[str, Session],
    credentials: Credentials,
) -> None:
    """What an executor holds until it is closed: the pooled connections (closed
    together), then the jump connections under them, the agent, the watchdog."""
    sessions = list(idle.values())
    idle.clear()
    if sessions:
        with ThreadPoolExecutor(min(len(sessions), 32), thread_name_prefix="close") as pool:
            for future in [pool.submit(s.close) for s in sessions]:
                with contextlib.suppress(Exception):
                    future.result()
    for session in list(jumps.values()):
        session.close()
    jumps.clear()
    watchdog.stop()
    credentials.close()


def _unreachable(target: Target, exc: HostError, start: float) -> HostResult:
    return error_result(target, exc, duration=time.monotonic() - start)


def host_result(
    target: Target,
    status: str,
    *,
    error: str | None = None,
    duration: float = 0.0,
    extra: Mapping[str, Any] | None = None,
) -> HostResult:
    """A result for ``target`` with no command output (refused, skipped, local checks)."""
    return HostResult(
        host=target.name,
        address=target.address,
        port=target.port,
        status=status,  # type: ignore[arg-type]
        error=error,
        duration_s=duration,
        extra=dict(extra or {}),
    )


def error_result(target: Target, exc: HostError, *, duration: float) -> HostResult:
    """The result of a host that failed with ``exc``; when connecting was retried,
    ``attempts`` (in JSON too) says how many times it was tried."""
    extra = {"attempts": exc.attempts} if exc.attempts > 1 else None
    return host_result(target, exc.status, error=str(exc), duration=duration, extra=extra)
