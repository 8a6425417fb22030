"""Host name resolution that the connect deadline can cut short.

``getaddrinfo()`` blocks in the C library and cannot be cancelled: with a
resolver that never answers it returns after resolv.conf's ``timeout`` times
``attempts`` (10 s by default, up to minutes), whatever the connect deadline.
So a name is looked up in a daemon thread, and the caller waits for it only
until its deadline (or Ctrl-C), then abandons it; the thread ends by itself
when the C library gives up, and never delays the exit (daemon threads are not
waited for).

What cannot leak without bound: at most ``max_lookups`` lookups run at once
(a caller waits for a free slot within its own deadline), and callers asking
for the same name and port at the same time share one lookup, so retries of a
name whose lookup is stuck add no thread. Addresses (``10.0.0.1``, ``::1``)
never start a thread. Nothing is cached once a lookup ends: every connection
asks the system's resolver, as ssh does.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AddrInfo", "ResolveError", "Resolver", "resolve"]

AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, Any]
"""One ``socket.getaddrinfo`` entry: family, type, protocol, canonical name, address."""

DEFAULT_MAX_LOOKUPS = 256
"""Most lookups in flight in one process (the most hosts a run connects to at once)."""

_SLICE = 0.2  # seconds between checks of ``stopped`` while waiting


class ResolveError(OSError):
    """The name did not resolve: the resolver said no, or said nothing before the deadline."""


@dataclass(slots=True)
class _Lookup:
    done: threading.Event = field(default_factory=threading.Event)
    result: Sequence[AddrInfo] | None = None
    error: OSError | None = None


class Resolver:
    """``getaddrinfo`` for TCP, bounded by a deadline; one per process is enough."""

    def __init__(self, max_lookups: int = DEFAULT_MAX_LOOKUPS) -> None:
        self._slots = threading.BoundedSemaphore(max_lookups)
        self._lock = threading.Lock()
        self._in_flight: dict[tuple[str, int], _Lookup] = {}

    def resolve(
        self,
        host: str,
        port: int,
        *,
        deadline: float,
        stopped: Callable[[], bool] = lambda: False,
    ) -> Sequence[AddrInfo]:
        """The addresses of ``host``, as ``socket.getaddrinfo(host, port, type=SOCK_STREAM)``.

        Raises ResolveError (whose message starts ``cannot resolve HOST``) if the
        name does not resolve or ``deadline`` (``time.monotonic()``) passes
        first, and TimeoutError if ``stopped()`` becomes true first.
        """
        numeric = _numeric(host, port)
        if numeric is not None:
            return numeric
        lookup = self._join(host, port, deadline, stopped)
        while not lookup.done.is_set():
            _check(host, deadline, stopped)
            lookup.done.wait(min(_SLICE, max(0.0, deadline - time.monotonic())))
        if lookup.error is not None:
            reason = lookup.error.strerror or str(lookup.error) or type(lookup.error).__name__
            raise ResolveError(f"cannot resolve {host}: {reason}")
        assert lookup.result is not None
        if not lookup.result:
            raise ResolveError(f"cannot resolve {host}: no address")
        return lookup.result

    def _join(self, host: str, port: int, deadline: float, stopped: Callable[[], bool]) -> _Lookup:
        """The lookup of (host, port) in flight, or a new one once a slot is free."""
        key = (host, port)
        while True:
            with self._lock:
                lookup = self._in_flight.get(key)
                if lookup is not None:
                    return lookup
                if self._slots.acquire(blocking=False):
                    lookup = _Lookup()
                    self._in_flight[key] = lookup
                    break
            _check(host, deadline, stopped)
            # Every slot is held by a lookup that has not ended yet: wait for one.
            if self._slots.acquire(timeout=min(_SLICE, max(0.0, deadline - time.monotonic()))):
                self._slots.release()
        threading.Thread(
            target=self._run, args=(key, lookup), name=f"resolve {host}", daemon=True
        ).start()
        return lookup

    def _run(self, key: tuple[str, int], lookup: _Lookup) -> None:
        try:
            lookup.result = socket.getaddrinfo(key[0], key[1], type=socket.SOCK_STREAM)
        except OSError as exc:
            lookup.error = exc
        except Exception as exc:  # e.g. UnicodeError from the IDNA codec
            lookup.error = OSError(str(exc))
        finally:
            with self._lock:
                self._in_flight.pop(key, None)
            self._slots.release()
            lookup.done.set()

    def in_flight(self) -> int:
        """How many lookups are running now (abandoned ones included)."""
        with self._lock:
            return len(self._in_flight)


def _numeric(host: str, port: int) -> Sequence[AddrInfo] | None:
    """``getaddrinfo`` for an address literal, which never asks a resolver; else None."""
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except (OSError, UnicodeError):
        return None


def _check(host: str, deadline: float, stopped: Callable[[], bool]) -> None:
    if time.monotonic() >= deadline:
        raise ResolveError(
            f"cannot resolve {host}: no answer from the resolver within the connect deadline"
        )
    if stopped():
        raise TimeoutError("name resolution stopped")


_default = Resolver()


def resolve(
    host: str, port: int, *, deadline: float, stopped: Callable[[], bool] = lambda: False
) -> Sequence[AddrInfo]:
    """:meth:`Resolver.resolve` on the process's shared resolver."""
    return _default.resolve(host, port, deadline=deadline, stopped=stopped)
