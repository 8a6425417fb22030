"""Hosts sharded over a Dask cluster's workers (``run``/``ping --cluster ADDRESS``).

The same protocol as process shards (:mod:`remoteops.shards`), with Dask
workers in place of forked processes. The client splits the targets into one
interleaved share per worker (``--forks`` divided among them) and submits one
long-running *shard task* per worker, pinned to it (``workers=[address]``, no
other worker allowed, never retried). The task builds an
:class:`~remoteops.execution.Executor` on its share with the client's
settings, timeouts and limits, then loops over the operations it is sent until
it is told to close: a playbook's steps can run one after another on the same
worker-side sessions.

Messages (each a tuple; pickled in batches of up to :data:`_BATCH` into
``bytes``, which Dask queues carry):

* client to shard, on the shard's control queue ``NAME-ctl-I``:
  ``("op", seq, op, lines, progress)`` (``op``: the operation, cloudpickled: a
  function of the executor, a line sink and a progress sink, as
  :data:`remoteops.shards.Operation`), ``("drain", reason)``, ``("cancel",)``,
  ``("close",)``;
* shard to client, on the run's queue ``NAME-out`` (at most :data:`_QUEUE_MAX`
  batches of about 1 MiB at most waiting: a slow client holds the workers back,
  memory stays bounded):
  ``("result", i, seq, HostResult)`` as each host finishes, ``("line", i,
  host, stream, data)``, ``("progress", i, host, nbytes, files)``, ``("log",
  i, LogRecord)``, ``("hostkey", i, files, write_file, host, port, name,
  key_type, blob)`` (a key recorded under accept-new), ``("data", i, seq,
  item)`` (anything else the operation yields: a get's files, before the
  host's result), ``("done", i, seq)``
  when an operation ends, ``("failed", i, seq, why)`` when it raised.

What travels: the operation, the share's targets (without their inventory
variables), the settings, the paths of the key files the client has, and the
bytes of the known_hosts files the targets use. Never a private key, a
passphrase or a password: :func:`refuse_secrets` refuses them up front. A
worker loads the key files at the paths the client resolved; a host whose key
the worker lacks ends ``unreachable``, the reason naming the worker and the
path. Host keys are checked against the client's known_hosts as shipped (the
messages name the client's files); a key recorded under accept-new comes back
and the client writes it through its own accept-new path (its lock, atomic
write), so the client's known_hosts ends as after a local run.

Faults: a worker that disappears from the scheduler's list has its reported
hosts kept and its other hosts ``failed``, "interrupted: cluster worker
ADDRESS died"; its task is cancelled, so they never run again. A scheduler
that goes away: the results so far are kept, the other hosts are reported the
same way and :attr:`ClusterExecutor.lost` says why (the command exits 2).
``cancel()`` (Ctrl-C, SIGTERM) is passed to every shard, whose executor stops
its remote commands; a shard whose client is gone (its task released by the
scheduler) cancels itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import math
import os
import pickle
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from remoteops.errors import UsageError
from remoteops.hostkeys import HostKeyStore, KnownHostsFile, parse_known_hosts
from remoteops.session import Credentials
from remoteops.shards import ProgressSink, StandIn, split

if TYPE_CHECKING:
    from pathlib import Path

    import paramiko
    from distributed import Client, Future, Queue

    from remoteops.execution import CommandSpec, Executor, Limits, Timeouts
    from remoteops.outdir import OutDirSink
    from remoteops.results import HostResult
    from remoteops.session import LineSink, SessionSettings
    from remoteops.target import Target

__all__ = ["ClusterExecutor", "cluster_executor", "refuse_secrets"]

logger = logging.getLogger(__name__)

_TURN_S = 0.25  # each wait of the client, and of a shard's control thread
_QUEUE_MAX = 256  # batches waiting in the run's queue
_BATCH = 64  # messages per batch at most
_BATCH_BYTES = 1 << 20  # a batch is sent once it carries this many bytes of output
_OUTBOX_MAX = 1024  # messages a shard holds before its hosts' threads wait
_STOP_WAIT_S = 30.0  # how long the client waits for cancelled shards to report
_IDLE_S = 3600.0  # a shard sent no operation for this long ends (its client is gone)
# A shard runs with the cyclic collector off and collects itself every this many
# hosts. With it on, a Dask worker on CPython 3.11 before 3.11.9 deadlocks: its
# profiler calls sys._current_frames() every 10 ms, which holds the runtime's
# thread list lock; a collection triggered inside it runs weakref callbacks,
# which may hand the GIL to one of the shard's many threads as it ends, and
# that thread waits for the list lock while holding the GIL (CPython
# gh-106883; seen here: every thread of both workers stopped, and the scheduler
# dropped them 5 minutes later). Without automatic collections nothing runs
# inside that call; the collections here happen in the shard's own thread.
_COLLECT_EVERY = 200
_HOST_IN_LOG = re.compile(r"Host '([^']*)'")

ClusterOperation = Callable[["Executor", "LineSink | None", "ProgressSink | None"], Iterable[Any]]
"""A shard's operation: as :data:`remoteops.shards.Operation`, and it may also yield
data for the client (``transfer.staging.Message``: a get's files) among the results."""

# (realpath, bytes or None when missing) of each known_hosts file, by the path targets name
KnownHostsData = dict[str, tuple[str, bytes | None]]


def refuse_secrets(targets: Sequence[Target], *, ask_pass: bool, passphrase_file: bool) -> None:
    """``UsageError`` when this run would need a secret on the workers: they get none."""
    why = None
    if ask_pass:
        why = "--ask-pass"
    elif passphrase_file:
        why = "--key-passphrase-file"
    else:
        for target in targets:
            if target.password is not None:
                why = f"host {target.name}: an SSH password (ansible_password)"
            elif target.become_password is not None:
                why = f"host {target.name}: a sudo password (ansible_become_password)"
            if why:
                break
    if why:
        raise UsageError(
            f"--cluster: {why} would have to be sent to the workers, and secrets never are; "
            "give the workers key files at the same paths (or an agent), or run without --cluster"
        )


def cluster_executor(executor: Executor, address: str, timeout: float) -> ClusterExecutor:
    """``executor``'s targets and settings, to be run on the cluster at ``address``."""
    from remoteops import cluster

    client = cluster.connect(address, timeout=timeout)
    return ClusterExecutor(executor, client, cluster.check_address(address))


@dataclasses.dataclass(slots=True)
class _Shard:
    """One worker's share, seen from the client."""

    index: int
    worker: str
    unfinished: dict[str, Target]
    control: Queue
    future: Future[str] | None = None
    busy: bool = False  # an operation was sent and its "done" has not come back
    failure: str = "no report"  # why its operation raised
    gone: bool = False


class ClusterExecutor(StandIn):
    """An :class:`~remoteops.execution.Executor`'s run spread over a Dask cluster.

    It stands in for the executor the command line built (``run_command``,
    ``ping``, ``operate``, ``cancel``, ``drain``, a context manager); that
    executor gives the targets and settings and never connects itself.
    """

    def __init__(self, executor: Executor, client: Client, address: str) -> None:
        super().__init__(executor)
        self.address = address
        self.lost: str | None = None
        self._client = client
        self._name = f"remoteops-{uuid.uuid4().hex}"
        self._shards: list[_Shard] = []
        self._out: Queue | None = None
        self._seq = 0
        self._cancelled = threading.Event()
        self._cancel_sent = False
        self._closed = False
        self._hold = False

    @property
    def client(self) -> Client:
        """The cluster's client (``run --analyze`` sends its analysis tasks through it)."""
        return self._client

    def hold_sessions(self, count: int) -> None:
        """Keep every host's connection between operations (a playbook's steps): each
        shard keeps one per host of its share. Called before the first operation."""
        del count
        self._hold = True

    def cancel(self) -> None:
        """Stop every shard: no host starts, running commands are stopped (signal-safe:
        the collecting loop passes it on at its next turn)."""
        self.executor.cancel()
        self._cancelled.set()

    def drain(self, reason: str) -> None:
        """Start no more hosts in any shard; those started finish."""
        self.executor.drain(reason)
        self._send_all(("drain", reason))

    def close(self) -> None:
        """Tell the shards to end (cancelling what runs), release the queues, disconnect."""
        if self._closed:
            return
        self._closed = True
        from remoteops import cluster

        if self.lost is None:
            self._send_all(("cancel",) if self._cancelled.is_set() else ("close",))
            self._send_all(("close",))
        futures = [s.future for s in self._shards if s.future is not None and not s.gone]
        if futures and self.lost is None:
            from distributed import wait

            # The shards stop their remote commands and end; one that does not end in
            # time is cancelled (Dask cannot interrupt it: its worker's control thread
            # sees the task released and cancels its executor).
            with contextlib.suppress(Exception):
                wait(futures, timeout=_STOP_WAIT_S)
        with contextlib.suppress(Exception):
            self._client.cancel(futures)
        for q in [self._out, *(s.control for s in self._shards)]:
            if q is not None:
                with contextlib.suppress(Exception):
                    q.close()
        cluster.close(self._client)
        self.executor.close()

    def _send_all(self, message: tuple[Any, ...]) -> None:
        for shard in self._shards:
            if not shard.gone:
                self._send(shard, message)

    def _send(self, shard: _Shard, message: tuple[Any, ...]) -> None:
        with contextlib.suppress(Exception):  # a scheduler gone is noticed by the loop
            shard.control.put(pickle.dumps(message), timeout=5)

    def run_command(
        self,
        spec: CommandSpec,
        *,
        on_line: LineSink | None = None,
        out_dir: Path | None = None,
    ) -> Iterator[HostResult]:
        """As ``Executor.run_command``. With ``out_dir`` each host's exact output comes
        back as it arrives and is written here (:class:`_OutDirFiles`)."""
        if spec.become_password is not None:
            raise UsageError("--cluster: a sudo password is never sent to the workers")
        if out_dir is None:
            return self.operate(_RunCommand(spec), on_line=on_line)
        from remoteops.outdir import start_run

        start_run(out_dir)
        files = _OutDirFiles(out_dir)
        results = self.operate(
            _RunCommand(spec, ship_output=True), on_line=on_line, on_data=files.receive
        )
        return (files.settle(result) for result in results)

    def ping(self) -> Iterator[HostResult]:
        """As ``Executor.ping``."""
        return self.operate(_ping)

    def operate(
        self,
        op: ClusterOperation,
        *,
        on_line: LineSink | None = None,
        progress: ProgressSink | None = None,
        on_data: Callable[[Any], None] | None = None,
    ) -> Iterator[HostResult]:
        """Send ``op`` to every shard (starting them the first time) and yield each
        host's result as its shard reports it.

        Anything else ``op`` yields on a worker (a ``get``'s files, as
        ``transfer.staging.Message`` values) is given to ``on_data`` on the client,
        in the order sent: a host's files before its result."""
        import cloudpickle  # type: ignore[import-untyped]

        blob = cloudpickle.dumps(op)
        if not self._shards:
            self._start()
        self._seq += 1
        seq = self._seq
        for shard in self._shards:
            shard.unfinished = {t.name: t for t in self._share(shard)}
            if not shard.gone and self.lost is None:
                shard.busy = True
                self._send(shard, ("op", seq, blob, on_line is not None, progress is not None))
        return self._collect(seq, on_line, progress, on_data)

    def _share(self, shard: _Shard) -> list[Target]:
        return self.targets[shard.index :: len(self._shards)]

    def _start(self) -> None:
        from distributed import Queue

        workers = sorted(self._client.nthreads())
        count = max(1, min(len(workers), len(self.targets)))
        shares = split(self.targets, count)
        forks = max(1, math.ceil(self.forks / count))
        limits = dataclasses.replace(self.executor.limits, max_workers=forks)
        known = _known_hosts_data(self.targets)
        keys = tuple(
            p for p in dict.fromkeys(p for t in self.targets for p in t.identity_files)
            if os.path.isfile(p)
        )  # fmt: skip
        self._out = Queue(f"{self._name}-out", client=self._client, maxsize=_QUEUE_MAX)
        logger.info(
            "--cluster %s: %d hosts over %d workers", self.address, len(self.targets), count
        )
        for index, share in enumerate(shares):
            control = Queue(f"{self._name}-ctl-{index}", client=self._client)
            shard = _Shard(index, workers[index], {}, control)
            self._shards.append(shard)
            shard.future = self._client.submit(
                _shard_task,
                self._name,
                index,
                [_carried(t) for t in share],
                self.executor.settings,
                self.executor.timeouts,
                limits,
                known,
                keys,
                self._hold,
                key=f"{self._name}-shard-{index}",
                workers=[shard.worker],
                allow_other_workers=False,
                pure=False,
                retries=0,
            )

    def _collect(
        self,
        seq: int,
        on_line: LineSink | None,
        progress: ProgressSink | None,
        on_data: Callable[[Any], None] | None,
    ) -> Iterator[HostResult]:
        from remoteops.execution import host_result

        out = self._out
        assert out is not None
        stop_deadline: float | None = None
        next_check = 0.0

        def handle(message: tuple[Any, ...]) -> Iterator[HostResult]:
            kind, index = message[0], message[1]
            shard = self._shards[index]
            if kind == "result" and message[2] == seq:
                result: HostResult = message[3]
                shard.unfinished.pop(result.host, None)
                yield result
            elif kind == "line" and on_line is not None:
                on_line(*message[2:])
            elif kind == "progress" and progress is not None:
                progress(*message[2:])
            elif kind == "data" and message[2] == seq and on_data is not None:
                on_data(message[3])
            elif kind == "log":
                record: logging.LogRecord = message[2]
                logging.getLogger(record.name).handle(record)
            elif kind == "hostkey":
                _record_host_key(*message[2:])
            elif kind == "failed" and message[2] == seq:
                shard.failure = message[3]
                logger.error("cluster worker %s: %s", shard.worker, message[3])
            elif kind == "done" and message[2] == seq:
                # An operation that raised leaves hosts unreported: say so for each.
                why = f"internal error on cluster worker {shard.worker}: {shard.failure}"
                yield from lose(shard, why, interrupted=False)

        def take(batches: list[bytes]) -> Iterator[HostResult]:
            for batch in batches:
                for message in pickle.loads(batch):  # noqa: S301 (from our shards)
                    yield from handle(message)

        def lose(shard: _Shard, why: str, *, interrupted: bool = True) -> Iterator[HostResult]:
            shard.busy = False
            error = f"interrupted: {why}" if interrupted else why
            for name, target in list(shard.unfinished.items()):
                del shard.unfinished[name]
                yield host_result(target, "failed", error=error)

        for shard in self._shards:  # a later operation: what is gone stays gone
            if self.lost is not None:
                yield from lose(shard, f"the cluster's scheduler {self.address} went away")
            elif shard.gone:
                yield from lose(shard, f"cluster worker {shard.worker} died")
        while any(s.busy for s in self._shards):
            if self._cancelled.is_set() and not self._cancel_sent:
                self._cancel_sent = True
                self._send_all(("cancel",))
                stop_deadline = time.monotonic() + _STOP_WAIT_S
            batches = self._receive(out)
            if batches is None:  # the scheduler went away
                self.lost = "the scheduler went away during the run"
                logger.info("--cluster %s: %s", self.address, self.lost)
                for shard in self._shards:
                    yield from lose(shard, f"the cluster's scheduler {self.address} went away")
                return
            yield from take(batches)
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + _TURN_S
                for shard, why in self._dead_shards():
                    # What it sent before it died is in the queue: take that first.
                    yield from take(self._receive(out, wait=False) or [])
                    shard.gone = True
                    if shard.future is not None:
                        with contextlib.suppress(Exception):
                            self._client.cancel([shard.future])
                    yield from lose(shard, why)
            if stop_deadline is not None and time.monotonic() > stop_deadline:
                for shard in self._shards:
                    yield from lose(shard, f"cluster worker {shard.worker} did not stop")

    def _receive(self, out: Queue, *, wait: bool = True) -> list[bytes] | None:
        """The batches waiting (at most one turn's wait for the first); None when the
        scheduler is gone."""
        if self._client.status not in ("running", "newly-created"):
            return None
        batches: list[bytes] = []
        try:
            if wait:
                batches.append(out.get(timeout=_TURN_S))
            batches.extend(out.get(batch=True))
        except TimeoutError:
            pass
        except Exception as exc:  # the connection to the scheduler broke
            logger.debug("--cluster %s: %r", self.address, exc)
            return None
        return batches

    def _dead_shards(self) -> list[tuple[_Shard, str]]:
        """The busy shards whose worker left the cluster or whose task ended."""
        try:
            alive = set(self._client.nthreads())
        except Exception as exc:
            logger.debug("--cluster %s: %r", self.address, exc)
            return []  # the next turn notices the scheduler is gone
        dead = []
        for shard in self._shards:
            if not shard.busy:
                continue
            status = shard.future.status if shard.future is not None else "lost"
            if shard.worker not in alive:
                dead.append((shard, f"cluster worker {shard.worker} died"))
            elif status in ("error", "cancelled", "lost", "finished"):
                dead.append((shard, f"cluster worker {shard.worker}: its task ended ({status})"))
        return dead


# --------------------------------------------------------------------------- client helpers


def _carried(target: Target) -> Target:
    """What travels of a target: no inventory variables (they may hold secrets)."""
    return dataclasses.replace(target, vars={})


def _known_hosts_data(targets: Sequence[Target]) -> KnownHostsData:
    """The bytes of every known_hosts file the targets use (None: missing or unreadable)."""
    data: KnownHostsData = {}
    for path in dict.fromkeys(p for t in targets for p in t.known_hosts_files):
        real = os.path.realpath(os.path.expanduser(path))
        try:
            with open(real, "rb") as fh:
                data[path] = (real, fh.read())
        except OSError:
            data[path] = (real, None)
    return data


def _record_host_key(
    files: tuple[str, ...],
    write_file: str | None,
    host: str,
    port: int,
    name: str,
    key_type: str,
    blob: bytes,
) -> None:
    """A key a worker accepted under accept-new, written by the client's own accept-new
    path (its lock, its atomic write; a key changed meanwhile is refused and logged)."""
    import paramiko

    from remoteops.errors import HostKeyError
    from remoteops.hostkeys import known_hosts_name, verify_host_key

    alias = None if name == known_hosts_name(host, port) else name  # a HostKeyAlias
    store = HostKeyStore(files, write_file=write_file)
    try:
        key = paramiko.PKey.from_type_string(key_type, blob)
        verify_host_key(store, host, port, key, "accept-new", alias=alias)
    except HostKeyError as exc:
        logger.warning("%s", exc)
    except (paramiko.SSHException, ValueError) as exc:
        logger.warning("Host %r: a worker sent an unreadable %s key: %s", host, key_type, exc)


# --------------------------------------------------------------------------- operations


@dataclasses.dataclass(frozen=True, slots=True)
class _RunCommand:
    """``run``'s operation (a class, so that it pickles by reference)."""

    spec: CommandSpec
    ship_output: bool = False  # --out-dir: each host's output bytes to the client

    def __call__(
        self, executor: Executor, line: LineSink | None, _progress: ProgressSink | None
    ) -> Iterator[HostResult | _Output]:
        if not self.ship_output:
            return executor.run_command(self.spec, on_line=line)
        return self._shipping(executor, line)

    def _shipping(
        self, executor: Executor, line: LineSink | None
    ) -> Iterator[HostResult | _Output]:
        """Each host's output bytes as they arrive, then its result, in one stream.

        The hosts' threads and the fan-out (in a thread of its own) feed one
        bounded queue: when the client reads slowly, the hosts' commands wait
        on their channels instead of the worker buffering their output.
        """
        items: queue.Queue[HostResult | _Output | None] = queue.Queue(_OUTBOX_MAX)
        spec = self.spec
        failure: list[BaseException] = []

        def put(item: HostResult | _Output | None) -> None:
            while True:  # bounded by the run: cancelled, it stops waiting
                try:
                    items.put(item, timeout=_TURN_S)
                    return
                except queue.Full:
                    if executor.cancel_event.is_set() and item is not None:
                        return

        def on_bytes(host: str, stream: str, data: bytes) -> None:
            put(_Output(host, stream, bytes(data)))

        def pump() -> None:
            try:
                for result in executor.run_command(spec, on_line=line, on_bytes=on_bytes):
                    put(result)  # after everything its host queued
            except BaseException as exc:
                failure.append(exc)
            finally:
                put(None)

        pumping = threading.Thread(target=pump, name="output pump", daemon=True)
        pumping.start()
        try:
            while (item := items.get()) is not None:
                yield item
        finally:
            if pumping.is_alive():  # the consumer stopped early: stop the hosts
                executor.cancel()
                deadline = time.monotonic() + _STOP_WAIT_S
                while pumping.is_alive() and time.monotonic() < deadline:
                    with contextlib.suppress(queue.Empty):
                        items.get(timeout=_TURN_S)
        if failure:
            raise failure[0]


@dataclasses.dataclass(frozen=True, slots=True)
class _Output:
    """``--out-dir`` on a cluster: a host's command is starting (``stream`` "start"), or
    bytes of its stdout or stderr."""

    host: str
    stream: str
    data: bytes

    @property
    def data_bytes(self) -> int:
        return len(self.data)


class _OutDirFiles:
    """On the client: ``--out-dir`` files written from the output the shards send, as a
    local run writes them (temporary names, renamed when the host's result comes;
    DIR/<host>.exit; only for hosts whose command started)."""

    def __init__(self, out_dir: Path) -> None:
        self._out_dir = out_dir
        self._sinks: dict[str, OutDirSink] = {}

    def receive(self, item: object) -> None:
        from remoteops.outdir import OutDirSink, continue_run

        if not isinstance(item, _Output):
            raise TypeError(f"not command output: {type(item).__name__}")
        sink = self._sinks.get(item.host)
        if item.stream == "start":
            if sink is None:
                continue_run(self._out_dir)
                self._sinks[item.host] = OutDirSink(self._out_dir, item.host)
        elif sink is not None and item.stream in ("stdout", "stderr"):
            sink.write(item.stream, item.data)

    def settle(self, result: HostResult) -> HostResult:
        from remoteops.outdir import write_exit

        sink = self._sinks.pop(result.host, None)
        if sink is None:
            return result
        sink.close()
        write_exit(self._out_dir, result.host, result.exit_code, result.status)
        return dataclasses.replace(result, extra={**result.extra, "_stdout_file": sink.stdout_path})


def _ping(
    executor: Executor, _line: LineSink | None, _progress: ProgressSink | None
) -> Iterator[HostResult]:
    return executor.ping()


# --------------------------------------------------------------------------- the worker side


class _ShippedStore(HostKeyStore):
    """The client's known_hosts files as shipped: checked in memory (messages name the
    client's files); a key accepted under accept-new is added here and sent back."""

    def __init__(
        self,
        files: Sequence[str],
        shipped: dict[str, KnownHostsFile],
        lock: threading.Lock,
        report: Callable[..., None],
    ) -> None:
        super().__init__(files)
        self._shipped = shipped
        self._lock = lock
        self._report = report

    def _parsed(self) -> list[KnownHostsFile]:
        return [self._shipped.get(p) or KnownHostsFile(p, (), ()) for p in self.files]

    def _record(
        self, host: str, port: int, name: str, key: paramiko.PKey, line: bytes, *, if_unknown: bool
    ) -> bool:
        """Add the key here and send it to the client, which writes it; False: nothing
        was written here (the client logs the addition)."""
        assert self.write_file is not None
        with self._lock:
            if not self._decide(self._parsed(), host, port, name, key):
                return False
            current = self._shipped.get(self.write_file)
            if current is None:
                current = KnownHostsFile(self.write_file, (), ())
            self._shipped[self.write_file] = current.appended(line)
        blob = key.asbytes()
        files = self.files
        self._report("hostkey", files, self.write_file, host, port, name, key.get_name(), blob)
        return False


class _WorkerCredentials(Credentials):
    """A worker's own credentials: no passphrase, no password; the key files at the
    paths the client resolved, which must be there (``expected``); its own agent."""

    def __init__(self, worker: str, expected: frozenset[str]) -> None:
        super().__init__()
        self._worker = worker
        self._expected = expected

    def _load(self, path: str) -> paramiko.PKey | None:
        key = super()._load(path)
        if path in self._needs_passphrase:
            self._errors[path] = (
                f"{path} is encrypted, and passphrases are never sent to the workers; give "
                "the worker an ssh-agent holding the key"
            )
        elif key is None and path in self._expected and path not in self._errors:
            self._errors[path] = (
                f"no key file at {path}; install it there (keys are never sent to the "
                "workers) or give the worker an ssh-agent holding it"
            )
        return key

    def key_error(self, path: str) -> str | None:
        error = super().key_error(path)
        return f"worker {self._worker}: {error}" if error else None


class _Outbox:
    """A shard's messages to the client, sent in batches by a thread of their own."""

    def __init__(self, out: Queue, index: int) -> None:
        self._out = out
        self._index = index
        self._pending: queue.Queue[tuple[Any, ...] | None] = queue.Queue(_OUTBOX_MAX)
        self.broken = threading.Event()
        self._thread = threading.Thread(target=self._send_loop, name="outbox", daemon=True)
        self._thread.start()

    def send(self, kind: str, *rest: Any) -> None:
        while not self.broken.is_set():
            with contextlib.suppress(queue.Full):
                self._pending.put((kind, self._index, *rest), timeout=_TURN_S)
                return

    def close(self) -> None:
        """Send what is waiting (bounded), then stop the thread."""
        with contextlib.suppress(queue.Full):
            self._pending.put(None, timeout=_STOP_WAIT_S)
        self._thread.join(_STOP_WAIT_S)

    def _send_loop(self) -> None:
        ending = False
        while not ending:
            first = self._pending.get()
            batch = [] if first is None else [first]
            size = 0 if first is None else _size(first)
            ending = first is None
            while not ending and len(batch) < _BATCH and size < _BATCH_BYTES:
                try:
                    item = self._pending.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    ending = True
                else:
                    batch.append(item)
                    size += _size(item)
            if batch and not self._put(pickle.dumps(batch)):
                self.broken.set()
                return

    def _put(self, data: bytes) -> bool:
        deadline = time.monotonic() + _IDLE_S
        while time.monotonic() < deadline:
            try:
                self._out.put(data, timeout=5)
                return True
            except TimeoutError:
                continue  # the client is slow: wait (bounded)
            except Exception as exc:
                logger.debug("cluster shard: cannot reach the client's queue: %r", exc)
                return False
        return False


def _size(message: tuple[Any, ...]) -> int:
    """Roughly how many bytes ``message`` carries (a result's output, a line's data)."""
    body = message[-1]
    if isinstance(body, bytes):
        return len(body)
    carried = getattr(body, "data_bytes", None)  # a get's files
    if isinstance(carried, int):
        return carried + 256
    return len(getattr(body, "stdout", b"")) + len(getattr(body, "stderr", b"")) + 256


class _Forward(logging.Handler):
    """A shard's log records naming one of its hosts go to the client, whose handlers
    write them (other work on the same worker keeps its own)."""

    def __init__(self, outbox: _Outbox, hosts: set[str]) -> None:
        super().__init__(logging.INFO)
        self._outbox = outbox
        self._hosts = hosts

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            named = _HOST_IN_LOG.search(text)
            if named is None or named.group(1) not in self._hosts:
                return
            record = logging.makeLogRecord(record.__dict__)
            if record.exc_info:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.msg, record.args, record.exc_info = text, None, None
            self._outbox.send("log", record)
        except Exception:
            self.handleError(record)


def _shard_task(
    name: str,
    index: int,
    share: list[Target],
    settings: SessionSettings,
    timeouts: Timeouts,
    limits: Limits,
    known: KnownHostsData,
    keys: tuple[str, ...],
    hold: bool = False,
) -> str:
    """A shard, on its worker: run each operation the client sends on ``share`` until
    told to close (``hold``: keeping a connection to each of its hosts between
    operations, as a playbook does). Returns how it ended."""
    from distributed import Queue, get_client, get_worker, secede
    from distributed.worker import thread_state  # type: ignore[attr-defined]

    from remoteops.execution import Executor

    worker = get_worker()
    task_key = thread_state.key
    client = get_client()
    secede()  # long-running: its thread slot goes back to the worker
    outbox = _Outbox(Queue(f"{name}-out", client=client, maxsize=_QUEUE_MAX), index)
    control = Queue(f"{name}-ctl-{index}", client=client)
    shipped = {
        path: parse_known_hosts(data, source=real) if data else KnownHostsFile(real, (), ())
        for path, (real, data) in known.items()
    }
    lock = threading.Lock()
    stores: dict[tuple[str, ...], HostKeyStore] = {}

    def store_for(target: Target) -> HostKeyStore:
        files = tuple(target.known_hosts_files)
        with lock:
            if files not in stores:
                stores[files] = _ShippedStore(files, shipped, threading.Lock(), outbox.send)
            return stores[files]

    executor = Executor(
        share,
        store=store_for,
        credentials=_WorkerCredentials(worker.address, frozenset(keys)),
        settings=settings,
        timeouts=timeouts,
        limits=limits,
    )
    if hold:
        executor.hold_sessions(len(share))
    ops: queue.Queue[tuple[Any, ...] | None] = queue.Queue()
    ended = threading.Event()

    def released() -> bool:
        state = worker.state.tasks.get(task_key)
        return state is None or state.state in ("cancelled", "released", "forgotten")

    def listen() -> None:
        """The control thread: drain and cancel at once, operations to the loop."""
        try:
            while not ended.is_set():
                try:
                    message = pickle.loads(control.get(timeout=_TURN_S))  # noqa: S301
                except TimeoutError:
                    if released() or outbox.broken.is_set():
                        break  # the client is gone
                    continue
                kind = message[0]
                if kind == "op":
                    ops.put(message[1:])
                elif kind == "drain":
                    executor.drain(message[1])
                elif kind == "cancel":
                    executor.cancel()
                elif kind == "close":
                    break
        except Exception as exc:  # the scheduler is gone
            logger.debug("cluster shard %s: control: %r", index, exc)
        executor.cancel()  # no-op after a plain close: no operation is running then
        ops.put(None)

    forward = _Forward(outbox, {t.name for t in share})
    remoteops_logger = logging.getLogger("remoteops")
    if remoteops_logger.getEffectiveLevel() > logging.INFO:
        remoteops_logger.setLevel(logging.INFO)
    remoteops_logger.addHandler(forward)
    listener = threading.Thread(target=listen, name=f"shard {index} control", daemon=True)
    listener.start()
    how = "closed"
    collecting = gc.isenabled()
    gc.disable()  # see _COLLECT_EVERY: collected by _run_op instead
    try:
        with executor:
            while True:
                try:
                    item = ops.get(timeout=_IDLE_S)
                except queue.Empty:
                    how = "idle"
                    break
                if item is None:
                    break
                seq, blob, lines, progress = item
                op = pickle.loads(blob)  # noqa: S301 (the client's, as Dask's tasks are)
                _run_op(executor, outbox, seq, op, lines=lines, progress=progress)
    finally:
        if collecting:
            gc.enable()
        ended.set()
        remoteops_logger.removeHandler(forward)
        outbox.close()
        listener.join(_STOP_WAIT_S)
        for q in (control,):
            with contextlib.suppress(Exception):
                q.close()
    return how


def _run_op(
    executor: Executor,
    outbox: _Outbox,
    seq: int,
    op: ClusterOperation,
    *,
    lines: bool,
    progress: bool,
) -> None:
    """One operation of a shard: each host's result, live lines and progress to the client."""

    def line_sink(host: str, stream: str, data: bytes) -> None:
        outbox.send("line", host, stream, data)

    def progress_sink(host: str, nbytes: int, files: int) -> None:
        outbox.send("progress", host, nbytes, files)

    try:
        from remoteops.results import HostResult

        done = 0
        for item in op(executor, line_sink if lines else None, progress_sink if progress else None):
            outbox.send("result" if isinstance(item, HostResult) else "data", seq, item)
            if isinstance(item, HostResult):
                done += 1
                if done % _COLLECT_EVERY == 0:
                    gc.collect()
    except Exception as exc:
        logger.debug("cluster shard: operation %d failed", seq, exc_info=True)
        outbox.send("failed", seq, f"{type(exc).__name__}: {exc}")
    outbox.send("done", seq)
