"""What every part of a transfer shares: the options, the progress callback, the
limits, and how names and file times are checked and compared.

``TransferOptions`` (also ``PutOptions``/``GetOptions``) are the CLI's flags;
``safe_local_path`` and ``_check_name`` refuse any name that could leave a local
tree; ``_wire_seconds``/``_same_copy`` are rsync's quick check at the precision
SFTP version 3 carries (whole seconds).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from remoteops.become import Become
from remoteops.errors import TransferError

if TYPE_CHECKING:
    from remoteops.target import Target


_CHUNK = 252 * 1024  # bytes per SFTP read/write request: under sftp-server's 256 KiB message limit
_WINDOW = 128  # requests in flight per host while streaming
_BATCH = 256  # files handled together per pipelined round
_MAX_ENTRIES = 1_000_000  # most remote entries one `get` walks per host
_MAX_DEPTH = 256
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


def _clamp_seconds(seconds: int) -> int:
    """Whole seconds as the quick check compares them (see ``_wire_seconds``)."""
    return min(max(seconds, 0), _MAX_WIRE_TIME)


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
