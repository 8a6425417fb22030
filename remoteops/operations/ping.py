"""The ``ping`` operation: round trips on one host's open session, and its result.

``ping_on`` sends OpenSSH keepalive requests over the session (left open) and
reports the best round trip and the server's version. ``Executor.ping`` fans
it out over the executor's session pool (adding how long connecting took); a
playbook's ``ping`` step calls it on the pooled session of each host.
"""

from __future__ import annotations

import contextlib
import threading
import time

import paramiko

from remoteops.errors import CommandTimeoutError
from remoteops.results import HostResult
from remoteops.session import Session, SessionClosedError, Watchdog

__all__ = ["ping_on"]

ROUNDS = 3


def ping_on(
    session: Session,
    *,
    watchdog: Watchdog,
    timeout: float | None = None,
    connect_s: float | None = None,
    start: float | None = None,
) -> HostResult:
    """The best of three keepalive round trips over ``session``; the host's result.

    The first round trip can wait behind the server's own post-auth messages
    (hostkeys-00@openssh.com), hence the best of three. All of them must end
    within ``timeout`` (default: the target's connect timeout), else the
    connection is closed and CommandTimeoutError raised; a connection that
    ends first raises SessionClosedError. ``connect_s`` (how long
    connecting took) adds ``connect_ms``; ``start`` (``time.monotonic()``) is
    where the result's duration counts from.
    """
    target = session.target
    start = time.monotonic() if start is None else start
    expired = threading.Event()

    def on_deadline() -> None:
        expired.set()
        with contextlib.suppress(Exception):
            session.transport.close()

    rtt = float("inf")
    limit = timeout or target.connect_timeout
    # A connection that ends (or is closed at the deadline) is told below.
    with (
        contextlib.suppress(paramiko.SSHException, EOFError, OSError),
        watchdog.deadline(limit, on_deadline),
    ):
        for _ in range(ROUNDS):
            sent = time.monotonic()
            session.transport.global_request("keepalive@openssh.com", wait=True)
            rtt = min(rtt, time.monotonic() - sent)
    if expired.is_set():
        raise CommandTimeoutError(
            target.name,
            f"no answer to {ROUNDS} keepalives within {limit:g}s; the connection was closed",
        )
    if not session.transport.is_active():
        raise SessionClosedError(
            target.name,
            f"the connection to {target.address}:{target.port} was closed before it "
            "answered a keepalive",
        )
    extra: dict[str, object] = {"rtt_ms": round(rtt * 1000, 2)}
    if connect_s is not None:
        extra["connect_ms"] = round(connect_s * 1000, 1)
    extra["server_version"] = session.server_version
    return HostResult(
        host=target.name,
        address=target.address,
        port=target.port,
        status="ok",
        duration_s=time.monotonic() - start,
        extra=extra,
    )
