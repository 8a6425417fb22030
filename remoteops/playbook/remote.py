"""A playbook step's remote part on one host, as plain data the engine binds to its executor.

The runner templates each step for each host on the client (``when``,
``{{ }}``, ``--check``); what is left to do on the host is one of these
frozen records: the command, the transfer or the ping with its settings, and
no reference to the runner, the client's executor or its threads. The engine
that runs it (the client's executor, or a worker's on a cluster, which gets
the records by pickling) binds it to itself with :meth:`StepWork.bind`:
its Ctrl-C event, its deadlines, its watchdog and the line sink the output
goes to.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from remoteops.transfer.staging import Staged

if TYPE_CHECKING:
    from remoteops.execution import Executor, Lease
    from remoteops.operations import CommandSpec
    from remoteops.results import HostResult
    from remoteops.session import LineSink, Session
    from remoteops.transfer import SourceSet, TransferOptions
    from remoteops.transfer.staging import Message

__all__ = ["GetWork", "PingWork", "PutWork", "RunWork", "StepWork", "for_cluster", "run_step"]

OnSession = Callable[["Session"], "HostResult"]


class StepWork:
    """One step's remote part on one host."""

    def bind(self, executor: Executor, on_line: LineSink | None) -> OnSession:
        """The work as a function of the host's session, run by ``executor``."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class PingWork(StepWork):
    """``ping``: keepalive round trips within ``timeout`` (default: the connect timeout)."""

    timeout: float | None

    def bind(self, executor: Executor, on_line: LineSink | None) -> OnSession:
        from remoteops.operations import ping_on

        watchdog, timeout = executor.watchdog, self.timeout
        return lambda session: ping_on(session, watchdog=watchdog, timeout=timeout)


@dataclass(frozen=True, slots=True)
class RunWork(StepWork):
    """``run`` / ``script``: one command; ``timeout`` None means the run's ``--timeout``."""

    spec: CommandSpec
    timeout: float | None

    def bind(self, executor: Executor, on_line: LineSink | None) -> OnSession:
        from remoteops.operations import run_on

        spec, cancel = self.spec, executor.cancel_event
        timeout = executor.timeouts.command if self.timeout is None else self.timeout
        name = "--timeout" if self.timeout is None else "the step's timeout"

        def run(session: Session) -> HostResult:
            return run_on(
                session, spec, cancel=cancel, timeout=timeout, timeout_name=name, on_line=on_line
            )

        return run


@dataclass(frozen=True, slots=True)
class PutWork(StepWork):
    """``put``: ``sources`` (scanned once on the client) to ``dest``.

    On a cluster ``sources`` travels packed (``Staged``); :func:`run_step`
    unpacks it on the worker, once per step, before binding.
    """

    sources: SourceSet | Staged
    dest: str
    options: TransferOptions
    timeout: float | None

    def bind(self, executor: Executor, on_line: LineSink | None) -> OnSession:
        from remoteops.transfer import Put, SourceSet

        if not isinstance(self.sources, SourceSet):
            raise TypeError("a packed put step is unpacked by run_step before it is bound")
        put = Put(executor, self.sources, self.dest, options=self.options, timeout=self.timeout)
        return put.on


@dataclass(frozen=True, slots=True)
class GetWork(StepWork):
    """``get``: ``remotes`` into ``local_dir``/<host>/ (the result names it as ``dest``).

    ``ship`` (on a cluster): :func:`run_step` downloads into a private directory of
    the worker and sends each host's files to the client, which writes them
    under ``local_dir``/<host>/.
    """

    remotes: tuple[str, ...]
    local_dir: Path
    options: TransferOptions
    timeout: float | None
    ship: bool = False

    def bind(self, executor: Executor, on_line: LineSink | None) -> OnSession:
        return self._bind(executor, self.local_dir)

    def _bind(self, executor: Executor, into: Path) -> OnSession:
        from remoteops.transfer import Get

        fetch = Get(executor, list(self.remotes), into, options=self.options, timeout=self.timeout)
        dest_dir = self.local_dir

        def get(session: Session) -> HostResult:
            result = fetch.on(session)
            dest = str(dest_dir / session.target.name)
            return dataclasses.replace(result, extra={**result.extra, "dest": dest})

        return get


def for_cluster(works: Mapping[str, StepWork]) -> dict[str, StepWork]:
    """``works`` as they travel to a cluster's workers: each put's sources packed once
    (the same ``SourceSet`` is the same ``Staged``), each get shipping its files back."""
    from remoteops.transfer.staging import pack

    packed: dict[int, Staged] = {}
    out: dict[str, StepWork] = {}
    for name, work in works.items():
        if isinstance(work, PutWork) and not isinstance(work.sources, Staged):
            key = id(work.sources)
            if key not in packed:
                packed[key] = pack(work.sources)
            work = dataclasses.replace(work, sources=packed[key])
        elif isinstance(work, GetWork):
            work = dataclasses.replace(work, ship=True)
        out[name] = work
    return out


def run_step(
    executor: Executor,
    works: Mapping[str, StepWork],
    on_line: LineSink | None,
) -> Iterator[HostResult | Message]:
    """Run each host's ``works`` entry (by target name) on ``executor``'s hosts that
    have one, in the executor's order; yield each result as it finishes.

    The whole batch runs the step even once the executor is drained (a
    playbook's batch in flight runs to its end); ``cancel()`` still stops it.
    On a cluster's worker (see :func:`for_cluster`) a packed put's sources are
    unpacked once into a private directory, and a shipping get's files are
    yielded as :class:`~remoteops.transfer.staging.Message` values before the
    host's result.
    """
    from remoteops.transfer.staging import outgoing, unpack

    with contextlib.ExitStack() as stack:
        private: Path | None = None

        def scratch(name: str) -> Path:
            nonlocal private
            if private is None:
                private = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ro-step-")))
            path = private / name
            path.mkdir()
            return path

        unpacked: dict[int, SourceSet] = {}
        bound: dict[int, OnSession] = {}
        dirs: dict[int, Path] = {}  # a shipping get's private directory, by record
        shipped: dict[str, Path] = {}  # by host
        by_name: dict[str, OnSession] = {}
        mine = {t.name for t in executor.targets}
        for name, work in works.items():
            if name not in mine:  # another shard's host
                continue
            key = id(work)
            if key not in bound:
                if isinstance(work, PutWork) and isinstance(work.sources, Staged):
                    staged = id(work.sources)
                    if staged not in unpacked:
                        into = scratch(f"put-{len(unpacked)}") / "sources"
                        unpacked[staged] = unpack(work.sources, into)
                    work = dataclasses.replace(work, sources=unpacked[staged])
                    bound[key] = work.bind(executor, on_line)
                elif isinstance(work, GetWork) and work.ship:
                    dirs[key] = scratch(f"get-{len(dirs)}")
                    bound[key] = work._bind(executor, dirs[key])
                else:
                    bound[key] = work.bind(executor, on_line)
            if key in dirs:
                shipped[name] = dirs[key]
            by_name[name] = bound[key]
        chosen = [t for t in executor.targets if t.name in by_name]

        def on_host(lease: Lease) -> HostResult:
            return by_name[lease.target.name](lease.session)

        for result in executor.fan_out(on_host, chosen, despite_drain=True):
            landed = shipped.get(result.host)
            if landed is not None and (landed / result.host).is_dir():
                yield from outgoing(landed, result.host)
                shutil.rmtree(landed / result.host, ignore_errors=True)
            yield result
