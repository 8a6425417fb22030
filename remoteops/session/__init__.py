"""SSH sessions: one paramiko transport per host, leased by one worker at a time.

This is the only module that imports paramiko's errors: ``map_errors`` turns
them, and socket errors, into remoteops' ``HostError`` classes.

Connect order, as OpenSSH: TCP (or ProxyJump channel, or ProxyCommand), key
exchange, **host key verification**, then authentication. The host key is
checked before any credential is offered, so a strict refusal leaks nothing.

Per-host deadlines are enforced by a ``Watchdog``: one thread that closes the
socket of any host whose deadline passed, which unblocks paramiko wherever it
waits (a server that never sends a banner, drips one byte at a time, or
freezes mid-command).
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import itertools
import logging
import os
import select
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

import paramiko
from paramiko.auth_handler import AuthHandler
from paramiko.common import (
    MSG_CHANNEL_REQUEST,
    cMSG_CHANNEL_REQUEST,
    cMSG_DISCONNECT,
    cMSG_GLOBAL_REQUEST,
)
from paramiko.message import Message

from remoteops import fastio, fastpaths
from remoteops.errors import (
    AuthenticationError,
    CommandTimeoutError,
    ConnectError,
    HostError,
    HostKeyError,
    InterruptedHostError,
    RemoteOpsError,
)
from remoteops.hostkeys import HostKeyStore, verify_host_key
from remoteops.resolve import ResolveError, resolve
from remoteops.target import Target

if TYPE_CHECKING:
    from remoteops.remotestop import StopReport

__all__ = [
    "CommandOutput",
    "Credentials",
    "ExecResult",
    "PromptAnswer",
    "Session",
    "SessionSettings",
    "Watchdog",
    "connect",
    "map_errors",
]

logger = logging.getLogger(__name__)

# A paramiko without the internals remoteops needs fails here, naming them.
fastpaths.require()

DEFAULT_MAX_OUTPUT = 1024 * 1024
DEFAULT_KEEPALIVE_INTERVAL = 15.0
_DISCONNECT_BY_APPLICATION = 11
# Larger than paramiko's 2 MiB default so many SFTP requests can be in flight.
_SFTP_WINDOW = 8 * 1024 * 1024
# Channel packets of 256 KiB instead of paramiko's 32 KiB: paramiko's cost is
# per packet, so bulk data moves about twice as fast (measured on loopback).
_SFTP_PACKET = 256 * 1024
_EXEC_WINDOW = 8 * 1024 * 1024
# AES-GCM first: one AEAD pass in OpenSSL instead of AES-CTR plus a separate
# HMAC computed packet by packet from Python (1 GB/s vs 260 MB/s received here).
_PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
DEFAULT_KEEPALIVE_COUNT = 3
_READ = 32768
# The stop helper TERMs, waits up to 1 s, KILLs and waits up to 1 s more; this
# bounds it when the host is too slow even for that.
_STOP_HELPER_TIMEOUT = 5.0


# --------------------------------------------------------------------------- watchdog


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


class Watchdog:
    """One thread that runs callbacks when deadlines pass (no thread per host)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._cancelled: set[int] = set()
        self._cond = threading.Condition()
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="watchdog", daemon=True)
            self._thread.start()

    def schedule(self, deadline: float, callback: Callable[[], None]) -> int:
        """Run ``callback`` at ``deadline`` (time.monotonic()) unless cancelled first.

        Raises RuntimeError once the watchdog is stopped: a deadline nobody
        would enforce must not pass for one that will.
        """
        with self._cond:
            if self._stopped:
                raise RuntimeError("the watchdog is stopped (its Executor was closed)")
            token = next(self._ids)
            heapq.heappush(self._heap, (deadline, token, callback))
            self._ensure_thread()
            if self._heap[0][1] == token:
                # Sooner than what the thread sleeps until; otherwise it wakes in
                # time anyway, and a run of many hosts spares it one wake-up each.
                self._cond.notify()
            return token

    def cancel(self, token: int) -> None:
        """Forget a scheduled callback."""
        with self._cond:
            self._cancelled.add(token)

    def stop(self) -> None:
        """End the watchdog thread, for good."""
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    now = time.monotonic()
                    while self._heap and self._heap[0][1] in self._cancelled:
                        self._cancelled.discard(heapq.heappop(self._heap)[1])
                    if self._heap and self._heap[0][0] <= now:
                        _, _token, callback = heapq.heappop(self._heap)
                        break
                    timeout = (self._heap[0][0] - now) if self._heap else None
                    self._cond.wait(timeout)
                else:
                    return
            try:
                callback()
            except Exception:  # a watchdog callback must never kill the watchdog
                logger.debug("watchdog callback failed", exc_info=True)

    @contextlib.contextmanager
    def deadline(self, seconds: float | None, callback: Callable[[], None]) -> Iterator[None]:
        """Within the block, run ``callback`` if ``seconds`` pass."""
        if seconds is None:
            yield
            return
        token = self.schedule(time.monotonic() + seconds, callback)
        try:
            yield
        finally:
            self.cancel(token)


# --------------------------------------------------------------------------- credentials


class Credentials:
    """Keys, passphrases and passwords of one run, loaded once and shared by all hosts.

    Parsing a private key costs milliseconds; a fleet of 1,000 hosts sharing one
    key file must not pay it 1,000 times.
    """

    def __init__(
        self,
        *,
        passphrase: str | None = None,
        password: str | None = None,
        use_agent: bool = True,
        passphrase_prompt: Callable[[str], str | None] | None = None,
    ) -> None:
        self._passphrase = passphrase
        self._prompt = passphrase_prompt
        self._has_prompted = False
        self._password = password
        self._use_agent = use_agent
        self._keys: dict[str, paramiko.PKey | None] = {}
        self._errors: dict[str, str] = {}
        self._needs_passphrase: set[str] = set()
        self._agent_keys: tuple[paramiko.AgentKey, ...] | None = None
        self._agent: paramiko.Agent | None = None
        self._lock = threading.Lock()
        self._agent_lock = threading.Lock()

    def __repr__(self) -> str:  # never show secrets
        return f"Credentials(keys={sorted(self._keys)!r})"

    @property
    def password(self) -> str | None:
        """The password for password authentication (``--ask-pass``), if any."""
        return self._password

    def key(self, path: str) -> paramiko.PKey | None:
        """The private key at ``path``, parsed once; None if missing or unreadable."""
        with self._lock:
            if path in self._keys:
                return self._keys[path]
            key = self._load(path)
            if key is None and path in self._needs_passphrase and self._may_prompt():
                # One prompt per run, under the lock: other workers wait for it.
                self._has_prompted = True
                assert self._prompt is not None
                self._passphrase = self._prompt(path)
                del self._errors[path]
                self._needs_passphrase.discard(path)
                key = self._load(path)
            self._keys[path] = key
            return key

    def _may_prompt(self) -> bool:
        return self._prompt is not None and self._passphrase is None and not self._has_prompted

    def _load(self, path: str) -> paramiko.PKey | None:
        try:
            secret = self._passphrase.encode() if self._passphrase is not None else None
            # paramiko wants bytes here whatever its stubs say
            return paramiko.PKey.from_path(path, password=secret)  # type: ignore[arg-type]
        except FileNotFoundError:
            return None
        except (paramiko.PasswordRequiredException, TypeError):
            # PKey.from_path lets cryptography's TypeError ("Key is password-protected")
            # through instead of PasswordRequiredException.
            self._needs_passphrase.add(path)
            self._errors[path] = (
                f"{path} is encrypted; give its passphrase with --key-passphrase-file "
                "(or run on a terminal to be asked)"
            )
        except (paramiko.SSHException, ValueError) as exc:
            if self._passphrase is not None:
                self._errors[path] = f"{path}: wrong passphrase or unreadable key ({exc})"
            else:
                self._errors[path] = f"{path}: unreadable key ({exc})"
        except OSError as exc:
            self._errors[path] = f"{path}: {exc.strerror}"
        return None

    def key_error(self, path: str) -> str | None:
        """Why ``path`` could not be used, if it could not."""
        return self._errors.get(path)

    def agent_keys(self) -> tuple[paramiko.AgentKey, ...]:
        """Keys offered by ssh-agent (``$SSH_AUTH_SOCK``), asked once per run."""
        if not self._use_agent or not os.environ.get("SSH_AUTH_SOCK"):
            return ()
        with self._lock:
            if self._agent_keys is None:
                try:
                    self._agent = paramiko.Agent()
                    keys = tuple(self._agent.get_keys())
                except (paramiko.SSHException, OSError):
                    keys = ()
                for key in keys:
                    _serialise_signing(key, self._agent_lock)
                self._agent_keys = keys
            return self._agent_keys

    def close(self) -> None:
        """Close the agent connection."""
        if self._agent is not None:
            self._agent.close()


def _serialise_signing(key: paramiko.AgentKey, lock: threading.Lock) -> None:
    """Let one thread at a time ask the agent to sign.

    All agent keys share one agent socket, and paramiko writes a request and
    reads its answer without a lock: two hosts signing at once would read each
    other's answers.
    """
    sign = key.sign_ssh_data

    def locked_sign(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return sign(*args, **kwargs)

    key.sign_ssh_data = locked_sign  # type: ignore[method-assign]


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """Run-wide connection settings shared by every session."""

    host_key_policy: str | None = None  # None: the target's StrictHostKeyChecking
    connect_timeout: float | None = None
    keepalive_interval: float | None = None
    keepalive_count_max: int | None = None
    disabled_algorithms: Mapping[str, list[str]] = field(default_factory=dict)


# --------------------------------------------------------------------------- errors


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


# --------------------------------------------------------------------------- session


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


def _private(obj: object) -> Any:
    """paramiko objects seen untyped, for the few private calls it offers no public form of.

    ``_send_user_message`` sends a request paramiko has no method for (the
    "signal" request; "env" with want-reply); ``_event_pending``/``_wait_for_event``
    wait for its answer the way paramiko's own ``exec_command`` does.
    """
    return obj


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
            self._sftp = paramiko.SFTPClient.from_transport(
                self.transport, window_size=_SFTP_WINDOW, max_packet_size=_SFTP_PACKET
            )
            if self._sftp is None:
                raise ConnectError(
                    self.target.name,
                    f"{self.target.address}:{self.target.port} offers no SFTP subsystem",
                )
        return self._sftp

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send_signal(self, channel: paramiko.Channel, name: str) -> None:
        # RFC 4254 6.9 "signal": OpenSSH's sshd delivers it to the command's
        # process group. paramiko has no public call for it.
        message = Message()
        message.add_byte(cMSG_CHANNEL_REQUEST)
        message.add_int(channel.remote_chanid)
        message.add_string("signal")
        message.add_boolean(False)
        message.add_string(name)
        with contextlib.suppress(Exception):
            _private(self.transport)._send_user_message(message)

    def _set_env(self, channel: paramiko.Channel, env: Mapping[str, str]) -> None:
        """Send each variable with want-reply so a refusal is seen, never dropped."""
        for name, value in env.items():
            message = Message()
            message.add_byte(cMSG_CHANNEL_REQUEST)
            message.add_int(channel.remote_chanid)
            message.add_string("env")
            message.add_boolean(True)
            message.add_string(name)
            message.add_string(value)
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
        """A new session channel with large windows and packets (bulk data), nothing started."""
        return self.transport.open_session(
            window_size=_EXEC_WINDOW,
            max_packet_size=_SFTP_PACKET,
            timeout=self.target.connect_timeout,
        )

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
        message = Message()
        message.add_byte(cMSG_CHANNEL_REQUEST)
        message.add_int(channel.remote_chanid)
        message.add_string("exec")
        message.add_boolean(True)
        message.add_string(command)
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
        message = Message()
        message.add_byte(cMSG_CHANNEL_REQUEST)
        message.add_int(channel.remote_chanid)
        message.add_string("pty-req")
        message.add_boolean(True)
        message.add_string("dumb")
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


# --------------------------------------------------------------------------- connect


def host_key_policy_for(target: Target) -> str:
    """The policy ssh_config's ``StrictHostKeyChecking`` asks for, never weaker than accept-new.

    ``yes`` and ``ask`` (there is no one to ask) are strict; ``accept-new`` and
    ``no``/``off`` record unknown keys. A changed key is refused whatever it says:
    unlike ssh with ``no``, remoteops never connects to a host whose key changed.
    """
    value = target.strict_host_key_checking.lower()
    return "accept-new" if value in ("accept-new", "no", "off", "false") else "strict"


def _wait_for(obj: Any, events: int, timeout: float) -> bool:
    """Wait until ``obj`` (a socket or paramiko channel) is ready; True if it is.

    poll(), not select(): a run with 1,000 hosts in flight has descriptors
    beyond select()'s limit of 1024.
    """
    poller = select.poll()
    poller.register(obj, events | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(max(0, int(timeout * 1000))))


def _tcp_connect(
    address: str, port: int, deadline: float, stopped: Callable[[], bool]
) -> socket.socket:
    """``socket.create_connection`` that a deadline or Ctrl-C can stop at any moment.

    Closing a socket from another thread does not reliably wake a blocked
    ``connect()``, so this one waits in 0.2 s slices and checks in between.
    Name resolution is part of the same deadline (remoteops.resolve); a name
    that does not resolve raises ResolveError.
    """
    error: OSError | None = None
    for family, kind, proto, _, addr in resolve(address, port, deadline=deadline, stopped=stopped):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            code = sock.connect_ex(addr)
            while code in (errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK):
                if stopped():
                    raise TimeoutError("connect stopped")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("connect timed out")
                if _wait_for(sock, select.POLLOUT, min(0.2, left)):
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    break
            if code:
                raise OSError(code, os.strerror(code))
            sock.setblocking(True)
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError as exc:
            sock.close()
            if isinstance(exc, TimeoutError):
                raise
            error = exc
    raise error if error is not None else ResolveError(f"cannot resolve {address}: no address")


def _open_socket(
    target: Target, deadline: float, jump: Session | None, stopped: Callable[[], bool]
) -> Any:
    timeout = max(0.1, deadline - time.monotonic())
    if jump is not None:
        return jump.transport.open_channel(
            "direct-tcpip", (target.address, target.port), ("127.0.0.1", 0), timeout=timeout
        )
    if target.proxy_command:
        command = (
            target.proxy_command.replace("%h", shlex.quote(target.address))
            .replace("%p", str(target.port))
            .replace("%r", shlex.quote(target.user))
            .replace("%n", shlex.quote(target.name))
            .replace("%%", "%")
        )
        return paramiko.ProxyCommand(command)
    try:
        return _tcp_connect(target.address, target.port, deadline, stopped)
    except ResolveError as exc:
        # Unreachable, even when the resolver's silence outlasted the deadline:
        # no host was reached, and the message says why.
        raise ConnectError(target.name, f"{exc}; check ansible_host and the DNS") from exc


_EXIT_SIGNAL = "_remoteops_exit_signal"


def _handle_channel_request(channel: paramiko.Channel, message: Message) -> None:
    """paramiko's handler of channel requests, keeping what an "exit-signal" says.

    paramiko ignores "exit-signal" (RFC 4254 6.10: the server's word that the
    command was killed, and by which signal); its name goes on the channel as
    ``SIGKILL``, read by ``Session._collect``. The request is peeked at on a copy, then handled by
    paramiko as before.
    """
    peek = Message(message.get_remainder())
    with contextlib.suppress(Exception):  # malformed: paramiko's to refuse, as before
        if peek.get_text() == "exit-signal":
            peek.get_boolean()  # want-reply, always false
            name = peek.get_text()
            if name.isascii() and name.isalnum() and len(name) <= 16:
                setattr(channel, _EXIT_SIGNAL, f"SIG{name}")
    _private(paramiko.Channel)._handle_request(channel, message)


# What paramiko's Transport._filter_algorithm filters, by kind: each a tuple.
_ALGORITHM_LISTS = {
    "ciphers": "_preferred_ciphers",
    "macs": "_preferred_macs",
    "keys": "_preferred_keys",
    "pubkeys": "_preferred_pubkeys",
    "kex": "_preferred_kex",
    "compression": "_preferred_compression",
}


class _Transport(paramiko.Transport):
    """paramiko's Transport, minus a deadlock during re-keying.

    When the server closes a channel while a key re-exchange is under way (sshd
    re-keys every 1-4 GiB), paramiko's own thread answers the close with
    ``_send_user_message``, which waits for the re-exchange to finish; but that
    same thread is the one that must finish it, so the connection stalls until
    paramiko's 30 s timeout drops it. Seen here on 1 GiB downloads. Such a reply
    is handed to a short-lived thread that waits instead.

    Its packetizer is ``fastio.FastPacketizer`` (bulk channel data without
    paramiko's per-packet copies, see remoteops.fastio) while
    ``fastpaths.enabled()``, else ``fastio.CountingPacketizer`` (paramiko's
    own); both count received packets for ``_Liveness``. Its channels keep
    the signal that killed their command (``_handle_channel_request``).
    """

    _channel_handler_table: ClassVar[dict[int, Callable[..., None]]] = {
        **_private(paramiko.Transport)._channel_handler_table,
        MSG_CHANNEL_REQUEST: _handle_channel_request,
    }

    def __init__(self, sock: Any, **kwargs: Any) -> None:
        fast = fastpaths.enabled()
        self._lists_as_they_are = fast
        kwargs.setdefault(
            "packetizer_class", fastio.FastPacketizer if fast else fastio.CountingPacketizer
        )
        super().__init__(sock, **kwargs)

    def _filter_algorithm(self, type_: str) -> tuple[str, ...]:
        """paramiko's algorithm list of a kind (``preferred_ciphers`` and the like) minus
        ``disabled_algorithms``: the list itself when nothing is disabled.

        paramiko rebuilds it item by item at each of the ~16 reads a connection
        makes (key exchange and authentication), whether or not anything is
        disabled. Its lists are tuples, so handing out the same one is safe.
        """
        name = _ALGORITHM_LISTS.get(type_)
        if name is None or self.disabled_algorithms or not self._lists_as_they_are:
            lists: tuple[str, ...] = _private(paramiko.Transport)._filter_algorithm(self, type_)
            return lists
        preferred: tuple[str, ...] = getattr(self, name)
        return preferred

    def _send_user_message(self, data: Message) -> None:
        if threading.current_thread() is self and not self.clear_to_send.is_set():
            threading.Thread(
                target=_private(paramiko.Transport)._send_user_message,
                args=(self, data),
                name="rekey-deferred-send",
                daemon=True,
            ).start()
            return
        _private(paramiko.Transport)._send_user_message(self, data)

    def _parse_debug(self, m: Message) -> None:
        """paramiko's handler of SSH_MSG_DEBUG, without formatting what nobody logs.

        sshd sends one at every publickey login ("key options: ..."), and
        paramiko escapes it a byte at a time (``util.safe_string``, a few
        Python calls per byte) before its logger drops the line: about 0.1 ms
        of CPU per host, unless paramiko's DEBUG lines are wanted (``--debug``).
        """
        if fastpaths.enabled() and not self.logger.isEnabledFor(logging.DEBUG):
            return
        _private(paramiko.Transport)._parse_debug(self, m)


def _prefer_aead_ciphers(transport: paramiko.Transport) -> None:
    """Put AES-GCM ahead of paramiko's default AES-CTR + HMAC, when paramiko offers it."""
    options = transport.get_security_options()
    current = list(options.ciphers)
    first = [c for c in _PREFERRED_CIPHERS if c in current]
    options.ciphers = tuple(first + [c for c in current if c not in first])


def _preferred_key_types(transport: paramiko.Transport, known: list[str]) -> None:
    """Ask first for host key types known_hosts holds for this host, as OpenSSH does."""
    if not known:
        return
    options = transport.get_security_options()
    current = list(options.key_types)
    wanted: list[str] = []
    for key_type in known:
        aliases = [key_type]
        if key_type == "ssh-rsa":
            aliases = ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"]
        wanted += [a for a in aliases if a in current and a not in wanted]
    if wanted:
        options.key_types = tuple(wanted + [t for t in current if t not in wanted])


def connect(
    target: Target,
    *,
    store: HostKeyStore,
    credentials: Credentials,
    settings: SessionSettings,
    watchdog: Watchdog,
    jump: Session | None = None,
    cancel: threading.Event | None = None,
) -> Session:
    """Connect, verify the host key, authenticate; raise a HostError subclass on failure.

    The whole sequence must finish within the target's connect timeout; the
    watchdog closes the socket when it passes, whatever paramiko is waiting for.
    Setting ``cancel`` (Ctrl-C) stops it the same way within 0.2 s and raises
    InterruptedHostError.
    """
    timeout = settings.connect_timeout or target.connect_timeout
    start = time.monotonic()
    deadline = start + timeout
    expired = threading.Event()
    interrupted = threading.Event()
    holder: dict[str, Any] = {}

    def abort() -> None:
        for obj in (holder.get("transport"), holder.get("sock")):
            if obj is not None:
                with contextlib.suppress(Exception):
                    obj.close()

    def on_deadline() -> None:
        expired.set()
        abort()

    def watch_cancel() -> None:
        if cancel is None or expired.is_set() or holder.get("done"):
            return
        if cancel.is_set():
            interrupted.set()
            abort()
        else:
            holder["cancel_token"] = watchdog.schedule(time.monotonic() + 0.2, watch_cancel)

    if cancel is not None:
        if cancel.is_set():
            raise InterruptedHostError(target.name, "interrupted before connecting")
        holder["cancel_token"] = watchdog.schedule(time.monotonic() + 0.2, watch_cancel)
    try:
        return _connect(
            target,
            store=store,
            credentials=credentials,
            settings=settings,
            watchdog=watchdog,
            jump=jump,
            cancel=cancel,
            holder=holder,
            deadline=deadline,
            timeout=timeout,
            on_deadline=on_deadline,
            expired=expired,
            interrupted=interrupted,
        )
    except HostError:
        if interrupted.is_set():
            raise InterruptedHostError(target.name, "interrupted while connecting") from None
        raise
    finally:
        holder["done"] = True
        if "cancel_token" in holder:
            watchdog.cancel(holder["cancel_token"])


def _connect(
    target: Target,
    *,
    store: HostKeyStore,
    credentials: Credentials,
    settings: SessionSettings,
    watchdog: Watchdog,
    jump: Session | None,
    cancel: threading.Event | None,
    holder: dict[str, Any],
    deadline: float,
    timeout: float,
    on_deadline: Callable[[], None],
    expired: threading.Event,
    interrupted: threading.Event,
) -> Session:
    start = deadline - timeout

    def stopped() -> bool:
        return expired.is_set() or interrupted.is_set()

    with (
        watchdog.deadline(timeout, on_deadline),
        map_errors(target, phase="connection", deadline_passed=expired.is_set),
    ):
        sock = _open_socket(target, deadline, jump, stopped)
        holder["sock"] = sock
        transport = _Transport(sock, disabled_algorithms=dict(settings.disabled_algorithms) or None)
        holder["transport"] = transport
        remaining = max(0.1, timeout - (time.monotonic() - start))
        transport.banner_timeout = remaining
        transport.handshake_timeout = remaining
        transport.auth_timeout = remaining
        _prefer_aead_ciphers(transport)
        _preferred_key_types(
            transport,
            store.known_key_types(target.address, target.port, alias=target.host_key_alias),
        )
        try:
            transport.start_client(timeout=remaining)
            if stopped():
                raise TimeoutError
            key = transport.get_remote_server_key()
            verify_host_key(
                store,
                target.address,
                target.port,
                key,
                settings.host_key_policy or host_key_policy_for(target),  # type: ignore[arg-type]
                alias=target.host_key_alias,
            )
            _authenticate(transport, target, credentials)
            if stopped():
                raise TimeoutError
        except BaseException:
            transport.close()
            with contextlib.suppress(Exception):
                sock.close()
            raise
    interval = (
        settings.keepalive_interval
        if settings.keepalive_interval is not None
        else float(target.server_alive_interval or DEFAULT_KEEPALIVE_INTERVAL)
    )
    count = (
        settings.keepalive_count_max
        if settings.keepalive_count_max is not None
        else (target.server_alive_count_max or DEFAULT_KEEPALIVE_COUNT)
    )
    if interval:
        # Keeps an idle connection alive through NAT; liveness while a command
        # runs is checked by Session.exec with replies it waits for.
        transport.set_keepalive(max(1, int(interval)))
    return Session(
        target,
        transport,
        sock,
        watchdog,
        jump,
        keepalive_interval=interval,
        keepalive_count_max=count,
    )


class _PipelinedAuthHandler(AuthHandler):
    """Sends the userauth request right behind the service request.

    paramiko waits a round trip for SERVICE_ACCEPT before it signs and sends
    the first publickey request; sshd handles the two in order anyway, so
    sending both at once saves one round trip per host (100 ms on a 100 ms
    link). Not for RSA keys: their signature algorithm depends on the
    server-sig-algs extension, which may not have arrived yet.
    """

    _skip_accept = False

    def _request_auth(self) -> None:
        # Set before sending: on loopback the real SERVICE_ACCEPT can be handled
        # by the transport thread while this thread is still signing.
        self._skip_accept = self.auth_method == "publickey"
        super()._request_auth()  # type: ignore[misc]
        if self.auth_method == "publickey":
            accept = Message()
            accept.add_string("ssh-userauth")
            accept.rewind()
            super()._parse_service_accept(accept)  # type: ignore[misc]

    def _parse_service_accept(self, m: Message) -> None:
        if self._skip_accept:  # the request it accepts was already sent
            self._skip_accept = False
            return
        super()._parse_service_accept(m)  # type: ignore[misc]


def _auth_publickey_pipelined(transport: paramiko.Transport, user: str, key: paramiko.PKey) -> None:
    """``Transport.auth_publickey`` with the pipelined handler; raises on failure."""
    if not transport.is_active() or not _private(transport).initial_kex_done:
        raise paramiko.SSHException("No existing session")
    event = threading.Event()
    handler = _PipelinedAuthHandler(transport)
    _private(transport).auth_handler = handler
    handler.auth_publickey(user, key, event)
    handler.wait_for_response(event)


def _authenticate(transport: paramiko.Transport, target: Target, credentials: Credentials) -> None:
    """Try agent keys and identity files, then a password, as OpenSSH orders them."""
    user = target.user
    tried: list[str] = []
    problems: list[str] = []
    file_keys: list[tuple[str, paramiko.PKey]] = []
    for path in target.identity_files:
        key = credentials.key(path)
        if key is not None:
            file_keys.append((path, key))
        elif credentials.key_error(path):
            problems.append(credentials.key_error(path) or path)
    offered: list[tuple[str, paramiko.PKey]] = []
    agent = credentials.agent_keys()
    if target.identities_only:
        blobs = {key.asbytes() for _, key in file_keys}
        offered += [("agent", k) for k in agent if k.asbytes() in blobs]
    else:
        offered += [("agent", k) for k in agent]
    seen = {key.asbytes() for _, key in offered}
    offered += [(p, k) for p, k in file_keys if k.asbytes() not in seen]
    for index, (label, key) in enumerate(offered):
        tried.append(label)
        try:
            if index == 0 and "rsa" not in key.get_name() and fastpaths.enabled():
                _auth_publickey_pipelined(transport, user, key)
            else:
                transport.auth_publickey(user, key)
        except paramiko.AuthenticationException:
            continue
        if transport.is_authenticated():
            return
    password = target.password or credentials.password
    if password:
        tried.append("password")
        with contextlib.suppress(paramiko.AuthenticationException):
            transport.auth_password(user, password)
        if transport.is_authenticated():
            return
    detail = f"tried {', '.join(tried)}" if tried else "no key or password to offer"
    if problems:
        detail += "; " + "; ".join(problems)
    raise AuthenticationError(
        target.name,
        f"authentication as {user!r} on {target.address}:{target.port} failed ({detail}); "
        "check -u/--key or ansible_user/ansible_ssh_private_key_file",
    )
