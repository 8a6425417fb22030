"""``--become``: commands and file transfers run as another user through ``sudo``.

``Become`` builds the ``sudo`` prefix ``run --become`` uses and the password
line sudo reads first on stdin (``-S -p ''``: no prompt; ``-n`` when there is
no password, so sudo never waits for one). The password is never on a command
line and never logged.

``SudoSession`` gives ``put`` and ``get`` the same session interface
(``sftp()``, ``exec()``, ``open_stream()``) as another user. SFTP normally runs
as the login user, inside sshd; here OpenSSH's ``sftp-server`` program is
started under sudo on an exec channel and paramiko speaks SFTP over that
channel, as ``sftp -s 'sudo /usr/lib/openssh/sftp-server'`` does. The fast
paths (``tar -x``, ``cat``, ``sha256sum``) run under the same sudo.

Before anything else, one exec checks the password (sudo gets it, then end of
input, so a wrong one fails at once instead of waiting for another try) and
finds ``sftp-server`` on the host. sudo may also not read the password at all
(a ``NOPASSWD`` rule, a root login, cached credentials): what it leaves must
not reach ``tar`` or ``sftp-server`` as data. So a command that reads its
stdin first reads lines up to a marker line sent after the password, whichever
of the two sudo took, then ``exec``s the real command.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import paramiko

from remoteops.errors import InterruptedHostError, TransferError
from remoteops.session import DEFAULT_MAX_OUTPUT, ExecResult, Session

if TYPE_CHECKING:
    from remoteops.target import Target

__all__ = ["Become", "Remote", "SudoSession", "sudo_failure"]

logger = logging.getLogger(__name__)

# Where OpenSSH packages install sftp-server (Debian/Ubuntu, RHEL/Fedora/SUSE,
# Arch/Alpine, BSDs and builds from source); else sshd -T's Subsystem line.
_SFTP_SERVERS = (
    "/usr/lib/openssh/sftp-server",
    "/usr/libexec/openssh/sftp-server",
    "/usr/lib/ssh/sftp-server",
    "/usr/libexec/sftp-server",
    "/usr/lib/sftp-server",
    "/usr/local/libexec/sftp-server",
)
_READY = "remoteops-become-ok"
_STDIN_FOLLOWS = "remoteops-stdin-follows"
_STARTED = "R"  # written by the shell just before it becomes sftp-server
_START_TIMEOUT = 60.0
_NO_SFTP_SERVER = 3
_SYNC_FAILED = 125
_MAX_MESSAGE = 200


@dataclass(frozen=True, slots=True)
class Become:
    """Run as ``user`` through sudo; ``password`` (the login user's) goes first on stdin."""

    user: str
    password: str | None = field(default=None, repr=False)

    @classmethod
    def choose(
        cls, become: bool, user: str | None, password: str | None, target: Target
    ) -> Become | None:
        """What the options, else the target's inventory (``ansible_become*``), ask for."""
        if not (become or target.become):
            return None
        return cls(user or target.become_user or "root", password or target.become_password)

    @property
    def prefix(self) -> str:
        """``sudo ... --`` with a trailing space: ``-S -p ''`` with a password, else ``-n``."""
        user = shlex.quote(self.user)
        if self.password:
            return f"sudo -S -p '' -u {user} -- "
        return f"sudo -n -u {user} -- "

    @property
    def password_line(self) -> bytes:
        """What sudo reads first on stdin: the password and a newline (empty without one)."""
        return self.password.encode() + b"\n" if self.password else b""

    def command(self, command: str) -> str:
        """``command`` (shell syntax) as the become user; its stdin is ``stdin(...)``'s tail.

        With a password, the shell first reads the line sudo left (if it
        left the password) and the marker line, so ``command`` reads only
        what follows them.
        """
        if not self.password:
            return f"{self.prefix}sh -c {shlex.quote(command)}"
        sync = (
            f'IFS= read -r l || exit {_SYNC_FAILED}; [ "$l" = {_STDIN_FOLLOWS} ] || '
            f'{{ IFS= read -r l && [ "$l" = {_STDIN_FOLLOWS} ]; }} || exit {_SYNC_FAILED}; '
        )
        return f"{self.prefix}sh -c {shlex.quote(sync + command)}"

    def stdin(self, data: bytes = b"") -> bytes:
        """The stdin of a ``command(...)``: the password line and the marker first."""
        if not self.password:
            return data
        return self.password_line + _STDIN_FOLLOWS.encode() + b"\n" + data


def sudo_failure(become: Become, stderr: str) -> str:
    """One line saying why sudo refused, from its own (C locale) words on stderr."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    text = " ".join(lines)
    if become.password and ("incorrect password" in text or "no password was provided" in text):
        return (
            "become: incorrect sudo password (from --become-password-file or "
            "ansible_become_password)"
        )
    if "password is required" in text:
        return (
            "become: sudo asks for a password; give it with --become-password-file "
            "(or ansible_become_password)"
        )
    said = lines[0].removeprefix("sudo: ") if lines else "no message"
    return f"become: sudo -u {become.user} failed: {said[:_MAX_MESSAGE]}"


class Remote(Protocol):
    """What a transfer needs of a host: SFTP, commands and byte streams (``Session``'s API)."""

    @property
    def target(self) -> Target:
        """The host."""
        ...

    @property
    def transport(self) -> paramiko.Transport:
        """The connection."""
        ...

    def sftp(self) -> paramiko.SFTPClient:
        """The SFTP client (one per session)."""
        ...

    def exec(
        self,
        command: str,
        *,
        stdin: bytes | None = None,
        max_output: int = ...,
        cancel: threading.Event | None = None,
    ) -> ExecResult:
        """Run ``command`` and wait for it."""
        ...

    def open_stream(self, command: str, *, stdin: bool = False) -> paramiko.Channel:
        """Start ``command`` for bulk data (see ``Session.open_stream``)."""
        ...

    def close(self) -> None:
        """Close what this object opened."""
        ...


class SudoSession:
    """A session's SFTP, commands and streams, all run as ``become.user`` through sudo.

    ``close()`` ends the sudo'd ``sftp-server``; the wrapped session stays open
    (it belongs to the executor's session pool).
    """

    def __init__(self, session: Session, become: Become, cancel: threading.Event) -> None:
        self._session = session
        self._become = become
        self._cancel = cancel
        self._server: str | None = None
        self._sftp: paramiko.SFTPClient | None = None

    @property
    def target(self) -> Target:
        """The host."""
        return self._session.target

    @property
    def transport(self) -> paramiko.Transport:
        """The connection."""
        return self._session.transport

    def _sftp_server(self) -> str:
        """Check that sudo takes the password; the path of sftp-server on the host."""
        if self._server is not None:
            return self._server
        candidates = " ".join(_SFTP_SERVERS)
        script = (
            f"echo {_READY}; for p in {candidates}; do "
            'if [ -x "$p" ]; then echo "$p"; exit 0; fi; done; '
            "p=$(PATH=$PATH:/usr/sbin:/sbin sshd -T 2>/dev/null | "
            'awk \'$1 == "subsystem" && $2 == "sftp" { print $3; exit }\'); '
            f'if [ -x "$p" ]; then echo "$p"; exit 0; fi; exit {_NO_SFTP_SERVER}'
        )
        # The password, then end of input: a wrong one fails at once. LC_ALL=C:
        # sudo's messages in English, whatever the host's locale.
        result = self._session.exec(
            f"env LC_ALL=C {self._become.prefix}sh -c {shlex.quote(script)}",
            stdin=self._become.password_line or None,
            cancel=self._cancel,
        )
        host = self.target.name
        if result.interrupted:
            raise InterruptedHostError(host, "interrupted; transfer stopped")
        out = result.stdout.decode("utf-8", "replace").splitlines()
        if not out or out[0] != _READY:
            raise TransferError(
                host, sudo_failure(self._become, result.stderr.decode("utf-8", "replace"))
            )
        if result.exit_code != 0 or len(out) < 2 or not out[1].startswith("/"):
            raise TransferError(
                host,
                "become: found no sftp-server program on the host (looked in "
                f"{', '.join(_SFTP_SERVERS)} and sshd -T); install OpenSSH's sftp-server",
            )
        self._server = out[1]
        logger.debug("Host %r: %s as %s through sudo", host, self._server, self._become.user)
        return self._server

    def sftp(self) -> paramiko.SFTPClient:
        """An SFTP client whose server runs as the become user (started on first use)."""
        if self._sftp is None:
            server = shlex.quote(self._sftp_server())
            channel = self._session.open_channel()
            try:
                channel.exec_command(self._become.command(f"printf {_STARTED}; exec {server}"))
                first = self._become.stdin()
                if first:
                    channel.sendall(first)
                self._wait_started(channel)
                self._sftp = paramiko.SFTPClient(channel)
            except BaseException:
                with contextlib.suppress(Exception):
                    channel.close()
                raise
        return self._sftp

    def _wait_started(self, channel: paramiko.Channel) -> None:
        """Wait for the byte the shell writes before it becomes sftp-server (Ctrl-C aware).

        paramiko's SFTP handshake would wait for ever on a server that never
        starts; this wait is bounded and ends at Ctrl-C.
        """
        host = self.target.name
        channel.settimeout(0.1)
        got = b""
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._cancel.is_set():
                raise InterruptedHostError(host, "interrupted; transfer stopped")
            try:
                got = channel.recv(1)
            except TimeoutError:
                continue
            break
        else:
            raise TransferError(
                host, f"become: sftp-server did not start under sudo within {_START_TIMEOUT:g}s"
            )
        channel.settimeout(None)
        if got != _STARTED.encode():
            problem = b""
            with contextlib.suppress(Exception):
                problem = channel.recv_stderr(4096)
            raise TransferError(
                host, sudo_failure(self._become, problem.decode("utf-8", "replace"))
            )

    def exec(
        self,
        command: str,
        *,
        stdin: bytes | None = None,
        max_output: int = DEFAULT_MAX_OUTPUT,
        cancel: threading.Event | None = None,
    ) -> ExecResult:
        """Run ``command`` as the become user and wait for it (stopped as it ran, on cancel)."""
        self._sftp_server()
        become = self._become
        return self._session.exec(
            become.command(command),
            stdin=become.stdin(stdin or b"") or None,
            max_output=max_output,
            cancel=cancel,
            run_as=(become.prefix, become.password_line),
        )

    def open_stream(self, command: str, *, stdin: bool = False) -> paramiko.Channel:
        """Start ``command`` as the become user; the caller writes stdin only with ``stdin``."""
        self._sftp_server()
        become = self._become
        return self._session.open_stream(become.command(command), stdin=stdin, first=become.stdin())

    def close(self) -> None:
        """End the sudo'd sftp-server; the wrapped session stays open for its owner."""
        if self._sftp is not None:
            with contextlib.suppress(Exception):
                self._sftp.close()
            self._sftp = None
