"""What a command's channel is read into: output captured under a cap, complete
lines for live output, sudo's prompt answered on a terminal, the result, and
OpenSSH's ServerAlive check while a command runs.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import paramiko
from paramiko.common import cMSG_GLOBAL_REQUEST
from paramiko.message import Message

from remoteops import fastio
from remoteops.session.transport import _private

if TYPE_CHECKING:
    from remoteops.remotestop import StopReport

logger = logging.getLogger(__name__)

DEFAULT_MAX_OUTPUT = 1024 * 1024

__all__ = [
    "DEFAULT_MAX_OUTPUT",
    "CommandOutput",
    "ExecResult",
    "LineSink",
    "PromptAnswer",
    "send_input",
]


def send_input(channel: paramiko.Channel, data: bytes) -> None:
    """Send ``data`` to the remote command's stdin. A command may end, and the server
    close its channel, before reading all of it (``exit 3`` given a large --stdin):
    as with ssh, that is the command's business and its exit status still counts, so
    the write stops there; any other failure (the connection lost) is raised."""
    try:
        channel.sendall(data)
    except OSError:
        if not channel.closed:
            raise


@dataclass(slots=True)
class CommandOutput:
    """A captured stream, capped at ``limit`` bytes with a count of what was cut."""

    limit: int
    data: bytearray = field(default_factory=bytearray)
    truncated: int = 0

    def add(self, chunk: bytes) -> None:
        """Keep what fits under the cap; count the rest."""
        room = self.limit - len(self.data)
        if room > 0:
            self.data += chunk[:room]
        if len(chunk) > room:
            self.truncated += len(chunk) - max(room, 0)

    def value(self) -> bytes:
        """The captured bytes, with a visible marker when output was cut."""
        if not self.truncated:
            return bytes(self.data)
        return bytes(self.data) + f"\n[remoteops: {self.truncated} more bytes not kept]\n".encode()


@dataclass(frozen=True, slots=True)
class ExecResult:
    """The outcome of one command on one host."""

    exit_code: int | None
    stdout: bytes
    stderr: bytes
    stdout_truncated: int = 0
    stderr_truncated: int = 0
    signal: str | None = None
    timed_out: bool = False
    interrupted: bool = False
    stop: StopReport | None = None
    """For a timed out or interrupted command: whether it is confirmed gone from the host."""


LineSink = Callable[[str, str, bytes], None]
"""Called with (host, "stdout"|"stderr", one complete line without its newline)."""


class PromptAnswer:
    """Answers sudo's password prompt on a terminal once it shows, then sends ``then``.

    On a pseudo-terminal, input sent before sudo turned echo off comes back in
    the output: the password must wait for the prompt (``sudo -S -p PROMPT``;
    sudo turns echo off before printing it). The prompt, and the line end sudo
    prints after reading the password, never reach the output. A second prompt
    means the password was refused: the command is interrupted (Ctrl-C on its
    terminal) and ``refused`` is set. Output that is not the prompt means sudo
    did not ask (NOPASSWD, a root login): the password is never sent.
    """

    def __init__(self, prompt: bytes, answer: bytes, then: bytes | None) -> None:
        self._prompt = prompt
        self._answer = answer
        self._then = then
        self._held = b""
        self._strip_newline = False
        self.state = "waiting"  # then "answered", "skipped" or "refused"

    @property
    def refused(self) -> bool:
        """True when sudo asked again: the password was wrong."""
        return self.state == "refused"

    def feed(self, channel: paramiko.Channel, chunk: bytes) -> bytes:
        """``chunk`` of stdout without the prompt; answers it when it shows."""
        if self.state == "skipped" or self.state == "refused":
            return chunk
        data = self._held + chunk
        self._held = b""
        if self._strip_newline:
            if data in (b"", b"\r"):
                self._held = data
                return b""
            self._strip_newline = False
            data = data.removeprefix(b"\r\n").removeprefix(b"\n")
        shown = b""
        while (at := data.find(self._prompt)) >= 0:
            shown += data[:at]
            data = data[at + len(self._prompt) :]
            if self.state == "waiting":
                send_input(channel, self._answer)
                if self._then:
                    send_input(channel, self._then)
                self.state = "answered"
                self._strip_newline = True
                data = data.removeprefix(b"\r\n").removeprefix(b"\n")
                self._strip_newline = not data
            else:
                self.state = "refused"
                send_input(channel, b"\x03")
                return shown + data
        keep = next(
            (n for n in range(min(len(data), len(self._prompt) - 1), 0, -1)
             if self._prompt.startswith(data[-n:])),
            0,
        )  # fmt: skip
        if self.state == "waiting" and (shown or data[: len(data) - keep]):
            # Output before any prompt: sudo did not ask; the password stays here.
            self.state = "skipped"
            if self._then:
                send_input(channel, self._then)
            return shown + data
        self._held = data[len(data) - keep :] if keep else b""
        return shown + (data[: len(data) - keep] if keep else data)

    def finish(self) -> bytes:
        """What was held back at the end of output (a partial prompt that never completed)."""
        held, self._held = self._held, b""
        return held


class _LineSplitter:
    def __init__(self, host: str, stream: str, sink: LineSink) -> None:
        self._host, self._stream, self._sink = host, stream, sink
        self._pending = b""

    def feed(self, chunk: bytes) -> None:
        data = self._pending + chunk
        *lines, self._pending = data.split(b"\n")
        if len(self._pending) > 65536:  # a huge line without newline: flush it in pieces
            lines.append(self._pending)
            self._pending = b""
        for line in lines:
            self._sink(self._host, self._stream, line)

    def flush(self) -> None:
        if self._pending:
            self._sink(self._host, self._stream, self._pending)
            self._pending = b""


class _Liveness:
    """OpenSSH's ServerAlive check: probe a quiet server, give up after N unanswered probes.

    Any packet from the server counts as an answer (``CountingPacketizer``
    counts them); a probe is a global request with want-reply (OpenSSH
    replies REQUEST_FAILURE), sent only after ``interval`` seconds without
    traffic. A transport whose packetizer does not count (one remoteops did
    not make) is never declared dead: without a count there is no telling.
    """

    def __init__(self, transport: paramiko.Transport, interval: float, count_max: int) -> None:
        self._transport = transport
        self._interval = interval
        self._count_max = max(1, count_max)
        packetizer = transport.packetizer
        self._packetizer = packetizer if isinstance(packetizer, fastio.CountingPacketizer) else None
        if self._packetizer is None and interval:
            logger.debug("no packet count on this transport: the keepalive check is off")
            self._interval = 0.0
        self._seen = self._received()
        self._last = time.monotonic()
        self._probes = 0

    def _received(self) -> int:
        return self._packetizer.received if self._packetizer is not None else 0

    def is_dead(self) -> bool:
        """Probe if due; True once ``count_max`` probes went unanswered."""
        if not self._interval:
            return False
        now = time.monotonic()
        received = self._received()
        if received != self._seen:
            self._seen, self._last, self._probes = received, now, 0
            return False
        if now - self._last < self._interval * (self._probes + 1):
            return False
        if self._probes >= self._count_max:
            return True
        self._probes += 1
        message = Message()
        message.add_byte(cMSG_GLOBAL_REQUEST)
        message.add_string("keepalive@openssh.com")
        message.add_boolean(True)
        with contextlib.suppress(Exception):
            _private(self._transport)._send_user_message(message)
        return False
