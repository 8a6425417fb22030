"""The fast paths around paramiko: the one switch that turns them off, and every
paramiko internal remoteops relies on, in one list.

paramiko has no public form for some of what remoteops does, so a few places
reach into its internals: names that start with ``_`` (``_send_user_message``,
the packetizer's ``_Packetizer__...`` cipher state) and attributes its
documentation does not promise (a channel's ``out_window_size``). Each one is
in ``PARAMIKO_INTERNALS`` below; ``tests/unit/test_fastpaths.py`` checks every
one against the installed paramiko and that the code uses no other, and
pyproject.toml pins paramiko to the tested range (``>=5.1,<6``). Two kinds:

* **fast paths** (``fast=True``): speed only, with paramiko's public way as
  the fallback: ``fastio.FastPacketizer`` (bulk data without paramiko's
  per-packet work), ``fastio.send_all``/``read_chunks`` (the byte streams of
  ``put``/``get``: a batch of small files through ``tar``, large files through
  ``cat``), the publickey request sent without waiting for the server's
  service accept, packets written without polling the socket first
  (``FastPacketizer.write_all``), a server's debug message left unformatted
  when nobody logs it (``session.transport._Transport._parse_debug``) and the algorithm
  lists read as they are when none is disabled (``_filter_algorithm``). If the installed
  paramiko lacks any of their names, :func:`enabled` is False: every fast path
  is off for the process, the debug log says once which names are missing, and
  the slower public paths do the same work with the same guarantees.
* **needed** (``fast=False``): features paramiko offers no public call for
  (the ``signal``, ``env`` and ``pty-req`` requests, exit signals, pipelined
  SFTP requests, the re-key deadlock fix). If one is missing, importing
  ``remoteops.session`` fails at once with an ImportError naming it
  (:func:`require`): remoteops must not run half-working.

``REMOTEOPS_NO_FAST_PATHS=1`` turns every fast path off, whatever paramiko
offers (docs/environment.md): an escape hatch should one misbehave with some
server, and how the test suite runs the transfer tests a second time. It also
turns off the grep prefilter of the analyzers (``remoteops.analysis.prefilter``),
which reads it through :mod:`remoteops.fastswitch` (no paramiko import there).
Code that chooses a fast path asks :func:`enabled` at that moment.
"""

from __future__ import annotations

import functools
import logging
import socket
from dataclasses import dataclass
from typing import Any

import paramiko
from paramiko.auth_handler import AuthHandler
from paramiko.packet import Packetizer

from remoteops.fastswitch import ENV_SWITCH, switched_off

__all__ = [
    "ENV_SWITCH",
    "PARAMIKO_INTERNALS",
    "SUPPORTED_PARAMIKO",
    "Internal",
    "enabled",
    "missing",
    "require",
]

logger = logging.getLogger(__name__)

SUPPORTED_PARAMIKO = ">=5.1,<6"


@dataclass(frozen=True, slots=True)
class Internal:
    """One paramiko internal remoteops uses: ``owner.name``, and what for."""

    owner: str  # Transport, Channel, Packetizer, AuthHandler, SFTPClient or SFTPAttributes
    name: str
    fast: bool  # True: a fast path needs it; False: remoteops needs it
    used_for: str

    def __str__(self) -> str:
        return f"{self.owner}.{self.name}"


# paramiko keeps a packetizer's cipher state in "private" (name-mangled) attributes.
_PACKETIZER_STATE = tuple(
    f"_Packetizer__{name}"
    for name in (
        "aead_in",
        "aead_out",
        "block_engine_in",
        "block_engine_out",
        "block_size_in",
        "block_size_out",
        "closed",
        "compress_engine_in",
        "compress_engine_out",
        "dump_packets",
        "etm_in",
        "iv_in",
        "iv_out",
        "keepalive_last",
        "mac_size_in",
        "need_rekey",
        "received_bytes",
        "received_bytes_overflow",
        "received_packets",
        "received_packets_overflow",
        "remainder",
        "sent_bytes",
        "sent_packets",
        "sequence_number_in",
        "sequence_number_out",
        "write_lock",
    )
)

# (owner, names, fast, what for): one row per use.
_USES: tuple[tuple[str, tuple[str, ...], bool, str], ...] = (
    # fastio.FastPacketizer: paramiko's wire format, sequence numbers, re-key
    # accounting and keepalives, with its own reads, decrypts and writes.
    (
        "Packetizer",
        (
            *_PACKETIZER_STATE,
            "_initial_kex_done",
            "_trigger_rekey",
            "_check_keepalive",
            "need_rekey",
            "handshake_timed_out",
            "REKEY_BYTES",
            "REKEY_PACKETS",
            "REKEY_BYTES_OVERFLOW_MAX",
            "REKEY_PACKETS_OVERFLOW_MAX",
        ),
        True,
        "fastio.FastPacketizer",
    ),
    # fastio.send_all / read_chunks / attach: the channel's window, the
    # transport's send lock, the channel's buffer replaced by a ChunkPipe.
    (
        "Channel",
        (
            "_check_add_window",
            "in_buffer",
            "lock",
            "out_buffer_cv",
            "out_max_packet_size",
            "out_window_size",
            "eof_sent",
            "remote_chanid",
        ),
        True,
        "fastio streams",
    ),
    (
        "Transport",
        ("clear_to_send_lock", "clear_to_send_timeout", "active", "packetizer"),
        True,
        "fastio streams",
    ),
    # session.transport._PipelinedAuthHandler: the publickey request right behind the
    # service request (one round trip less per host).
    (
        "AuthHandler",
        ("_request_auth", "_parse_service_accept", "auth_method"),
        True,
        "pipelined publickey authentication",
    ),
    ("Transport", ("initial_kex_done", "auth_handler"), True, "pipelined publickey authentication"),
    # session.transport._Transport: a debug message not escaped for a logger that drops it.
    ("Transport", ("_parse_debug",), True, "SSH_MSG_DEBUG unformatted unless logged"),
    ("Transport", ("_active_check_timeout",), False, "the transport thread's socket poll"),
    # session.transport._Transport: algorithm lists handed out as they are when none is disabled.
    (
        "Transport",
        (
            "_filter_algorithm",
            "_preferred_ciphers",
            "_preferred_macs",
            "_preferred_keys",
            "_preferred_pubkeys",
            "_preferred_kex",
            "_preferred_compression",
        ),
        True,
        "algorithm lists not filtered again when nothing is disabled",
    ),
    # session.session, session.channel: requests paramiko sends no other way, and their replies.
    (
        "Transport",
        ("_send_user_message", "clear_to_send", "_channel_handler_table"),
        False,
        "channel requests (exec, env, pty-req, signal), keepalives, "
        "exit signals, the re-key deadlock fix",
    ),
    (
        "Channel",
        ("_event_pending", "_wait_for_event", "_handle_request"),
        False,
        "channel requests with want-reply, exit signals",
    ),
    # session.session.Session.close: a jump host's channel closed from the far side.
    ("Channel", ("closed",), False, "closing a session behind a jump host"),
    # transfer.sftp._Pipe: many SFTP requests in flight; transfer.get._listdir: listings
    # with undecodable names.
    (
        "SFTPClient",
        ("_async_request", "_read_response", "_request"),
        False,
        "pipelined SFTP requests",
    ),
    ("SFTPAttributes", ("_from_msg",), False, "SFTP listings read as bytes"),
)

PARAMIKO_INTERNALS: tuple[Internal, ...] = tuple(
    Internal(owner, name, fast, used_for)
    for owner, names, fast, used_for in _USES
    for name in names
)
"""Every paramiko internal the code uses (tests/unit/test_fastpaths.py keeps this complete)."""

_CLASSES: dict[str, Any] = {
    "Transport": paramiko.Transport,
    "Channel": paramiko.Channel,
    "Packetizer": Packetizer,
    "AuthHandler": AuthHandler,
    "SFTPClient": paramiko.SFTPClient,
    "SFTPAttributes": paramiko.SFTPAttributes,
}


def _samples() -> dict[str, Any]:
    """A never-started instance of each class whose instance attributes are listed.

    Those are set in ``__init__``, so only an instance shows them; the
    Transport gets one end of a socket pair and never touches the network.
    """
    ours, theirs = socket.socketpair()
    try:
        transport = paramiko.Transport(ours)
        return {
            "Transport": transport,
            "Channel": paramiko.Channel(0),
            "Packetizer": Packetizer(ours),
            "AuthHandler": AuthHandler(transport),
        }
    finally:
        ours.close()
        theirs.close()


def missing(internals: tuple[Internal, ...] = PARAMIKO_INTERNALS) -> list[Internal]:
    """The listed internals the installed paramiko lacks (on the class or a fresh instance)."""
    samples = _samples()
    return [
        item
        for item in internals
        if not hasattr(samples.get(item.owner, _CLASSES[item.owner]), item.name)
    ]


@functools.cache
def _missing_once() -> tuple[Internal, ...]:
    return tuple(missing(PARAMIKO_INTERNALS))


def require() -> None:
    """Raise ImportError naming every internal remoteops needs that this paramiko lacks."""
    needed = [item for item in _missing_once() if not item.fast]
    if needed:
        names = ", ".join(f"{item} ({item.used_for})" for item in needed)
        raise ImportError(
            f"paramiko {paramiko.__version__} lacks {names}, which remoteops needs; "
            f"remoteops works with paramiko {SUPPORTED_PARAMIKO}: "
            f"pip install 'paramiko{SUPPORTED_PARAMIKO}'"
        )


@functools.cache
def _lacking_said() -> bool:
    """Whether a fast path's internals are missing; the debug log says which, once."""
    lacking = [item for item in _missing_once() if item.fast]
    if lacking:
        logger.debug(
            "paramiko %s lacks %s: every fast path is off (remoteops is tested with paramiko %s)",
            paramiko.__version__,
            ", ".join(f"{item} ({item.used_for})" for item in lacking),
            SUPPORTED_PARAMIKO,
        )
    return bool(lacking)


def enabled() -> bool:
    """True when the fast paths may be taken: not switched off, and paramiko has their internals.

    ``REMOTEOPS_NO_FAST_PATHS`` set to anything but empty, ``0``, ``false``,
    ``no`` or ``off`` switches them off. Read at each call, so one process
    (a test) can compare both ways.
    """
    if switched_off():
        return False
    return not _lacking_said()
