"""Many small files as one stream per host and direction: listings, tar streams, put plans.

Over SFTP every file costs requests (a stat, an open, writes, a setstat, a
rename) through paramiko's per-packet Python code, and sftp-server work on
the far side. Here a transfer costs two commands per host on exec channels:

* one listing (GNU ``find -printf``, NUL-separated records) says what is on
  the host, so deciding what is unchanged costs one round trip, not one per
  file;
* one ``tar`` stream moves every file that changed.

``put`` extracts the stream into a private staging directory next to the
destination (``.remoteops-<token>.stage``, created with ``mkdir``, mode 0700)
and then runs the plan that came last in the same stream: ``mv`` renames each
file, and each new directory tree, into place within one file system, so
every file appears under its final name only complete. Nothing moves unless
``tar`` read the whole stream (and, with ``--verify``, ``sha256sum -c``
agreed); what is left in the stage is reported back and the stage removed.

``get`` asks ``tar`` for exactly the files the listing named, and reads the
stream with ``tarfile`` through ``StreamReader``: nothing in a member's header
decides where or how a file is written (see ``transfer.streams._get_tar``).

This module holds the pieces that do not touch a session: commands, parsers
and the archive writer and reader. Where a host lacks GNU ``find`` or
``tar``, or refuses exec, the callers use SFTP instead.
"""

from __future__ import annotations

import functools
import re
import shlex
import tarfile
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import paramiko

from remoteops import fastio, fastpaths

__all__ = [
    "Entry",
    "Fields",
    "PutListing",
    "PutPlan",
    "StreamReader",
    "StreamRefused",
    "fast_paths_enabled",
    "get_listing_command",
    "get_tar_command",
    "parse_get_listing",
    "parse_put_listing",
    "put_listing_command",
    "put_stream_command",
    "tar_blocks",
]


def fast_paths_enabled() -> bool:
    """Whether put and get may use exec-channel streams (listings, ``tar``, ``cat``).

    The one place the transfers ask (``fastpaths.enabled``: not switched off
    by ``REMOTEOPS_NO_FAST_PATHS``, and paramiko has what ``fastio`` needs):
    when False they run over SFTP alone, with the same guarantees.
    """
    return fastpaths.enabled()


LIST_MARK = b"remoteops-list 1\n"
STAGE_PREFIX = ".remoteops-"
STAGE_SUFFIX = ".stage"
_STAGE_FAILED = 90  # the staging directory could not be made
_TAR_FAILED = 91  # tar did not read the whole stream
VERIFY_FAILED = 92  # sha256sum -c disagreed (or is missing): nothing was moved
_MAX_ARGS = 64 * 1024  # bytes of arguments per command in a plan (Linux allows 128 KiB per arg)
_MAX_META = 1024 * 1024  # largest header (pax, GNU long name) the reader accepts
BLOCK = tarfile.BLOCKSIZE


def blocks(size: int) -> int:
    """``size`` rounded up to whole tar blocks."""
    return -(-size // BLOCK) * BLOCK


# --------------------------------------------------------------------------- listings


Fields = tuple[bytes, ...]
"""One listing record's fields as printed, the path last (converted only where used); times
are whole seconds (find's ``%T@`` truncated toward zero)."""

_TIME = rb"(-?[0-9]+)(?:\.[0-9]*)?"
# put: ``A kind dev path`` for / .. the destination, then ``T kind dev mode uid gid size
# mtime atime ./path`` below it. get: ``depth kind mode size mtime atime path``.
_PUT_ANCESTOR = re.compile(rb"A (\S) ([0-9]+) ([^\0]*)\0")
_PUT_TREE = re.compile(
    rb"T (\S) ([0-9]+) ([0-7]+) ([0-9]+) ([0-9]+) ([0-9]+) " + _TIME + b" " + _TIME
    + rb" \.(?:/([^\0]*))?\0"
)  # fmt: skip
_GET_RECORD = re.compile(
    rb"([0-9]+) (\S) ([0-7]+) ([0-9]+) " + _TIME + b" " + _TIME + rb" ([^\0]*)\0"
)


def _leading(pattern: re.Pattern[bytes], data: bytes) -> tuple[list[Fields], int]:
    """The records of ``pattern`` at the start of ``data``: (fields, where they end)."""
    out: list[Fields] = []
    pos = 0
    for match in pattern.finditer(data):
        if match.start() != pos:
            break
        out.append(cast(Fields, match.groups()))  # None only for the optional path
        pos = match.end()
    return out, pos


def _records(pattern: re.Pattern[bytes], data: bytes, start: int) -> list[Fields] | None:
    """Every NUL-terminated record of ``data`` from ``start``, or None if one is not in the
    form of ``pattern`` (matched in C: a second put's listing has 40,000 of them)."""
    records = cast(list[Fields], pattern.findall(data, start))
    if data.count(b"\0", start) != len(records) or not data.endswith(b"\0", start):
        return None if len(data) > start else []
    return records


@dataclass(frozen=True, slots=True)
class Entry:
    """One file as a listing reports it: ``kind`` is find's ``%y`` letter (f, d, l, ...)."""

    kind: str
    mode: int  # permission bits, with setuid, setgid and sticky
    size: int
    mtime: int  # whole seconds, as find printed them (not clamped)
    atime: int
    uid: int = -1
    gid: int = -1


def put_entry(fields: Fields) -> Entry:
    """A put listing's tree record (kind dev mode uid gid size mtime atime path) as an Entry."""
    return Entry(
        kind=fields[0].decode("ascii", "replace"),
        mode=int(fields[2], 8),
        size=int(fields[5]),
        mtime=int(fields[6]),
        atime=int(fields[7]),
        uid=int(fields[3]),
        gid=int(fields[4]),
    )


def _quoted_paths(paths: Iterable[str]) -> str:
    return " ".join(shlex.quote(p) for p in paths)


def encoded(path: str) -> bytes:
    """A path as bytes for a remote command (surrogates back to the bytes they stand for)."""
    return path.encode("utf-8", "surrogateescape")


def decoded(raw: bytes) -> str:
    """A remote path's bytes as this program's strings (undecodable bytes kept as surrogates)."""
    return raw.decode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class PutListing:
    """What ``put`` needs to know of a host, from one command.

    ``uid``/``gid``: the user writing the files. ``ancestors``: ``/`` down to
    the destination, each (kind, device) if it exists (symlinks followed).
    ``tree``: the entries below the destination, by path relative to it
    (bytes, as on the host; symlinks not followed): ``T`` records' fields.
    """

    uid: int
    gid: int
    ancestors: dict[str, tuple[str, int]]
    tree: dict[bytes, Fields]


def put_listing_command(base: str, chain: list[str], tops: list[str], depth: int) -> str:
    """One command listing ``chain`` (``/`` .. ``base``) and, under ``base``, ``tops``."""
    starts = " ".join(shlex.quote("./" + top) for top in tops) if tops else "."
    return (
        f"printf {shlex.quote(LIST_MARK.decode())}; id -u; id -g; "
        f"find -H {_quoted_paths(chain)} -maxdepth 0 -printf 'A %y %D %p\\0' 2>/dev/null; "
        f"cd -- {shlex.quote(base)} 2>/dev/null && "
        f"find -P {starts} -maxdepth {max(0, depth)} "
        "-printf 'T %y %D %m %U %G %s %T@ %A@ %p\\0' 2>/dev/null; exit 0"
    )


def parse_put_listing(stdout: bytes) -> PutListing | None:
    """The listing, or None when the host could not produce one (no GNU find, a shell
    that is not one, output cut short or not in the form asked for)."""
    if not stdout.startswith(LIST_MARK):
        return None
    try:
        uid_text, gid_text, rest = stdout[len(LIST_MARK) :].split(b"\n", 2)
        uid, gid = int(uid_text), int(gid_text)
    except ValueError:
        return None
    found, pos = _leading(_PUT_ANCESTOR, rest)
    ancestors = {
        decoded(path): (kind.decode("ascii", "replace"), int(dev)) for kind, dev, path in found
    }
    records = _records(_PUT_TREE, rest, pos)
    if records is None or not ancestors:
        return None  # not all in the form asked for, or no GNU find
    tree = {fields[8]: fields for fields in records if fields[8]}
    return PutListing(uid, gid, ancestors, tree)


MAX_DEPTH = 256


def get_listing_command(starts: list[str]) -> str:
    """One command: the login directory, then every entry under ``starts`` (named ones followed).

    Paths that are not absolute are given as ``./PATH`` (never taken for an
    option) and relative to the login directory, which comes first.
    """
    return (
        f"printf {shlex.quote(LIST_MARK.decode())}; printf '%s\\0' \"$(pwd -P)\"; "
        f"exec find -H {_quoted_paths(starts)} -maxdepth {MAX_DEPTH} "
        "-printf '%d %y %m %s %T@ %A@ %p\\0'"
    )


def parse_get_listing(stdout: bytes) -> tuple[bytes, list[Fields]] | None:
    """(login directory, records: depth kind mode size mtime atime path), or None if this
    is no listing in the form asked for."""
    if not stdout.startswith(LIST_MARK):
        return None
    home, sep, _ = stdout[len(LIST_MARK) :].partition(b"\0")
    if not sep:
        return None
    records = _records(_GET_RECORD, stdout, len(LIST_MARK) + len(home) + 1)
    return None if records is None else (home, records)


# --------------------------------------------------------------------------- put: the stream


def put_stream_command(stage: str, top: str) -> str:
    """Make ``stage``, extract stdin's archive into it, run its plan, remove it.

    The plan (the archive's last member) runs only when ``tar`` read the whole
    archive; it moves files from ``stage/t/`` into ``top`` and prints what it
    could not move. Exit status: the plan's, or 90 (no stage), 91 (tar failed).
    """
    s, t = shlex.quote(stage), shlex.quote(top)
    return (
        f's={s}; t={t}; umask 077; mkdir -- "$s" || exit {_STAGE_FAILED}; '
        'if tar -x -o -p -f - -C "$s" && [ -f "$s/plan" ]; then sh "$s/plan" "$s" "$t"; r=$?; '
        f'else r={_TAR_FAILED}; fi; rm -rf -- "$s"; exit $r'
    )


@dataclass(slots=True)
class PutPlan:
    """What the far side does once the archive is extracted: paths relative to the stage's
    ``t/`` (which mirrors the top directory)."""

    chown: dict[tuple[int, int], list[str]] = field(default_factory=dict)
    chmod: dict[int, list[str]] = field(default_factory=dict)
    sums: list[tuple[str, str]] = field(default_factory=list)  # (sha256, path)
    moves: dict[str, list[str]] = field(default_factory=dict)  # target dir ("" = top): paths

    def script(self) -> bytes:
        """The plan as a shell script (``sh plan STAGE TOP``)."""
        lines = ['s=$1; t=$2; cd -- "$s" || exit 93']

        def staged(rel: str) -> str:
            return "t/" + shlex.quote(rel) if rel else "t"

        for (uid, gid), paths in sorted(self.chown.items()):
            lines += _commands(f"chown {uid}:{gid} --", map(staged, paths), " 2>/dev/null")
        for mode, paths in sorted(self.chmod.items()):
            lines += _commands(f"chmod {mode:o} --", map(staged, paths), "")
        if self.sums:
            lines.append(f"sha256sum -c --status sums || exit {VERIFY_FAILED}")
        for target, paths in sorted(self.moves.items()):
            into = '"$t"/' + (shlex.quote(target) + "/" if target else "")
            lines += _commands("mv -f --", map(staged, paths), " " + into)
        lines.append("cd t && find . ! -type d -print0; exit 0")
        return ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")

    def checklist(self) -> bytes:
        """``sha256sum -c`` input; names with a newline or backslash escaped as GNU reads them."""
        out = []
        for digest, rel in self.sums:
            name = "t/" + rel
            if "\\" in name or "\n" in name:
                escaped = name.replace("\\", "\\\\").replace("\n", "\\n")
                out.append(f"\\{digest}  {escaped}\n")
            else:
                out.append(f"{digest}  {name}\n")
        return "".join(out).encode("utf-8", "surrogateescape")


def _commands(head: str, args: Iterable[str], tail: str) -> list[str]:
    """``head ARGS... tail`` as few command lines as keep each under ``_MAX_ARGS`` bytes."""
    out: list[str] = []
    current: list[str] = []
    size = 0
    for arg in args:
        if current and size + len(arg) > _MAX_ARGS:
            out.append(" ".join([head, *current]) + tail)
            current, size = [], 0
        current.append(arg)
        size += len(arg) + 1
    if current:
        out.append(" ".join([head, *current]) + tail)
    return out


def parse_leftovers(stdout: bytes) -> set[str] | None:
    """What the plan could not move (paths relative to the top), or None if malformed."""
    if stdout and not stdout.endswith(b"\0"):
        return None
    out = set()
    for raw in stdout.split(b"\0")[:-1]:
        name = decoded(raw)
        if not name.startswith("./"):
            return None
        out.add(name[2:])
    return out


@functools.lru_cache(maxsize=1 << 16)
def tar_header(name: str, size: int, mode: int, mtime: int, directory: bool) -> bytes:
    """The header block(s) of one archive member (cached: every host gets the same ones)."""
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.size = 0 if directory else size
    info.mode = mode & 0o7777
    info.mtime = mtime
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


Member = tuple[str, int, int, int, Callable[[], Iterator[bytes | memoryview]] | None]
"""(name, size, mode, mtime, data) of one archive member; ``data`` None for a directory."""

_SEND_BLOCK = 1024 * 1024


def tar_blocks(members: Iterable[Member]) -> Iterator[bytes]:
    """A tar archive of ``members`` in blocks of about 1 MiB (so each send moves a lot)."""
    pending: list[bytes | memoryview] = []
    size = 0
    for name, length, mode, mtime, data in members:
        pending.append(tar_header(name, length, mode, mtime, data is None))
        size += len(pending[-1])
        if data is not None:
            sent = 0
            for chunk in data():
                pending.append(chunk)
                size += len(chunk)
                sent += len(chunk)
                if size >= _SEND_BLOCK:
                    yield b"".join(pending)
                    pending, size = [], 0
            if sent != length:
                raise OSError(f"{name}: size changed while it was being sent")
            pad = blocks(length) - length
            if pad:
                pending.append(bytes(pad))
                size += pad
        if size >= _SEND_BLOCK:
            yield b"".join(pending)
            pending, size = [], 0
    pending.append(bytes(2 * BLOCK))  # the end of the archive
    yield b"".join(pending)


# --------------------------------------------------------------------------- get: the reader


class StreamRefused(Exception):
    """The tar stream is not what was asked for; nothing more is read from it."""


class StreamReader:
    """The output of a command as a forward-only file for ``tarfile.TarFile``.

    ``tarfile`` only reads headers through ``read`` (member data is taken with
    ``write_to``), so a read larger than any sane header (a pax or GNU long
    name record claiming gigabytes) is refused before anything is buffered,
    as is a stream longer than ``budget`` bytes.
    """

    def __init__(
        self,
        channel: paramiko.Channel,
        cancel: threading.Event,
        stopped: Callable[[], None],
        budget: int,
    ) -> None:
        self._channel = channel
        self._cancel = cancel
        self._stopped = stopped
        self._chunks: deque[memoryview] = deque()
        self._buffered = 0
        self._pos = 0
        self._budget = budget
        self._eof = False

    def _fill(self, want: int) -> None:
        """Buffer at least ``want`` bytes, or all that is left."""
        for _ in range(1 << 40):  # bounded: the deadline closes the channel
            if self._buffered >= want or self._eof:
                return
            if self._cancel.is_set():
                self._stopped()
            got = fastio.read_chunks(
                self._channel, 4 * 1024 * 1024, 0.5, wait_for=min(want - self._buffered, 1 << 20)
            )
            if got is None:
                continue
            if not got:
                self._eof = True
                return
            for chunk in got:
                self._chunks.append(memoryview(chunk))
                self._buffered += len(chunk)
            if self._pos + self._buffered > self._budget:
                raise StreamRefused(f"more than the {self._budget} bytes asked for")

    def _take(self, size: int) -> list[memoryview]:
        self._fill(size)
        out: list[memoryview] = []
        left = size
        while left and self._chunks:
            chunk = self._chunks.popleft()
            if len(chunk) > left:
                self._chunks.appendleft(chunk[left:])
                chunk = chunk[:left]
            out.append(chunk)
            left -= len(chunk)
        taken = size - left
        self._buffered -= taken
        self._pos += taken
        return out

    def read(self, size: int = -1) -> bytes:
        """Header bytes for ``tarfile``: at most ``_MAX_META`` at once."""
        if size < 0 or size > _MAX_META:
            raise StreamRefused(f"a header of {size} bytes")
        return b"".join(self._take(size))

    def write_to(self, size: int, sink: Callable[[list[memoryview]], None]) -> int:
        """Hand the next ``size`` bytes to ``sink`` in pieces; the number handed (less at EOF)."""
        done = 0
        while done < size:
            views = self._take(min(size - done, 4 * 1024 * 1024))
            if not views:
                break
            sink(views)
            done += sum(len(v) for v in views)
        return done

    def tell(self) -> int:
        """Bytes consumed so far."""
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        """Skip forward to ``offset`` (tarfile's padding); never backward."""
        if whence != 0 or offset < self._pos:
            raise StreamRefused("a backward seek")
        while self._pos < offset:
            if not self._take(min(offset - self._pos, 1 << 20)):
                break
        return self._pos

    def drain(self) -> bool:
        """Consume what is left (within the budget); True once the output ended."""
        for _ in range(1 << 20):
            if self.at_eof or not self._take(1 << 20):
                break
        return self.at_eof

    @property
    def at_eof(self) -> bool:
        """Whether the command's output ended."""
        return self._eof and not self._buffered


def get_tar_command() -> str:
    """``tar`` writing the regular files named on stdin (NUL-separated, absolute) as one archive.

    ``-h`` follows a symlink named on the command line (as SFTP's open
    does); ``--hard-dereference`` sends hard links as files; names are read
    verbatim (no unquoting, never options).
    """
    return "tar -c -f - -P -h --hard-dereference --no-recursion --no-unquote --null -T -"


def open_archive(reader: StreamReader) -> tarfile.TarFile:
    """A ``TarFile`` reading from ``reader`` (names decoded as the listing's are)."""
    fileobj: Any = reader
    return tarfile.TarFile(fileobj=fileobj, mode="r", encoding="utf-8", errors="surrogateescape")
