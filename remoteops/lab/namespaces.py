"""Linux namespaces for isolated lab hosts (root mode), through ctypes.

Each isolated host's sshd runs in its own mount and UTS namespace: the forked
child calls ``unshare``, makes every mount private, bind-mounts the host's own
``/tmp``, ``/srv``, ``/etc/ssh``, ``/etc/hosts``, ``/etc/hostname``, login home and
``/root`` over the machine's, and sets its hostname, before it execs sshd.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["enter_host_namespaces", "mount_order"]

_CLONE_NEWNS = 0x00020000
_CLONE_NEWUTS = 0x04000000
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def mount_order(binds: Sequence[tuple[str, str]], lab_dir: Path) -> list[tuple[str, str]]:
    """``binds`` with those that would hide the lab directory last.

    The lab directory may live under ``/tmp`` (tests) or ``/root`` (the default
    ``$XDG_STATE_HOME``): once ``/tmp`` or ``/root`` is covered, paths below it
    name the host's private copy instead.
    """
    lab = lab_dir.resolve()

    def hides_lab(bind: tuple[str, str]) -> bool:
        return Path(bind[1]) in (lab, *lab.parents)

    return sorted(binds, key=hides_lab)  # stable: the others keep their order


def enter_host_namespaces(name: str, binds: Sequence[tuple[str, str]]) -> Callable[[], None]:
    """Build the ``preexec_fn`` that gives one sshd its own mounts and hostname.

    It runs in the forked child before ``exec``: only async-signal-safe-ish
    system calls through ctypes, no Python-level locks (the lab starts sshd from
    a single thread). Every source is opened (``O_PATH``) before the first
    mount and bound through ``/proc/self/fd``, so a bind covering the lab
    directory cannot redirect a later source.
    """
    encoded = [(src.encode(), dst.encode()) for src, dst in binds]
    hostname = name.encode()

    def enter() -> None:
        libc = _libc()

        def check(rc: int, what: str) -> None:
            if rc != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"{what}: {os.strerror(err)}")

        check(libc.unshare(_CLONE_NEWNS | _CLONE_NEWUTS), "unshare")
        check(libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "mount private")
        sources = [os.open(src, os.O_PATH | os.O_CLOEXEC) for src, _ in encoded]
        for fd, (_, dst) in zip(sources, encoded, strict=True):
            source = f"/proc/self/fd/{fd}".encode()
            check(libc.mount(source, dst, None, _MS_BIND, None), f"bind {dst.decode()}")
        check(libc.sethostname(hostname, len(hostname)), "sethostname")
        os.setsid()

    return enter
