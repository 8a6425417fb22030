"""SFTP put/get on leased sessions: atomic, verified, idempotent and pipelined.

``put`` uploads a ``SourceSet`` (local files scanned and read once in the main
thread, shared read-only by every host) and ``get`` downloads into
``LOCAL_DIR/<host>/<remote path>``. Both run on the ``Executor``'s thread pool,
one session per host, and yield a ``HostResult`` per host with the extra JSON
fields ``files`` (sent), ``unchanged``, ``failed_files``, ``bytes``, ``changed``
and ``skipped`` (symlinks and special files left alone).

Nothing is lost: every file is written under a temporary name in its
destination directory (``.NAME.remoteops-<random>.part``; ``.NAME.remoteops.part``
with ``resume``) and renamed into place only once its size (and, with
``verify``, its sha256) is checked. On any error, Ctrl-C or deadline the
temporary files are removed, over a fresh connection if the old one is gone,
unless ``resume`` asks to keep them for the next run.

What is unchanged (rsync's quick check): a copy with exactly the source's size
and modification time, compared in whole seconds (SFTP version 3 carries no
more); every copy, sent or fetched, is stamped with its source's mtime (as
``rsync -t`` does), so a second run sends nothing, while a rollback (an older
time) or an edit is sent. ``checksum`` and ``verify`` decide by sha256 instead,
never by times, and stamp the source's mtime on a copy whose content matched.
``preserve`` sets the source's access time too.

Speed: paramiko sends one SFTP request and waits for its answer. Here a
``_Pipe`` keeps many requests in flight on the session's one SFTP channel
(OpenSSH's sftp-server answers them in order): stats, opens, 64 KiB reads and
writes, closes and renames of up to ``_BATCH`` files cost a few round trips in
all, and a large file streams with ``_WINDOW`` requests outstanding.

As another user (``become``, or the host's ``ansible_become``): the host's
SFTP, commands and streams go through ``become.SudoSession`` (``sftp-server``
and the fast paths run under sudo), with every guarantee above. A file that
replaces an existing one gets that file's owner and group back where the
writing user may set them; a new one belongs to the writing user.

Errors name the path the user asked for (``remote /etc/motd: Permission
denied``), never a temporary name, so the same failure on many hosts folds
into one line of the summary.

Safety of ``get``: every name a server sends goes through ``safe_local_path``
(no ``..``, ``/``, ``\\``, empty names or control characters); remote symlinks
inside a requested tree or matched by a glob are skipped with a warning, never
followed (a path named on the command line is followed, as ``cp`` does);
local directories are created and opened one component at a time with
``O_NOFOLLOW`` relative to their parent's descriptor, so a symlink planted
under ``LOCAL_DIR/<host>/`` is never written through; setuid, setgid and
sticky bits are dropped.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import glob
import hashlib
import io
import logging
import math
import os
import posixpath
import secrets
import shlex
import stat
import tarfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paramiko
from paramiko.message import Message
from paramiko.sftp import (
    CMD_ATTRS,
    CMD_CLOSE,
    CMD_DATA,
    CMD_EXTENDED,
    CMD_EXTENDED_REPLY,
    CMD_FSETSTAT,
    CMD_FSTAT,
    CMD_HANDLE,
    CMD_LSTAT,
    CMD_MKDIR,
    CMD_NAME,
    CMD_OPEN,
    CMD_OPENDIR,
    CMD_READ,
    CMD_READDIR,
    CMD_REMOVE,
    CMD_SETSTAT,
    CMD_STAT,
    CMD_STATUS,
    CMD_WRITE,
    SFTP_DESC,
    SFTP_EOF,
    SFTP_FAILURE,
    SFTP_FLAG_CREATE,
    SFTP_FLAG_EXCL,
    SFTP_FLAG_READ,
    SFTP_FLAG_TRUNC,
    SFTP_FLAG_WRITE,
    SFTP_NO_SUCH_FILE,
    SFTP_OK,
    int64,
)
from paramiko.sftp_attr import SFTPAttributes

from remoteops import bulk, fastio
from remoteops.become import Become, Remote, SudoSession
from remoteops.errors import (
    CommandTimeoutError,
    HostError,
    InterruptedHostError,
    TransferError,
    UsageError,
)
from remoteops.results import HostResult
from remoteops.session import Session, map_errors

if TYPE_CHECKING:
    from remoteops.execution import Executor
    from remoteops.target import Target

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "GetOptions",
    "ProgressSink",
    "PutOptions",
    "SourceFile",
    "SourceSet",
    "TransferOptions",
    "get",
    "get_on_session",
    "put",
    "put_on_session",
    "safe_local_path",
]

logger = logging.getLogger(__name__)

DEFAULT_MEMORY_BUDGET = 256 * 1024 * 1024
"""Source files are kept in memory (and shared by all hosts) up to this many bytes in total."""

_CHUNK = 252 * 1024  # bytes per SFTP read/write request: under sftp-server's 256 KiB message limit
_WINDOW = 128  # requests in flight per host while streaming
_BATCH = 256  # files handled together per pipelined round
_MAX_ENTRIES = 1_000_000  # most remote entries one `get` walks per host
_MAX_DEPTH = 256
_FD_CACHE = 64
_DROP_SPECIAL_BITS = 0o777  # get: setuid, setgid and sticky bits are dropped
_MAGIC = frozenset("*?[")
_MAX_WIRE_TIME = 2**32 - 1  # SFTP version 3 carries times as unsigned 32-bit seconds

ProgressSink = Callable[[str, int, int], None]
"""Called with (host, bytes just moved, files just finished); must be thread-safe."""


# --------------------------------------------------------------------------- names


def _check_name(name: str, *, where: str) -> None:
    """Refuse a single path component that could escape or confuse a local tree."""
    if name in ("", ".", ".."):
        raise TransferError("", f"{where}: refused the name {name!r} (empty, '.' or '..')")
    bad = [c for c in name if c in "/\\" or ord(c) < 32 or ord(c) == 127]
    if bad:
        raise TransferError(
            "", f"{where}: refused the name {name!r} (separator or control character)"
        )


def safe_local_path(root: Path, remote_relative: str) -> Path:
    """``root`` joined with a remote relative path, refusing anything that could leave ``root``.

    ``remote_relative`` is a ``/``-separated path as a server sends it. Absolute
    paths, empty, ``.`` and ``..`` components, backslashes and control
    characters (including NUL and newline) raise ``TransferError``; nothing it
    returns is outside ``root`` (symlinks on disk are handled when writing).
    """
    if not remote_relative or remote_relative.startswith("/"):
        raise TransferError(
            "", f"remote path {remote_relative!r} refused: not a relative path under {root}"
        )
    parts = remote_relative.split("/")
    for part in parts:
        _check_name(part, where=f"remote path {remote_relative!r}")
    return root.joinpath(*parts)


def _has_magic(text: str) -> bool:
    return any(c in _MAGIC for c in text)


# --------------------------------------------------------------------------- times


def _wire_seconds(ns: int) -> int:
    """A file time in nanoseconds as SFTP version 3 carries it: whole seconds, truncated.

    The quick check compares both sides at this precision (the remote side
    never has more over SFTP v3); a time before 1970 or after 2106 is clamped
    to what the protocol can carry, the same way on every run.
    """
    return min(max(ns // 1_000_000_000, 0), _MAX_WIRE_TIME)


def _now() -> int:
    """The current time in whole seconds, as a copy's access time when -p is not given."""
    return _wire_seconds(time.time_ns())


def _same_copy(size: int, mtime: int, other_size: int | None, other_mtime: int | None) -> bool:
    """rsync's quick check: a copy is unchanged only when size and mtime are exactly equal.

    Not "not older": a rollback (``cp -p backup.conf app.conf``) has an older
    time and is sent. Every copy is stamped with its source's mtime, so a
    second run recognises the copies of the first.
    """
    return other_size == size and other_mtime == mtime


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One local file to upload: where it goes (relative), its metadata and maybe its bytes."""

    path: Path
    relative: str
    size: int
    mode: int
    mtime: int
    sha256: str | None = None
    data: bytes | None = field(default=None, repr=False)
    atime: int = 0

    def chunks(self, start: int = 0, size: int = _CHUNK) -> Iterator[bytes]:
        """The file's bytes from ``start``, from memory or streamed from disk."""
        if self.data is not None:
            for offset in range(start, self.size, size):
                yield self.data[offset : offset + size]
            return
        sent = start
        with open(self.path, "rb") as fh:
            fh.seek(start)
            while sent < self.size:
                chunk = fh.read(min(size, self.size - sent))
                if not chunk:
                    break
                sent += len(chunk)
                yield chunk
        if sent != self.size:
            raise TransferError("", f"local {self.path}: file shrank while it was being sent")

    def prefix_sha256(self, length: int) -> str:
        """sha256 of the first ``length`` bytes (for ``resume``)."""
        digest = hashlib.sha256()
        for chunk in self.chunks(0, 1024 * 1024):
            digest.update(chunk[: max(0, length)])
            length -= len(chunk)
            if length <= 0:
                break
        return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class SourceSet:
    """What ``put`` sends: local files scanned and read once, shared read-only by all hosts.

    Files are kept in memory while their total stays within the memory budget
    (256 MiB by default); larger ones are streamed from disk for each host.
    """

    files: tuple[SourceFile, ...]
    dirs: tuple[tuple[str, int], ...]
    is_single_file: bool
    warnings: tuple[str, ...] = ()

    @property
    def total_bytes(self) -> int:
        """Bytes of all files."""
        return sum(f.size for f in self.files)

    @classmethod
    def scan(
        cls,
        sources: Sequence[str],
        *,
        mode: int | None = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        need_hash: bool = False,
    ) -> SourceSet:
        """Expand local globs, walk directories and read files; raise UsageError if one is missing.

        A source ``dir`` lands as ``DEST/dir/...``; ``dir/`` (trailing slash)
        sends its contents into ``DEST/``. Symlinks named on the command line
        are followed; inside a directory a symlink to a file inside the same
        source tree is sent as that file, any other symlink (outside the tree,
        to a directory, dangling) and special files are skipped with a warning.
        ``mode`` replaces every file's permission bits.
        """
        picked: list[tuple[Path, str]] = []  # (local path, relative destination)
        dirs: dict[str, int] = {}
        warnings: list[str] = []
        expanded: list[tuple[str, bool]] = []
        for source in sources:
            if _has_magic(source):
                matches = sorted(glob.glob(source))
                if not matches:
                    raise UsageError(f"local {source}: no file matches this pattern")
                expanded += [(m, False) for m in matches]
            else:
                expanded.append((source, True))
        for source, explicit in expanded:
            path = Path(source)
            try:
                info = path.stat()
            except OSError as exc:
                raise UsageError(f"local {source}: {exc.strerror}") from None
            if stat.S_ISREG(info.st_mode):
                picked.append((path, path.name))
            elif stat.S_ISDIR(info.st_mode):
                into_contents = source.endswith("/") and explicit
                base = "" if into_contents else path.resolve().name
                if base:
                    dirs[base] = stat.S_IMODE(info.st_mode)
                _walk_local(path, base, picked, dirs, warnings)
            else:
                raise UsageError(f"local {source}: not a regular file or directory")
        is_single = len(picked) == 1 and not dirs and len(expanded) == 1
        seen: dict[str, Path] = {}
        for local, relative in picked:
            if relative in seen and seen[relative] != local:
                raise UsageError(
                    f"local {local} and {seen[relative]} would both land on {relative!r}"
                )
            seen[relative] = local
        files: list[SourceFile] = []
        budget = memory_budget
        for relative, local in sorted(seen.items()):
            files.append(_read_source(local, relative, mode, need_hash, budget))
            if files[-1].data is not None:
                budget -= files[-1].size
        return cls(
            files=tuple(files),
            dirs=tuple(sorted(dirs.items())),
            is_single_file=is_single,
            warnings=tuple(warnings),
        )


def _read_source(
    local: Path, relative: str, mode: int | None, need_hash: bool, budget: int
) -> SourceFile:
    try:
        with open(local, "rb") as fh:
            info = os.fstat(fh.fileno())
            data: bytes | None = None
            digest: str | None = None
            if info.st_size <= budget:
                data = fh.read()
                if len(data) != info.st_size:
                    raise UsageError(f"local {local}: file changed while it was being read")
                digest = hashlib.sha256(data).hexdigest()
            elif need_hash:
                hasher = hashlib.sha256()
                for block in iter(lambda: fh.read(1024 * 1024), b""):
                    hasher.update(block)
                digest = hasher.hexdigest()
    except OSError as exc:
        raise UsageError(f"local {local}: {exc.strerror}") from None
    return SourceFile(
        path=local,
        relative=relative,
        size=info.st_size,
        mode=mode if mode is not None else stat.S_IMODE(info.st_mode),
        mtime=_wire_seconds(info.st_mtime_ns),
        sha256=digest,
        data=data,
        atime=_wire_seconds(info.st_atime_ns),
    )


def _walk_local(
    top: Path,
    base: str,
    picked: list[tuple[Path, str]],
    dirs: dict[str, int],
    warnings: list[str],
) -> None:
    root_real = top.resolve()
    for current, subdirs, names in os.walk(top, followlinks=False):
        rel_dir = os.path.relpath(current, top)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
        for name in list(subdirs):
            full = Path(current, name)
            relative = posixpath.join(base, rel_dir, name).lstrip("/")
            if full.is_symlink():
                subdirs.remove(name)
                warnings.append(f"local {full}: symlink to a directory skipped (not followed)")
                continue
            dirs[relative] = stat.S_IMODE(full.lstat().st_mode)
        for name in names:
            full = Path(current, name)
            relative = posixpath.join(base, rel_dir, name).lstrip("/")
            info = full.lstat()
            if stat.S_ISLNK(info.st_mode):
                target = full.resolve()
                if target.is_file() and target.is_relative_to(root_real):
                    picked.append((target, relative))
                else:
                    warnings.append(
                        f"local {full}: symlink pointing outside {top} (or not to a file) skipped"
                    )
            elif stat.S_ISREG(info.st_mode):
                picked.append((full, relative))
            else:
                warnings.append(f"local {full}: not a regular file; skipped")


# --------------------------------------------------------------------------- options


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferOptions:
    """How ``put`` and ``get`` behave (the CLI's flags; the same ones for both).

    ``become`` (or the host's ``ansible_become``) moves the files as
    ``become_user`` (default root) through sudo, as ``run --become`` runs commands.
    """

    preserve: bool = False
    checksum: bool = False
    verify: bool = False
    resume: bool = False
    become: bool = False
    become_user: str | None = None
    become_password: str | None = field(default=None, repr=False)

    def run_as(self, target: Target) -> Become | None:
        """Whom the files are moved as on ``target``: None for the login user."""
        return Become.choose(self.become, self.become_user, self.become_password, target)


PutOptions = TransferOptions
GetOptions = TransferOptions


# --------------------------------------------------------------------------- SFTP pipeline


def _private(obj: object) -> Any:
    """paramiko's SFTPClient seen untyped: ``_async_request`` and ``_read_response``.

    They are how paramiko's own prefetch keeps requests in flight; there is no
    public form.
    """
    return obj


class _Pipe:
    """Many SFTP requests in flight on one SFTPClient; replies collected by request number."""

    def __init__(self, session: Remote, cancel: threading.Event) -> None:
        self._session = session
        self._client: Any = None
        self._cancel = cancel
        self._host = session.target.name
        self._replies: dict[int, tuple[int, Message]] = {}

    @property
    def _sftp(self) -> Any:
        """The session's SFTP client, started on first use (a stream may need none)."""
        if self._client is None:
            self._client = _private(self._session.sftp())
        return self._client

    def _async_response(self, kind: int, msg: Message, num: int) -> None:
        # Called by paramiko's _read_response for requests sent with this object.
        self._replies[num] = (kind, msg)

    def send(self, kind: int, *args: Any) -> int:
        """Send one request; return its number."""
        return int(self._sftp._async_request(self, kind, *args))

    def reply(self, num: int) -> tuple[int, Message]:
        """Wait for the reply to request ``num``."""
        while num not in self._replies:
            if self._cancel.is_set():
                raise InterruptedHostError(self._host, "interrupted; transfer stopped")
            self._sftp._read_response()
        return self._replies.pop(num)

    def status(self, num: int) -> tuple[int, str]:
        """The (code, message) of a STATUS reply; (SFTP_OK, "") for other replies."""
        kind, msg = self.reply(num)
        return _status_of(kind, msg)

    def run(self, requests: Iterable[tuple[int, tuple[Any, ...]]]) -> list[tuple[int, Message]]:
        """Send every request (at most _WINDOW unanswered) and return the replies in order."""
        out: list[tuple[int, Message]] = []
        pending: deque[int] = deque()
        for kind, args in requests:
            pending.append(self.send(kind, *args))
            if len(pending) >= _WINDOW:
                out.append(self.reply(pending.popleft()))
        while pending:
            out.append(self.reply(pending.popleft()))
        return out


def _status_of(kind: int, msg: Message) -> tuple[int, str]:
    if kind != CMD_STATUS:
        return SFTP_OK, ""
    code = msg.get_int()
    try:
        text = msg.get_text()
    except Exception:
        text = ""
    if not text:
        text = SFTP_DESC[code] if 0 <= code < len(SFTP_DESC) else f"SFTP error {code}"
    return code, text


def _attrs_of(kind: int, msg: Message) -> SFTPAttributes | None:
    if kind != CMD_ATTRS:
        return None
    attrs: SFTPAttributes = _private(SFTPAttributes)._from_msg(msg)
    return attrs


def _attrs(
    *,
    mode: int | None = None,
    times: tuple[int, int] | None = None,
    owner: tuple[int, int] | None = None,
) -> SFTPAttributes:
    """SFTP attributes to set: permission bits, (atime, mtime) and/or (uid, gid)."""
    attrs = SFTPAttributes()
    if mode is not None:
        attrs.st_mode = mode
    if times is not None:
        attrs.st_atime, attrs.st_mtime = times
    if owner is not None:
        attrs.st_uid, attrs.st_gid = owner
    return attrs


def _copy_times(src: SourceFile, opts: TransferOptions) -> tuple[int, int]:
    """(atime, mtime) of a copy: always the source's mtime; its atime too with ``preserve``."""
    return (src.atime if opts.preserve else _now(), src.mtime)


def _statvfs_free(pipe: _Pipe, path: str) -> int | None:
    """Bytes free to the user on the remote file system holding ``path`` (OpenSSH extension)."""
    with contextlib.suppress(Exception):
        kind, msg = pipe.reply(pipe.send(CMD_EXTENDED, "statvfs@openssh.com", path))
        if kind == CMD_EXTENDED_REPLY:
            _bsize, frsize, _blocks, _bfree, bavail = (msg.get_int64() for _ in range(5))
            return int(frsize * bavail)
    return None


def _remote_sha256(
    session: Remote, paths: Sequence[str], cancel: threading.Event
) -> dict[str, str]:
    """sha256 of remote files via ``sha256sum`` (one exec per ~60 KB of names); {} without it."""
    hashes: dict[str, str] = {}
    start = 0
    while start < len(paths):
        # Each command's arguments well under Linux's 128 KiB for one argument
        # (sshd hands the whole command to the shell as one).
        end, size = start, 0
        while end < len(paths) and (end == start or size + len(paths[end]) < 60_000):
            size += len(paths[end]) + 3
            end += 1
        found = _remote_sha256_of(session, paths[start:end], cancel)
        if found is None:
            return hashes
        hashes.update(found)
        start = end
    return hashes


def _remote_sha256_of(
    session: Remote, paths: Sequence[str], cancel: threading.Event
) -> dict[str, str] | None:
    """``_remote_sha256`` for one command's worth of paths; None when sha256sum is missing."""
    command = "sha256sum -- " + " ".join(shlex.quote(p) for p in paths)
    try:
        result = session.exec(command, max_output=200 * len(paths) + 65536, cancel=cancel)
    except HostError as exc:
        if cancel.is_set():
            raise
        logger.debug("Host %r: sha256sum not available (%s)", session.target.name, exc)
        return None
    if result.exit_code == 127 or result.interrupted:
        return None
    hashes: dict[str, str] = {}
    for raw in result.stdout.decode("utf-8", "surrogateescape").split("\n"):
        if not raw:
            continue
        escaped = raw.startswith("\\")
        line = raw[1:] if escaped else raw
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64:
            continue
        if escaped:
            name = name.replace("\\\\", "\0").replace("\\n", "\n").replace("\0", "\\")
        hashes[name] = digest
    return hashes


def _remote_prefix_sha256(
    session: Remote, path: str, length: int, cancel: threading.Event
) -> str | None:
    """sha256 of the first ``length`` bytes of a remote file, or None if it cannot be asked."""
    command = f"head -c {int(length)} -- {shlex.quote(path)} | sha256sum"
    try:
        result = session.exec(command, cancel=cancel)
    except HostError:
        if cancel.is_set():
            raise
        return None
    text = result.stdout.decode("ascii", "replace").split()
    if result.exit_code != 0 or not text or len(text[0]) != 64:
        return None
    return text[0]


def _sftp_sha256(session: Remote, path: str) -> str:
    """sha256 of a remote file read over SFTP (prefetched), for hosts without sha256sum."""
    digest = hashlib.sha256()
    with session.sftp().open(path, "rb") as fh:
        fh.prefetch()
        for block in iter(lambda: fh.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


# --------------------------------------------------------------------------- per-host stats


@dataclass(slots=True)
class _Stats:
    host: str
    progress: ProgressSink | None
    files: int = 0
    unchanged: int = 0
    failed: int = 0
    skipped: int = 0
    bytes: int = 0
    attrs_changed: int = 0
    current: str = ""
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # get: remote paths of the files this run left in place, downloaded or unchanged
    covered: list[str] = field(default_factory=list)

    def moved(self, nbytes: int) -> None:
        self.bytes += nbytes
        if self.progress is not None and nbytes:
            self.progress(self.host, nbytes, 0)

    def done(self, count: int = 1) -> None:
        self.files += count
        if self.progress is not None and count:
            self.progress(self.host, 0, count)

    def fail(self, message: str) -> None:
        self.failed += 1
        self.errors.append(message)
        logger.info("Host %r: %s", self.host, message)

    def warn(self, message: str) -> None:
        self.skipped += 1
        self.warnings.append(message)
        logger.warning("Host %r: %s", self.host, message)

    def extra(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "unchanged": self.unchanged,
            "failed_files": self.failed,
            "skipped": self.skipped,
            "bytes": self.bytes,
            "changed": bool(self.files or self.attrs_changed),
            "warnings": self.warnings[:20],
            "errors": self.errors[:20],
            "_covered": tuple(self.covered),
        }


def _result(
    target: Target, start: float, stats: _Stats, error: HostError | None = None
) -> HostResult:
    status = "ok"
    message: str | None = None
    if error is not None:
        status, message = error.status, str(error)
    elif stats.failed:
        status = "failed"
        message = stats.errors[0]
        if stats.failed > 1:
            message = f"{stats.failed} files failed; first: {message}"
    return HostResult(
        host=target.name,
        address=target.address,
        port=target.port,
        status=status,  # type: ignore[arg-type]
        duration_s=time.monotonic() - start,
        error=message,
        extra=stats.extra(),
    )


def _host_work(
    executor: Executor,
    stats_progress: ProgressSink | None,
    opts: TransferOptions,
    body: Callable[[Remote, _Stats, set[str]], None],
    cleanup: Callable[[Remote, set[str]], None],
) -> Callable[[Target], HostResult]:
    """Wrap a per-host transfer: connect, deadline, error mapping, cleanup of temporary files."""

    def work(target: Target) -> HostResult:
        start = time.monotonic()
        stats = _Stats(target.name, stats_progress)
        temps: set[str] = set()  # remote (put) temporary files to remove on failure
        become = opts.run_as(target)
        try:
            session = _as_user(executor.open_session(target), become, executor.cancel_event)
        except HostError as exc:
            return _result(target, start, stats, exc)
        expired = threading.Event()

        def on_deadline() -> None:
            expired.set()
            with contextlib.suppress(Exception):
                session.transport.close()

        error: HostError | None = None
        try:
            with (
                executor.watchdog.deadline(executor.timeouts.command, on_deadline),
                map_errors(target, phase="transfer", deadline_passed=expired.is_set),
            ):
                body(session, stats, temps)
        except HostError as exc:
            error = exc
            where = f"remote {stats.current}: " if stats.current else ""
            if expired.is_set():
                error = CommandTimeoutError(
                    target.name,
                    f"{where}transfer did not finish within {executor.timeouts.command:g}s "
                    "(--timeout)",
                )
            elif not isinstance(exc, TransferError | InterruptedHostError):
                error = TransferError(target.name, f"{where}connection lost mid-transfer ({exc})")
        finally:
            if temps:
                _cleanup(executor, target, session, temps, cleanup, become)
            session.close()
        return _result(target, start, stats, error)

    return work


def _as_user(session: Session, become: Become | None, cancel: threading.Event) -> Remote:
    """``session`` itself, or under ``become`` its SFTP and commands run through sudo."""
    return session if become is None else SudoSession(session, become, cancel)


def _cleanup(
    executor: Executor,
    target: Target,
    session: Remote,
    temps: set[str],
    cleanup: Callable[[Remote, set[str]], None],
    become: Become | None,
) -> None:
    """Remove leftover temporary files, over a fresh connection if this one is gone."""
    try:
        if session.transport.is_active():
            cleanup(session, temps)
            return
    except Exception:
        logger.debug("Host %r: cleanup on the old connection failed", target.name, exc_info=True)
    fresh: Remote | None = None
    try:
        # Its own never-set cancel: after Ctrl-C the cleanup still has to run.
        fresh = _as_user(executor.open_session(target), become, threading.Event())
        cleanup(fresh, temps)
    except Exception as exc:
        logger.warning(
            "Host %r: could not remove temporary files %s (%s)",
            target.name,
            ", ".join(sorted(temps)[:5]),
            exc,
        )
    finally:
        if fresh is not None:
            fresh.close()


def _remove_remote(session: Remote, temps: set[str]) -> None:
    sftp = session.sftp()
    for path in sorted(temps):
        with contextlib.suppress(OSError, IOError):
            sftp.remove(path)
        temps.discard(path)


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


def _temp_name(path: str, *, resume: bool) -> str:
    directory, name = posixpath.split(path)
    suffix = ".remoteops.part" if resume else f".remoteops-{secrets.token_hex(4)}.part"
    return posixpath.join(directory, f".{name}{suffix}")


def _remote_error(side_path: str, code: int, text: str, pipe: _Pipe | None = None) -> str:
    message = f"remote {side_path}: {text}"
    if code == SFTP_FAILURE and pipe is not None:
        free = _statvfs_free(pipe, posixpath.dirname(side_path) or ".")
        if free is not None and free < 1024 * 1024:
            message = (
                f"remote {side_path}: No space left on device (remote disk full, {free} bytes free)"
            )
    return message


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
    opts = options or PutOptions()
    cancel = executor.cancel_event
    # One staging directory name for every host of this run: the archives are
    # then byte for byte the same, and their headers are built once.
    stage = f"{bulk.STAGE_PREFIX}{secrets.token_hex(6)}{bulk.STAGE_SUFFIX}"
    run = _PutRun.plan(sources, dest, opts)

    def body(session: Remote, stats: _Stats, temps: set[str]) -> None:
        pipe = _Pipe(session, cancel)
        if run is None or not _put_bulk(
            session, pipe, run, sources, opts, stats, temps, cancel, stage
        ):
            _put_host(session, pipe, sources, dest, opts, stats, temps, cancel)

    def cleanup(session: Remote, temps: set[str]) -> None:
        _remove_stages(session, temps)
        if not opts.resume:
            _remove_remote(session, temps)

    return executor.fan_out(_host_work(executor, progress, opts, body, cleanup))


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


# --------------------------------------------------------------------------- put: one stream


_KIND_BITS = {
    "f": stat.S_IFREG,
    "d": stat.S_IFDIR,
    "l": stat.S_IFLNK,
    "p": stat.S_IFIFO,
    "s": stat.S_IFSOCK,
    "c": stat.S_IFCHR,
    "b": stat.S_IFBLK,
}


def _clamp_seconds(seconds: int) -> int:
    """Whole seconds as the quick check compares them (see ``_wire_seconds``)."""
    return min(max(seconds, 0), _MAX_WIRE_TIME)


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
    opts = options or GetOptions()
    cancel = executor.cancel_event

    def body(session: Remote, stats: _Stats, temps: set[str]) -> None:
        del temps  # local temporary files are removed by _get_host itself
        _get_host(session, remotes, local_dir, opts, stats, cancel)

    def cleanup(session: Remote, temps: set[str]) -> None:
        del session, temps

    return executor.fan_out(_host_work(executor, progress, opts, body, cleanup))


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
        fd_dir = tree.dir_fd(item.parts[:-1])
        temp = f".{item.name}.remoteops-{secrets.token_hex(4)}.part"
        fd = os.open(
            temp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=fd_dir,
        )
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
                    item.temp = f".{item.name}.remoteops-{secrets.token_hex(4)}.part"
                    item.fd = os.open(
                        item.temp,
                        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                        0o600,
                        dir_fd=fd,
                    )
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


# --- per-session entry points (used by playbooks)


class _Lent:
    """A session lent to one transfer: ``close()`` leaves the lender's connection open."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def close(self) -> None:
        """Keep the connection: its owner goes on using it."""


class _OneSession:
    """Stands in for the Executor so that ``put``/``get`` work on one open session.

    ``fan_out`` runs the per-host work once, for the session's host, in the
    caller's thread; the first ``open_session`` lends the session, and any later
    one (cleanup of temporary files after a lost connection) connects afresh.
    """

    def __init__(self, executor: Executor, session: Session, timeout: float | None) -> None:
        self._executor = executor
        self._session: Session | None = session
        self._target = session.target
        if timeout is not None:
            import dataclasses

            self.timeouts = dataclasses.replace(executor.timeouts, command=timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._executor, name)

    def fan_out(self, work: Callable[[Target], HostResult]) -> Iterator[HostResult]:
        yield work(self._target)

    def open_session(self, target: Target) -> Any:
        session, self._session = self._session, None
        if session is None:
            return self._executor.open_session(target)
        return _Lent(session)


def _one(executor: Executor, session: Session, timeout: float | None) -> Executor:
    from typing import cast

    return cast("Executor", _OneSession(executor, session, timeout))


def put_on_session(
    executor: Executor,
    session: Session,
    sources: SourceSet,
    dest: str,
    *,
    options: PutOptions | None = None,
    progress: ProgressSink | None = None,
    timeout: float | None = None,
) -> HostResult:
    """``put`` to the host of an open ``session``, which stays open; the host's result.

    ``timeout`` replaces the executor's transfer deadline; cancel and
    credentials are the executor's.
    """
    one = _one(executor, session, timeout)
    results = put(one, sources, dest, options=options, progress=progress)
    return next(iter(results))


def get_on_session(
    executor: Executor,
    session: Session,
    remotes: Sequence[str],
    local_dir: Path,
    *,
    options: GetOptions | None = None,
    progress: ProgressSink | None = None,
    timeout: float | None = None,
) -> HostResult:
    """``get`` from the host of an open ``session``, which stays open; the host's result."""
    one = _one(executor, session, timeout)
    results = get(one, remotes, local_dir, options=options, progress=progress)
    return next(iter(results))
