"""Checks of the command line's paths, run before any host is contacted.

Every file the command reads, every file or directory it writes, and every
host name that becomes a file name is checked here first, so that a typo, a
directory where a file belongs, a name too long for the file system or a name
that is not UTF-8 ends as one line naming the option and the path (exit 2),
never as an internal error after the hosts ran.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterable
from pathlib import Path

from remoteops.errors import UsageError

__all__ = [
    "check_input_file",
    "check_output_dir",
    "check_output_file",
    "check_stat",
    "file_names_for_hosts",
    "host_column_width",
    "read_stdin_option",
    "shown",
]

HOST_COLUMN_MAX = 40
"""Host prefixes are padded to the longest name, up to this many characters."""


def shown(path: str | os.PathLike[str]) -> str:
    """``path`` as text: bytes that are not UTF-8 shown escaped (``\\xff``)."""
    return os.fsencode(path).decode("utf-8", errors="backslashreplace")


def check_stat(path: Path, option: str) -> os.stat_result | None:
    """``os.stat(path)``, or None if it does not exist; any other failure (a name too
    long, a file where a directory belongs, no permission) is a ``UsageError``."""
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UsageError(f"{option} {shown(path)}: {exc.strerror}; check the path") from None


def check_input_file(path: Path, option: str, *, empty_ok: bool = True) -> None:
    """A file the command reads: it exists and is not a directory (a pipe such as
    ``<(pass show x)`` is fine); a regular file may not be empty unless ``empty_ok``."""
    st = check_stat(path, option)
    if st is None:
        raise UsageError(f"{option} {shown(path)}: No such file or directory; check the path")
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{option} {shown(path)}: is a directory; give a file")
    if not empty_ok and stat.S_ISREG(st.st_mode) and st.st_size == 0:
        raise UsageError(f"{option} {shown(path)}: the file is empty")


def check_output_file(path: Path, option: str) -> None:
    """A file the command writes when it ends: its directory exists and it is no directory."""
    st = check_stat(path, option)
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{option} {shown(path)}: is a directory; give a file name")
    parent = path.parent
    parent_st = check_stat(parent, option)
    if parent_st is None or not stat.S_ISDIR(parent_st.st_mode):
        raise UsageError(
            f"{option} {shown(path)}: the directory {shown(parent)} does not exist; create it first"
        )


def check_output_dir(path: Path, option: str, *, create: bool) -> None:
    """A directory the command writes into: not an existing file, a name the file system
    takes; with ``create``, made now (with its parents)."""
    st = check_stat(path, option)
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{option} {shown(path)}: exists and is not a directory")
    if create and st is None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"{option} {shown(path)}: {exc.strerror}; check the path") from None


def file_names_for_hosts(
    names: Iterable[str], directory: Path, option: str, *, extra: int = 0
) -> None:
    """Refuse host names that cannot name a file or directory in ``directory``.

    ``extra`` is what the longest file name adds to the host name (``.HOST.exit.part``
    adds 11). Names that are too long (the file system's NAME_MAX, 255 bytes on
    Linux) or that are not a single path component are refused, all at once.
    """
    existing = directory.absolute()
    while not os.path.isdir(existing) and existing != existing.parent:
        existing = existing.parent  # ``directory`` is made later, on this file system
    try:
        name_max = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    bad: list[tuple[str, str]] = []
    for name in names:
        size = len(os.fsencode(name))
        if name in ("", ".", "..") or "/" in name or "\0" in name:
            bad.append((name, "not a single file name"))
        elif size + extra > name_max:
            bad.append((name, f"{size} bytes; at most {name_max - extra} fit in a file name there"))
    if not bad:
        return
    name, why = bad[0]
    more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
    short = name if len(name) <= 40 else f"{name[:40]}..."
    raise UsageError(
        f"{option} {shown(directory)}: host {short!r} cannot name a file there ({why}){more}; "
        "give it a shorter inventory name, with its address as ansible_host"
    )


def host_column_width(names: Iterable[str]) -> int:
    """The width of the ``host:`` prefix column: the longest name, at most 40 characters."""
    return min(max((len(n) for n in names), default=0), HOST_COLUMN_MAX)


def read_stdin_option(path: Path, option: str) -> bytes:
    """The bytes of ``--stdin FILE``; ``-`` is this process's standard input, read once."""
    if str(path) == "-":
        stream = sys.stdin
        if stream is None:
            raise UsageError(f"{option} -: there is no standard input to read")
        try:
            return stream.buffer.read()
        except OSError as exc:
            raise UsageError(f"{option} -: cannot read standard input ({exc.strerror})") from None
    check_input_file(path, option)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{option} {shown(path)}: {exc.strerror}; check the path") from None
