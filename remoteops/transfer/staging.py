"""Files over a cluster: ``put``'s sources out to the workers, ``get``'s files back.

The workers of a cluster (``--cluster``) may run on other machines: they cannot
read the client's files, and the client cannot read theirs. Both directions
travel as plain picklable values that a task argument or a stream of results
can carry; nothing here imports Dask.

put, once per worker, not once per host:

* ``pack(sources)`` on the client turns a ``SourceSet`` into a ``Staged``: the
  bytes of every file as blocks of at most ``STAGE_CHUNK`` (16 MiB; a file
  ``scan`` already holds in memory and that fits in one block is that very
  ``bytes`` object, not a copy), with each file's relative name, mode, times
  and sha256, and the set's directories and warnings. Blocks, not one big
  archive: no frame of a message is larger than 16 MiB, nothing is copied into
  a second buffer, and the worker writes a file without joining its blocks.
  Everything travels in memory, so ``pack`` refuses (``UsageError``, one line,
  exit 2) sources larger than ``limit`` (``DEFAULT_STAGE_LIMIT``, 512 MiB):
  the client holds them once (plus what the cluster's serializer copies while
  sending) and every worker holds them once while its shard runs.
* ``unpack(staged, into)`` on the worker writes the files under ``into`` (a
  private directory the caller owns and removes) and returns a ``SourceSet``
  whose files are read from there but that ``put`` sends exactly as the
  original: the same relative (remote) names, modes, mtimes and atimes (the
  quick check), sha256 (``--checksum``/``--verify``/``--resume``), directories,
  single-file flag and warnings. Files that fit in one block stay in memory
  (the block itself, up to ``memory_budget`` in all), as ``scan`` keeps them.

get, back to the client with bounded memory:

* ``outgoing(local_dir, host)`` on the worker, after the host's ``get`` into
  ``local_dir/<host>/``, yields ``Message`` values of at most ``GET_CHUNK``
  (1 MiB) of file data each: ``DirPart`` for every directory, then for every
  regular file a ``FileStart`` (path relative to ``local_dir/<host>``, size,
  mode, times in nanoseconds), its ``FileData`` (offset and bytes) and a
  ``FileEnd``. Small files share a message; a large one spans many. Symlinks
  and special files are never sent, nor get's own temporary ``.part`` files.
* ``Receiver(local_dir)`` on the client writes them to ``local_dir/<host>/``
  with the guarantees of a local ``get``: every path goes through
  ``safe_local_path`` (no ``..``, absolute paths, separators or control
  characters), directories are opened one component at a time with
  ``O_NOFOLLOW`` (``files._LocalTree``: a symlink planted under
  ``local_dir/<host>`` is never written through), each file is written under a
  temporary name and renamed into place only once all its bytes arrived,
  setuid, setgid and sticky bits are dropped. ``receive`` returns the errors of
  a message (``TransferError`` naming the host and the path; the other files
  go on), ``finish(host)`` ends a host's stream (a file still incomplete is
  removed and reported), ``abort(host)`` removes its temporary files.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from remoteops.errors import TransferError, UsageError
from remoteops.transfer.files import _LocalTree, _open_temp
from remoteops.transfer.model import (
    _DROP_SPECIAL_BITS,
    _MAX_DEPTH,
    _MAX_ENTRIES,
    _check_name,
    safe_local_path,
)
from remoteops.transfer.sources import DEFAULT_MEMORY_BUDGET, SourceFile, SourceSet

__all__ = [
    "DEFAULT_STAGE_LIMIT",
    "GET_CHUNK",
    "STAGE_CHUNK",
    "DirPart",
    "FileData",
    "FileEnd",
    "FileStart",
    "Message",
    "Part",
    "Receiver",
    "Staged",
    "StagedFile",
    "outgoing",
    "pack",
    "unpack",
]

STAGE_CHUNK = 16 * 1024 * 1024
"""Largest block of a staged source file."""

DEFAULT_STAGE_LIMIT = 512 * 1024 * 1024
"""Largest total of source bytes ``pack`` carries to the workers."""

GET_CHUNK = 1024 * 1024
"""Most file data in one ``Message`` of ``outgoing``."""

_MAX_PARTS = 1024  # parts in one message (many empty files)
_MAX_OPEN = 64  # files a receiver keeps open per host
_GET_TEMP = re.compile(r"\..+\.remoteops(-[0-9a-f]{8})?\.part")  # get's temporary names


def _size(count: int) -> str:
    return f"{count / (1024 * 1024):.1f} MiB"


# --------------------------------------------------------------------------- put


@dataclass(frozen=True, slots=True)
class StagedFile:
    """One source file as it travels: the scanned ``SourceFile`` (the client's path, the
    relative name, size, mode, times, sha256; no data) and its bytes in blocks."""

    source: SourceFile
    blocks: tuple[bytes, ...] = field(repr=False)


@dataclass(frozen=True, slots=True)
class Staged:
    """A ``SourceSet`` with the bytes of its files, ready to travel (see ``pack``)."""

    files: tuple[StagedFile, ...]
    dirs: tuple[tuple[str, int], ...]
    is_single_file: bool
    warnings: tuple[str, ...]

    @property
    def total_bytes(self) -> int:
        """Bytes of all files."""
        return sum(f.source.size for f in self.files)


def pack(
    sources: SourceSet, *, limit: int = DEFAULT_STAGE_LIMIT, chunk: int = STAGE_CHUNK
) -> Staged:
    """The bytes of every file of ``sources`` in blocks of at most ``chunk``, with their metadata.

    Raises ``UsageError`` if the files hold more than ``limit`` bytes in all, or
    if a file cannot be read or changed size since ``scan``.
    """
    total = sources.total_bytes
    if total > limit:
        raise UsageError(
            f"put: the sources hold {_size(total)}, more than the {_size(limit)} a cluster "
            "put carries to its workers; copy them to the workers' machines and put from "
            "there, or put without --cluster"
        )
    return Staged(
        files=tuple(_stage_file(src, chunk) for src in sources.files),
        dirs=sources.dirs,
        is_single_file=sources.is_single_file,
        warnings=sources.warnings,
    )


def _stage_file(src: SourceFile, chunk: int) -> StagedFile:
    if src.data is not None and len(src.data) <= chunk:
        blocks: tuple[bytes, ...] = (src.data,) if src.data else ()
    else:
        try:
            blocks = tuple(src.chunks(0, chunk))
        except TransferError as exc:
            raise UsageError(exc.message) from None
        except OSError as exc:
            raise UsageError(f"local {src.path}: {exc.strerror}") from None
    if sum(len(b) for b in blocks) != src.size:
        raise UsageError(f"local {src.path}: file changed size while it was being read")
    return StagedFile(replace(src, data=None), blocks)


def unpack(staged: Staged, into: Path, *, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> SourceSet:
    """Write the staged files under ``into``; a ``SourceSet`` that ``put`` sends as the original.

    ``into`` is a private directory of the caller (made 0700 if missing; it must
    be empty), who removes it after the put. Files within one block stay in
    memory while their total is within ``memory_budget``.
    """
    try:
        into.mkdir(mode=0o700, parents=True, exist_ok=True)
        if any(into.iterdir()):
            raise TransferError("", f"local {into}: not empty; unpack needs a directory of its own")
    except OSError as exc:
        raise TransferError("", f"local {into}: {exc.strerror}") from None
    files: list[SourceFile] = []
    budget = memory_budget
    for staged_file in staged.files:
        source = staged_file.source
        path = safe_local_path(into, source.relative)
        _write_blocks(path, staged_file)
        data: bytes | None = None
        if source.size <= budget and len(staged_file.blocks) <= 1:
            data = staged_file.blocks[0] if staged_file.blocks else b""
            budget -= source.size
        files.append(replace(source, path=path, data=data))
    return SourceSet(
        files=tuple(files),
        dirs=staged.dirs,
        is_single_file=staged.is_single_file,
        warnings=staged.warnings,
    )


def _write_blocks(path: Path, staged_file: StagedFile) -> None:
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            for block in staged_file.blocks:
                _write_all(fd, block)
        finally:
            os.close(fd)
    except OSError as exc:
        raise TransferError(
            "", f"local {path} (staging {staged_file.source.path}): {exc.strerror}"
        ) from None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# --------------------------------------------------------------------------- get


@dataclass(frozen=True, slots=True)
class DirPart:
    """A directory under ``LOCAL_DIR/<host>`` (created as a local ``get`` creates it)."""

    path: str


@dataclass(frozen=True, slots=True)
class FileStart:
    """A file begins: its path under ``LOCAL_DIR/<host>``, size, mode and times (ns)."""

    path: str
    size: int
    mode: int
    mtime_ns: int
    atime_ns: int


@dataclass(frozen=True, slots=True)
class FileData:
    """Bytes of a started file at ``offset`` (the parts of a file come in order)."""

    path: str
    offset: int
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class FileEnd:
    """A file is complete: it lands under its name if all its bytes arrived."""

    path: str


Part = DirPart | FileStart | FileData | FileEnd


@dataclass(frozen=True, slots=True)
class Message:
    """Parts of one host's files, at most ``GET_CHUNK`` bytes of data in all."""

    host: str
    parts: tuple[Part, ...]

    @property
    def data_bytes(self) -> int:
        """Bytes of file data carried."""
        return sum(len(p.data) for p in self.parts if isinstance(p, FileData))


def outgoing(local_dir: Path, host: str, *, chunk: int = GET_CHUNK) -> Iterator[Message]:
    """``local_dir/<host>``'s directories and regular files as messages of at most ``chunk``
    bytes of data (at least one message, maybe empty: the receiver then makes the host's
    directory, as a local get does). Symlinks, special files and get's temporary files
    are never sent."""
    try:
        _check_name(host, where="host name")
    except TransferError as exc:
        raise TransferError(host, exc.message) from None
    root = local_dir / host
    parts: list[Part] = []
    buffered = 0
    sent = False
    for relative, full, is_dir in _walk(root, host):
        if is_dir:
            parts.append(DirPart(relative))
        else:
            try:
                fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as exc:
                raise TransferError(host, f"local {full}: {exc.strerror}") from None
            try:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode):
                    continue
                parts.append(
                    FileStart(
                        relative,
                        info.st_size,
                        stat.S_IMODE(info.st_mode),
                        info.st_mtime_ns,
                        info.st_atime_ns,
                    )
                )
                offset = 0
                while offset < info.st_size:
                    if buffered >= chunk or len(parts) >= _MAX_PARTS:
                        yield Message(host, tuple(parts))
                        parts, buffered, sent = [], 0, True
                    data = os.read(fd, min(chunk - buffered, info.st_size - offset))
                    if not data:
                        raise TransferError(
                            host, f"local {full}: file shrank while it was being sent"
                        )
                    parts.append(FileData(relative, offset, data))
                    offset += len(data)
                    buffered += len(data)
                parts.append(FileEnd(relative))
            except OSError as exc:
                raise TransferError(host, f"local {full}: {exc.strerror}") from None
            finally:
                os.close(fd)
        if buffered >= chunk or len(parts) >= _MAX_PARTS:
            yield Message(host, tuple(parts))
            parts, buffered, sent = [], 0, True
    if parts or not sent:  # at least one message: the receiver makes LOCAL_DIR/<host>
        yield Message(host, tuple(parts))


def _walk(root: Path, host: str) -> Iterator[tuple[str, Path, bool]]:
    """(relative path, path, is a directory) below ``root``, parents first, never
    through a symlink; regular files only, not get's temporary files."""
    if not root.is_dir() or root.is_symlink():
        return
    seen = 0
    for current, subdirs, names in os.walk(root, followlinks=False):
        rel_dir = Path(current).relative_to(root).as_posix()
        depth = 0 if rel_dir == "." else rel_dir.count("/") + 1
        if depth >= _MAX_DEPTH:
            raise TransferError(host, f"local {current}: deeper than {_MAX_DEPTH} levels")
        subdirs.sort()
        for name in list(subdirs):
            full = Path(current, name)
            if full.is_symlink():
                subdirs.remove(name)
                continue
            yield (_join(rel_dir, name), full, True)
        for name in sorted(names):
            seen += 1
            if seen > _MAX_ENTRIES:
                raise TransferError(host, f"local {root}: more than {_MAX_ENTRIES} files")
            full = Path(current, name)
            if _GET_TEMP.fullmatch(name) or not stat.S_ISREG(full.lstat().st_mode):
                continue
            yield (_join(rel_dir, name), full, False)


def _join(rel_dir: str, name: str) -> str:
    return name if rel_dir == "." else f"{rel_dir}/{name}"


@dataclass(slots=True)
class _Incoming:
    start: FileStart
    parts: tuple[str, ...]
    temp: str
    fd: int
    received: int = 0


@dataclass(slots=True)
class _HostStream:
    tree: _LocalTree
    open: dict[str, _Incoming] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)
    files: int = 0
    bytes: int = 0


class Receiver:
    """Writes what ``outgoing`` sent into ``local_dir/<host>/`` as a local ``get`` would.

    ``preserve``: give each file the atime it had on the worker (``get -p``);
    otherwise the time of writing, as a local get does. ``hosts``: the only
    host names accepted (those the client sent to the worker); a message for
    another host is refused whole.
    """

    def __init__(
        self, local_dir: Path, *, preserve: bool = False, hosts: Collection[str] | None = None
    ) -> None:
        self.local_dir = local_dir
        self.preserve = preserve
        self.hosts = None if hosts is None else frozenset(hosts)
        self._hosts: dict[str, _HostStream] = {}

    def receive(self, message: Message) -> list[TransferError]:
        """Write one message's parts; the errors of the files it failed (the others go on)."""
        host = message.host
        stream = self._hosts.get(host)
        if stream is None:
            if self.hosts is not None and host not in self.hosts:
                return [
                    TransferError(
                        host,
                        f"local {self.local_dir}: refused files of a host this get did not ask for",
                    )
                ]
            try:
                stream = _HostStream(_LocalTree(self.local_dir, host))
            except TransferError as exc:
                error = TransferError(host, exc.message)
                return [error]
            self._hosts[host] = stream
        errors: list[TransferError] = []
        for part in message.parts:
            try:
                self._part(stream, part)
            except TransferError as exc:
                error = TransferError(host, exc.message)
                errors.append(error)
                self._drop(stream, part.path)
                if not isinstance(part, FileEnd | DirPart):
                    stream.failed.add(part.path)  # its later parts are ignored
        return errors

    def counts(self, host: str) -> tuple[int, int]:
        """(files written, bytes written) for ``host`` so far."""
        stream = self._hosts.get(host)
        return (stream.files, stream.bytes) if stream else (0, 0)

    def finish(self, host: str) -> list[TransferError]:
        """End ``host``'s stream; the errors of the files still incomplete (the stream was
        cut before their end), which are removed. ``receive`` returned the others."""
        stream = self._hosts.pop(host, None)
        if stream is None:
            return []
        errors: list[TransferError] = []
        for path, incoming in list(stream.open.items()):
            errors.append(
                TransferError(
                    host,
                    f"local {self._shown(stream, incoming.parts)}: the stream ended after "
                    f"{incoming.received} of {incoming.start.size} bytes; not written",
                )
            )
            self._drop(stream, path)
        stream.tree.close()
        return errors

    def abort(self, host: str) -> None:
        """Forget ``host``'s stream, removing the temporary files of its incomplete files."""
        stream = self._hosts.pop(host, None)
        if stream is None:
            return
        for path in list(stream.open):
            self._drop(stream, path)
        stream.tree.close()

    def close(self) -> None:
        """Abort every host's stream."""
        for host in list(self._hosts):
            self.abort(host)

    # ------------------------------------------------------------------ parts

    def _part(self, stream: _HostStream, part: Part) -> None:
        if part.path in stream.failed:
            if isinstance(part, FileEnd):
                stream.failed.discard(part.path)
            return
        if isinstance(part, DirPart):
            stream.tree.dir_fd(self._parts(stream, part.path))
        elif isinstance(part, FileStart):
            self._start(stream, part)
        elif isinstance(part, FileData):
            self._data(stream, part)
        else:
            self._end(stream, part)

    def _parts(self, stream: _HostStream, path: str) -> tuple[str, ...]:
        return safe_local_path(stream.tree.root, path).relative_to(stream.tree.root).parts

    @staticmethod
    def _shown(stream: _HostStream, parts: tuple[str, ...]) -> Path:
        return stream.tree.root.joinpath(*parts)

    def _start(self, stream: _HostStream, part: FileStart) -> None:
        parts = self._parts(stream, part.path)
        shown = self._shown(stream, parts)
        if part.path in stream.open:
            raise TransferError("", f"local {shown}: started twice in one stream")
        if len(stream.open) >= _MAX_OPEN:
            raise TransferError("", f"local {shown}: more than {_MAX_OPEN} files open at once")
        if part.size < 0:
            raise TransferError("", f"local {shown}: refused a negative size")
        try:
            temp, fd = _open_temp(stream.tree, parts)
        except OSError as exc:
            raise TransferError("", f"local {shown}: {exc.strerror}") from None
        stream.open[part.path] = _Incoming(part, parts, temp, fd)

    def _incoming(self, stream: _HostStream, path: str, what: str) -> tuple[_Incoming, Path]:
        """The started file ``path`` and its local path; refused if it was never started."""
        incoming = stream.open.get(path)
        if incoming is None:
            shown = self._shown(stream, self._parts(stream, path))
            raise TransferError("", f"local {shown}: {what} a file that was never started")
        return incoming, self._shown(stream, incoming.parts)

    def _data(self, stream: _HostStream, part: FileData) -> None:
        incoming, shown = self._incoming(stream, part.path, "data for")
        if part.offset != incoming.received:
            raise TransferError(
                "", f"local {shown}: data at byte {part.offset}, expected {incoming.received}"
            )
        if incoming.received + len(part.data) > incoming.start.size:
            raise TransferError(
                "", f"local {shown}: more than the {incoming.start.size} bytes announced"
            )
        try:
            _write_all(incoming.fd, part.data)
        except OSError as exc:
            raise TransferError("", f"local {shown}: {exc.strerror}") from None
        incoming.received += len(part.data)
        stream.bytes += len(part.data)

    def _end(self, stream: _HostStream, part: FileEnd) -> None:
        incoming, shown = self._incoming(stream, part.path, "end of")
        start = incoming.start
        if incoming.received != start.size:
            raise TransferError(
                "", f"local {shown}: got {incoming.received} of {start.size} bytes; not written"
            )
        try:
            os.fchmod(incoming.fd, stat.S_IMODE(start.mode) & _DROP_SPECIAL_BITS)
            atime = start.atime_ns if self.preserve else time.time_ns()
            os.utime(incoming.fd, ns=(atime, start.mtime_ns))
            os.close(incoming.fd)
            incoming.fd = -1
            fd = stream.tree.dir_fd(incoming.parts[:-1])
            os.rename(incoming.temp, incoming.parts[-1], src_dir_fd=fd, dst_dir_fd=fd)
        except OSError as exc:
            raise TransferError("", f"local {shown}: {exc.strerror}") from None
        del stream.open[part.path]
        stream.files += 1

    @staticmethod
    def _drop(stream: _HostStream, path: str) -> None:
        """Forget an incomplete file: close and remove its temporary file."""
        incoming = stream.open.pop(path, None)
        if incoming is None:
            return
        if incoming.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(incoming.fd)
        with contextlib.suppress(OSError, TransferError):
            os.unlink(incoming.temp, dir_fd=stream.tree.dir_fd(incoming.parts[:-1]))
