"""The lab's processes, by PID: start a detached daemon, recognise it later, stop it.

The lab starts its sshd servers and its proxy with a plain fork and exec
(:func:`spawn`) and remembers each PID with the kernel's start time of that
process, so that ``lab down`` ends only processes the lab started, even after
a PID was reused (:func:`is_lab_process`). Stopping a lab ends those PIDs and
their descendants (the sshd sessions), found in ``/proc``: SIGTERM, a bounded
wait, then SIGKILL, reaping our own children so none lingers as a zombie.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from remoteops.wording import plural

__all__ = [
    "descendants",
    "is_alive",
    "is_lab_process",
    "spawn",
    "start_time",
    "stop_processes",
]

logger = logging.getLogger(__name__)


def start_time(pid: int) -> int | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            rest = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if not rest or rest[0] == "Z" or len(rest) < 20:
        return None
    return int(rest[19])


def is_lab_process(pid: int, started: int | None) -> bool:
    """True if ``pid`` is alive and is still the process the lab started.

    sshd rewrites its command line and environment (setproctitle), so the lab
    identifies its processes by PID plus kernel start time, which a reused PID
    cannot match.
    """
    return pid > 0 and started is not None and start_time(pid) == started


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="utf-8", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces and parentheses
        rest = stat[stat.rfind(")") + 2 :].split()
        if len(rest) >= 2:
            children.setdefault(int(rest[1]), []).append(int(entry.name))
    return children


def descendants(pids: Iterable[int]) -> list[int]:
    """Every live descendant of ``pids`` (children, grandchildren, ...), from /proc."""
    tree = _children_map()
    seen: set[int] = set()
    found: list[int] = []
    stack = list(pids)
    while stack and len(found) < 1_000_000:
        for child in tree.get(stack.pop(), []):
            if child not in seen:
                seen.add(child)
                found.append(child)
                stack.append(child)
    return found


def _signal_all(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _reap(pids: Iterable[int]) -> None:
    """Collect exit statuses of our own children so they do not linger as zombies."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def is_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def stop_processes(pids: Sequence[int], *, timeout: float = 10.0) -> None:
    """SIGTERM, wait, then SIGKILL the given PIDs and their descendants."""
    family = [*pids, *descendants(pids)]
    _signal_all(family, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(family)
        if not any(is_alive(pid) for pid in family):
            return
        time.sleep(0.05)
    survivors = [pid for pid in family if is_alive(pid)]
    logger.warning(
        "lab: %s ignored SIGTERM; killing them", plural(len(survivors), "process", "processes")
    )
    _signal_all(survivors, signal.SIGKILL)
    _reap(survivors)


def spawn(
    argv: Sequence[str],
    *,
    env: dict[str, str],
    setup: Callable[[], None] | None = None,
    output: Path | None = None,
) -> int:
    """Start a detached daemon process and return its PID.

    A plain fork and exec rather than ``subprocess.Popen``: the lab's servers
    outlive the command that starts them, and Popen objects would complain
    about children they never waited for. ``setup`` runs in the child before
    ``exec`` (namespaces); any failure there ends the child with status 127.
    """
    out_path = str(output) if output is not None else os.devnull
    pid = os.fork()
    if pid == 0:  # child: never return into the parent's Python code
        try:
            devnull = os.open(os.devnull, os.O_RDONLY)
            out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(devnull, 0)
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.closerange(3, 65536)
            if setup is not None:
                setup()
            else:
                os.setsid()
            os.execve(argv[0], list(argv), env)  # noqa: S606 - exec of sshd, argv list
        except BaseException:
            os._exit(127)
    return pid
