"""paramiko as remoteops drives it: the ``Transport`` subclass (its packetizer,
exit signals, algorithm lists, a re-keying deadlock avoided), the pipelined
publickey authentication, the few private paramiko calls, and ``poll()``.

Every private paramiko name used here is listed in ``remoteops.fastpaths``;
importing this module checks they exist (``fastpaths.require()``).
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
from collections.abc import Callable
from typing import Any, ClassVar

import paramiko
from paramiko.auth_handler import AuthHandler
from paramiko.common import MSG_CHANNEL_REQUEST
from paramiko.message import Message

from remoteops import fastio, fastpaths

# A paramiko without the internals remoteops needs fails here, naming them.
fastpaths.require()


def _private(obj: object) -> Any:
    """paramiko objects seen untyped, for the few private calls it offers no public form of.

    ``_send_user_message`` sends a request paramiko has no method for (the
    "signal" request; "env" with want-reply); ``_event_pending``/``_wait_for_event``
    wait for its answer the way paramiko's own ``exec_command`` does.
    """
    return obj


def _wait_for(obj: Any, events: int, timeout: float) -> bool:
    """Wait until ``obj`` (a socket or paramiko channel) is ready; True if it is.

    poll(), not select(): a run with 1,000 hosts in flight has descriptors
    beyond select()'s limit of 1024.
    """
    poller = select.poll()
    poller.register(obj, events | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(max(0, int(timeout * 1000))))


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

    # How long paramiko's thread blocks in recv() before it looks at its flags
    # (closed, re-key, keepalive due): paramiko's 0.1 s wakes every idle or
    # waiting connection 10 times a second, each wake-up a GIL hand-off among
    # hundreds of threads; at the default --forks a host waits ~2.5 s on a busy
    # machine. 1 s against 0.1 s, 300 lab hosts, 5 alternating rounds, medians:
    # -f 256 4.23 against 4.69 ms of client CPU per host (-10%; voluntary
    # context switches 45k against 56k), -f 50 3.85 against 3.72 (noise).
    # Nothing waits for it: close() returns at once and the worker's own waits
    # see the transport inactive; keepalives are whole seconds apart.
    _active_check_timeout = 1.0

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
