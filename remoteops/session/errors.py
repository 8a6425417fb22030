"""Error mapping: paramiko and socket errors turned into remoteops' ``HostError``
classes, each naming the host and what to do next.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import NoReturn

import paramiko

from remoteops.errors import (
    AuthenticationError,
    CommandTimeoutError,
    ConnectError,
    HostError,
    HostKeyError,
    RemoteOpsError,
)
from remoteops.target import Target

__all__ = [
    "NOTHING_RAN_ERRORS",
    "ChannelRefusedError",
    "ChannelTimeoutError",
    "SessionClosedError",
    "channel_open_error",
    "map_errors",
]


class ChannelTimeoutError(CommandTimeoutError):
    """The server did not answer a request to open a session channel in time:
    nothing ran on the host through that channel."""


class ChannelRefusedError(ConnectError):
    """The server refused to open a session channel (OpenSSH's ``MaxSessions``,
    a ``no-pty``-style restriction): nothing ran on the host through it."""


class SessionClosedError(ConnectError):
    """The connection ended after authentication, before a session channel (or a
    keepalive's reply) came: the server closed it, or a pooled connection died
    between operations."""


NOTHING_RAN_ERRORS = (ChannelTimeoutError, ChannelRefusedError, SessionClosedError)
"""The errors of a channel that never opened: nothing ran through it. On the
first channel of an operation, nothing of the operation ran on the host."""


def channel_open_error(target: Target, exc: BaseException, *, timeout: float) -> HostError:
    """The HostError for paramiko's failure to open a session channel (``open_session``).

    paramiko raises ``SSHException("Timeout opening channel.")`` when the
    server does not answer within ``timeout``, ``ChannelException`` when it
    refuses, and ``SSHException("SSH session not active")`` (or the
    connection's own error: EOF, a reset) when the connection ended first.
    """
    where = f"{target.address}:{target.port}"
    if isinstance(exc, paramiko.ChannelException):
        return ChannelRefusedError(
            target.name,
            f"{where} refused to open a session channel ({exc.text}, code {exc.code}); "
            "nothing ran: check sshd's MaxSessions and the account's restrictions",
        )
    if str(exc) == "Timeout opening channel." or isinstance(exc, TimeoutError):
        return ChannelTimeoutError(
            target.name,
            f"the server did not open a session channel within {timeout:g}s "
            "(--connect-timeout); nothing ran: the host may be overloaded",
        )
    return SessionClosedError(
        target.name,
        f"the connection to {where} was closed before a session channel opened "
        "(after authentication); nothing ran",
    )


@contextlib.contextmanager
def map_errors(
    target: Target, *, phase: str, deadline_passed: Callable[[], bool]
) -> Iterator[None]:
    """Turn paramiko and socket errors into HostError subclasses naming the host."""
    where = f"{target.address}:{target.port}"
    try:
        yield
    except HostError:
        raise
    except RemoteOpsError:
        raise
    except Exception as exc:
        # Once the watchdog closed the socket, whatever paramiko was doing fails
        # with some error (auth failed, no existing session, EOF): it was the deadline.
        if deadline_passed():
            raise CommandTimeoutError(
                target.name,
                f"{phase} to {where} did not finish within the deadline; "
                "raise --connect-timeout if the host is slow",
            ) from exc
        _raise_mapped(target, where, phase, exc)


def _raise_mapped(target: Target, where: str, phase: str, error: Exception) -> NoReturn:
    try:
        raise error
    except paramiko.BadHostKeyException as exc:
        raise HostKeyError(target.name, f"{where}: host key changed ({exc})") from exc
    except paramiko.AuthenticationException as exc:
        raise AuthenticationError(
            target.name,
            f"authentication as {target.user!r} on {where} failed ({exc}); check the user "
            "and key (-u, --key) or ansible_user/ansible_ssh_private_key_file",
        ) from exc
    except TimeoutError as exc:
        raise CommandTimeoutError(
            target.name, f"{phase} to {where} timed out; raise --connect-timeout if it is slow"
        ) from exc
    except (paramiko.SSHException, EOFError, OSError) as exc:
        if isinstance(exc, socket.gaierror):
            message = f"cannot resolve {target.address!r}: {exc.strerror}; check ansible_host"
        elif isinstance(exc, ConnectionRefusedError):
            message = f"connection to {where} refused; is sshd running on that port?"
        elif isinstance(exc, OSError) and exc.strerror:
            message = f"{phase} to {where} failed: {exc.strerror}"
        else:
            text = str(exc) or type(exc).__name__
            message = f"{phase} to {where} failed: {text}"
        raise ConnectError(target.name, message) from exc
