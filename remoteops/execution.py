"""The engine: a bounded thread pool fanning work out to hosts, results streamed back.

``Executor.run_command()`` and ``Executor.ping()`` yield each ``HostResult`` as
soon as its host finishes, so later stages (the report, the analysis process
pool) work while slow hosts are still answering. A failing host produces a
failed result; it never stops the run. Talking to hosts is I/O-bound: threads
spend their time waiting on sockets, and the GIL is released meanwhile.

Cancellation: ``cancel()`` (the CLI calls it on the first Ctrl-C or SIGTERM)
stops hosts from starting (``skipped``) and stops running commands
(``interrupted``), which end their remote processes. ``drain()`` (the CLI calls
it when its output pipe closes) only stops hosts from starting: the work of
hosts already started runs to its end, so none is left half-done. Both are for
good: a later operation on the same executor starts no host.

Lifetime: an ``Executor`` runs any number of operations in a row (each with
its connect deadlines and cancellation) and is closed once, by leaving its
``with`` block or calling ``close()``; that ends the watchdog, the jump host
connections and the ssh-agent connection. Closing it while an operation runs
stops that operation first, as ``cancel()`` does.
"""

from __future__ import annotations

import logging
import queue
import random
import re
import resource
import secrets
import shlex
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from remoteops.become import Become
from remoteops.errors import (
    CommandTimeoutError,
    ConnectError,
    HostError,
)
from remoteops.hostkeys import HostKeyStore
from remoteops.outdir import OutDirSink, start_run, write_exit
from remoteops.results import HostResult, RunResult
from remoteops.session import (
    DEFAULT_MAX_OUTPUT,
    Credentials,
    ExecResult,
    LineSink,
    PromptAnswer,
    Session,
    SessionSettings,
    Watchdog,
    connect,
)
from remoteops.target import Target

__all__ = [
    "CommandSpec",
    "Executor",
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


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """What to run on each host."""

    command: str
    pty: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    stdin: bytes | None = None
    become: bool = False
    become_user: str | None = None
    become_password: str | None = field(default=None, repr=False)
    max_output: int = DEFAULT_MAX_OUTPUT

    def remote_command(self, target: Target) -> tuple[str, bytes | None, PromptAnswer | None]:
        """The command line sent to the host, the bytes for its stdin, and, on a
        terminal, what answers sudo's password prompt.

        With become the command runs under sudo and the password goes on stdin,
        never on a command line. Without a terminal the command reads its stdin
        only past a marker line that follows the password, so a password sudo
        did not ask for (NOPASSWD, a root login, cached credentials) never
        reaches it. On a terminal (``--pty``) input is echoed until sudo turns
        echo off, so the password waits for sudo's prompt (``PromptAnswer``).
        """
        become = Become.choose(self.become, self.become_user, self.become_password, target)
        if become is None:
            return self.command, self.stdin, None
        if not become.password:
            return become.command(self.command), self.stdin, None
        if self.pty:
            prompt = f"[remoteops-sudo-{secrets.token_hex(8)}]"
            line = f"sudo -S -p {shlex.quote(prompt)} -u {shlex.quote(become.user)} -- sh -c "
            answer = PromptAnswer(prompt.encode(), become.password_line, self.stdin)
            return line + shlex.quote(self.command), None, answer
        return become.command(self.command), become.stdin(self.stdin or b""), None

    def run_as(self, target: Target) -> tuple[str, bytes]:
        """The ``sudo ... --`` prefix (empty without become) and the stdin it reads first.

        With a password sudo reads it from the first line of stdin (``-S``) and
        prints no prompt (``-p ''``); without one it must not ask (``-n``).
        """
        become = Become.choose(self.become, self.become_user, self.become_password, target)
        if become is None:
            return "", b""
        return become.prefix, become.password_line


class _WorkerFlag(threading.local):
    """Per thread: True in the threads of an operation's pool."""

    active = False


class Executor:
    """Run work on many targets from a bounded thread pool; one session per host.

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
        # The thread pools of the operations under way, and whether close() was called.
        self._operations: list[ThreadPoolExecutor] = []
        self._state_lock = threading.Lock()
        self._closed = False
        self._worker = _WorkerFlag()
        # Releases the watchdog, jump connections and agent once: at close(), or
        # when an executor nobody closed is garbage collected.
        self._release = weakref.finalize(
            self, _release, self.watchdog, self._jumps, self.credentials
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

    def _connect(self, target: Target) -> Session:
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
                    cancel=self.cancel_event,
                )
            except (ConnectError, CommandTimeoutError) as exc:
                # Only connection failures are retried: never auth or host keys.
                exc.attempts = attempt
                if attempt >= attempts or self.cancel_event.is_set():
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
                if self.cancel_event.wait(delay):
                    raise
        raise AssertionError("unreachable")

    # ------------------------------------------------------------------ fan-out

    def _fan_out(self, work: Callable[[Target], HostResult]) -> Iterator[HostResult]:
        """Run ``work`` for every target, yielding results as they complete.

        The executor stays open for the next operation; its watchdog, jump
        connections and agent go at ``close()``.
        """
        self._check_open()
        return self._fan_out_pool(work)

    def _fan_out_pool(self, work: Callable[[Target], HostResult]) -> Iterator[HostResult]:
        if not self.targets:
            return
        pool = ThreadPoolExecutor(max_workers=self.forks, thread_name_prefix="host")
        futures: dict[Future[HostResult], Target] = {}

        def guarded(target: Target) -> HostResult:
            self._worker.active = True
            if self.cancel_event.is_set():
                return host_result(target, "skipped", error="not started: the run was interrupted")
            if self.drain_event.is_set():
                return host_result(target, "skipped", error=f"not started: {self.drain_reason}")
            start = time.monotonic()
            try:
                return work(target)
            except HostError as exc:
                return error_result(target, exc, duration=time.monotonic() - start)
            except Exception as exc:
                logger.debug("Host %r: unexpected error", target.name, exc_info=True)
                logger.error("Host %r: internal error %r (--debug shows where)", target.name, exc)
                return host_result(
                    target,
                    "failed",
                    error=f"internal error: {exc!r}",
                    duration=time.monotonic() - start,
                )

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
                for target in self.targets:
                    future = pool.submit(guarded, target)
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

    def fan_out(self, work: Callable[[Target], HostResult]) -> Iterator[HostResult]:
        """Run ``work`` for every target from the pool, yielding results as they complete.

        ``work`` raises a HostError for a host that fails; it becomes that host's result.
        """
        return self._fan_out(work)

    def open_session(self, target: Target) -> Session:
        """Connect to ``target`` with this run's retries, credentials, deadlines and cancel."""
        return self._connect(target)

    def close(self) -> None:
        """Close jump host sessions, the ssh-agent connection and the watchdog; once.

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

    def run_command(
        self,
        spec: CommandSpec,
        *,
        on_line: LineSink | None = None,
        out_dir: Path | None = None,
    ) -> Iterator[HostResult]:
        """Run ``spec`` on every target; yield each host's result as it finishes.

        With ``out_dir``, what the previous run wrote there is removed first
        (:mod:`remoteops.outdir`; ``UsageError`` if it cannot be), before any
        host is contacted.
        """
        self._check_open()
        if out_dir is not None:
            start_run(out_dir)

        def work(target: Target) -> HostResult:
            start = time.monotonic()
            session = self._connect(target)
            try:
                return self.run_on_session(
                    session, spec, on_line=on_line, out_dir=out_dir, start=start
                )
            finally:
                session.close()

        return self._fan_out(work)

    def run_on_session(
        self,
        session: Session,
        spec: CommandSpec,
        *,
        timeout: float | None = None,
        on_line: LineSink | None = None,
        out_dir: Path | None = None,
        start: float | None = None,
    ) -> HostResult:
        """Run ``spec`` over an open ``session`` (left open) and return the host's result.

        ``timeout`` replaces this executor's command deadline; ``start``
        (``time.monotonic()``) is where the result's duration counts from.
        Raises HostError if the connection fails under the command.
        """
        target = session.target
        deadline = timeout if timeout is not None else self.timeouts.command
        start = time.monotonic() if start is None else start
        command, stdin, answer = spec.remote_command(target)
        sink = OutDirSink(out_dir, target.name) if out_dir else None
        try:
            result = session.exec(
                command,
                timeout=deadline,
                pty=spec.pty,
                env=spec.env,
                stdin=stdin,
                max_output=spec.max_output,
                on_line=on_line,
                on_bytes=sink.write if sink else None,
                cancel=self.cancel_event,
                run_as=spec.run_as(target),
                answer=answer,
            )
        finally:
            if sink:
                sink.close()
        duration = time.monotonic() - start
        if result.timed_out:
            which = "--timeout" if timeout is None else "the step's timeout"
            status, error = (
                "timeout",
                f"command did not finish within {deadline:g}s ({which}); {_stopped(result, 'it')}",
            )
        elif result.interrupted:
            status, error = "interrupted", _stopped(result, "the command")
        elif answer is not None and answer.refused:
            status, error = "failed", _wrong_password(target)
        elif result.exit_code is None:
            status, error = "failed", _killed(result.signal)
        elif result.exit_code != 0:
            refusal = sudo_refusal(spec, target, result.exit_code, result.stderr)
            status, error = "failed", refusal or f"exit code {result.exit_code}"
        else:
            status, error = "ok", None
        if out_dir:
            write_exit(out_dir, target.name, result.exit_code, status)
        return HostResult(
            host=target.name,
            address=target.address,
            port=target.port,
            status=status,  # type: ignore[arg-type]
            exit_code=result.exit_code,
            stdout=result.stdout,
            stderr=result.stderr,
            duration_s=duration,
            error=error,
            stdout_truncated=result.stdout_truncated,
            stderr_truncated=result.stderr_truncated,
            signal=result.signal,
            # For the analysis stage: this run's file of the host's whole stdout.
            extra={"_stdout_file": sink.stdout_path} if sink else {},
        )

    def ping(self) -> Iterator[HostResult]:
        """Connect and authenticate only; report round-trip time and server version."""

        def work(target: Target) -> HostResult:
            start = time.monotonic()
            session = self._connect(target)
            try:
                connected = time.monotonic() - start
                # The best of three round trips: the first can wait behind the
                # server's own post-auth messages (hostkeys-00@openssh.com).
                rtt = float("inf")
                for _ in range(3):
                    rtt_start = time.monotonic()
                    session.transport.global_request("keepalive@openssh.com", wait=True)
                    rtt = min(rtt, time.monotonic() - rtt_start)
                version = session.server_version
            finally:
                session.close()
            return HostResult(
                host=target.name,
                address=target.address,
                port=target.port,
                status="ok",
                duration_s=time.monotonic() - start,
                extra={
                    "rtt_ms": round(rtt * 1000, 2),
                    "connect_ms": round(connected * 1000, 1),
                    "server_version": version,
                },
            )

        return self._fan_out(work)

    def run(self, spec: CommandSpec) -> RunResult:
        """Run ``spec`` everywhere and return the whole RunResult."""
        start = time.monotonic()
        result = RunResult()
        for host_result in self.run_command(spec):
            result.add(host_result)
        result.duration_s = time.monotonic() - start
        return result


def _release(watchdog: Watchdog, jumps: dict[str, Session], credentials: Credentials) -> None:
    """What an executor holds until it is closed: jump connections, the agent, the watchdog."""
    for session in list(jumps.values()):
        session.close()
    jumps.clear()
    watchdog.stop()
    credentials.close()


def _killed(signal: str | None) -> str:
    """Why a command ended without an exit code: the signal the server named, if it did."""
    if signal and signal != "unknown":
        return f"killed by {signal}"
    return "the command ended without an exit code (killed by a signal the server did not name)"


# sudo's own lines (exit code 1) when it refuses before running the command.
_SUDO_WRONG_PASSWORD = re.compile(
    rb"^(?:sudo: \d+ incorrect password attempts?|Sorry, try again\.)\r?$", re.MULTILINE
)
_SUDO_NEEDS_PASSWORD = re.compile(
    rb"^sudo: (?:a password is required|a terminal is required to read the password)", re.MULTILINE
)
_SUDO_UNKNOWN_USER = re.compile(rb"^sudo: unknown user:? (\S+)\r?$", re.MULTILINE)


def _wrong_password(target: Target) -> str:
    return (
        f"sudo: wrong password for {target.user}; check --become-password-file "
        "(or ansible_become_password)"
    )


def sudo_refusal(spec: CommandSpec, target: Target, exit_code: int, stderr: bytes) -> str | None:
    """What sudo said when it refused to run a become command, in one line; None otherwise.

    sudo exits 1 after a wrong password, a password it needed and was not
    given, or an unknown ``--become-user``, and says so on stderr first.
    """
    if exit_code != 1 or not spec.run_as(target)[0]:
        return None
    if _SUDO_WRONG_PASSWORD.search(stderr):
        return _wrong_password(target)
    if _SUDO_NEEDS_PASSWORD.search(stderr):
        return (
            f"sudo: {target.user} needs a password to run commands as another user; "
            "give it with --become-password-file"
        )
    unknown = _SUDO_UNKNOWN_USER.search(stderr)
    if unknown:
        name = unknown.group(1).decode("utf-8", errors="replace")
        return f"sudo: no user {name} on the host; check --become-user"
    return None


def _stopped(result: ExecResult, subject: str) -> str:
    """What became of a stopped command: a claim only when the host confirmed it."""
    if result.stop is not None and result.stop.confirmed:
        return f"{subject} was stopped on the host"
    why = result.stop.detail if result.stop is not None else "no report"
    return f"stopping {subject} on the host could not be confirmed: {why}"


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
