"""The ``Session`` class: a live, authenticated connection to one host, used by
one worker at a time: it runs commands (the exec loop, with deadlines,
cancellation, keepalive checks and the stop helper), opens channels for bulk
data and its SFTP client, and says goodbye to the server on close.
"""

from __future__ import annotations

import contextlib
import select
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import paramiko
from paramiko.common import cMSG_CHANNEL_REQUEST, cMSG_DISCONNECT
from paramiko.message import Message

from remoteops import fastio
from remoteops.errors import CommandTimeoutError, ConnectError, HostError
from remoteops.session.channel import (
    DEFAULT_MAX_OUTPUT,
    CommandOutput,
    ExecResult,
    LineSink,
    PromptAnswer,
    _LineSplitter,
    _Liveness,
    send_input,
)
from remoteops.session.errors import channel_open_error
from remoteops.session.transport import _EXIT_SIGNAL, _private, _wait_for
from remoteops.session.watchdog import Watchdog
from remoteops.target import Target

if TYPE_CHECKING:
    from remoteops.remotestop import StopReport

DEFAULT_KEEPALIVE_INTERVAL = 15.0
DEFAULT_KEEPALIVE_COUNT = 3

__all__ = ["DEFAULT_KEEPALIVE_COUNT", "DEFAULT_KEEPALIVE_INTERVAL", "Session"]


_DISCONNECT_BY_APPLICATION = 11
# Channel packets of 256 KiB instead of paramiko's 32 KiB: paramiko's cost is
# per packet, so bulk data moves about twice as fast (measured on loopback).
_SFTP_PACKET = 256 * 1024
# Larger than paramiko's 2 MiB default so many SFTP requests can be in flight.
_EXEC_WINDOW = 8 * 1024 * 1024
_READ = 32768
# The stop helper TERMs, waits up to 1 s, KILLs and waits up to 1 s more; this
# bounds it when the host is too slow even for that.
_STOP_HELPER_TIMEOUT = 5.0


class Session:
    """A live, authenticated connection to one host, used by one worker at a time."""

    def __init__(
        self,
        target: Target,
        transport: paramiko.Transport,
        sock: Any,
        watchdog: Watchdog,
        jump: Session | None = None,
        *,
        keepalive_interval: float = DEFAULT_KEEPALIVE_INTERVAL,
        keepalive_count_max: int = DEFAULT_KEEPALIVE_COUNT,
    ) -> None:
        self.target = target
        self.keepalive_interval = keepalive_interval
        self.keepalive_count_max = keepalive_count_max
        self.transport = transport
        self._sock = sock
        self._watchdog = watchdog
        self._jump = jump
        self.server_version = transport.remote_version
        self._sftp: paramiko.SFTPClient | None = None
        self.channels_opened = 0
        """How many channels were opened on this connection (none: nothing ran through it)."""

    def close(self) -> None:
        """Say goodbye to the server, then close the transport and its socket.

        Behind a ProxyJump the socket is a channel of the jump host's shared
        connection. Closing that channel while this transport's thread still
        reads from it can send a window adjustment after the close, and OpenSSH
        then drops the whole jump connection ("data packet referred to
        nonexistent channel"), failing every other host behind it. So the
        target is asked to disconnect first and the channel is left to close
        from the server's side.
        """
        if self._sftp is not None:
            with contextlib.suppress(Exception):
                self._sftp.close()
        if self.transport.is_active():
            message = Message()
            message.add_byte(cMSG_DISCONNECT)
            message.add_int(_DISCONNECT_BY_APPLICATION)
            message.add_string("remoteops: done")
            message.add_string("")
            with contextlib.suppress(Exception):
                _private(self.transport)._send_user_message(message)
            if self._jump is not None:
                deadline = time.monotonic() + 2.0
                while time.monotonic() < deadline and not self._sock.closed:
                    time.sleep(0.01)
        with contextlib.suppress(Exception):
            self.transport.close()
        with contextlib.suppress(Exception):
            self._sock.close()

    def sftp(self) -> paramiko.SFTPClient:
        """This session's SFTP client, opened on first use and reused (one per session)."""
        if self._sftp is None:
            # As SFTPClient.from_transport, on a channel opened within the
            # connect deadline (paramiko's default wait is an hour).
            channel = self.open_channel()
            try:
                try:
                    channel.invoke_subsystem("sftp")
                except paramiko.SSHException as exc:
                    if not self.transport.is_active():
                        raise
                    raise ConnectError(
                        self.target.name,
                        f"{self.target.address}:{self.target.port} offers no SFTP subsystem",
                    ) from exc
                self._sftp = paramiko.SFTPClient(channel)
            except BaseException:
                with contextlib.suppress(Exception):
                    channel.close()
                raise
        return self._sftp

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send_signal(self, channel: paramiko.Channel, name: str) -> None:
        # RFC 4254 6.9 "signal": OpenSSH's sshd delivers it to the command's
        # process group. paramiko has no public call for it.
        message = _channel_request(channel, "signal", False, name)
        with contextlib.suppress(Exception):
            _private(self.transport)._send_user_message(message)

    def _set_env(self, channel: paramiko.Channel, env: Mapping[str, str]) -> None:
        """Send each variable with want-reply so a refusal is seen, never dropped."""
        for name, value in env.items():
            message = _channel_request(channel, "env", True, name, value)
            _private(channel)._event_pending()
            _private(self.transport)._send_user_message(message)
            try:
                _private(channel)._wait_for_event()
            except paramiko.SSHException:
                raise HostError(
                    self.target.name,
                    f"the server refused --env {name} (sshd's AcceptEnv does not list it); "
                    f"add it to AcceptEnv or set it in the command: {name}=... COMMAND",
                ) from None

    def open_channel(self) -> paramiko.Channel:
        """A new session channel with large windows and packets (bulk data), nothing started.

        The server has ``--connect-timeout`` to open it. Raises a HostError of
        ``NOTHING_RAN_ERRORS`` when it does not (timeout), refuses, or the
        connection ends first; ``channels_opened`` counts the channels opened.
        """
        timeout = self.target.connect_timeout
        try:
            channel = self.transport.open_session(
                window_size=_EXEC_WINDOW, max_packet_size=_SFTP_PACKET, timeout=timeout
            )
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise channel_open_error(self.target, exc, timeout=timeout) from exc
        self.channels_opened += 1
        return channel

    def open_stream(
        self, command: str, *, stdin: bool = False, first: bytes = b""
    ) -> paramiko.Channel:
        """Start ``command`` and return its channel, for bulk data.

        Its output is read with ``fastio.read_chunks`` (the channel is
        ``fastio.attach``-ed); ``first`` (sudo's password line) is sent on
        stdin at once; with ``stdin`` the caller writes the rest of the
        command's input with ``fastio.send_all`` and ends it with
        ``shutdown_write``, otherwise stdin is closed at once. Call
        ``fastio.detach`` when done. Raises paramiko's errors if the server
        refuses the channel or the command.
        """
        channel = self.open_channel()
        fastio.attach(channel)
        try:
            channel.exec_command(command)
            if first:
                channel.sendall(first)
            if not stdin:
                channel.shutdown_write()
        except BaseException:
            fastio.detach(channel)
            with contextlib.suppress(Exception):
                channel.close()
            raise
        return channel

    def _send_exec(self, channel: paramiko.Channel, command: str) -> None:
        """Send the exec request without waiting for its reply.

        paramiko's ``exec_command`` waits a round trip for the server's "ok"
        before anything else happens; output and the exit status follow the
        reply in order anyway, so the wait only costs latency (100 ms on a
        100 ms link, per host). A refusal closes the channel, which
        ``_collect`` reports.
        """
        message = _channel_request(channel, "exec", True, command)
        _private(channel)._event_pending()
        _private(self.transport)._send_user_message(message)

    def _request_pty(self, channel: paramiko.Channel, *, echo: bool) -> None:
        """Ask for a pseudo-terminal, as ``Channel.get_pty``, with its ECHO mode set.

        paramiko sends no terminal modes, so the server's default (echo on)
        applies: whatever is sent to the command's stdin (a sudo password, a
        ``--stdin`` file) would come back in its output. RFC 4254 section 8:
        opcode 53 is ECHO, each value a uint32, the list ends with opcode 0.
        """
        modes = b"" if echo else bytes([53]) + (0).to_bytes(4, "big") + bytes([0])
        message = _channel_request(channel, "pty-req", True, "dumb")  # then its sizes, modes
        message.add_int(200)
        message.add_int(50)
        message.add_int(0)
        message.add_int(0)
        message.add_string(modes)
        _private(channel)._event_pending()
        _private(self.transport)._send_user_message(message)
        _private(channel)._wait_for_event()

    def exec(
        self,
        command: str,
        *,
        timeout: float | None = None,
        pty: bool = False,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
        max_output: int = DEFAULT_MAX_OUTPUT,
        on_line: LineSink | None = None,
        on_bytes: Callable[[str, bytes], None] | None = None,
        cancel: threading.Event | None = None,
        run_as: tuple[str, bytes] | None = ("", b""),
        answer: PromptAnswer | None = None,
    ) -> ExecResult:
        """Run ``command`` and wait for it, at most ``timeout`` seconds.

        On timeout or cancel the command is stopped (``_stop_command``): its
        processes get SIGTERM, then SIGKILL a second later, and the result's
        ``stop`` says whether the host confirmed they are gone. ``run_as`` is
        the ``sudo`` prefix and stdin prefix (password line) the command ran
        under, for the stop helper to run the same way; None: no stop helper.
        Output is capped at ``max_output`` bytes per stream; ``on_bytes`` sees
        every byte (for ``--out-dir``). ``answer`` answers sudo's prompt on a
        terminal (then sends the stdin itself; ``stdin`` must be None).
        """
        channel = self.open_channel()
        try:
            if env:
                self._set_env(channel, env)
            if pty:
                # Input sent to a terminal is not output: no echo when any is sent.
                self._request_pty(channel, echo=not stdin)
            self._send_exec(channel, command)
            if stdin is not None:
                send_input(channel, stdin)
            if answer is None:
                channel.shutdown_write()  # with a pty it ends nothing: the answer comes later
            return self._collect(
                channel,
                timeout=timeout,
                max_output=max_output,
                on_line=on_line,
                on_bytes=on_bytes,
                cancel=cancel,
                run_as=run_as,
                answer=answer,
            )
        finally:
            with contextlib.suppress(Exception):
                channel.close()

    def _collect(
        self,
        channel: paramiko.Channel,
        *,
        timeout: float | None,
        max_output: int,
        on_line: LineSink | None,
        on_bytes: Callable[[str, bytes], None] | None,
        cancel: threading.Event | None,
        run_as: tuple[str, bytes] | None,
        answer: PromptAnswer | None = None,
    ) -> ExecResult:
        out, err = CommandOutput(max_output), CommandOutput(max_output)
        splitters = (
            (
                _LineSplitter(self.target.name, "stdout", on_line),
                _LineSplitter(self.target.name, "stderr", on_line),
            )
            if on_line
            else None
        )
        started = time.monotonic()
        deadline = None if timeout is None else started + timeout
        stop_reason: str | None = None
        channel.setblocking(False)
        alive = _Liveness(self.transport, self.keepalive_interval, self.keepalive_count_max)
        streams = (
            ("stdout", channel.recv_ready, channel.recv, out),
            ("stderr", channel.recv_stderr_ready, channel.recv_stderr, err),
        )
        while True:
            got = False
            for index, (name, ready, recv, captured) in enumerate(streams):
                while ready():
                    chunk = recv(_READ)
                    if not chunk:
                        break
                    got = True
                    if answer is not None and index == 0:
                        chunk = answer.feed(channel, chunk)
                        if not chunk:
                            continue
                    captured.add(chunk)
                    if on_bytes:
                        on_bytes(name, chunk)
                    if splitters:
                        splitters[index].feed(chunk)
            if (
                channel.exit_status_ready()
                and not channel.recv_ready()
                and not channel.recv_stderr_ready()
                and (channel.eof_received or channel.closed)
            ):
                break
            if not self.transport.is_active():
                break
            if alive.is_dead():
                self._signal_stop(channel)
                raise CommandTimeoutError(
                    self.target.name,
                    f"{self.target.address}:{self.target.port} stopped answering mid-command: "
                    f"no reply to {self.keepalive_count_max} keepalives "
                    f"{self.keepalive_interval:g}s apart (--keepalive-interval, "
                    "--keepalive-count)",
                )
            if cancel is not None and cancel.is_set():
                stop_reason = "interrupted"
                break
            if deadline is not None and time.monotonic() >= deadline:
                stop_reason = "timeout"
                break
            if not got:
                # select() on a paramiko channel wakes when data or EOF arrives.
                wait = 0.2
                if deadline is not None:
                    wait = max(0.0, min(wait, deadline - time.monotonic()))
                _wait_for(channel, select.POLLIN, wait)
        rest = answer.finish() if answer is not None else b""
        if rest:  # a partial prompt at the very end was output after all
            out.add(rest)
            if on_bytes:
                on_bytes("stdout", rest)
            if splitters:
                splitters[0].feed(rest)
        if splitters:
            splitters[0].flush()
            splitters[1].flush()
        if stop_reason is not None:
            stop = self._stop_command(channel, run_as, time.monotonic() - started)
            return ExecResult(
                exit_code=None,
                stdout=out.value(),
                stderr=err.value(),
                stdout_truncated=out.truncated,
                stderr_truncated=err.truncated,
                timed_out=stop_reason == "timeout",
                interrupted=stop_reason == "interrupted",
                stop=stop,
            )
        # paramiko reports -1 both for "exit-signal" (kept by _handle_channel_request)
        # and for a channel closed with no exit status at all.
        status = channel.recv_exit_status() if channel.exit_status_ready() else -1
        if status == -1 and not self.transport.is_active():
            raise ConnectError(
                self.target.name,
                f"connection to {self.target.address}:{self.target.port} was lost mid-command",
            )
        signal_name = None
        if status == -1:
            signal_name = getattr(channel, _EXIT_SIGNAL, None) or "unknown"
        return ExecResult(
            exit_code=None if status == -1 else status,
            stdout=out.value(),
            stderr=err.value(),
            stdout_truncated=out.truncated,
            stderr_truncated=err.truncated,
            signal=signal_name,
        )

    def _stop_command(
        self, channel: paramiko.Channel, run_as: tuple[str, bytes] | None, elapsed: float
    ) -> StopReport:
        """Stop the command on ``channel`` (running for ``elapsed`` s); say if that is confirmed.

        With ``run_as``, the stop helper (remoteops.remotestop) runs on a
        second channel of this connection, as the command did, and TERMs, then
        KILLs, what the command started, while its process tree is still whole.
        Without a helper, or when it could not signal, the command gets the SSH
        ``signal`` requests (TERM, KILL a second later), which sshd refuses for
        root logins and which reach its process group only: unconfirmed.
        """
        # Imported here: a command that finishes in time never pays for it.
        from remoteops.remotestop import StopReport

        if run_as is None:
            report = StopReport(False, "no stop helper was asked for")
        elif not self.transport.is_active():
            report = StopReport(False, "the connection was lost")
        else:
            report = self._run_stop_helper(run_as, elapsed)
            if report.signalled:
                return report
        self._signal_stop(channel)
        return report

    def _run_stop_helper(self, run_as: tuple[str, bytes], elapsed: float) -> StopReport:
        from remoteops.remotestop import (
            StopReport,
            helper_command,
            helper_stdin,
            parse_helper_output,
        )

        prefix, stdin_prefix = run_as
        try:
            result = self.exec(
                helper_command(prefix),
                timeout=_STOP_HELPER_TIMEOUT,
                stdin=helper_stdin(stdin_prefix, elapsed),
                max_output=65536,
                run_as=None,
            )
        except (HostError, paramiko.SSHException, EOFError, OSError) as exc:
            return StopReport(False, f"the stop helper could not start ({exc})")
        if result.timed_out:
            return StopReport(
                False, f"the stop helper did not finish within {_STOP_HELPER_TIMEOUT:g}s"
            )
        return parse_helper_output(result.exit_code, result.stdout, result.stderr)

    def _signal_stop(self, channel: paramiko.Channel) -> None:
        """The ``signal`` requests: TERM, a second for the command to exit, then KILL."""
        self._send_signal(channel, "TERM")
        end = time.monotonic() + 1.0
        while time.monotonic() < end and not channel.exit_status_ready():
            _wait_for(channel, select.POLLIN, 0.1)
            with contextlib.suppress(Exception):
                while channel.recv_ready():
                    channel.recv(_READ)
                while channel.recv_stderr_ready():
                    channel.recv_stderr(_READ)
        if not channel.exit_status_ready():
            self._send_signal(channel, "KILL")
        with contextlib.suppress(Exception):
            channel.close()


def _channel_request(channel: paramiko.Channel, kind: str, want_reply: bool, *args: str) -> Message:
    """An RFC 4254 channel request (``exec``, ``env``, ``signal``, ...) on ``channel``,
    its string ``args`` added."""
    message = Message()
    message.add_byte(cMSG_CHANNEL_REQUEST)
    message.add_int(channel.remote_chanid)
    message.add_string(kind)
    message.add_boolean(want_reply)
    for arg in args:
        message.add_string(arg)
    return message
