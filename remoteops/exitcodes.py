"""The exit codes of remoteops, in one place: the table of docs/exit-codes.md.

That table is the contract scripts and cron jobs rely on; a unit test checks
this enum against it, so a code cannot be added, renumbered or dropped in one
and not the other. ``ExitCode`` is an ``IntEnum``: its members are the numbers
(``SystemExit(ExitCode.USAGE)`` exits 2, JSON writes ``2``).
"""

from __future__ import annotations

from enum import IntEnum, unique
from typing import Final

__all__ = ["HOST_OUTCOMES", "ExitCode"]


@unique
class ExitCode(IntEnum):
    """How a command ended (docs/exit-codes.md)."""

    OK = 0
    """Every matched host succeeded."""
    INTERNAL = 1
    """remoteops itself failed (history unreadable, report unwritable) or a bug."""
    USAGE = 2
    """Usage, configuration, inventory, playbook or lab error; no host was contacted."""
    TIMEOUT = 3
    """At least one host timed out."""
    UNREACHABLE = 4
    """At least one host was unreachable, failed authentication or had its host key refused."""
    FAILED = 5
    """A remote command or transfer failed, a host was interrupted or not started, a
    playbook's assert/fail failed, or analysis failed (or found, with --fail-on-findings)."""
    LOCKED = 75
    """Another run holds the ``--lock`` file; no host was contacted (EX_TEMPFAIL)."""
    SIGINT = 130
    """Interrupted by SIGINT (Ctrl-C): 128 + 2."""
    BROKEN_PIPE = 141
    """stdout or stderr was closed by its reader: 128 + SIGPIPE, as a shell reports it."""
    SIGTERM = 143
    """Interrupted by SIGTERM: 128 + 15."""


HOST_OUTCOMES: Final = frozenset(
    {ExitCode.OK, ExitCode.TIMEOUT, ExitCode.UNREACHABLE, ExitCode.FAILED}
)
"""The codes that say how the hosts did; a closed output pipe (141) wins over them."""
