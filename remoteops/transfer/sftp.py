"""The SFTP pipe: many requests in flight on a session's one SFTP channel, and
what a transfer asks of the remote files over it.

``_Pipe`` sends requests through paramiko's internal ``_async_request`` and
collects the replies by request number (OpenSSH's sftp-server answers in
order); ``_attrs``/``_attrs_of``/``_status_of`` read the replies. Also the
remote facts both directions need: free space (``_statvfs_free``, for "disk
full" messages), and sha256 of remote files (``sha256sum`` over exec, SFTP
reads as the fallback).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import posixpath
import shlex
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from paramiko.message import Message
from paramiko.sftp import (
    CMD_ATTRS,
    CMD_EXTENDED,
    CMD_EXTENDED_REPLY,
    CMD_STATUS,
    SFTP_DESC,
    SFTP_FAILURE,
    SFTP_OK,
)
from paramiko.sftp_attr import SFTPAttributes

from remoteops.become import Remote
from remoteops.errors import HostError, InterruptedHostError
from remoteops.transfer.model import _WINDOW

logger = logging.getLogger(__name__)


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


def _remote_error(side_path: str, code: int, text: str, pipe: _Pipe | None = None) -> str:
    message = f"remote {side_path}: {text}"
    if code == SFTP_FAILURE and pipe is not None:
        free = _statvfs_free(pipe, posixpath.dirname(side_path) or ".")
        if free is not None and free < 1024 * 1024:
            message = (
                f"remote {side_path}: No space left on device (remote disk full, {free} bytes free)"
            )
    return message
