"""known_hosts parsing, host key checks and the accept-new append, with OpenSSH's semantics.

We parse known_hosts ourselves instead of using ``paramiko.HostKeys``, which mishandles
negated patterns, ``@revoked`` / ``@cert-authority`` markers and ``[host]:port`` wildcards.
No paramiko ``MissingHostKeyPolicy`` is involved: the session layer starts the transport,
takes ``transport.get_remote_server_key()`` and calls :func:`verify_host_key` before it
authenticates. It can call :meth:`HostKeyStore.known_key_types` first and put those types
first in ``transport.get_security_options().key_types``, as OpenSSH orders its host key
algorithms, so a server that has several keys presents the one we know.

Lookup name: ``host`` on port 22, ``[host]:port`` otherwise, lowercased; a ``HostKeyAlias``
(``alias=``) replaces it and is used without the port, as ssh does.

Decisions, where OpenSSH leaves room or where we are stricter:

* Only keys of the type the server offered are compared. If the host has keys of other
  types but not of this one, the status is ``UNKNOWN`` (as in OpenSSH) and a warning is
  logged. ``strict`` refuses it; ``accept-new`` also refuses it (OpenSSH would add it):
  a new key type for a known host cannot be told apart from a man-in-the-middle that
  offers only another type. The message says how to add the key by hand.
* A key listed under ``@revoked`` in any loaded file is ``REVOKED`` whatever the line's host
  patterns say (OpenSSH scopes the line by its patterns; a revoked key is revoked anywhere).
* ``@cert-authority`` lines never match a plain key. Certificates are not verified: as
  OpenSSH does when no CA validates a certificate, the plain key inside it is checked. If
  that key is not known and a ``@cert-authority`` line names the host, the status is
  ``UNSUPPORTED``, refused under every policy (never trusted, never recorded).
* Keys are compared by their wire blob, key types by the type name inside the blob (so
  ``ecdsa-sha2-nistp256`` and ``ecdsa-sha2-nistp384`` are different types, as in OpenSSH).

Each file is parsed once per version (cache keyed by path, device, inode, size and mtime):
a run over 1,000 hosts stats the files per check but does not reparse them. Plain names go
into a dict; hashed and wildcard lines are tried after it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import enum
import fcntl
import hashlib
import hmac
import logging
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import paramiko

from remoteops.errors import HostKeyError, UsageError

__all__ = [
    "DEFAULT_GLOBAL_KNOWN_HOSTS",
    "DEFAULT_USER_KNOWN_HOSTS",
    "HostKeyCheck",
    "HostKeyPolicy",
    "HostKeyStatus",
    "HostKeyStore",
    "KnownHostsEntry",
    "KnownHostsFile",
    "Marker",
    "fingerprint_sha256",
    "hash_hostname",
    "known_hosts_name",
    "load_known_hosts",
    "parse_known_hosts",
    "verify_host_key",
]

logger = logging.getLogger(__name__)

HostKeyPolicy = Literal["strict", "accept-new"]
"""``strict`` refuses unknown keys; ``accept-new`` records them. Changed keys are always refused."""

DEFAULT_USER_KNOWN_HOSTS: tuple[str, ...] = ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")
"""OpenSSH's default ``UserKnownHostsFile``; the first one receives accept-new keys."""

DEFAULT_GLOBAL_KNOWN_HOSTS: tuple[str, ...] = (
    "/etc/ssh/ssh_known_hosts",
    "/etc/ssh/ssh_known_hosts2",
)
"""OpenSSH's default ``GlobalKnownHostsFile``."""

_CERT_SUFFIX = "-cert-v01@openssh.com"
_HASH_MAGIC = "|1|"
_SHA1_LEN = 20


class HostKeyStatus(enum.Enum):
    """What the known_hosts files say about a host's key."""

    KNOWN = "known"
    UNKNOWN = "unknown"
    CHANGED = "changed"
    REVOKED = "revoked"
    UNSUPPORTED = "unsupported"  # a host certificate that only a CA could vouch for


class Marker(enum.Enum):
    """The optional marker at the start of a known_hosts line."""

    NONE = ""
    REVOKED = "@revoked"
    CERT_AUTHORITY = "@cert-authority"


# --------------------------------------------------------------------------- names, hashes


def known_hosts_name(host: str, port: int = 22) -> str:
    """The name ssh looks up and writes: ``host`` on port 22, else ``[host]:port``; lowercased."""
    host = host.lower()
    return host if port == 22 else f"[{host}]:{port}"


def hash_hostname(name: str, salt: bytes | None = None) -> str:
    """``|1|salt|hash`` for ``name``: HMAC-SHA1 keyed by a random salt, as ``ssh-keygen -H``."""
    if salt is None:
        salt = secrets.token_bytes(_SHA1_LEN)
    digest = hmac.new(salt, name.encode("utf-8", "surrogateescape"), hashlib.sha1).digest()
    return f"{_HASH_MAGIC}{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


def fingerprint_sha256(key: paramiko.PKey | bytes) -> str:
    """``SHA256:<base64 without padding>`` of the key blob, as ``ssh-keygen -lf`` prints it."""
    blob = key if isinstance(key, bytes) else key.asbytes()
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def _blob_type(blob: bytes) -> str | None:
    """The key type name at the start of a wire-format key blob, or None if it is not one."""
    if len(blob) < 4:
        return None
    size = int.from_bytes(blob[:4], "big")
    if size == 0 or size > 64 or len(blob) < 4 + size:
        return None
    try:
        return blob[4 : 4 + size].decode("ascii")
    except UnicodeDecodeError:
        return None


def _compile_glob(pattern: str) -> re.Pattern[str]:
    # OpenSSH's match_pattern(): only `*` and `?` are special; `[` and `]` are literal.
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True, slots=True)
class KnownHostsEntry:
    """One usable known_hosts line: marker, host patterns (or a hashed name) and key."""

    source: str
    lineno: int
    raw: bytes
    marker: Marker
    patterns: tuple[str, ...]
    hashed: tuple[bytes, bytes] | None
    key_type: str
    key_blob: bytes
    comment: str
    _globs: tuple[tuple[bool, re.Pattern[str] | None, str], ...] = field(repr=False, compare=False)

    @property
    def location(self) -> str:
        """``file:line`` of this entry, for messages."""
        return f"{self.source}:{self.lineno}"

    @property
    def is_hashed(self) -> bool:
        """True if the host field is a ``|1|salt|hash`` name."""
        return self.hashed is not None

    def matches(self, name: str) -> bool:
        """True if this line applies to the lookup ``name`` (see :func:`known_hosts_name`).

        A matching negated pattern excludes the line whatever else matches (OpenSSH's
        ``match_hostname``). Comparison is case-insensitive.
        """
        name = name.lower()
        if self.hashed is not None:
            salt, digest = self.hashed
            mine = hmac.new(salt, name.encode("utf-8", "surrogateescape"), hashlib.sha1).digest()
            return hmac.compare_digest(mine, digest)
        positive = False
        for negated, regex, literal in self._globs:
            hit = regex.fullmatch(name) is not None if regex is not None else literal == name
            if hit:
                if negated:
                    return False
                positive = True
        return positive


class _Malformed(ValueError):
    """A known_hosts line that cannot be used."""


def _parse_line(raw: bytes, source: str, lineno: int) -> KnownHostsEntry | None:
    """Parse one line; None for a blank or comment line; raises _Malformed otherwise."""
    text = raw.rstrip(b"\r\n").decode("utf-8", "surrogateescape").lstrip(" \t")
    if not text or text.startswith("#"):
        return None
    fields = text.split(None, 1)
    marker = Marker.NONE
    if fields[0].startswith("@"):
        try:
            marker = Marker(fields[0])
        except ValueError:
            raise _Malformed(f"unknown marker {fields[0]!r}") from None
        if len(fields) < 2:
            raise _Malformed("marker without host patterns")
        text = fields[1]
    parts = text.split(None, 3)
    if len(parts) < 3:
        raise _Malformed("expected host patterns, key type and key")
    hosts, key_type, key_b64 = parts[0], parts[1], parts[2]
    comment = parts[3].rstrip() if len(parts) > 3 else ""
    try:
        blob = base64.b64decode(key_b64.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise _Malformed("key is not valid base64") from None
    blob_type = _blob_type(blob)
    if blob_type is None:
        raise _Malformed("key blob has no type name")
    if blob_type != key_type:
        raise _Malformed(f"key type {key_type!r} does not match its blob ({blob_type!r})")

    hashed: tuple[bytes, bytes] | None = None
    patterns: tuple[str, ...] = ()
    globs: list[tuple[bool, re.Pattern[str] | None, str]] = []
    if hosts.startswith("|"):
        if not hosts.startswith(_HASH_MAGIC):
            raise _Malformed("unknown hashed host name format")
        salt_b64, _, digest_b64 = hosts[len(_HASH_MAGIC) :].partition("|")
        try:
            salt = base64.b64decode(salt_b64, validate=True)
            digest = base64.b64decode(digest_b64, validate=True)
        except (binascii.Error, ValueError):
            raise _Malformed("hashed host name is not valid base64") from None
        if len(salt) != _SHA1_LEN or len(digest) != _SHA1_LEN:
            raise _Malformed("hashed host name has the wrong length")
        hashed = (salt, digest)
    else:
        patterns = tuple(p for p in hosts.split(",") if p)
        for pattern in patterns:
            negated = pattern.startswith("!")
            body = pattern[1:].lower() if negated else pattern.lower()
            regex = _compile_glob(body) if ("*" in body or "?" in body) else None
            globs.append((negated, regex, body))
        if not patterns:
            raise _Malformed("empty host pattern list")
    return KnownHostsEntry(
        source=source,
        lineno=lineno,
        raw=raw,
        marker=marker,
        patterns=patterns,
        hashed=hashed,
        key_type=key_type,
        key_blob=blob,
        comment=comment,
        _globs=tuple(globs),
    )


def _split_lines(data: bytes) -> tuple[bytes, ...]:
    """Split keeping each line's ending, so that ``b"".join(lines) == data``."""
    lines = data.split(b"\n")
    out = [line + b"\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return tuple(out)


class KnownHostsFile:
    """One parsed known_hosts file: every raw line, the usable entries and their index."""

    __slots__ = (
        "_by_blob_revoked",
        "_by_name",
        "_others",
        "_revoked",
        "entries",
        "lines",
        "path",
    )

    def __init__(self, path: str, lines: Sequence[bytes], entries: Sequence[KnownHostsEntry]):
        """Build from already parsed parts; use :func:`parse_known_hosts` to parse bytes."""
        self.path = path
        self.lines: tuple[bytes, ...] = tuple(lines)
        self.entries: tuple[KnownHostsEntry, ...] = tuple(entries)
        self._by_name: dict[str, list[KnownHostsEntry]] = {}
        self._others: list[KnownHostsEntry] = []  # hashed, wildcard and negation-only lines
        self._by_blob_revoked: dict[bytes, KnownHostsEntry] = {}
        self._revoked: list[KnownHostsEntry] = []
        for entry in self.entries:
            if entry.marker is Marker.REVOKED:
                self._by_blob_revoked.setdefault(entry.key_blob, entry)
                self._revoked.append(entry)
                continue
            literals = {lit for neg, regex, lit in entry._globs if not neg and regex is None}
            if entry.hashed is not None or any(
                not neg and regex is not None for neg, regex, _ in entry._globs
            ):
                # hashed, or a positive pattern is a wildcard: cannot be found by name alone
                self._others.append(entry)
            for literal in literals:
                self._by_name.setdefault(literal, []).append(entry)

    @property
    def data(self) -> bytes:
        """The file's bytes, exactly as read."""
        return b"".join(self.lines)

    def candidates(self, name: str) -> Iterator[KnownHostsEntry]:
        """Non-revoked entries that may match ``name`` (call ``matches`` to be sure)."""
        seen: set[int] = set()
        for entry in self._by_name.get(name.lower(), ()):
            seen.add(id(entry))
            yield entry
        for entry in self._others:
            if id(entry) not in seen:
                yield entry

    def lookup(self, name: str, *, marker: Marker = Marker.NONE) -> list[KnownHostsEntry]:
        """Entries with this ``marker`` whose host patterns match ``name``."""
        if marker is Marker.REVOKED:
            return [e for e in self._revoked if e.matches(name)]
        return [e for e in self.candidates(name) if e.marker is marker and e.matches(name)]

    def revoked(self, blob: bytes) -> KnownHostsEntry | None:
        """The ``@revoked`` entry for this key blob, whatever its host patterns, or None."""
        return self._by_blob_revoked.get(blob)

    def appended(self, raw: bytes) -> KnownHostsFile:
        """A new file object with one more line (which must end with a newline)."""
        lines = list(self.lines)
        if lines and not lines[-1].endswith(b"\n"):
            lines[-1] += b"\n"
        lines.append(raw)
        entry = _parse_line(raw, self.path, len(lines))
        entries = self.entries if entry is None else (*self.entries, entry)
        return KnownHostsFile(self.path, lines, entries)


def parse_known_hosts(data: bytes, *, source: str = "<memory>") -> KnownHostsFile:
    """Parse known_hosts bytes; malformed lines are skipped with a debug log (never raised)."""
    lines = _split_lines(data)
    entries: list[KnownHostsEntry] = []
    for lineno, raw in enumerate(lines, start=1):
        try:
            entry = _parse_line(raw, source, lineno)
        except _Malformed as exc:
            logger.debug("%s:%d: skipping malformed known_hosts line: %s", source, lineno, exc)
            continue
        if entry is not None:
            entries.append(entry)
    return KnownHostsFile(source, lines, entries)


# --------------------------------------------------------------------------- file cache

_Signature = tuple[int, int, int, int]
_cache: dict[str, tuple[_Signature, KnownHostsFile]] = {}
_cache_lock = threading.Lock()


def _signature(st: os.stat_result) -> _Signature:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


_MISSING: _Signature = (-1, -1, -1, -1)
# The same answers by the path as given: a stat that follows its links finds the
# version already parsed without resolving them again (each host checks its key
# against every known_hosts file twice).
_by_path: dict[str, tuple[_Signature, KnownHostsFile]] = {}


def load_known_hosts(path: str | os.PathLike[str]) -> KnownHostsFile:
    """Parse ``path`` once per version of the file (cached by path, inode, size and mtime).

    A missing file is an empty one; an unreadable one is logged and treated as empty.
    """
    given = os.path.expanduser(os.fspath(path))
    try:
        now: _Signature | None = _signature(os.stat(given))
    except FileNotFoundError:
        now = _MISSING
    except OSError:
        now = None
    known = _by_path.get(given)
    if known is not None and known[0] == now:
        return known[1]
    parsed, sig = _load_resolved(os.path.realpath(given))
    if sig is not None:
        _by_path[given] = (sig, parsed)
    return parsed


def _load_resolved(real: str) -> tuple[KnownHostsFile, _Signature | None]:
    """The file and the signature of the version read (``_MISSING``; None: unreadable)."""
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return KnownHostsFile(real, (), ()), _MISSING
    except OSError as exc:
        logger.warning("%s: cannot read known_hosts (%s); ignoring it", real, exc.strerror)
        return KnownHostsFile(real, (), ()), None
    sig = _signature(st)
    with _cache_lock:
        cached = _cache.get(real)
        if cached is not None and cached[0] == sig:
            return cached[1], sig
        try:
            with open(real, "rb") as fh:
                sig = _signature(os.fstat(fh.fileno()))
                data = fh.read()
        except OSError as exc:
            logger.warning("%s: cannot read known_hosts (%s); ignoring it", real, exc.strerror)
            return KnownHostsFile(real, (), ()), None
        parsed = parse_known_hosts(data, source=real)
        _cache[real] = (sig, parsed)
        logger.debug("%s: parsed %d known_hosts entries", real, len(parsed.entries))
        return parsed, sig


def _remember(real: str, parsed: KnownHostsFile) -> None:
    with contextlib.suppress(OSError), _cache_lock:
        _cache[real] = (_signature(os.stat(real)), parsed)


# --------------------------------------------------------------------------- checks


@dataclass(frozen=True, slots=True)
class HostKeyCheck:
    """The outcome of a check, with what the messages need."""

    status: HostKeyStatus
    name: str
    key_type: str
    fingerprint: str
    entry: KnownHostsEntry | None = None  # KNOWN: the match; CHANGED: the old key; REVOKED
    other_types: tuple[str, ...] = ()  # UNKNOWN: types known for this host


def _is_certificate(key: paramiko.PKey) -> bool:
    blob = getattr(key, "public_blob", None)
    return blob is not None and str(getattr(blob, "key_type", "")).endswith(_CERT_SUFFIX)


def _examine(files: Iterable[KnownHostsFile], name: str, key: paramiko.PKey) -> HostKeyCheck:
    files = list(files)
    # For a certificate paramiko's asbytes() is the plain key inside it: we check that, as
    # OpenSSH retries with the plain key when no @cert-authority line validates the cert.
    blob = key.asbytes()
    key_type = _blob_type(blob) or key.get_name()
    fingerprint = fingerprint_sha256(blob)
    if key_type.endswith(_CERT_SUFFIX):
        return HostKeyCheck(HostKeyStatus.UNSUPPORTED, name, key_type, fingerprint)
    for f in files:
        revoked = f.revoked(blob)
        if revoked is not None:
            return HostKeyCheck(HostKeyStatus.REVOKED, name, key_type, fingerprint, revoked)
    matched = [e for f in files for e in f.lookup(name)]
    for entry in matched:
        if entry.key_blob == blob:
            return HostKeyCheck(HostKeyStatus.KNOWN, name, key_type, fingerprint, entry)
    for entry in matched:
        if entry.key_type == key_type:
            return HostKeyCheck(HostKeyStatus.CHANGED, name, key_type, fingerprint, entry)
    if _is_certificate(key):
        authorities = [e for f in files for e in f.lookup(name, marker=Marker.CERT_AUTHORITY)]
        if authorities:
            # the host is meant to be trusted through its CA, which we cannot check
            return HostKeyCheck(
                HostKeyStatus.UNSUPPORTED, name, key_type, fingerprint, authorities[0]
            )
    others = tuple(dict.fromkeys(e.key_type for e in matched))
    return HostKeyCheck(HostKeyStatus.UNKNOWN, name, key_type, fingerprint, other_types=others)


_write_locks: dict[str, threading.Lock] = {}
_write_locks_guard = threading.Lock()


def _thread_lock(real: str) -> threading.Lock:
    with _write_locks_guard:
        return _write_locks.setdefault(real, threading.Lock())


@contextlib.contextmanager
def _exclusive(real: str) -> Iterator[None]:
    """Serialize writers of ``real``: a threading.Lock, then flock on ``<real>.lock``.

    The lock file belongs to the known_hosts file's owner and group, whoever
    creates it (root's cron must not leave a lock its owner cannot open), and
    is at most as readable as that file. A lock file this user may only read
    is locked read-only (flock does not need write access on a local disk).
    """
    with _thread_lock(real):
        # a fresh descriptor each time: flock belongs to the open file description
        lock = real + ".lock"
        try:
            st: os.stat_result | None = os.stat(real)
        except FileNotFoundError:
            st = None
        mode = 0o600 if st is None else (st.st_mode & 0o666) | 0o600
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
        except PermissionError as denied:
            try:
                fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise denied from None
        try:
            if st is not None and os.geteuid() == 0:
                mine = os.fstat(fd)
                if (mine.st_uid, mine.st_gid) != (st.st_uid, st.st_gid):
                    os.fchown(fd, st.st_uid, st.st_gid)
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _OwnerNotKept(Exception):
    """A replacement file cannot be given the owner and group of the file it replaces."""


def _write_replace(real: str, data: bytes, st: os.stat_result | None) -> None:
    """Write ``data`` to a temp file beside ``real``, fsync, rename over it, fsync the dir.

    The temp file gets the owner, group and mode of the file it replaces (``st``;
    a new file is 0600 and this user's); raises _OwnerNotKept, leaving ``real``
    untouched, if this user may not give it that owner and group.
    """
    directory = os.path.dirname(real)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(real)}.", suffix=".tmp")
    try:
        try:
            if st is not None:
                mine = os.fstat(fd)
                if (mine.st_uid, mine.st_gid) != (st.st_uid, st.st_gid):
                    try:
                        os.fchown(fd, st.st_uid, st.st_gid)
                    except PermissionError:
                        raise _OwnerNotKept from None
            # after fchown, which may clear set-id bits
            os.fchmod(fd, 0o600 if st is None else st.st_mode & 0o7777)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, real)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def _append_in_place(real: str, old: bytes, data: bytes) -> None:
    """Write ``data``, which starts with the file's bytes ``old``, by appending the rest.

    For a file a replacement cannot stand in for: owned by another user that
    this one may not give a file to, or hard-linked. One write, fsynced; if it
    fails the file is cut back to ``old``.
    """
    fd = os.open(real, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    try:
        try:
            view = memoryview(data)[len(old) :]
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, len(old))
            raise
    finally:
        os.close(fd)


def _write_keeping_owner(real: str, old: bytes, data: bytes, st: os.stat_result | None) -> None:
    """Replace ``real`` (whose bytes are ``old``) by ``data`` with its owner, group and mode.

    Atomically, through a temp file, when the temp file can be given the
    owner and group (root, or the file's own owner in its group); otherwise,
    and for a hard-linked file, by appending in place, which keeps them too.
    """
    if st is not None and st.st_nlink > 1:
        _append_in_place(real, old, data)
        return
    try:
        _write_replace(real, data, st)
    except _OwnerNotKept:
        _append_in_place(real, old, data)


class HostKeyStore:
    """The known_hosts files of a run: checks keys against all, adds new keys to the first."""

    def __init__(
        self,
        files: Sequence[str | os.PathLike[str]],
        *,
        write_file: str | os.PathLike[str] | None = None,
    ) -> None:
        """Check against ``files`` in order; ``add`` writes ``write_file`` (default: the first)."""
        self.files: tuple[str, ...] = tuple(os.path.expanduser(os.fspath(f)) for f in files)
        target = write_file if write_file is not None else (self.files[0] if self.files else None)
        self.write_file: str | None = (
            os.path.expanduser(os.fspath(target)) if target is not None else None
        )

    @classmethod
    def default(
        cls,
        known_hosts: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
        *,
        include_global: bool = True,
    ) -> HostKeyStore:
        """The files ssh would use: ``--known-hosts`` (else the user files) plus the global ones."""
        if known_hosts is None:
            user: list[str | os.PathLike[str]] = list(DEFAULT_USER_KNOWN_HOSTS)
        elif isinstance(known_hosts, str | os.PathLike):
            user = [known_hosts]
        else:
            user = list(known_hosts)
        files = user + (list(DEFAULT_GLOBAL_KNOWN_HOSTS) if include_global else [])
        return cls(files, write_file=user[0] if user else None)

    def _parsed(self) -> list[KnownHostsFile]:
        return [load_known_hosts(path) for path in self.files]

    @staticmethod
    def _name(host: str, port: int, alias: str | None) -> str:
        return alias.lower() if alias else known_hosts_name(host, port)

    def examine(
        self, host: str, port: int, key: paramiko.PKey, *, alias: str | None = None
    ) -> HostKeyCheck:
        """Like :meth:`check`, with the matching entry and fingerprint for messages."""
        result = _examine(self._parsed(), self._name(host, port, alias), key)
        if result.status is HostKeyStatus.UNKNOWN and result.other_types:
            logger.warning(
                "Host %r: no %s key known for %s, but keys of type %s are",
                host,
                result.key_type,
                result.name,
                ", ".join(result.other_types),
            )
        return result

    def check(
        self, host: str, port: int, key: paramiko.PKey, *, alias: str | None = None
    ) -> HostKeyStatus:
        """KNOWN, UNKNOWN, CHANGED, REVOKED or UNSUPPORTED (a certificate) for this key."""
        return self.examine(host, port, key, alias=alias).status

    def lookup(self, host: str, port: int, *, alias: str | None = None) -> list[KnownHostsEntry]:
        """Every plain (unmarked) entry that applies to the host, in file order."""
        name = self._name(host, port, alias)
        return [e for f in self._parsed() for e in f.lookup(name)]

    def known_key_types(self, host: str, port: int, *, alias: str | None = None) -> list[str]:
        """Key types known for the host, to put first among the host key algorithms offered.

        These are key type names (``ssh-ed25519``, ``ecdsa-sha2-nistp256``, ``ssh-rsa``); an
        ``ssh-rsa`` key is offered as the ``rsa-sha2-512`` / ``rsa-sha2-256`` algorithms.
        """
        return list(dict.fromkeys(e.key_type for e in self.lookup(host, port, alias=alias)))

    def add(
        self,
        host: str,
        port: int,
        key: paramiko.PKey,
        *,
        alias: str | None = None,
        hash_name: bool = False,
    ) -> bool:
        """Append ``name keytype base64`` to the write file unless it is already there.

        Safe against threads and processes adding at once: the file is re-read under an
        exclusive lock and replaced atomically; existing lines are kept byte for byte, and
        so are its owner, group and mode, whoever writes it (a file that a replacement
        cannot keep them for, or a hard link, is appended to in place instead).
        Returns True if the key was written. Raises OSError if the file cannot be written.
        """
        return self._add(host, port, key, alias=alias, hash_name=hash_name, if_unknown=False)

    def _add(
        self,
        host: str,
        port: int,
        key: paramiko.PKey,
        *,
        alias: str | None,
        hash_name: bool,
        if_unknown: bool,
    ) -> bool:
        if self.write_file is None:
            raise HostKeyError(host, f"Host {host!r}: no known_hosts file to add its key to")
        name = self._name(host, port, alias)
        blob = key.asbytes()
        key_type = _blob_type(blob) or key.get_name()
        if key_type.endswith(_CERT_SUFFIX):
            raise HostKeyError(host, f"Host {host!r}: cannot record a certificate; add its key")
        line_name = hash_hostname(name) if hash_name else name
        line = f"{line_name} {key_type} {base64.b64encode(blob).decode()}\n".encode()
        if not self._record(host, port, name, key, line, if_unknown=if_unknown):
            return False
        logger.info(
            "Host %r: added %s key %s to %s",
            host,
            key_type,
            fingerprint_sha256(blob),
            os.path.realpath(self.write_file),
        )
        return True

    def _decide(
        self, files: Sequence[KnownHostsFile], host: str, port: int, name: str, key: paramiko.PKey
    ) -> bool:
        """Under accept-new: True to record ``key``, False when it is known already;
        a HostKeyError when it must be refused (changed, revoked, another type known)."""
        result = _examine(files, name, key)
        if result.status is not HostKeyStatus.UNKNOWN or result.other_types:
            if result.status is HostKeyStatus.KNOWN:
                return False
            raise _refusal(host, port, result, self.write_file)
        return True

    def _record(
        self, host: str, port: int, name: str, key: paramiko.PKey, line: bytes, *, if_unknown: bool
    ) -> bool:
        """Append ``line`` to the write file under its lock; False when nothing was written
        (the key is there already)."""
        assert self.write_file is not None
        blob = key.asbytes()
        real = os.path.realpath(self.write_file)
        directory = os.path.dirname(real)
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o700, exist_ok=True)
            os.chmod(directory, 0o700)
        with _exclusive(real):
            st: os.stat_result | None
            try:
                with open(real, "rb") as fh:
                    st = os.fstat(fh.fileno())
                    data = fh.read()
            except FileNotFoundError:
                data, st = b"", None
            current = load_known_hosts(real)
            if current.data != data:  # the cache may be a stale version; trust the bytes
                current = parse_known_hosts(data, source=real)
            if if_unknown:
                others = [load_known_hosts(p) for p in self.files if os.path.realpath(p) != real]
                if not self._decide([current, *others], host, port, name, key):
                    return False
            elif any(e.key_blob == blob for e in current.lookup(name)):
                return False
            updated = current.appended(line)
            _write_keeping_owner(real, data, updated.data, st)
            _remember(real, updated)
        return True


# --------------------------------------------------------------------------- policy


def _shown(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _refusal(host: str, port: int, result: HostKeyCheck, known_hosts: str | None) -> HostKeyError:
    """The one-line HostKeyError for a refused check."""
    where = known_hosts or "~/.ssh/known_hosts"
    shown = _shown(host, port)
    key = f"{result.key_type} {result.fingerprint}"
    status = result.status
    if status is HostKeyStatus.CHANGED:
        old = f" ({result.entry.location} holds another)" if result.entry else ""
        return HostKeyError(
            host,
            f"HOST KEY FOR {shown} HAS CHANGED: server offers {key}{old}; this may be a "
            f"man-in-the-middle attack and is refused under every policy; if the change is "
            f"expected remove the old key with `ssh-keygen -R '{result.name}' -f {where}`",
        )
    if status is HostKeyStatus.REVOKED:
        at = f" in {result.entry.location}" if result.entry else ""
        return HostKeyError(
            host,
            f"Host key {key} of {shown} is REVOKED{at}; refused under every policy; "
            f"ask the host's administrator for its current key",
        )
    if status is HostKeyStatus.UNSUPPORTED:
        ca = f" ({result.entry.location})" if result.entry else ""
        return HostKeyError(
            host,
            f"Host {shown} presented a host certificate for a @cert-authority{ca}, which "
            f"remoteops cannot verify; refused; add its plain host key ({key}) to {where}",
        )
    if result.other_types:
        return HostKeyError(
            host,
            f"Host {shown} offered a {key} key but only {', '.join(result.other_types)} keys "
            f"are known for {result.name}; refused under every policy as a possible downgrade; "
            f"check the fingerprint and add `{result.name} {result.key_type} ...` to {where}",
        )
    # A known_hosts file in a directory that does not exist yet (an inventory naming
    # a lab that was never started there): the advice must work as written.
    parent = os.path.dirname(os.path.expanduser(where))
    missing = bool(parent) and not os.path.isdir(parent)
    how = (
        f"{f'mkdir -p {parent} && ' if missing else ''}ssh-keyscan -p {port} {host} >> {where}"
        if result.name == known_hosts_name(host, port)
        else f"add a line `{result.name} {result.key_type} ...` to {where}"
        + (f" (after `mkdir -p {parent}`)" if missing else "")
    )
    return HostKeyError(
        host,
        f"Host key for {shown} is unknown ({key}); after checking that fingerprint run "
        f"`{how}`, or use --host-key-policy accept-new",
    )


def verify_host_key(
    store: HostKeyStore,
    host: str,
    port: int,
    key: paramiko.PKey,
    policy: HostKeyPolicy = "strict",
    *,
    alias: str | None = None,
) -> None:
    """Accept ``key`` for ``host`` or raise :class:`~remoteops.errors.HostKeyError`.

    KNOWN passes. UNKNOWN is refused under ``strict`` and recorded under ``accept-new``
    (unless keys of another type are known for the host; see the module docstring).
    CHANGED, REVOKED and UNSUPPORTED are refused under every policy.
    Raises UsageError for an unknown policy.
    """
    if policy not in ("strict", "accept-new"):
        raise UsageError(f"unknown host key policy {policy!r}; use strict or accept-new")
    result = store.examine(host, port, key, alias=alias)
    if result.status is HostKeyStatus.KNOWN:
        logger.debug("Host %r: host key %s matches %s", host, result.fingerprint, result.name)
        return
    if result.status is HostKeyStatus.UNKNOWN and policy == "accept-new" and not result.other_types:
        try:
            store._add(host, port, key, alias=alias, hash_name=False, if_unknown=True)
        except OSError as exc:
            raise HostKeyError(
                host,
                f"Host {_shown(host, port)}: cannot record its new key in {store.write_file} "
                f"({exc.strerror}); make it writable or add the key by hand",
            ) from exc
        return
    raise _refusal(host, port, result, store.write_file)
