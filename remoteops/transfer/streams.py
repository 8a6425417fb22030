"""The stream fast paths: a transfer in a few commands per host instead of many
SFTP round trips, with ``remoteops.bulk`` building and reading the commands.

put: one ``find`` listing decides what is unchanged (``_PutRun``,
``_put_layout``), the changed files go as one tar archive into a staging
directory and are moved into place (``_put_stream``; archives built once for
like hosts by ``_Archives``); within an SFTP batch, small files go through
``tar -x`` (``_put_tar``) and large ones through ``cat`` (``_put_stream_exec``).
get: one ``find`` listing of the remote trees (``_list_remote``), small files
through one ``tar c`` stream (``_get_tar``), large ones through ``cat``
(``_get_stream_exec``). Each is used only when ``remoteops.fastpaths`` allows
it, and gives way to SFTP (having changed nothing) when a host cannot run it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import logging
import math
import os
import posixpath
import shlex
import stat
import tarfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import paramiko
from paramiko.sftp import CMD_FSTAT, CMD_REMOVE
from paramiko.sftp_attr import SFTPAttributes

from remoteops import bulk, fastio
from remoteops.become import Remote
from remoteops.errors import HostError, InterruptedHostError, TransferError
from remoteops.transfer.files import (
    _discard_received,
    _get_commit,
    _GetItem,
    _LocalTree,
    _open_temp,
    _PutItem,
    _RemoteFile,
    _stamp_source_times,
)
from remoteops.transfer.hostwork import _Stats
from remoteops.transfer.model import (
    _DROP_SPECIAL_BITS,
    _MAX_DEPTH,
    _MAX_ENTRIES,
    GetOptions,
    PutOptions,
    _check_name,
    _clamp_seconds,
    _has_magic,
    _now,
)
from remoteops.transfer.sftp import _attrs_of, _Pipe, _private
from remoteops.transfer.sources import SourceFile, SourceSet

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- put


_KIND_BITS = {
    "f": stat.S_IFREG,
    "d": stat.S_IFDIR,
    "l": stat.S_IFLNK,
    "p": stat.S_IFIFO,
    "s": stat.S_IFSOCK,
    "c": stat.S_IFCHR,
    "b": stat.S_IFBLK,
}


def _entry_attrs(entry: bulk.Entry) -> SFTPAttributes:
    """A listing entry as the SFTP attributes ``_put_compare`` reads."""
    attrs = SFTPAttributes()
    attrs.st_mode = _KIND_BITS.get(entry.kind, 0) | entry.mode
    attrs.st_size = entry.size
    attrs.st_mtime = _clamp_seconds(entry.mtime)
    attrs.st_atime = _clamp_seconds(entry.atime)
    attrs.st_uid, attrs.st_gid = entry.uid, entry.gid
    return attrs


def _listing(
    session: Remote, command: str, cancel: threading.Event, limit: int
) -> tuple[int, bytes] | None:
    """(exit status, output) of a listing command, or None when the host cannot run it."""
    try:
        result = session.exec(command, max_output=limit, cancel=cancel)
    except HostError:
        if cancel.is_set() or not session.transport.is_active():
            raise
        logger.debug("Host %r: no listing over exec", session.target.name, exc_info=True)
        return None
    if result.interrupted:
        raise InterruptedHostError(session.target.name, "interrupted; transfer stopped")
    if result.exit_code is None or result.stdout_truncated:
        return None
    return result.exit_code, result.stdout


@dataclass(slots=True)
class _PutLayout:
    """Where a bulk put stages and moves files on one host (paths relative to ``top``)."""

    top: str  # the deepest existing directory on the way to the destination
    prefix: str  # the destination relative to ``top`` ("" when it exists)
    owner: tuple[int, int]  # who writes the files (uid, gid)
    tree: dict[bytes, bulk.Fields]  # what is under the destination, relative to it
    new_dirs: dict[str, int]  # directories to create, relative to top: mode

    def under_top(self, relative: str) -> str:
        """A path relative to the destination, relative to ``top``."""
        return f"{self.prefix}/{relative}" if self.prefix else relative


@dataclass(frozen=True, slots=True)
class _PutRun:
    """What a bulk put works out once for all hosts (see ``_put_bulk``)."""

    base: str  # the destination as given, without a trailing slash
    chain: list[str]  # "/" (or "." for a relative one) down to the destination
    remotes: list[str]  # each source file's remote path
    keys: list[bytes]  # each source file's path under the destination, as the listing has it
    dirs: dict[str, int]  # directories under the destination the files need: mode
    command: str  # the listing command
    archives: _Archives  # what the hosts are sent, built once for like hosts

    @classmethod
    def plan(cls, sources: SourceSet, dest: str, opts: PutOptions) -> _PutRun | None:
        """None where the stream is not used: few files, --resume, fast paths off, a
        destination with ``.`` or ``..`` in its path."""
        if (
            not bulk.fast_paths_enabled()
            or opts.resume
            or sources.is_single_file
            or len(sources.files) < _TAR_MIN_FILES
        ):
            return None
        base = dest.rstrip("/") or "/"
        parts = base.split("/")[1:] if base.startswith("/") else base.split("/")
        if base != "/" and any(p in ("", ".", "..") for p in parts):
            return None
        chain = ["/" if base.startswith("/") else "."]
        for part in parts if base != "/" else []:
            chain.append(posixpath.join(chain[-1], part))
        dirs: dict[str, int] = dict(sources.dirs)
        for src in sources.files:
            parent = posixpath.dirname(src.relative)
            for _ in range(_MAX_DEPTH):
                if not parent or parent in dirs:
                    break
                dirs[parent] = 0o755
                parent = posixpath.dirname(parent)
        relatives = [f.relative for f in sources.files] + list(dirs)
        tops = sorted({rel.split("/", 1)[0] for rel in relatives})
        depth = max(rel.count("/") for rel in relatives)
        if len(tops) > 256 or sum(len(t) for t in tops) > 32_000:
            tops, depth = [], depth + 1  # list everything down to that depth instead
        return cls(
            base=base,
            chain=chain,
            remotes=[posixpath.join(base, f.relative) for f in sources.files],
            keys=[bulk.encoded(f.relative) for f in sources.files],
            dirs=dirs,
            command=bulk.put_listing_command(chain[-1], chain, tops, depth),
            archives=_Archives(),
        )


def _put_layout(
    session: Remote, run: _PutRun, cancel: threading.Event, files: int
) -> _PutLayout | None:
    """One listing of the destination; None where the stream cannot be used as planned.

    None (SFTP decides instead, naming any problem as it always has) when the
    host has no GNU find, or a directory on the way is a symlink, a file or on
    another file system than the one the files are staged on.
    """
    output = _listing(session, run.command, cancel, 64 * 1024 * 1024 + 300 * files)
    listing = None if output is None else bulk.parse_put_listing(output[1])
    chain = run.chain
    if listing is None or chain[0] not in listing.ancestors:
        return None
    top, top_dev = "", 0
    for index, path in enumerate(chain):
        found = listing.ancestors.get(path)
        if found is None:
            if any(p in listing.ancestors for p in chain[index:]):
                return None  # changed while being listed
            break
        if found[0] != "d":
            return None
        top, top_dev = path, found[1]
    prefix = chain[-1][len(top) :].lstrip("/")
    if prefix and listing.tree:
        return None
    new_dirs: dict[str, int] = {}
    for path in chain[chain.index(top) + 1 :]:
        new_dirs[path[len(top) :].lstrip("/")] = 0o755
    for relative, mode in run.dirs.items():
        fields = listing.tree.get(bulk.encoded(relative))
        if fields is None:
            new_dirs[f"{prefix}/{relative}" if prefix else relative] = mode
        elif fields[0] != b"d" or int(fields[1]) != top_dev:
            return None
    return _PutLayout(top, prefix, (listing.uid, listing.gid), listing.tree, new_dirs)


def _member_data(src: SourceFile) -> Callable[[], Iterator[bytes | memoryview]]:
    """A source's bytes for the archive: the shared copy in memory, else read from disk."""
    data = src.data
    if data is not None:
        return lambda: iter((memoryview(data),))
    return lambda: src.chunks(0)


@dataclass(frozen=True, slots=True)
class _Archive:
    """What a bulk put sends to the hosts that need the same files placed the same way."""

    paths: tuple[str, ...]  # each item's path under the top directory, in the items' order
    members: tuple[bulk.Member, ...]
    blocks: tuple[bytes, ...] | None  # the archive itself, when small enough to keep


_ARCHIVE_KEEP = 64 * 1024 * 1024  # archives up to this size are built once and kept for all hosts


class _Archives:
    """The archives of one put: built once per distinct plan, not once per host.

    A fleet of like hosts needs the same archive (the staging directory has
    the same name on every host); building it (headers, the plan, the copy
    into 1 MiB blocks) is the Python work of a bulk put.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._built: dict[tuple[Any, ...], _Archive] = {}

    def get(self, layout: _PutLayout, items: list[_PutItem], opts: PutOptions) -> _Archive:
        """The archive placing ``items`` as ``layout`` says."""
        chown = tuple(
            item.owner if item.owner is not None and item.owner != layout.owner else None
            for item in items
        )
        key = (
            layout.prefix,
            tuple(sorted(layout.new_dirs.items())),
            tuple(item.src.relative for item in items),
            chown,
            opts.verify,
        )
        with self._lock:
            found = self._built.get(key)
            if found is None:
                found = _build_archive(layout, items, chown, opts)
                # Hosts that each need another archive must not each keep one in memory.
                kept = sum(_kept_size(a) for a in self._built.values())
                if kept + _kept_size(found) > _ARCHIVES_KEPT or len(self._built) >= 8:
                    self._built.clear()
                self._built[key] = found
        return found


_ARCHIVES_KEPT = 2 * _ARCHIVE_KEEP  # bytes of archives kept at once for the hosts of one put


def _kept_size(archive: _Archive) -> int:
    return sum(len(block) for block in archive.blocks) if archive.blocks is not None else 0


def _build_archive(
    layout: _PutLayout,
    items: list[_PutItem],
    chown: tuple[tuple[int, int] | None, ...],
    opts: PutOptions,
) -> _Archive:
    """New directories, the files under ``t/``, ``sums`` (--verify) and the plan, last."""
    plan = bulk.PutPlan()
    members: list[bulk.Member] = []
    now = _now()
    for directory in sorted(layout.new_dirs, key=lambda d: (d.count("/"), d)):
        members.append((f"t/{directory}", 0, layout.new_dirs[directory], now, None))
        parent = posixpath.dirname(directory)
        if parent not in layout.new_dirs:
            plan.moves.setdefault(parent, []).append(directory)
    paths: list[str] = []
    for item, owner in zip(items, chown, strict=True):
        src = item.src
        path = layout.under_top(src.relative)
        paths.append(path)
        members.append((f"t/{path}", src.size, src.mode, src.mtime, _member_data(src)))
        parent = posixpath.dirname(path)
        if parent not in layout.new_dirs:
            plan.moves.setdefault(parent, []).append(path)
        if owner is not None:
            # As _keep_owners does over SFTP: the replaced file's owner, where allowed.
            plan.chown.setdefault(owner, []).append(path)
            if src.mode & (stat.S_ISUID | stat.S_ISGID):
                plan.chmod.setdefault(src.mode & 0o7777, []).append(path)
        if opts.verify:
            plan.sums.append((src.sha256 or src.prefix_sha256(src.size), path))
    if plan.sums:
        sums = plan.checklist()
        members.append(("sums", len(sums), 0o600, now, lambda: iter((sums,))))
    script = plan.script()
    members.append(("plan", len(script), 0o700, now, lambda: iter((script,))))
    blocks: tuple[bytes, ...] | None = None
    if sum(item.src.size for item in items) <= _ARCHIVE_KEEP:
        with contextlib.suppress(TransferError, OSError):  # then each host meets it, and says so
            blocks = tuple(bulk.tar_blocks(members))
    return _Archive(tuple(paths), tuple(members), blocks)


def _put_stream(
    session: Remote,
    pipe: _Pipe,
    run: _PutRun,
    layout: _PutLayout,
    items: list[_PutItem],
    opts: PutOptions,
    stats: _Stats,
    temps: set[str],
    cancel: threading.Event,
    stage: str,
) -> list[_PutItem]:
    """Send ``items`` (and new directories) as one archive; the items still to send."""
    archive = run.archives.get(layout, items, opts)
    where = dict(zip(archive.paths, items, strict=True))
    blocks = archive.blocks if archive.blocks is not None else bulk.tar_blocks(archive.members)
    stage_path = posixpath.join(layout.top, stage)
    stats.current = layout.top
    temps.add(stage_path)
    status, out, problem = _run_stream(
        session, bulk.put_stream_command(stage_path, layout.top), blocks, stats, cancel
    )
    if status == -1:
        # Not started (then there is no stage) or stopped early: remove it now if it is there.
        with contextlib.suppress(HostError):
            _remove_stages(session, {stage_path})
    temps.discard(stage_path)
    left = bulk.parse_leftovers(out) if status == 0 else None
    if left is None:
        logger.info(
            "Host %r: the tar stream did not place the files (exit status %s: %s); using SFTP",
            stats.host,
            status,
            problem or "no message",
        )
        return items
    moved = [item for path, item in where.items() if path not in left]
    if left:
        logger.info(
            "Host %r: %d files could not be moved into place (%s); using SFTP",
            stats.host,
            len(items) - len(moved),
            problem or "no message",
        )
    if opts.preserve and moved:
        # tar -x sets the time of extraction as the access time.
        _stamp_source_times(pipe, moved, opts, final=True)
    placed = 0
    for item in moved:
        if item.error is not None:
            stats.fail(item.error)
            continue
        stats.bytes += item.src.size
        placed += 1
    stats.done(placed)
    return [item for path, item in where.items() if path in left]


def _run_stream(
    session: Remote,
    command: str,
    blocks: Iterable[bytes],
    stats: _Stats,
    cancel: threading.Event,
) -> tuple[int, bytes, str]:
    """Run ``command`` with ``blocks`` as its input: (exit status or -1, stdout, stderr).

    -1 also when the command could not be started (no exec) or a local file
    could not be read. The bytes sent count as progress, not as ``bytes``.
    """
    try:
        channel = session.open_stream(command, stdin=True)
    except Exception:
        if cancel.is_set() or not session.transport.is_active():
            raise
        logger.debug("Host %r: exec stream refused; using SFTP", stats.host, exc_info=True)
        return -1, b"", ""
    out = bytearray()
    try:
        try:
            for block in blocks:
                fastio.send_all(channel, block, cancel.is_set)
                if stats.progress is not None:
                    stats.progress(stats.host, len(block), 0)
        except InterruptedError:
            raise InterruptedHostError(stats.host, "interrupted; transfer stopped") from None
        except (TransferError, OSError) as exc:
            if not session.transport.is_active():
                raise EOFError("connection lost") from exc
            logger.debug("Host %r: stream stopped early (%s)", stats.host, exc)
            if isinstance(exc, TransferError) or exc.errno is not None:
                return -1, b"", f"local error: {exc}"  # SFTP names the file
        with contextlib.suppress(Exception):
            channel.shutdown_write()
        for _ in range(_MAX_STREAM_TURNS):
            if cancel.is_set():
                raise InterruptedHostError(stats.host, "interrupted; transfer stopped")
            chunks = fastio.read_chunks(channel, 1 << 20, 0.2)
            if chunks is None:
                continue
            if not chunks:
                break
            for chunk in chunks:
                if len(out) < _MAX_STREAM_OUTPUT:
                    out += chunk
        status = _exit_status(channel, stats, cancel)
        problem = channel.recv_stderr(4096).decode("utf-8", "replace").strip()
    finally:
        fastio.detach(channel)
        channel.close()
    if status == -1 and not session.transport.is_active():
        raise EOFError("connection lost")
    return status, bytes(out), problem.splitlines()[-1] if problem else ""


_MAX_STREAM_OUTPUT = 256 * 1024 * 1024


def _remove_stages(session: Remote, temps: set[str]) -> None:
    """Remove the staging directories a stopped stream left (``rm -rf``, as its command would)."""
    stages = sorted(t for t in temps if t.endswith(bulk.STAGE_SUFFIX))
    if not stages:
        return
    result = session.exec("rm -rf -- " + " ".join(shlex.quote(s) for s in stages))
    if result.exit_code != 0:
        raise TransferError(session.target.name, result.stderr.decode("utf-8", "replace").strip())
    for path in stages:
        temps.discard(path)


_TAR_MIN_FILES = 16  # fewer files gain little over pipelined SFTP
_TAR_MAX_FILE = 1024 * 1024  # the archive is built in memory, per host
_TAR_MAX_BATCH = 64 * 1024 * 1024


def _put_tar(
    session: Remote,
    pipe: _Pipe,
    batch: list[_PutItem],
    stats: _Stats,
    temps: set[str],
    cancel: threading.Event,
) -> bool:
    """Write a batch of small files to their temporary names with one ``tar -x``.

    Over SFTP every file costs an open, writes, a setstat and a close; one tar
    stream on an exec channel replaces all of them. The archive holds the
    files under their temporary names only, so the usual size check,
    --verify and atomic rename follow unchanged. False (after removing
    anything it left) when the host has no usable tar: the caller then uses
    SFTP.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for item in batch:
            info = tarfile.TarInfo(item.temp.lstrip("/"))
            info.size = item.src.size
            info.mode = item.src.mode & 0o7777
            info.mtime = item.src.mtime  # tar -x stamps it: the quick check's time
            try:
                data = b"".join(item.src.chunks(0))
            except (TransferError, OSError):
                return False  # the SFTP path reports local read errors per file
            archive.addfile(info, io.BytesIO(data))
    payload = buffer.getvalue()
    for item in batch:
        temps.add(item.temp)
    # -o: do not restore owners (when the login is root); -p: exact modes, not umask'd.
    command = "tar -x -o -p -f - -C /"
    try:
        result = session.exec(command, stdin=payload, max_output=4096, cancel=cancel)
    except HostError:
        raise
    except Exception:
        logger.debug("Host %r: tar upload failed; using SFTP", stats.host, exc_info=True)
        result = None
    if result is None or result.exit_code != 0:
        if result is not None:
            logger.info(
                "Host %r: tar -x failed (%s); using SFTP for this batch",
                stats.host,
                result.stderr.decode("utf-8", "replace").strip()[:200],
            )
        pipe.run((CMD_REMOVE, (item.temp,)) for item in batch)
        for item in batch:
            temps.discard(item.temp)
        return False
    stats.moved(sum(item.src.size for item in batch))
    return True


def _source_blocks(src: SourceFile, start: int) -> Iterator[memoryview]:
    """The file's bytes from ``start`` in large blocks, without copies where it can.

    From memory: views of the shared bytes. From disk: one reused buffer (the
    consumer must be done with a block before asking for the next one).
    """
    if src.data is not None:
        view = memoryview(src.data)
        for offset in range(start, src.size, _STREAM_READ):
            yield view[offset : offset + _STREAM_READ]
        return
    buffer = bytearray(_STREAM_READ)
    view = memoryview(buffer)
    sent = start
    with open(src.path, "rb", buffering=0) as fh:
        fh.seek(start)
        while sent < src.size:
            got = fh.readinto(view[: min(_STREAM_READ, src.size - sent)])
            if not got:
                break
            sent += got
            yield view[:got]
    if sent != src.size:
        raise TransferError("", f"local {src.path}: file shrank while it was being sent")


def _put_stream_exec(
    session: Remote, pipe: _Pipe, item: _PutItem, stats: _Stats, cancel: threading.Event
) -> bool:
    """Send one large file through ``cat >> TEMP`` on an exec channel; False to use SFTP.

    SFTP costs a request and a reply per 252 KiB and paramiko's per-packet
    overhead; a plain stream framed by ``fastio.send_all`` does not. The
    temporary file was already created (exclusively, mode 0600) over SFTP and
    its handle stays open, so the usual mode, size and --verify checks and the
    atomic rename follow unchanged. When the command fails having written
    nothing (exec not allowed, no usable ``cat``, a full disk) the file is
    sent over SFTP instead, which also names SFTP's error if there is one.
    """
    command = _append_command(item.temp)
    try:
        channel = session.open_stream(command, stdin=True)
    except Exception:
        logger.debug("Host %r: exec stream refused; using SFTP", stats.host, exc_info=True)
        return False
    counted = 0
    closed_early = False
    try:
        try:
            for block in _source_blocks(item.src, item.offset):
                fastio.send_all(channel, block, cancel.is_set)
                counted += len(block)
                stats.moved(len(block))
        except InterruptedError:
            raise InterruptedHostError(stats.host, "interrupted; transfer stopped") from None
        except TransferError as exc:
            item.error = exc.message
        except OSError as exc:
            if exc.errno is not None:  # reading the local file, not the channel
                item.error = f"local {item.src.path}: {exc.strerror}"
            else:
                closed_early = True  # the command ended before taking everything
        channel.shutdown_write()
        status = _exit_status(channel, stats, cancel)
        problem = channel.recv_stderr(4096).decode("utf-8", "replace").strip()
    finally:
        fastio.detach(channel)
        channel.close()
    failed = status != 0 or closed_early
    if failed and item.error is None and _remote_size(pipe, item) == item.offset:
        logger.debug("Host %r: `cat` stream failed (%s); using SFTP", stats.host, problem)
        stats.bytes -= counted
        return False
    if item.error is None and failed:
        detail = problem.splitlines()[-1] if problem else f"exit status {status}"
        detail = detail.removeprefix("cat: ").removeprefix("write error: ")
        item.error = f"remote {item.remote}: {detail}"
    return True


def _append_command(temp: str) -> str:
    """A shell command appending its stdin to the existing regular file ``temp``.

    The file is opened by name, so the shell checks that what it opened is
    the regular file SFTP made, not a symlink swapped in meanwhile by someone
    else who can write to the directory; anything odd exits before a byte is
    written, and SFTP (which writes through its own handle) takes over.
    """
    quoted = shlex.quote(temp)
    return (
        f"[ -f {quoted} ] && [ ! -L {quoted} ] && exec 3>> {quoted} && [ ! -L {quoted} ] && "
        f"[ /dev/fd/3 -ef {quoted} ] && exec cat >&3"
    )


def _remote_size(pipe: _Pipe, item: _PutItem) -> int | None:
    """The size of an open remote file (by its handle), or None if it cannot be asked."""
    kind, msg = pipe.reply(pipe.send(CMD_FSTAT, item.handle))
    attrs = _attrs_of(kind, msg)
    return None if attrs is None else attrs.st_size


def _exit_status(channel: paramiko.Channel, stats: _Stats, cancel: threading.Event) -> int:
    """The command's exit status (-1 if the channel closed without one), Ctrl-C aware."""
    for _ in range(_MAX_STREAM_TURNS):
        if channel.status_event.wait(0.2):
            break
        if cancel.is_set():
            raise InterruptedHostError(stats.host, "interrupted; transfer stopped")
    return int(channel.recv_exit_status())


# --------------------------------------------------------------------------- get


def _list_remote(
    session: Remote, remotes: Sequence[str], stats: _Stats, cancel: threading.Event
) -> list[_RemoteFile] | None:
    """The remote files to fetch, from one listing command; None to walk them over SFTP.

    As ``_expand_remote`` (the same names refused, the same symlinks and
    special files skipped, the same limits), in one round trip. None, before
    reporting anything, where the host has no GNU find, for globs, for a
    path that is missing, unreadable or a dangling symlink, and for relative
    paths with ``..``: SFTP then says exactly what is wrong.
    """
    if any(_has_magic(spec) for spec in remotes):
        return None
    starts: list[str] = []
    for spec in remotes:
        norm = posixpath.normpath(spec)
        if spec.startswith("/"):
            starts.append("/" + norm.lstrip("/"))
        elif norm == ".." or norm.startswith("../"):
            return None
        else:
            starts.append("." if norm == "." else f"./{norm}")
    output = _listing(session, bulk.get_listing_command(starts), cancel, 256 * 1024 * 1024)
    if output is None or output[0] != 0:
        return None
    parsed = bulk.parse_get_listing(output[1])
    if parsed is None:
        return None
    home_raw, records = parsed
    roots: list[str] = []
    for start in starts:
        if start.startswith("/"):
            roots.append(start)
            continue
        try:
            home = home_raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if not home.startswith("/"):
            return None
        roots.append("/" + posixpath.normpath(posixpath.join(home, start)).lstrip("/"))
    return _listed_files(starts, roots, records, stats)


def _listed_files(
    starts: list[str],
    roots: list[str],
    records: list[bulk.Fields],
    stats: _Stats,
) -> list[_RemoteFile] | None:
    """The regular files of a listing (see ``_list_remote``), every name checked."""
    found: dict[str, _RemoteFile] = {}
    index = -1
    prefix = b""
    root = ""
    accepted: dict[bytes, str] = {}  # directories walked: path below the root -> remote path
    dropped: set[bytes] = set()  # refused or skipped entries: their contents are left out
    seen = 0
    for depth_text, kind, mode, size, mtime, atime, raw in records:
        depth = int(depth_text)
        if depth == 0:
            index += 1
            if index >= len(starts) or raw != bulk.encoded(starts[index]):
                return None
            root = roots[index]
            prefix = raw.rstrip(b"/") + b"/"
            accepted, dropped, seen = {b"": root}, set(), 0
            if kind == b"f":
                found[root] = _listed_file(root, mode, size, mtime, atime)
            elif kind == b"l":
                return None  # dangling: SFTP says so
            elif kind != b"d":
                stats.warn(f"remote {root}: not a regular file or directory (skipped)")
            continue
        if index < 0 or not raw.startswith(prefix):
            return None
        rest = raw[len(prefix) :]
        parent_raw, _, name_raw = rest.rpartition(b"/")
        if parent_raw in dropped or seen > _MAX_ENTRIES:
            dropped.add(rest)
            continue
        seen += 1
        if seen > _MAX_ENTRIES:
            stats.fail(f"remote {root}: more than {_MAX_ENTRIES} entries; stopped listing")
            continue
        dropped.add(rest)  # until it is accepted below
        parent = accepted.get(parent_raw)
        if parent is None or depth != rest.count(b"/") + 1:
            shown = bulk.decoded(rest)
            stats.fail(f"remote {root}: refused the name {shown!r} (not in a listed directory)")
            continue
        try:
            name = name_raw.decode("utf-8")
        except UnicodeDecodeError:
            shown = name_raw.decode("utf-8", errors="backslashreplace")
            stats.fail(f"remote {parent}: file name {shown!r} is not valid UTF-8; not fetched")
            continue
        try:
            _check_name(name, where=f"remote directory {parent}")
        except TransferError as exc:
            stats.fail(exc.message)
            continue
        full = posixpath.join(parent, name)
        if kind == b"d":
            if depth >= bulk.MAX_DEPTH:
                stats.fail(f"remote {full}: deeper than {_MAX_DEPTH} levels; skipped")
                continue
            accepted[rest] = full
            dropped.discard(rest)
        elif kind == b"f":
            found[full] = _listed_file(full, mode, size, mtime, atime)
        elif kind == b"l":
            stats.warn(f"remote {full}: symlink not followed (skipped)")
        else:
            stats.warn(f"remote {full}: not a regular file or directory (skipped)")
    if index != len(starts) - 1:
        return None
    return list(found.values())


def _listed_file(path: str, mode: bytes, size: bytes, mtime: bytes, atime: bytes) -> _RemoteFile:
    """A regular file of a get listing (its fields as find printed them)."""
    return _RemoteFile(
        path,
        path.lstrip("/"),
        int(size),
        stat.S_IFREG | stat.S_IMODE(int(mode, 8)),
        _clamp_seconds(int(mtime)),
        _clamp_seconds(int(atime)),
    )


_GET_NAMES_PER_STREAM = 1024 * 1024  # bytes of names one `tar` reads (its input is not read back)


def _get_tar(
    session: Remote,
    tree: _LocalTree,
    items: list[_GetItem],
    opts: GetOptions,
    stats: _Stats,
    cancel: threading.Event,
) -> list[_GetItem]:
    """Fetch ``items`` through ``tar -c`` streams; return those still to fetch over SFTP."""
    back: list[_GetItem] = []
    start = 0
    while start < len(items):
        end, size = start, 0
        while end < len(items) and (end == start or size < _GET_NAMES_PER_STREAM):
            size += len(items[end].file.remote) + 1
            end += 1
        back += _get_tar_stream(session, tree, items[start:end], opts, stats, cancel)
        start = end
    return back


def _get_tar_stream(
    session: Remote,
    tree: _LocalTree,
    items: list[_GetItem],
    opts: GetOptions,
    stats: _Stats,
    cancel: threading.Event,
) -> list[_GetItem]:
    """One ``tar -c`` of exactly ``items``, each written to a temporary file, then renamed.

    A member is taken only if it is a regular file with the name and size of
    a file asked for and not yet received; everything about the local file
    (its path, opened without following links; its mode, the listed one
    without setuid, setgid and sticky bits) comes from the listing, only the
    bytes and the mtime from the stream. Anything else ends the stream,
    failing (and naming) what it was. The files are renamed into place only
    if the whole stream was right and ``tar`` exited 0 (``--verify``: and
    sha256sum agrees); else nothing is kept, and the files not failed are
    fetched over SFTP, which names any problem file by file.
    """
    expected = {item.file.remote: item for item in items}
    names = b"".join(bulk.encoded(item.file.remote) + b"\0" for item in items)
    budget = (
        sum(
            bulk.blocks(item.file.size) + 4 * bulk.BLOCK + 2 * bulk.blocks(len(item.file.remote))
            for item in items
        )
        + 64 * 1024
    )
    try:
        channel = session.open_stream(bulk.get_tar_command(), stdin=True)
    except Exception:
        if cancel.is_set() or not session.transport.is_active():
            raise
        logger.debug("Host %r: exec stream refused; using SFTP", stats.host, exc_info=True)
        return items

    def stopped() -> None:
        raise InterruptedHostError(stats.host, "interrupted; transfer stopped")

    received: list[_GetItem] = []
    complete = False
    refused: str | None = None
    status = -1
    try:
        try:
            fastio.send_all(channel, names, cancel.is_set)
            channel.shutdown_write()
            reader = bulk.StreamReader(channel, cancel, stopped, budget)
            archive = bulk.open_archive(reader)
            for _ in range(len(items) + 1):
                member = archive.next()
                if member is None:
                    complete = reader.drain()
                    break
                _private(archive).members.clear()  # TarFile keeps every member: not here
                item = expected.pop(member.name, None)
                if item is None:
                    refused = (
                        f"remote tar stream: refused the member {member.name!r} "
                        "(not a file that was asked for)"
                    )
                    break
                stats.current = item.file.remote
                problem = _member_problem(member, item)
                if problem is not None:
                    item.error = problem
                    break
                received.append(item)  # its temporary file is removed if the stream fails
                _receive_member(reader, tree, item, member, opts, stats)
        except InterruptedError:
            stopped()
        except (tarfile.TarError, OSError, EOFError, ValueError, OverflowError) as exc:
            # (tarfile's own parsing of a hostile header may raise the last two.)
            if not session.transport.is_active():
                raise EOFError("connection lost") from exc
            logger.info("Host %r: tar stream cut short (%s); using SFTP", stats.host, exc)
        except bulk.StreamRefused as exc:
            refused = f"remote tar stream: refused ({exc})"
        if complete:
            status = _exit_status(channel, stats, cancel)
            if status != 0:
                problem_text = channel.recv_stderr(4096).decode("utf-8", "replace").strip()
                logger.info(
                    "Host %r: tar -c exited with %s (%s); using SFTP",
                    stats.host,
                    status,
                    problem_text.splitlines()[-1] if problem_text else "no message",
                )
    finally:
        fastio.detach(channel)
        channel.close()
        if status != 0 or refused is not None:
            _discard_received(tree, received)
    if refused is not None:
        stats.fail(refused)
    if status != 0 or refused is not None:
        stats.bytes -= sum(item.received for item in received)
        for item in items:
            if item.error is not None:
                stats.fail(item.error)
        # What the stream wrote is gone: SFTP starts each file afresh.
        return [_GetItem(i.file, i.parts) for i in items if i.error is None]
    _get_commit(session, tree, received, opts, stats, cancel)
    return list(expected.values())


def _member_problem(member: tarfile.TarInfo, item: _GetItem) -> str | None:
    """Why a member named as ``item`` is refused, or None."""
    remote = item.file.remote
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or member.sparse is not None:
        return f"remote {remote}: not a regular file in the tar stream (refused)"
    if member.size != item.file.size:
        return (
            f"remote {remote}: {member.size} bytes in the tar stream, {item.file.size} listed "
            "(changed while being read?); not fetched"
        )
    return None


def _receive_member(
    reader: bulk.StreamReader,
    tree: _LocalTree,
    item: _GetItem,
    member: tarfile.TarInfo,
    opts: GetOptions,
    stats: _Stats,
) -> None:
    """Write one member's bytes to a new temporary file next to the item."""
    shown = tree.root.joinpath(*item.parts)
    try:
        temp, fd = _open_temp(tree, item.parts)
    except TransferError as exc:
        item.error = exc.message
        return
    except OSError as exc:
        item.error = f"local {shown}: {exc.strerror}"
        return
    item.temp = temp
    item.hasher = hashlib.sha256() if opts.verify else None
    written = 0

    def sink(views: list[memoryview]) -> None:
        nonlocal written
        if item.error is not None:
            return
        try:
            _pwrite_all(fd, list(views), written)
        except OSError as exc:
            item.error = f"local {shown}: {exc.strerror}"
            return
        if item.hasher is not None:
            for view in views:
                item.hasher.update(view)
        size = sum(len(v) for v in views)
        written += size
        item.received = written
        stats.moved(size)

    try:
        got = reader.write_to(member.size, sink)
        if got != member.size:
            raise tarfile.ReadError("unexpected end of data")
        if item.error is None:
            atime = item.file.atime if opts.preserve else _now()
            os.fchmod(fd, stat.S_IMODE(item.file.mode) & _DROP_SPECIAL_BITS)
            os.utime(fd, (atime, _stream_seconds(member.mtime, item.file.mtime)))
    except OSError as exc:
        item.error = f"local {shown}: {exc.strerror}"
    finally:
        os.close(fd)
    item.saw_eof = True


def _stream_seconds(value: float, listed: int) -> int:
    """A member's mtime in whole seconds as the quick check compares them; the listed one
    where the stream's is not a number (a pax header may say ``nan`` or ``inf``)."""
    return _clamp_seconds(int(value)) if math.isfinite(value) else listed


_EXEC_STREAM_MIN = 64 * 1024 * 1024
_STREAM_READ = 8 * 1024 * 1024  # bytes taken (and written with one pwritev) at a time
_STREAM_WAKE = 1024 * 1024  # the reader wakes per MiB received, not per packet
_MAX_STREAM_TURNS = 1 << 40  # bounds the stream loops; a stalled peer meets the deadline first


def _truncate_chunks(chunks: list[fastio.Chunk], keep: int) -> list[fastio.Chunk]:
    """The first ``keep`` bytes of ``chunks``."""
    out: list[fastio.Chunk] = []
    for chunk in chunks:
        if keep <= 0:
            break
        out.append(chunk if len(chunk) <= keep else memoryview(chunk)[:keep])
        keep -= len(out[-1])
    return out


def _pwrite_all(fd: int, chunks: list[fastio.Chunk], offset: int) -> None:
    """Write ``chunks`` at ``offset`` with as few ``pwritev`` calls as it takes."""
    views = [memoryview(c) for c in chunks if len(c)]
    index = 0
    for _ in range(_MAX_STREAM_TURNS):
        if index >= len(views):
            return
        written = os.pwritev(fd, views[index : index + 1024], offset)
        if written <= 0:
            raise OSError(errno.EIO, "short write")
        offset += written
        index = fastio.skip_written(views, index, written)


def _get_stream_exec(
    session: Remote,
    tree: _LocalTree,
    item: _GetItem,
    stats: _Stats,
    cancel: threading.Event,
) -> bool:
    """Fetch one large file through ``cat`` on an exec channel; False to fall back to SFTP.

    SFTP costs a Python round per 252 KiB reply; a plain byte stream over an
    exec channel runs at what the cipher allows (1 GB/s vs ~350 MB/s here).
    The file was already opened over SFTP, so permissions are known to allow
    reading. Bytes land in the same temporary file and go through the same
    size (and --verify) checks before the rename. A host where exec is not
    allowed (an SFTP-only account) falls back to SFTP.
    """
    stats.current = item.file.remote
    remote = shlex.quote(item.file.remote)
    start = item.offset
    command = f"tail -c +{start + 1} -- {remote}" if start else f"cat -- {remote}"
    try:
        channel = session.open_stream(command)
    except Exception:
        logger.debug("Host %r: exec stream refused; using SFTP", stats.host, exc_info=True)
        return False
    offset = start
    limit = item.file.size
    grew = False
    try:
        for _ in range(_MAX_STREAM_TURNS):
            if cancel.is_set():
                raise InterruptedHostError(stats.host, "interrupted; transfer stopped")
            chunks = fastio.read_chunks(channel, _STREAM_READ, 0.5, wait_for=_STREAM_WAKE)
            if chunks is None:
                continue  # nothing for 0.5 s: check for Ctrl-C (the deadline closes the channel)
            if not chunks:
                break
            got = sum(len(c) for c in chunks)
            if offset + got > limit:
                grew = True
                chunks = _truncate_chunks(chunks, max(0, limit - offset))
                got = max(0, limit - offset)
            if got:
                _pwrite_all(item.fd, chunks, offset)
                offset += got
                if item.hasher is not None:
                    for chunk in chunks:
                        item.hasher.update(chunk)
                stats.moved(got)
            if grew:
                break
        status = channel.recv_exit_status() if not grew else 0
        problem = channel.recv_stderr(4096).decode("utf-8", "replace").strip() if not grew else ""
    finally:
        fastio.detach(channel)
        channel.close()
    if offset == start and status != 0:
        # Nothing arrived: no cat/tail, or exec not allowed. SFTP can still do it.
        logger.debug("Host %r: exec stream failed (%s); using SFTP", stats.host, problem)
        item.received = start
        return False
    item.received = offset
    item.saw_eof = True
    if grew:
        item.error = f"remote {item.file.remote}: file grew while being read"
    elif status != 0:
        detail = problem.splitlines()[0] if problem else f"exit status {status}"
        item.error = f"remote {item.file.remote}: {detail}"
    return True
