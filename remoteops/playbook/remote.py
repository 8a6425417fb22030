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

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from remoteops.execution import Executor, Lease
    from remoteops.operations import CommandSpec
    from remoteops.results import HostResult
    from remoteops.session import LineSink, Session
    from remoteops.target import Target
    from remoteops.transfer import SourceSet, TransferOptions

__all__ = ["GetWork", "PingWork", "PutWork", "RunWork", "StepWork", "run_step"]

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
    """``put``: ``sources`` (scanned once on the client) to ``dest``."""

    sources: SourceSet
    dest: str
    options: TransferOptions
    timeout: float | None

    def bind(self, executor: Executor, on_line: LineSink | None) -> OnSession:
        from remoteops.transfer import Put

        put = Put(executor, self.sources, self.dest, options=self.options, timeout=self.timeout)
        return put.on


@dataclass(frozen=True, slots=True)
class GetWork(StepWork):
    """``get``: ``remotes`` into ``local_dir``/<host>/ (the result names it as ``dest``)."""

    remotes: tuple[str, ...]
    local_dir: Path
    options: TransferOptions
    timeout: float | None

    def bind(self, executor: Executor, on_line: LineSink | None) -> OnSession:
        from remoteops.transfer import Get

        fetch = Get(
            executor, list(self.remotes), self.local_dir, options=self.options, timeout=self.timeout
        )
        local_dir = self.local_dir

        def get(session: Session) -> HostResult:
            result = fetch.on(session)
            dest = str(local_dir / session.target.name)
            return dataclasses.replace(result, extra={**result.extra, "dest": dest})

        return get


def run_step(
    executor: Executor,
    works: Mapping[str, StepWork],
    targets: Sequence[Target],
    on_line: LineSink | None,
) -> Iterable[HostResult]:
    """Run each host's ``works`` entry (by target name) on ``executor``, the hosts of
    ``targets`` it has, each bound once per distinct record; yield each result.

    The whole batch runs the step even once the executor is drained (a
    playbook's batch in flight runs to its end); ``cancel()`` still stops it.
    """
    bound: dict[int, OnSession] = {}
    by_name: dict[str, OnSession] = {}
    for name, work in works.items():
        key = id(work)
        if key not in bound:
            bound[key] = work.bind(executor, on_line)
        by_name[name] = bound[key]
    mine = {t.name for t in executor.targets}
    chosen = [t for t in targets if t.name in mine]

    def on_host(lease: Lease) -> HostResult:
        return by_name[lease.target.name](lease.session)

    return executor.fan_out(on_host, chosen, despite_drain=True)
