"""``get``: download into ``LOCAL_DIR/<host>/<remote path>``; ``Get.on`` is the per-host
operation, ``get`` fans it out.

Per host: the remote paths expanded (globs with listdir and fnmatch,
directories walked, symlinks never followed inside a tree: ``_expand_remote``,
or one listing command where the fast paths allow), the quick check or
sha256 against the local copies (``_get_compare``, ``_get_checksum_filter``),
then the files read through the SFTP pipe (``_get_stream``) or the streams,
written under temporary names through ``files._LocalTree`` and renamed into
place once complete (``_get_finish``).
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import posixpath
import stat
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import paramiko
from paramiko.sftp import (
    CMD_CLOSE,
    CMD_DATA,
    CMD_HANDLE,
    CMD_NAME,
    CMD_OPEN,
    CMD_OPENDIR,
    CMD_READ,
    CMD_READDIR,
    CMD_STAT,
    SFTP_EOF,
    SFTP_FLAG_READ,
    int64,
)
from paramiko.sftp_attr import SFTPAttributes

from remoteops import bulk
from remoteops.become import Remote
from remoteops.errors import InterruptedHostError, TransferError
from remoteops.results import HostResult
from remoteops.transfer.files import (
    _GetItem,
    _LocalTree,
    _open_temp,
    _RemoteFile,
    _verify_received,
)
from remoteops.transfer.hostwork import HostTransfer, _Stats
from remoteops.transfer.model import (
    _BATCH,
    _CHUNK,
    _DROP_SPECIAL_BITS,
    _MAX_DEPTH,
    _MAX_ENTRIES,
    _WINDOW,
    GetOptions,
    ProgressSink,
    _check_name,
    _has_magic,
    _now,
    _same_copy,
    _wire_seconds,
    safe_local_path,
)
from remoteops.transfer.sftp import (
    _attrs,
    _attrs_of,
    _Pipe,
    _private,
    _remote_prefix_sha256,
    _remote_sha256,
    _sftp_sha256,
    _status_of,
)
from remoteops.transfer.streams import (
    _EXEC_STREAM_MIN,
    _TAR_MIN_FILES,
    _get_stream_exec,
    _get_tar,
    _list_remote,
)

if TYPE_CHECKING:
    from remoteops.execution import Executor


class Get(HostTransfer):
    """get as a per-host operation: ``on(session)`` downloads from one host's open session.

    ``timeout`` replaces the executor's transfer deadline.
    """

    def __init__(
        self,
        executor: Executor,
        remotes: Sequence[str],
        local_dir: Path,
        *,
        options: GetOptions | None = None,
        progress: ProgressSink | None = None,
        timeout: float | None = None,
    ) -> None:
        opts = options or GetOptions()
        super().__init__(executor, opts, progress, timeout)
        self.get_opts = opts
        self.remotes = remotes
        self.local_dir = local_dir

    def body(self, session: Remote, stats: _Stats, temps: set[str]) -> None:
        """Download from one host (its local temporary files are removed by ``_get_host``)."""
        del temps
        cancel = self.executor.cancel_event
        _get_host(session, self.remotes, self.local_dir, self.get_opts, stats, cancel)


def get(
    executor: Executor,
    remotes: Sequence[str],
    local_dir: Path,
    *,
    options: GetOptions | None = None,
    progress: ProgressSink | None = None,
) -> Iterator[HostResult]:
    """Download ``remotes`` (files, directories, globs) into ``local_dir/<host>/<remote path>``.

    A remote absolute path ``/var/log/x`` lands as ``local_dir/<host>/var/log/x``;
    a relative one is taken from the login directory and lands under its
    absolute path. A local copy with exactly the remote file's size and mtime
    is left alone (``checksum`` or ``verify``: its sha256). Yields each host's
    result as it finishes.
    """
    return Get(executor, remotes, local_dir, options=options, progress=progress).fan_out()


def _get_host(
    session: Remote,
    remotes: Sequence[str],
    local_dir: Path,
    opts: GetOptions,
    stats: _Stats,
    cancel: threading.Event,
) -> None:
    host = session.target.name
    try:
        tree = _LocalTree(local_dir, host)
    except TransferError as exc:
        raise TransferError(host, exc.message) from None
    try:
        files = None
        if bulk.fast_paths_enabled() and _names_a_directory(session, remotes, cancel):
            files = _list_remote(session, remotes, stats, cancel)
        if files is None:
            files = _expand_remote(session, remotes, stats, cancel)
        items: list[_GetItem] = []
        for file in files:
            try:
                path = safe_local_path(tree.root, file.relative)
            except TransferError as exc:
                stats.fail(exc.message)
                continue
            items.append(_GetItem(file, path.relative_to(tree.root).parts))
        todo: list[_GetItem] = []
        for start in range(0, len(items), _BATCH):
            todo += _get_compare(tree, items[start : start + _BATCH], opts, stats)
            tree.close_dirs()
        streamed = [i for i in todo if i.file.size < _EXEC_STREAM_MIN]
        if bulk.fast_paths_enabled() and not opts.resume and len(streamed) >= _TAR_MIN_FILES:
            todo = [i for i in todo if i.file.size >= _EXEC_STREAM_MIN]
            if opts.checksum or opts.verify:
                streamed = _get_checksum_filter(session, tree, streamed, opts, stats, cancel)
            back = _get_tar(session, tree, streamed, opts, stats, cancel)
            _get_batches(session, tree, back, opts, stats, cancel, filtered=True)
        _get_batches(session, tree, todo, opts, stats, cancel, filtered=False)
    finally:
        tree.close()


def _get_batches(
    session: Remote,
    tree: _LocalTree,
    items: list[_GetItem],
    opts: GetOptions,
    stats: _Stats,
    cancel: threading.Event,
    *,
    filtered: bool,
) -> None:
    """Fetch ``items`` over SFTP (each large one alone, through `cat` where it can)."""
    for start in range(0, len(items), _BATCH):
        batch = items[start : start + _BATCH]
        big = [i for i in batch if i.file.size > _CHUNK * _WINDOW]
        small = [i for i in batch if i.file.size <= _CHUNK * _WINDOW]
        for group in [small, *([b] for b in big)]:
            if group:
                _get_batch(session, tree, group, opts, stats, cancel, filtered=filtered)
        tree.close_dirs()


def _names_a_directory(session: Remote, remotes: Sequence[str], cancel: threading.Event) -> bool:
    """Whether a remote path given (not a glob) is a directory, in one SFTP round trip.

    Files named one by one are stat'ed over SFTP anyway; only a directory
    tree is worth a listing command (and a tar stream).
    """
    plain = [spec for spec in remotes if not _has_magic(spec)]
    if not plain:
        return False
    replies = _Pipe(session, cancel).run((CMD_STAT, (spec,)) for spec in plain)
    for kind, msg in replies:
        attrs = _attrs_of(kind, msg)
        if attrs is not None and stat.S_ISDIR(attrs.st_mode or 0):
            return True
    return False


def _expand_remote(
    session: Remote, remotes: Sequence[str], stats: _Stats, cancel: threading.Event
) -> list[_RemoteFile]:
    """Remote files to fetch: globs expanded with listdir + fnmatch, directories walked."""
    sftp = session.sftp()
    home: str | None = None
    found: dict[str, _RemoteFile] = {}
    for spec in remotes:
        if spec.startswith("/"):
            path = posixpath.normpath(spec)
        else:
            if home is None:
                try:
                    home = sftp.normalize(".")
                except UnicodeDecodeError:
                    raise TransferError(
                        stats.host,
                        "remote home directory's name is not valid UTF-8; "
                        "give absolute remote paths",
                    ) from None
                if not home.startswith("/"):
                    raise TransferError(
                        stats.host,
                        f"remote home directory {home!r} is not an absolute path; "
                        "give absolute remote paths",
                    )
            path = posixpath.normpath(posixpath.join(home, spec))
        path = "/" + path.lstrip("/")
        parts = [p for p in path.split("/") if p]
        if not any(_has_magic(p) for p in parts):
            try:
                attrs = sftp.stat(path)  # a path named on the command line is followed
            except OSError as exc:
                stats.fail(f"remote {path}: {exc.strerror or exc}")
                continue
            _add_remote(session, path, attrs, found, stats, cancel)
            continue
        matches = _glob_remote(session, parts, stats)
        if not matches:
            stats.fail(f"remote {path}: no file matches this pattern")
        for match, attrs in matches:
            _add_remote(session, match, attrs, found, stats, cancel)
    return list(found.values())


def _open_resume_part(name: str, dir_fd: int) -> int:
    """Open (or create) a ``--resume`` part file, never one shared with another path.

    A hard link planted under the part file's name would otherwise let the
    download write into whatever file it shares (O_NOFOLLOW stops symlinks
    only). Anything but a regular file with one link is removed and the
    transfer starts afresh with an exclusive create.
    """
    fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    info = os.fstat(fd)
    if stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
        return fd
    os.close(fd)
    os.unlink(name, dir_fd=dir_fd)
    return os.open(
        name,
        os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
        dir_fd=dir_fd,
    )


def _listdir(sftp: paramiko.SFTPClient, directory: str, stats: _Stats) -> list[SFTPAttributes]:
    """``listdir_attr`` that keeps going past names that are not valid UTF-8.

    paramiko decodes every name of a listing strictly, so one Latin-1 file
    name would hide the whole directory. Names are read as bytes here; an
    undecodable one fails that file only, and ``.``/``..`` are dropped.
    """
    client = _private(sftp)
    kind, msg = client._request(CMD_OPENDIR, directory)
    if kind != CMD_HANDLE:
        raise OSError(f"unexpected reply listing {directory}")
    handle = msg.get_binary()
    entries: list[SFTPAttributes] = []
    try:
        for _ in range(_MAX_ENTRIES + 1):
            try:
                kind, msg = client._request(CMD_READDIR, handle)
            except EOFError:
                break
            if kind != CMD_NAME:
                raise OSError(f"unexpected reply listing {directory}")
            for _ in range(msg.get_int()):
                raw_name = msg.get_string()
                raw_long = msg.get_string()
                try:
                    name = raw_name.decode("utf-8")
                except UnicodeDecodeError:
                    _private(SFTPAttributes)._from_msg(msg)
                    shown = raw_name.decode("utf-8", errors="backslashreplace")
                    stats.fail(
                        f"remote {directory}: file name {shown!r} is not valid UTF-8; not fetched"
                    )
                    continue
                attrs = _private(SFTPAttributes)._from_msg(
                    msg, name, raw_long.decode("utf-8", errors="replace")
                )
                if name not in (".", ".."):
                    entries.append(attrs)
    finally:
        with contextlib.suppress(Exception):
            client._request(CMD_CLOSE, handle)
    return entries


def _glob_remote(
    session: Remote, parts: list[str], stats: _Stats
) -> list[tuple[str, SFTPAttributes]]:
    sftp = session.sftp()
    current: list[tuple[str, SFTPAttributes | None]] = [("/", None)]
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        nxt: list[tuple[str, SFTPAttributes | None]] = []
        for base, _ in current:
            if not _has_magic(part):
                nxt.append((posixpath.join(base, part), None))
                continue
            try:
                entries = _listdir(sftp, base, stats)
            except OSError:
                continue
            for entry in sorted(entries, key=lambda e: e.filename):
                name = entry.filename
                try:
                    _check_name(name, where=f"remote directory {base}")
                except TransferError as exc:
                    stats.fail(exc.message)
                    continue
                if name.startswith(".") and not part.startswith("."):
                    continue
                if not fnmatch.fnmatchcase(name, part):
                    continue
                mode = entry.st_mode or 0
                if not last and not stat.S_ISDIR(mode):
                    continue
                nxt.append((posixpath.join(base, name), entry))
        current = nxt
    out: list[tuple[str, SFTPAttributes]] = []
    for path, attrs in current:
        if attrs is None:
            try:
                attrs = sftp.lstat(path)
            except OSError:
                continue
        out.append((path, attrs))
    return out


def _add_remote(
    session: Remote,
    path: str,
    attrs: SFTPAttributes,
    found: dict[str, _RemoteFile],
    stats: _Stats,
    cancel: threading.Event,
) -> None:
    mode = attrs.st_mode or 0
    if stat.S_ISLNK(mode):
        stats.warn(f"remote {path}: symlink not followed (skipped)")
        return
    if stat.S_ISREG(mode):
        found[path] = _RemoteFile(
            path,
            path.lstrip("/"),
            attrs.st_size or 0,
            mode,
            attrs.st_mtime or 0,
            attrs.st_atime or 0,
        )
        return
    if not stat.S_ISDIR(mode):
        stats.warn(f"remote {path}: not a regular file or directory (skipped)")
        return
    sftp = session.sftp()
    stack: list[tuple[str, int]] = [(path, 0)]
    seen = 0
    while stack:
        if cancel.is_set():
            raise InterruptedHostError(stats.host, "interrupted while listing remote files")
        directory, depth = stack.pop()
        try:
            entries = _listdir(sftp, directory, stats)
        except OSError as exc:
            stats.fail(f"remote {directory}: {exc.strerror or exc} (listing the directory)")
            continue
        for entry in entries:
            seen += 1
            if seen > _MAX_ENTRIES:
                stats.fail(f"remote {path}: more than {_MAX_ENTRIES} entries; stopped listing")
                return
            name = entry.filename
            try:
                _check_name(name, where=f"remote directory {directory}")
            except TransferError as exc:
                stats.fail(exc.message)
                continue
            full = posixpath.join(directory, name)
            emode = entry.st_mode or 0
            if stat.S_ISDIR(emode):
                if depth + 1 >= _MAX_DEPTH:
                    stats.fail(f"remote {full}: deeper than {_MAX_DEPTH} levels; skipped")
                    continue
                stack.append((full, depth + 1))
            elif stat.S_ISREG(emode):
                found[full] = _RemoteFile(
                    full,
                    full.lstrip("/"),
                    entry.st_size or 0,
                    emode,
                    entry.st_mtime or 0,
                    entry.st_atime or 0,
                )
            elif stat.S_ISLNK(emode):
                stats.warn(f"remote {full}: symlink not followed (skipped)")
            else:
                stats.warn(f"remote {full}: not a regular file or directory (skipped)")


def _get_compare(
    tree: _LocalTree, batch: list[_GetItem], opts: GetOptions, stats: _Stats
) -> list[_GetItem]:
    """Leave out files whose local copy matches; fail files whose directory cannot be made."""
    todo: list[_GetItem] = []
    for item in batch:
        try:
            fd = tree.dir_fd(item.parts[:-1])
        except TransferError as exc:
            stats.fail(exc.message)
            continue
        try:
            info = os.stat(item.name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            todo.append(item)
            continue
        except OSError as exc:
            stats.fail(f"local {tree.root.joinpath(*item.parts)}: {exc.strerror}")
            continue
        if stat.S_ISDIR(info.st_mode):
            stats.fail(f"local {tree.root.joinpath(*item.parts)}: is a directory")
            continue
        same = (
            stat.S_ISREG(info.st_mode)
            and not (opts.checksum or opts.verify)  # those decide by content, in _get_batch
            and _same_copy(
                item.file.size, item.file.mtime, info.st_size, _wire_seconds(info.st_mtime_ns)
            )
        )
        if same:
            stats.unchanged += 1
            stats.covered.append(item.file.remote)
        else:
            todo.append(item)
    return todo


def _local_sha256(fd: int, name: str, length: int | None = None) -> str:
    digest = hashlib.sha256()
    file_fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    try:
        left = length
        while left is None or left > 0:
            block = os.read(file_fd, 1024 * 1024 if left is None else min(left, 1024 * 1024))
            if not block:
                break
            digest.update(block)
            if left is not None:
                left -= len(block)
    finally:
        os.close(file_fd)
    return digest.hexdigest()


def _get_batch(
    session: Remote,
    tree: _LocalTree,
    batch: list[_GetItem],
    opts: GetOptions,
    stats: _Stats,
    cancel: threading.Event,
    *,
    filtered: bool = False,
) -> None:
    """Download a batch into temporary files, check them, rename them into place.

    ``filtered``: ``--checksum``/``--verify`` already left out the copies that match.
    """
    pipe = _Pipe(session, cancel)
    if (opts.checksum or opts.verify) and not filtered:
        batch = _get_checksum_filter(session, tree, batch, opts, stats, cancel)
    opened: list[_GetItem] = []
    try:
        for item in batch:
            fd = tree.dir_fd(item.parts[:-1])
            # sha256 of what arrives only when --verify will compare it: hashing
            # costs more CPU than receiving (about 2 s per GiB here).
            item.hasher = hashlib.sha256() if opts.verify else None
            try:
                if opts.resume:
                    item.temp = f".{item.name}.remoteops.part"
                    item.fd = _open_resume_part(item.temp, fd)
                    _get_resume_offset(session, item, cancel)
                    if not opts.verify:
                        item.hasher = None
                else:
                    item.temp, item.fd = _open_temp(tree, item.parts)
            except OSError as exc:
                item.error = f"local {tree.root.joinpath(*item.parts)}: {exc.strerror}"
                continue
            opened.append(item)
        replies = pipe.run((CMD_OPEN, (i.file.remote, SFTP_FLAG_READ, _attrs())) for i in opened)
        for item, (kind, msg) in zip(opened, replies, strict=True):
            if kind == CMD_HANDLE:
                item.handle = msg.get_binary()
            else:
                item.error = f"remote {item.file.remote}: {_status_of(kind, msg)[1]}"
        streamed = False
        if (
            len(opened) == 1
            and opened[0].file.size >= _EXEC_STREAM_MIN
            and bulk.fast_paths_enabled()
        ):
            streamed = _get_stream_exec(session, tree, opened[0], stats, cancel)
        if not streamed:
            _get_stream(pipe, tree, opened, stats)
        closes = [i for i in opened if i.handle is not None]
        pipe.run((CMD_CLOSE, (i.handle,)) for i in closes)
        for item in closes:
            item.handle = None
        _get_finish(session, tree, opened, opts, stats, cancel)
    finally:
        for item in batch:
            if item.fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(item.fd)
                item.fd = -1
            if item.temp and not item.renamed and not opts.resume:
                with contextlib.suppress(OSError, TransferError):
                    os.unlink(item.temp, dir_fd=tree.dir_fd(item.parts[:-1]))
        for item in batch:
            if item.error is not None:
                stats.fail(item.error)


def _get_checksum_filter(
    session: Remote,
    tree: _LocalTree,
    batch: list[_GetItem],
    opts: GetOptions,
    stats: _Stats,
    cancel: threading.Event,
) -> list[_GetItem]:
    """``checksum``/``verify``: leave out local copies with the remote file's sha256.

    Such a copy with another mtime gets the remote one, so that a later run's
    quick check sees it as unchanged.
    """
    candidates: list[tuple[_GetItem, os.stat_result, str]] = []
    todo: list[_GetItem] = []
    for item in batch:
        fd = tree.dir_fd(item.parts[:-1])
        try:
            info = os.stat(item.name, dir_fd=fd, follow_symlinks=False)
        except OSError:
            todo.append(item)
            continue
        if stat.S_ISREG(info.st_mode) and info.st_size == item.file.size:
            candidates.append((item, info, _local_sha256(fd, item.name)))
        else:
            todo.append(item)
    hashes = _remote_sha256(session, [i.file.remote for i, _, _ in candidates], cancel)
    for item, info, local in candidates:
        remote = hashes.get(item.file.remote) or _sftp_sha256(session, item.file.remote)
        if remote != local:
            todo.append(item)
            continue
        if _wire_seconds(info.st_mtime_ns) != item.file.mtime:
            atime = item.file.atime if opts.preserve else _wire_seconds(info.st_atime_ns)
            try:
                os.utime(
                    item.name,
                    (atime, item.file.mtime),
                    dir_fd=tree.dir_fd(item.parts[:-1]),
                    follow_symlinks=False,
                )
            except OSError as exc:
                stats.fail(f"local {tree.root.joinpath(*item.parts)}: {exc.strerror}")
                continue
            stats.attrs_changed += 1
        stats.unchanged += 1
        stats.covered.append(item.file.remote)
    return todo


def _get_resume_offset(session: Remote, item: _GetItem, cancel: threading.Event) -> None:
    info = os.fstat(item.fd)
    have = info.st_size
    if 0 < have <= item.file.size:
        remote = _remote_prefix_sha256(session, item.file.remote, have, cancel)
        hasher = hashlib.sha256()
        os.lseek(item.fd, 0, os.SEEK_SET)
        left = have
        while left > 0:
            block = os.read(item.fd, min(left, 1024 * 1024))
            if not block:
                break
            hasher.update(block)
            left -= len(block)
        if remote is not None and hasher.hexdigest() == remote:
            item.offset = have
            item.received = have
            item.hasher = hasher
            return
    os.ftruncate(item.fd, 0)


def _get_stream(pipe: _Pipe, tree: _LocalTree, items: list[_GetItem], stats: _Stats) -> None:
    """Read every opened file with up to _WINDOW reads in flight; write at their offsets."""
    pending: deque[tuple[int, _GetItem, int, int]] = deque()

    def settle(limit: int) -> None:
        while len(pending) > limit:
            num, owner, offset, length = pending.popleft()
            kind, msg = pipe.reply(num)
            if owner.error is not None:
                continue
            if kind == CMD_DATA:
                data = msg.get_string()
                if offset >= owner.file.size:
                    if data:
                        owner.error = f"remote {owner.file.remote}: file grew while being read"
                    continue
                probe = offset + length > owner.file.size  # last read asks one byte more
                expected = owner.file.size - offset if probe else length
                if len(data) > expected:
                    owner.error = f"remote {owner.file.remote}: file grew while being read"
                    continue
                owner.saw_eof = owner.saw_eof or probe
                if len(data) != expected:
                    owner.error = (
                        f"remote {owner.file.remote}: short read at byte {offset} "
                        "(file changed while being read?)"
                    )
                    continue
                try:
                    os.pwrite(owner.fd, data, offset)
                except OSError as exc:
                    owner.error = f"local {tree.root.joinpath(*owner.parts)}: {exc.strerror}"
                    continue
                if owner.hasher is not None:
                    owner.hasher.update(data)
                owner.received += len(data)
                stats.moved(len(data))
            else:
                code, text = _status_of(kind, msg)
                if code == SFTP_EOF and offset >= owner.file.size:
                    owner.saw_eof = True
                elif code == SFTP_EOF:
                    owner.error = f"remote {owner.file.remote}: file shrank while being read"
                else:
                    owner.error = f"remote {owner.file.remote}: {text}"

    for item in items:
        if item.handle is None:
            continue
        stats.current = item.file.remote
        # The last read asks for one byte more than is left: getting exactly
        # what is left (or EOF) proves the file did not grow, at no extra request.
        size = item.file.size
        for offset in range(item.offset, size + 1, _CHUNK):
            if item.error is not None:
                break
            length = min(_CHUNK, size - offset)
            if offset + length == size:
                length += 1
            pending.append(
                (pipe.send(CMD_READ, item.handle, int64(offset), length), item, offset, length)
            )
            settle(_WINDOW)
            if offset + length > size:
                break
    settle(0)


def _get_finish(
    session: Remote,
    tree: _LocalTree,
    items: list[_GetItem],
    opts: GetOptions,
    stats: _Stats,
    cancel: threading.Event,
) -> None:
    for item in items:
        if item.error is None and (item.received != item.file.size or not item.saw_eof):
            item.error = f"remote {item.file.remote}: got {item.received} of {item.file.size} bytes"
    if opts.verify:
        _verify_received(session, [i for i in items if i.error is None], cancel)
    for item in items:
        if item.error is not None:
            continue
        fd = tree.dir_fd(item.parts[:-1])
        shown = tree.root.joinpath(*item.parts)
        try:
            os.ftruncate(item.fd, item.file.size)
            os.fchmod(item.fd, stat.S_IMODE(item.file.mode) & _DROP_SPECIAL_BITS)
            atime = item.file.atime if opts.preserve else _now()
            os.utime(item.fd, (atime, item.file.mtime))
            os.close(item.fd)
            item.fd = -1
            os.rename(item.temp, item.name, src_dir_fd=fd, dst_dir_fd=fd)
            item.renamed = True
        except OSError as exc:
            item.error = f"local {shown}: {exc.strerror}"
            continue
        stats.done()
        stats.covered.append(item.file.remote)
