"""``put`` and ``get`` as operations a cluster's shards run (``--cluster``; docs/cluster.md).

A worker may be on another machine: it cannot read the client's sources, and
the client cannot read what it downloads. :class:`ClusterPut` carries the
sources packed (:func:`remoteops.transfer.staging.pack`: once per worker,
since each shard receives its operation once, not once per host) and unpacks
them into a private directory on the worker, from which the normal ``put``
sends them to every host of the shard. :class:`ClusterGet` downloads into a
private directory on the worker and, as each host finishes, yields that host's
files as :class:`~remoteops.transfer.staging.Message` values (at most 1 MiB of
data each) *before* its result; the client's :class:`ClientFiles` writes them
under ``LOCAL_DIR/<host>/`` with the checks and atomic writes of a local
``get`` and folds any file it refused into the host's result.

Both are frozen dataclasses, so they travel by pickling without the client's
executor, and a shard builds nothing from the client's paths.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from remoteops.errors import TransferError
from remoteops.results import HostResult
from remoteops.transfer.staging import Message, Receiver, Staged, outgoing, unpack

if TYPE_CHECKING:
    from remoteops.execution import Executor
    from remoteops.session import LineSink
    from remoteops.transfer.model import GetOptions, ProgressSink, PutOptions

__all__ = ["ClientFiles", "ClusterGet", "ClusterPut"]


@dataclass(frozen=True, slots=True)
class ClusterPut:
    """``put`` on a shard: ``staged`` (the client's sources) to ``dest`` on each host."""

    staged: Staged
    dest: str
    options: PutOptions

    def __call__(
        self, executor: Executor, _line: LineSink | None, progress: ProgressSink | None
    ) -> Iterator[HostResult]:
        from remoteops.transfer.put import put

        with tempfile.TemporaryDirectory(prefix="remoteops-put-") as tmp:
            sources = unpack(self.staged, Path(tmp) / "sources")
            yield from put(executor, sources, self.dest, options=self.options, progress=progress)


@dataclass(frozen=True, slots=True)
class ClusterGet:
    """``get`` on a shard: ``remotes`` into a private directory, then each host's files
    back to the client (as messages, before the host's result)."""

    remotes: tuple[str, ...]
    options: GetOptions

    def __call__(
        self, executor: Executor, _line: LineSink | None, progress: ProgressSink | None
    ) -> Iterator[HostResult | Message]:
        from remoteops.transfer.get import get

        with tempfile.TemporaryDirectory(prefix="remoteops-get-") as tmp:
            local = Path(tmp)
            for result in get(
                executor, list(self.remotes), local, options=self.options, progress=progress
            ):
                here = local / result.host
                failed: list[TransferError] = []
                if here.is_dir():
                    try:
                        yield from outgoing(local, result.host)
                    except TransferError as exc:  # a file the worker cannot read back
                        failed.append(exc)
                    shutil.rmtree(here, ignore_errors=True)
                yield with_file_errors(result, failed)


def with_file_errors(result: HostResult, errors: Sequence[TransferError]) -> HostResult:
    """``result`` with ``errors`` (files that did not land) counted as failed files; an
    ``ok`` host becomes ``failed``, as a local transfer with a failed file is."""
    if not errors:
        return result
    extra: dict[str, Any] = dict(result.extra)
    failed = int(extra.get("failed_files", 0)) + len(errors)
    messages = [*extra.get("errors", ()), *(str(e) for e in errors)]
    extra.update(failed_files=failed, errors=messages[:20])
    if result.status != "ok":
        return dataclasses.replace(result, extra=extra)
    first = str(errors[0])
    error = f"{failed} files failed; first: {first}" if failed > 1 else first
    return dataclasses.replace(result, status="failed", error=error, extra=extra)


class ClientFiles:
    """On the client: the files shards send back, written under ``local_dir/<host>/``.

    ``receive`` is given each message as it arrives; ``settle`` is given each
    host's result, which comes after its files: a stream cut short is removed
    and, with any file refused, counted in the result.
    """

    def __init__(self, local_dir: Path, hosts: Sequence[str], *, preserve: bool) -> None:
        self._receiver = Receiver(local_dir, preserve=preserve, hosts=set(hosts))
        self._errors: dict[str, list[TransferError]] = {}

    def receive(self, message: object) -> None:
        """One message of a shard's files."""
        if not isinstance(message, Message):
            raise TypeError(f"not a file message: {type(message).__name__}")
        errors = self._receiver.receive(message)
        if errors:
            self._errors.setdefault(message.host, []).extend(errors)

    def settle(self, result: HostResult) -> HostResult:
        """The host's result with the files that did not land counted in it."""
        errors = self._errors.pop(result.host, [])
        errors += self._receiver.finish(result.host)
        return with_file_errors(result, errors)

    def abort(self, host: str) -> None:
        """Remove the temporary files of a host whose stream will never end."""
        self._receiver.abort(host)

    def close(self) -> None:
        """Remove every temporary file still open."""
        self._receiver.close()
