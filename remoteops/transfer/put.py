"""``put``: upload a ``SourceSet``; ``Put.on`` is the per-host operation, ``put`` fans it out.

Chooses the path per host: the bulk stream where it is planned (``_put_bulk``:
one listing and one archive, built in ``streams``), else SFTP, a batch of
files at a time: remote directories created (``_ensure_remote_dirs``), the
quick check or sha256 compare (``_put_compare``), then the changed files
written under temporary names, checked and renamed (``_put_batch``), with the
small-file and large-file streams as fast paths inside a batch.
"""

from __future__ import annotations

import logging
import posixpath
import secrets
import stat
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from paramiko.sftp import (
    CMD_CLOSE,
    CMD_EXTENDED,
    CMD_FSETSTAT,
    CMD_HANDLE,
    CMD_LSTAT,
    CMD_MKDIR,
    CMD_OPEN,
    CMD_REMOVE,
    CMD_SETSTAT,
    CMD_STAT,
    CMD_WRITE,
    SFTP_FLAG_CREATE,
    SFTP_FLAG_EXCL,
    SFTP_FLAG_TRUNC,
    SFTP_FLAG_WRITE,
    SFTP_NO_SUCH_FILE,
    SFTP_OK,
    int64,
)
from paramiko.sftp_attr import SFTPAttributes

from remoteops import bulk
from remoteops.become import Remote
from remoteops.errors import TransferError
from remoteops.results import HostResult
from remoteops.transfer.files import _copy_times, _PutItem, _stamp_source_times
from remoteops.transfer.hostwork import HostTransfer, _remove_remote, _Stats
from remoteops.transfer.model import (
    _BATCH,
    _CHUNK,
    _MAX_DEPTH,
    _MAX_WIRE_TIME,
    _WINDOW,
    ProgressSink,
    PutOptions,
    _now,
    _same_copy,
)
from remoteops.transfer.sftp import (
    _attrs,
    _attrs_of,
    _Pipe,
    _remote_error,
    _remote_prefix_sha256,
    _remote_sha256,
    _sftp_sha256,
    _status_of,
)
from remoteops.transfer.sources import SourceSet
from remoteops.transfer.streams import (
    _EXEC_STREAM_MIN,
    _TAR_MAX_BATCH,
    _TAR_MAX_FILE,
    _TAR_MIN_FILES,
    _entry_attrs,
    _put_layout,
    _put_stream,
    _put_stream_exec,
    _put_tar,
    _PutRun,
    _remove_stages,
)

if TYPE_CHECKING:
    from remoteops.execution import Executor

logger = logging.getLogger(__name__)


def _temp_name(path: str, *, resume: bool) -> str:
    directory, name = posixpath.split(path)
    suffix = ".remoteops.part" if resume else f".remoteops-{secrets.token_hex(4)}.part"
    return posixpath.join(directory, f".{name}{suffix}")


class Put(HostTransfer):
    """put as a per-host operation: ``on(session)`` uploads to one host's open session.

    Planned once for every host it runs on: one staging directory name (the
    archives are then byte for byte the same, and their headers built once).
    ``timeout`` replaces the executor's transfer deadline.
    """

    def __init__(
        self,
        executor: Executor,
        sources: SourceSet,
        dest: str,
        *,
        options: PutOptions | None = None,
        progress: ProgressSink | None = None,
        timeout: float | None = None,
    ) -> None:
        opts = options or PutOptions()
        super().__init__(executor, opts, progress, timeout)
        self.put_opts = opts
        self.sources = sources
        self.dest = dest
        self.stage = f"{bulk.STAGE_PREFIX}{secrets.token_hex(6)}{bulk.STAGE_SUFFIX}"
        self.run = _PutRun.plan(sources, dest, opts)

    def body(self, session: Remote, stats: _Stats, temps: set[str]) -> None:
        """Upload to one host: the bulk stream where planned, else SFTP."""
        cancel = self.executor.cancel_event
        opts, sources = self.put_opts, self.sources
        pipe = _Pipe(session, cancel)
        if self.run is None or not _put_bulk(
            session, pipe, self.run, sources, opts, stats, temps, cancel, self.stage
        ):
            _put_host(session, pipe, sources, self.dest, opts, stats, temps, cancel)

    def cleanup(self, session: Remote, temps: set[str]) -> None:
        """Remove staging directories, and temporary files unless ``resume`` keeps them."""
        _remove_stages(session, temps)
        if not self.put_opts.resume:
            _remove_remote(session, temps)


def put(
    executor: Executor,
    sources: SourceSet,
    dest: str,
    *,
    options: PutOptions | None = None,
    progress: ProgressSink | None = None,
) -> Iterator[HostResult]:
    """Upload ``sources`` to ``dest`` on every target; yield each host's result as it finishes.

    ``dest`` is a directory (created with its parents) unless the sources are a
    single file and ``dest`` does not end in ``/`` and is not an existing remote
    directory: then it is the file's new path. A file whose remote copy has
    exactly its size and mtime is left alone (``checksum`` or ``verify``: its
    sha256); see the module's notes on what is unchanged.
    """
    return Put(executor, sources, dest, options=options, progress=progress).fan_out()


def _put_host(
    session: Remote,
    pipe: _Pipe,
    sources: SourceSet,
    dest: str,
    opts: PutOptions,
    stats: _Stats,
    temps: set[str],
    cancel: threading.Event,
) -> None:
    """put over SFTP, a batch of files at a time (small batches through ``tar -x``)."""
    base = dest.rstrip("/") or "/"
    # Where each file goes.
    if sources.is_single_file and not dest.endswith("/"):
        kind, msg = pipe.reply(pipe.send(CMD_STAT, base))
        attrs = _attrs_of(kind, msg)
        is_dir = attrs is not None and stat.S_ISDIR(attrs.st_mode or 0)
        only = sources.files[0]
        remote_of = {only.relative: posixpath.join(base, only.relative) if is_dir else base}
        top = base if is_dir else (posixpath.dirname(base) or ".")
    else:
        remote_of = {f.relative: posixpath.join(base, f.relative) for f in sources.files}
        top = base
    items = _put_items(pipe, top, sources, remote_of, base, opts, stats)
    for start in range(0, len(items), _BATCH):
        batch = items[start : start + _BATCH]
        todo = _put_compare(session, pipe, batch, opts, stats, cancel)
        _put_todo(session, pipe, todo, opts, stats, temps, cancel)


def _put_items(
    pipe: _Pipe,
    top: str,
    sources: SourceSet,
    remote_of: dict[str, str],
    base: str,
    opts: PutOptions,
    stats: _Stats,
) -> list[_PutItem]:
    """Create the remote directories; the files to send (those in a failed directory fail)."""
    failed_dirs = _ensure_remote_dirs(pipe, top, sources, remote_of.values(), base)
    items: list[_PutItem] = []
    for src in sources.files:
        remote = remote_of.get(src.relative)
        if remote is None:
            continue
        parent = posixpath.dirname(remote)
        if parent in failed_dirs:
            stats.fail(failed_dirs[parent])
            continue
        items.append(_PutItem(src, remote, _temp_name(remote, resume=opts.resume)))
    return items


def _put_todo(
    session: Remote,
    pipe: _Pipe,
    todo: list[_PutItem],
    opts: PutOptions,
    stats: _Stats,
    temps: set[str],
    cancel: threading.Event,
    *,
    allow_tar: bool = True,
) -> None:
    """Send the files that are not unchanged: small ones together, each large one alone."""
    big: list[_PutItem] = []
    small: list[_PutItem] = []
    for item in todo:
        (big if item.src.size > _CHUNK * _WINDOW else small).append(item)
    for group in [small, *([b] for b in big)]:
        if group:
            _put_batch(session, pipe, group, opts, stats, temps, cancel, allow_tar=allow_tar)


def _put_bulk(
    session: Remote,
    pipe: _Pipe,
    run: _PutRun,
    sources: SourceSet,
    opts: PutOptions,
    stats: _Stats,
    temps: set[str],
    cancel: threading.Event,
    stage: str,
) -> bool:
    """put through one listing and one tar stream; False (having changed nothing) for SFTP.

    The listing decides what is unchanged (rsync's quick check, or sha256 with
    ``checksum``/``verify``), for every file at once. The files that changed
    (up to 64 MiB each) then go as one archive into a staging directory and
    are moved into place (see ``bulk``); anything the stream could not place
    goes over SFTP, which names each failure.
    """
    layout = _put_layout(session, run, cancel, len(sources.files))
    if layout is None:
        return False
    # The quick check first, on the listing's fields as they are: most files of a
    # second run stop here. The others are compared as over SFTP.
    quick = not (opts.checksum or opts.verify)
    items: list[_PutItem] = []
    listed: list[SFTPAttributes | None] = []
    for src, remote, key in zip(sources.files, run.remotes, run.keys, strict=True):
        fields = layout.tree.get(key)
        if (
            quick
            and fields is not None
            and fields[0] == b"f"
            and int(fields[5]) == src.size
            and int(fields[6]) == src.mtime  # a clamped source time takes the slow path
            and int(fields[2], 8) == src.mode
            and 0 < src.mtime < _MAX_WIRE_TIME
        ):
            stats.unchanged += 1
            continue
        items.append(_PutItem(src, remote, ""))
        listed.append(None if fields is None else _entry_attrs(bulk.put_entry(fields)))
    todo = _put_compare(session, pipe, items, opts, stats, cancel, listed=listed)
    streamed = [item for item in todo if item.src.size < _EXEC_STREAM_MIN]
    rest = [item for item in todo if item.src.size >= _EXEC_STREAM_MIN]
    if streamed or layout.new_dirs:
        rest += _put_stream(session, pipe, run, layout, streamed, opts, stats, temps, cancel, stage)
    if rest:
        stats.current = run.base
        remote_of = {item.src.relative: item.remote for item in rest}
        again = _put_items(pipe, run.base, sources, remote_of, run.base, opts, stats)
        for start in range(0, len(again), _BATCH):
            batch = again[start : start + _BATCH]
            _put_todo(session, pipe, batch, opts, stats, temps, cancel, allow_tar=False)
    return True


def _ensure_remote_dirs(
    pipe: _Pipe,
    top: str,
    sources: SourceSet,
    remotes: Iterable[str],
    base: str,
) -> dict[str, str]:
    """Create missing remote directories (parents first); return {dir: error} for failures."""
    wanted: dict[str, int | None] = {}

    def add_with_parents(path: str, mode: int | None) -> None:
        chain: list[str] = []
        current = path
        for _ in range(_MAX_DEPTH):
            if current in ("", ".", "/") or current in wanted:
                break
            chain.append(current)
            current = posixpath.dirname(current)
        for index, item in enumerate(chain):
            wanted.setdefault(item, mode if index == 0 else None)

    add_with_parents(top, None)
    for relative, mode in sources.dirs:
        add_with_parents(posixpath.join(base, relative), mode)
    for remote in remotes:
        add_with_parents(posixpath.dirname(remote), None)
    ordered = sorted(wanted, key=lambda p: (p.count("/"), p))
    replies = pipe.run((CMD_STAT, (p,)) for p in ordered)
    missing: list[str] = []
    failed: dict[str, str] = {}
    for path, (kind, msg) in zip(ordered, replies, strict=True):
        attrs = _attrs_of(kind, msg)
        if attrs is None:
            code, text = _status_of(kind, msg)
            if code == SFTP_NO_SUCH_FILE:
                missing.append(path)
            else:
                failed[path] = f"remote {path}: {text}"
        elif not stat.S_ISDIR(attrs.st_mode or 0):
            failed[path] = f"remote {path}: exists and is not a directory"
    requests = []
    for path in missing:
        dir_mode = wanted[path]
        requests.append(
            (CMD_MKDIR, (path, _attrs(mode=dir_mode if dir_mode is not None else 0o755)))
        )
    for path, (kind, msg) in zip(missing, pipe.run(requests), strict=True):
        code, text = _status_of(kind, msg)
        if code != SFTP_OK:
            parent_failed = failed.get(posixpath.dirname(path))
            failed[path] = parent_failed or f"remote {path}: {text} (creating the directory)"
    # A failed directory fails everything below it.
    for path in ordered:
        parent = posixpath.dirname(path)
        if parent in failed and path not in failed:
            failed[path] = failed[parent]
    return failed


def _put_compare(
    session: Remote,
    pipe: _Pipe,
    batch: list[_PutItem],
    opts: PutOptions,
    stats: _Stats,
    cancel: threading.Event,
    *,
    listed: list[SFTPAttributes | None] | None = None,
) -> list[_PutItem]:
    """Compare with the remote copies; count unchanged files (fixing modes and times); return
    the rest. ``listed``: the copies as a listing found them (None: not there); else lstat'd."""
    if listed is None:
        replies = pipe.run((CMD_LSTAT, (item.remote,)) for item in batch)
        listed = [_attrs_of(kind, msg) for kind, msg in replies]
    by_content = opts.checksum or opts.verify
    todo: list[_PutItem] = []
    same_size: list[tuple[_PutItem, SFTPAttributes]] = []
    for item, found in zip(batch, listed, strict=True):
        if found is None:
            todo.append(item)
            continue
        mode = found.st_mode or 0
        if stat.S_ISDIR(mode):
            stats.fail(f"remote {item.remote}: is a directory; cannot replace it with a file")
            continue
        if stat.S_ISREG(mode) and found.st_uid is not None and found.st_gid is not None:
            item.owner = (found.st_uid, found.st_gid)
        if not stat.S_ISREG(mode) or found.st_size != item.src.size:
            todo.append(item)
        elif by_content or _same_copy(item.src.size, item.src.mtime, found.st_size, found.st_mtime):
            same_size.append((item, found))
        else:
            todo.append(item)
    if by_content and same_size:
        remote_hashes = _remote_sha256(session, [i.remote for i, _ in same_size], cancel)
        kept: list[tuple[_PutItem, SFTPAttributes]] = []
        for item, attrs in same_size:
            digest = remote_hashes.get(item.remote) or _sftp_sha256(session, item.remote)
            local = item.src.sha256 or item.src.prefix_sha256(item.src.size)
            (kept.append((item, attrs)) if digest == local else todo.append(item))
        same_size = kept
    # Same content (by sha256) with another mtime: stamp the source's, so that the
    # next run's quick check sees the copy as unchanged; a drifted mode is repaired.
    requests: list[tuple[int, tuple[Any, ...]]] = []
    fixes: list[_PutItem] = []
    for item, attrs in same_size:
        wrong_mode = stat.S_IMODE(attrs.st_mode or 0) != item.src.mode
        wrong_time = attrs.st_mtime != item.src.mtime
        if not (wrong_mode or wrong_time):
            stats.unchanged += 1
            continue
        times = None
        if wrong_time:
            atime = item.src.atime if opts.preserve else (attrs.st_atime or _now())
            times = (atime, item.src.mtime)
        fixes.append(item)
        requests.append((CMD_SETSTAT, (item.remote, _attrs(mode=item.src.mode, times=times))))
    for item, (kind, msg) in zip(fixes, pipe.run(requests), strict=True):
        code, text = _status_of(kind, msg)
        if code != SFTP_OK:
            stats.fail(f"remote {item.remote}: {text} (setting its mode and time)")
        else:
            stats.unchanged += 1
            stats.attrs_changed += 1
    return todo


def _put_resume_offsets(
    session: Remote, pipe: _Pipe, batch: list[_PutItem], cancel: threading.Event
) -> None:
    """With ``resume``: keep a matching prefix of each deterministic temporary file."""
    replies = pipe.run((CMD_LSTAT, (item.temp,)) for item in batch)
    for item, (kind, msg) in zip(batch, replies, strict=True):
        attrs = _attrs_of(kind, msg)
        if attrs is None or not stat.S_ISREG(attrs.st_mode or 0):
            continue
        have = attrs.st_size or 0
        if have == 0 or have > item.src.size:
            continue
        remote = _remote_prefix_sha256(session, item.temp, have, cancel)
        if remote is not None and remote == item.src.prefix_sha256(have):
            item.offset = have
            logger.info("Host %r: resuming %s at byte %d", session.target.name, item.remote, have)


def _put_batch(
    session: Remote,
    pipe: _Pipe,
    batch: list[_PutItem],
    opts: PutOptions,
    stats: _Stats,
    temps: set[str],
    cancel: threading.Event,
    *,
    allow_tar: bool = True,
) -> None:
    """Write a batch of files to temporary names, check them, rename them into place."""
    if opts.resume:
        _put_resume_offsets(session, pipe, batch, cancel)
    tarred = (
        allow_tar
        and bulk.fast_paths_enabled()
        and not opts.resume
        and len(batch) >= _TAR_MIN_FILES
        and all(item.src.size <= _TAR_MAX_FILE for item in batch)
        and sum(item.src.size for item in batch) <= _TAR_MAX_BATCH
        and _put_tar(session, pipe, batch, stats, temps, cancel)
    )
    if not tarred:
        opens = []
        for item in batch:
            flags = SFTP_FLAG_WRITE | SFTP_FLAG_CREATE
            if item.offset == 0:
                flags |= SFTP_FLAG_TRUNC
            if not opts.resume:
                flags |= SFTP_FLAG_EXCL
            temps.add(item.temp)
            opens.append((CMD_OPEN, (item.temp, flags, _attrs(mode=0o600))))
        for item, (kind, msg) in zip(batch, pipe.run(opens), strict=True):
            if kind == CMD_HANDLE:
                item.handle = msg.get_binary()
            else:
                _code, text = _status_of(kind, msg)
                item.error = f"remote {item.remote}: {text}"
        # Writes, then the final mode/mtime and close, all pipelined; replies checked in order.
        pending: deque[tuple[int, _PutItem, int]] = deque()

        def settle(limit: int) -> None:
            while len(pending) > limit:
                num, owner, nbytes = pending.popleft()
                code, text = pipe.status(num)
                if code != SFTP_OK and owner.error is None:
                    owner.error = _remote_error(owner.remote, code, text, pipe)
                elif nbytes:
                    stats.moved(nbytes)

        for item in batch:
            if item.handle is None:
                continue
            stats.current = item.remote
            offset = item.offset
            streamed = (
                len(batch) == 1
                and item.src.size - item.offset >= _EXEC_STREAM_MIN
                and bulk.fast_paths_enabled()
                and _put_stream_exec(session, pipe, item, stats, cancel)
            )
            try:
                for chunk in () if streamed else item.src.chunks(item.offset):
                    if item.error is not None:
                        break
                    pending.append(
                        (pipe.send(CMD_WRITE, item.handle, int64(offset), chunk), item, len(chunk))
                    )
                    offset += len(chunk)
                    settle(_WINDOW)
            except TransferError as exc:
                item.error = exc.message
            except OSError as exc:
                item.error = f"local {item.src.path}: {exc.strerror}"
            final = _attrs(mode=item.src.mode, times=_copy_times(item.src, opts))
            pending.append((pipe.send(CMD_FSETSTAT, item.handle, final), item, 0))
            pending.append((pipe.send(CMD_CLOSE, item.handle), item, 0))
            settle(_WINDOW)
        settle(0)
    # Size check, then the optional checksum, then the atomic rename.
    written = [item for item in batch if item.error is None]
    replies = pipe.run((CMD_LSTAT, (item.temp,)) for item in written)
    regain: list[_PutItem] = []
    for item, (kind, msg) in zip(written, replies, strict=True):
        attrs = _attrs_of(kind, msg)
        if attrs is None:
            item.error = f"remote {item.remote}: {_status_of(kind, msg)[1]}"
        elif attrs.st_size != item.src.size:
            item.error = (
                f"remote {item.remote}: size {attrs.st_size} after writing, expected "
                f"{item.src.size}; not renamed into place"
            )
        elif item.owner is not None and item.owner != (attrs.st_uid, attrs.st_gid):
            regain.append(item)
    _keep_owners(pipe, regain, stats)
    if opts.verify:
        written = [item for item in batch if item.error is None]
        hashes = _remote_sha256(session, [item.temp for item in written], cancel)
        for item in written:
            digest = hashes.get(item.temp) or _sftp_sha256(session, item.temp)
            local = item.src.sha256 or item.src.prefix_sha256(item.src.size)
            if digest != local:
                item.error = f"remote {item.remote}: sha256 mismatch after upload; not renamed"
    if opts.preserve:
        # The source's access time, set last: tar -x leaves the time of extraction,
        # and reading the file back for --verify may update it.
        _stamp_source_times(pipe, [item for item in batch if item.error is None], opts)
    written = [item for item in batch if item.error is None]
    renames = pipe.run(
        (CMD_EXTENDED, ("posix-rename@openssh.com", item.temp, item.remote)) for item in written
    )
    for item, (kind, msg) in zip(written, renames, strict=True):
        code, text = _status_of(kind, msg)
        if code != SFTP_OK:
            item.error = f"remote {item.remote}: {text} (renaming into place)"
        else:
            temps.discard(item.temp)
            stats.done()
    failed = [item for item in batch if item.error is not None]
    for item in failed:
        stats.fail(item.error or "")
    if failed and not opts.resume:
        pipe.run((CMD_REMOVE, (item.temp,)) for item in failed)
        for item in failed:
            temps.discard(item.temp)
    if failed and opts.resume:
        for item in failed:
            temps.discard(item.temp)


def _keep_owners(pipe: _Pipe, items: list[_PutItem], stats: _Stats) -> None:
    """Give each new copy the owner and group of the file it replaces, where allowed.

    As ``install`` or Ansible's ``copy`` keep them: a config file owned by
    root:app stays readable by app after a ``put --become``. Only root (or
    the owner, for a group it is in) may do it; where the user writing the
    file may not, the new copy stays that user's, as it always was.
    chown clears setuid and setgid bits, so a mode holding them is set again.
    """
    requests: list[tuple[int, tuple[Any, ...]]] = []
    for item in items:
        requests.append((CMD_SETSTAT, (item.temp, _attrs(owner=item.owner))))
        if item.src.mode & (stat.S_ISUID | stat.S_ISGID):
            requests.append((CMD_SETSTAT, (item.temp, _attrs(mode=item.src.mode))))
    for (kind, msg), (_, (path, _attrs_sent)) in zip(pipe.run(requests), requests, strict=True):
        code, text = _status_of(kind, msg)
        if code != SFTP_OK:
            logger.debug("Host %r: %s keeps the writer's owner (%s)", stats.host, path, text)
