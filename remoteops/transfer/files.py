"""The files in flight, shared by the SFTP and the stream paths.

put: ``_PutItem`` (a source file, its remote path and temporary name) and the
source times stamped on each copy (``_copy_times``, ``_stamp_source_times``).
get: ``_RemoteFile``/``_GetItem`` and ``_LocalTree``, the directories under
``LOCAL_DIR/<host>`` opened one component at a time with ``O_NOFOLLOW``, and how
received files are verified (``--verify``), renamed into place or discarded.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paramiko.sftp import CMD_SETSTAT, SFTP_OK

from remoteops.become import Remote
from remoteops.errors import TransferError
from remoteops.transfer.hostwork import _Stats
from remoteops.transfer.model import GetOptions, PutOptions, TransferOptions, _check_name, _now
from remoteops.transfer.sftp import _attrs, _Pipe, _remote_sha256, _sftp_sha256, _status_of
from remoteops.transfer.sources import SourceFile

# --------------------------------------------------------------------------- put


@dataclass(slots=True)
class _PutItem:
    src: SourceFile
    remote: str
    temp: str
    offset: int = 0
    handle: bytes | None = None
    error: str | None = None
    owner: tuple[int, int] | None = None  # (uid, gid) of the file this one replaces


def _copy_times(src: SourceFile, opts: TransferOptions) -> tuple[int, int]:
    """(atime, mtime) of a copy: always the source's mtime; its atime too with ``preserve``."""
    return (src.atime if opts.preserve else _now(), src.mtime)


def _stamp_source_times(
    pipe: _Pipe, items: list[_PutItem], opts: PutOptions, *, final: bool = False
) -> None:
    """``preserve``: give each temporary file (``final``: each copy) its source's times."""
    replies = pipe.run(
        (
            CMD_SETSTAT,
            (item.remote if final else item.temp, _attrs(times=_copy_times(item.src, opts))),
        )
        for item in items
    )
    for item, (kind, msg) in zip(items, replies, strict=True):
        code, text = _status_of(kind, msg)
        if code != SFTP_OK:
            item.error = f"remote {item.remote}: {text} (setting its times)"


# --------------------------------------------------------------------------- get

_FD_CACHE = 64  # directory descriptors a _LocalTree keeps open


@dataclass(slots=True)
class _RemoteFile:
    remote: str
    relative: str
    size: int
    mode: int
    mtime: int
    atime: int


class _LocalTree:
    """Directories under LOCAL_DIR/<host>, created and opened one component at a time.

    Every component is opened with O_NOFOLLOW relative to its parent's
    descriptor, so a symlink planted anywhere below LOCAL_DIR/<host> fails the
    file instead of being written through.
    """

    def __init__(self, local_dir: Path, host: str) -> None:
        _check_name(host, where="host name")
        self.root = local_dir / host
        try:
            local_dir.mkdir(parents=True, exist_ok=True)
            top = os.open(local_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise TransferError(host, f"local {local_dir}: {exc.strerror}") from None
        try:
            self._root_fd = self._open_child(top, host, local_dir / host)
        finally:
            os.close(top)
        self._fds: dict[tuple[str, ...], int] = {}

    @staticmethod
    def _open_child(parent: int, name: str, shown: Path) -> int:
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir(name, 0o755, dir_fd=parent)
            return os.open(
                name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent
            )
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise TransferError(
                    "", f"local {shown}: not a directory (a file or symlink is in the way)"
                ) from None
            raise TransferError("", f"local {shown}: {exc.strerror}") from None

    def dir_fd(self, parts: tuple[str, ...]) -> int:
        """A descriptor of LOCAL_DIR/<host>/PARTS..., creating directories as needed."""
        if not parts:
            return self._root_fd
        cached = self._fds.get(parts)
        if cached is not None:
            return cached
        if len(self._fds) >= _FD_CACHE:
            self.close_dirs()
        parent = self.dir_fd(parts[:-1])
        fd = self._open_child(parent, parts[-1], self.root.joinpath(*parts))
        self._fds[parts] = fd
        return fd

    def close_dirs(self) -> None:
        """Close the cached directory descriptors (not the host directory)."""
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def close(self) -> None:
        """Close every descriptor."""
        self.close_dirs()
        os.close(self._root_fd)


def _open_temp(tree: _LocalTree, parts: tuple[str, ...]) -> tuple[str, int]:
    """A new temporary file beside ``LOCAL_DIR/<host>/PARTS``: (its name, a descriptor).

    ``.NAME.remoteops-<random>.part``, created exclusively (``O_EXCL``,
    ``O_NOFOLLOW``, mode 0600) in the directory ``tree`` opened for it.
    """
    temp = f".{parts[-1]}.remoteops-{secrets.token_hex(4)}.part"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    return temp, os.open(temp, flags, 0o600, dir_fd=tree.dir_fd(parts[:-1]))


@dataclass(slots=True)
class _GetItem:
    file: _RemoteFile
    parts: tuple[str, ...]
    temp: str = ""
    fd: int = -1
    handle: bytes | None = None
    offset: int = 0
    received: int = 0
    hasher: Any = None
    error: str | None = None
    saw_eof: bool = False
    renamed: bool = False

    @property
    def name(self) -> str:
        return self.parts[-1]


def _discard_received(tree: _LocalTree, items: list[_GetItem]) -> None:
    for item in items:
        if item.temp:
            with contextlib.suppress(OSError, TransferError):
                os.unlink(item.temp, dir_fd=tree.dir_fd(item.parts[:-1]))


def _verify_received(session: Remote, items: list[_GetItem], cancel: threading.Event) -> None:
    """``--verify``: fail each received file whose sha256 is not the remote file's."""
    hashes = _remote_sha256(session, [i.file.remote for i in items], cancel)
    for item in items:
        remote = hashes.get(item.file.remote) or _sftp_sha256(session, item.file.remote)
        if remote != item.hasher.hexdigest():
            item.error = f"remote {item.file.remote}: sha256 mismatch after download"


def _get_commit(
    session: Remote,
    tree: _LocalTree,
    items: list[_GetItem],
    opts: GetOptions,
    stats: _Stats,
    cancel: threading.Event,
) -> None:
    """Rename the files a stream brought into place (``--verify``: those whose sha256 agrees)."""
    try:
        if opts.verify:
            _verify_received(session, [i for i in items if i.error is None], cancel)
        for item in items:
            if item.error is None:
                fd = tree.dir_fd(item.parts[:-1])
                try:
                    os.rename(item.temp, item.name, src_dir_fd=fd, dst_dir_fd=fd)
                except OSError as exc:
                    item.error = f"local {tree.root.joinpath(*item.parts)}: {exc.strerror}"
                else:
                    item.renamed = True
                    stats.done()
                    stats.covered.append(item.file.remote)
            if item.error is not None:
                stats.fail(item.error)
    finally:
        _discard_received(tree, [i for i in items if not i.renamed])
