"""The pure parts of the bulk-data fast path: ChunkPipe and the stream helpers of transfer."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path

import paramiko
import pytest
from paramiko.buffered_pipe import PipeTimeout
from paramiko.message import Message
from paramiko.packet import Packetizer

from remoteops import fastio
from remoteops.errors import TransferError
from remoteops.fastio import ChunkPipe
from remoteops.transfer import SourceFile
from remoteops.transfer.streams import _pwrite_all, _source_blocks, _truncate_chunks


def test_chunk_pipe_hands_out_whole_chunks_up_to_the_limit_and_splits_the_last() -> None:
    pipe = ChunkPipe()
    data = memoryview(b"abcdefghij")
    pipe.feed(data[:4])
    pipe.feed(data[4:7])
    pipe.feed(b"hij")
    assert len(pipe) == 10
    assert pipe.read_ready()
    first = pipe.take(5, timeout=0)
    assert first is not None
    assert [bytes(c) for c in first] == [b"abcd", b"e"]
    assert len(pipe) == 5
    assert pipe.read(100) == b"fghij"
    assert not pipe.read_ready()


def test_chunk_pipe_timeout_eof_and_wakeup() -> None:
    pipe = ChunkPipe()
    assert pipe.take(10, timeout=0.01) is None
    with pytest.raises(PipeTimeout):
        pipe.read(10, timeout=0.01)
    threading.Timer(0.05, pipe.feed, args=(b"late",)).start()
    start = time.monotonic()
    got = pipe.take(10, timeout=5)
    assert got is not None
    assert b"".join(got) == b"late"
    assert time.monotonic() - start < 2
    pipe.feed(b"tail")
    pipe.close()
    assert pipe.read(10) == b"tail"  # data fed before EOF is still read
    assert pipe.take(10, timeout=5) == []
    assert pipe.read(10) == b""


def test_chunk_pipe_sets_and_clears_its_event() -> None:
    pipe = ChunkPipe()
    event = threading.Event()
    pipe.set_event(event)
    assert not event.is_set()
    pipe.feed(b"x")
    assert event.is_set()
    pipe.read(1)
    assert not event.is_set()
    pipe.close()
    assert event.is_set()


def test_truncate_chunks_keeps_a_prefix() -> None:
    chunks: list[bytes | memoryview] = [b"abc", memoryview(b"defg"), b"hi"]
    assert b"".join(_truncate_chunks(chunks, 5)) == b"abcde"
    assert b"".join(_truncate_chunks(chunks, 0)) == b""
    assert b"".join(_truncate_chunks(chunks, 9)) == b"abcdefghi"


def test_pwrite_all_writes_many_chunks_at_an_offset(tmp_path: Path) -> None:
    path = tmp_path / "out"
    path.write_bytes(b"0123456789")
    pieces = [os.urandom(n) for n in (1, 0, 70_000, 3, 1500)] * 300  # more than IOV_MAX
    fd = os.open(path, os.O_RDWR)
    try:
        _pwrite_all(fd, list(pieces), 4)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"0123" + b"".join(pieces)


def _source(path: Path, *, in_memory: bool) -> SourceFile:
    data = path.read_bytes()
    return SourceFile(
        path=path,
        relative=path.name,
        size=len(data),
        mode=0o644,
        mtime=0,
        data=data if in_memory else None,
    )


@pytest.mark.parametrize("in_memory", [True, False])
@pytest.mark.parametrize("size", [0, 1, 8 * 1024 * 1024, 8 * 1024 * 1024 + 7, 20_000_001])
def test_source_blocks_cover_the_file_from_any_offset(
    tmp_path: Path, size: int, in_memory: bool
) -> None:
    path = tmp_path / "src"
    data = os.urandom(size)
    path.write_bytes(data)
    src = _source(path, in_memory=in_memory)
    for start in {0, size // 2, size}:
        got = b"".join(bytes(block) for block in _source_blocks(src, start))
        assert got == data[start:]


def test_source_blocks_notice_a_file_that_shrank(tmp_path: Path) -> None:
    path = tmp_path / "src"
    path.write_bytes(os.urandom(1000))
    src = _source(path, in_memory=False)
    path.write_bytes(b"short")
    with pytest.raises(TransferError, match="shrank"):
        for _ in _source_blocks(src, 0):
            pass


def test_the_handshake_timeout_needs_no_thread_and_keeps_paramikos_rules() -> None:
    """paramiko's Packetizer starts a Timer thread per connection for its handshake
    timeout; FastPacketizer keeps a deadline instead, with the same answers."""
    ours, theirs = socket.socketpair()
    try:
        packetizer = fastio.FastPacketizer(ours)
        threads = threading.active_count()
        assert packetizer.handshake_timed_out() is False  # not started
        packetizer.start_handshake(0.05)
        packetizer.start_handshake(60)  # started once: a second call changes nothing
        assert threading.active_count() == threads
        assert packetizer.handshake_timed_out() is False
        time.sleep(0.1)
        assert packetizer.handshake_timed_out() is True
        packetizer.complete_handshake()
        assert packetizer.handshake_timed_out() is False
        packetizer.start_handshake(0)  # a re-key never restarts it
        assert packetizer.handshake_timed_out() is False
    finally:
        ours.close()
        theirs.close()


def test_write_all_writes_everything_in_order_even_past_a_full_send_buffer() -> None:
    """The first write goes straight to the socket; what the kernel does not take at
    once (a full buffer) goes through paramiko's wait-and-retry loop."""
    ours, theirs = socket.socketpair()
    ours.settimeout(0.1)  # as paramiko's Transport leaves it: non-blocking underneath
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    got = bytearray()
    data = os.urandom(2 * 1024 * 1024)

    def drain() -> None:
        theirs.settimeout(10)
        while len(got) < len(data) + 5:
            time.sleep(0.001)
            chunk = theirs.recv(65536)
            if not chunk:
                return
            got.extend(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        packetizer = fastio.FastPacketizer(ours)
        packetizer.write_all(b"small")
        packetizer.write_all(data)
        reader.join(timeout=30)
        assert bytes(got) == b"small" + data
    finally:
        ours.close()
        theirs.close()
        reader.join(timeout=10)


def test_write_all_to_a_closed_connection_raises_eoferror_as_paramiko_does() -> None:
    ours, theirs = socket.socketpair()
    ours.settimeout(0.1)
    theirs.close()
    try:
        packetizer = fastio.FastPacketizer(ours)
        with pytest.raises(EOFError):
            packetizer.write_all(b"x" * 1000)
        ours.close()
        with pytest.raises(EOFError):  # closed here: no descriptor to write to
            packetizer.write_all(b"x")
    finally:
        ours.close()


def _debug_message(text: bytes) -> Message:
    message = Message()
    message.add_boolean(False)  # always_display
    message.add_string(text)
    message.add_string("")  # language
    message.rewind()
    return message


@pytest.mark.parametrize("switched_off", [False, True])
def test_a_server_debug_message_is_escaped_only_when_someone_logs_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, switched_off: bool
) -> None:
    """sshd sends SSH_MSG_DEBUG at every publickey login; paramiko escapes it byte by
    byte before its logger drops it. remoteops skips that unless paramiko logs DEBUG
    (``--debug``), or the fast paths are off (paramiko's own handler, as before)."""
    from remoteops import fastpaths
    from remoteops.session import transport as session

    monkeypatch.setenv(fastpaths.ENV_SWITCH, "1" if switched_off else "")
    escaped: list[bytes] = []
    real = paramiko.util.safe_string

    def counting(text: bytes) -> bytes:
        escaped.append(text)
        return real(text)  # type: ignore[no-any-return]

    monkeypatch.setattr(paramiko.util, "safe_string", counting)
    ours, theirs = socket.socketpair()
    try:
        transport = session._Transport(ours)
        logger = logging.getLogger("paramiko.transport")
        with caplog.at_level(logging.WARNING, logger="paramiko.transport"):
            transport._parse_debug(_debug_message(b"key options: pty\x01"))
        assert escaped == ([b"key options: pty\x01"] if switched_off else [])
        assert not caplog.records
        escaped.clear()
        with caplog.at_level(logging.DEBUG, logger="paramiko.transport"):
            assert logger.isEnabledFor(logging.DEBUG)
            transport._parse_debug(_debug_message(b"key options: pty\x01"))
        assert escaped == [b"key options: pty\x01"]
        assert [r.getMessage() for r in caplog.records] == ["Debug msg: b'key options: pty%01'"]
    finally:
        ours.close()
        theirs.close()


@pytest.mark.parametrize("switched_off", [False, True])
@pytest.mark.parametrize("disabled", [None, {"ciphers": ["aes128-ctr"], "keys": ["ssh-rsa"]}])
def test_the_algorithm_lists_are_paramikos_whatever_is_disabled_or_reordered(
    monkeypatch: pytest.MonkeyPatch, switched_off: bool, disabled: dict[str, list[str]] | None
) -> None:
    """_Transport hands out paramiko's algorithm lists as they are when nothing is
    disabled: every list equals what paramiko's own filter gives, also after the
    lists were reordered through SecurityOptions (nothing stale)."""
    from remoteops import fastpaths
    from remoteops.session import connection
    from remoteops.session import transport as session

    monkeypatch.setenv(fastpaths.ENV_SWITCH, "1" if switched_off else "")
    ours, theirs = socket.socketpair()
    try:
        transport = session._Transport(ours, disabled_algorithms=disabled)
        plain = paramiko.Transport(theirs, disabled_algorithms=disabled)

        def lists(t: paramiko.Transport) -> list[tuple[str, ...]]:
            return [
                t.preferred_ciphers,
                t.preferred_macs,
                t.preferred_keys,
                t.preferred_pubkeys,
                t.preferred_kex,
                t.preferred_compression,
            ]

        assert lists(transport) == lists(plain)
        assert ("aes128-ctr" in transport.preferred_ciphers) is (disabled is None)
        for t in (transport, plain):
            connection._prefer_aead_ciphers(t)
            connection._preferred_key_types(t, ["ecdsa-sha2-nistp256"])
        assert lists(transport) == lists(plain)
        assert transport.preferred_ciphers[0] == "aes128-gcm@openssh.com"
        assert transport.preferred_keys[0] == "ecdsa-sha2-nistp256"
    finally:
        ours.close()
        theirs.close()


def _plain_packet(payload: bytes, block: int = 8) -> bytes:
    """An SSH packet before any key is in use: length, padding length, payload, padding."""
    padding = block - (5 + len(payload)) % block
    if padding < 4:
        padding += block
    body = bytes([padding]) + payload + bytes(range(padding))
    return len(body).to_bytes(4, "big") + body


def _read_all_with(
    cls: type[Packetizer], chunks: list[bytes], banner_rest: bytes, count: int
) -> list[tuple[int, bytes, int]]:
    ours, theirs = socket.socketpair()
    ours.settimeout(0.1)
    try:
        packetizer = cls(ours)
        packetizer._Packetizer__remainder = banner_rest  # type: ignore[attr-defined]
        for chunk in chunks:
            theirs.sendall(chunk)
        got = []
        for _ in range(count):
            ptype, message = packetizer.read_message()
            got.append((ptype, message.asbytes(), message.seqno))
        return got
    finally:
        ours.close()
        theirs.close()


def test_packets_before_the_first_key_read_as_paramiko_reads_them() -> None:
    """FastPacketizer reads the key exchange's packets with one recv for all that has
    arrived; what it returns is what paramiko's Packetizer returns for the same bytes."""
    packets = [_plain_packet(bytes([20]) + b"k" * 300), _plain_packet(bytes([31]) + b"r" * 77)]
    packets.append(_plain_packet(bytes([21])))
    stream = b"".join(packets)
    # Part of the first packet came with the banner; the rest arrives in odd pieces.
    banner_rest, rest = stream[:11], stream[11:]
    chunks = [rest[:3], rest[3:200], rest[200:]]
    expected = _read_all_with(Packetizer, chunks, banner_rest, 3)
    assert [p[0] for p in expected] == [20, 31, 21]
    assert [p[2] for p in expected] == [0, 1, 2]
    assert _read_all_with(fastio.FastPacketizer, chunks, banner_rest, 3) == expected
    assert _read_all_with(fastio.FastPacketizer, [stream], b"", 3) == expected


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ((13).to_bytes(4, "big") + bytes(13), "Invalid packet blocking"),
        ((12).to_bytes(4, "big") + bytes([11]) + bytes(11), "Invalid packet padding"),
        ((64 * 1024 * 1024).to_bytes(4, "big") + bytes(4), "Invalid packet length"),
    ],
)
def test_a_broken_packet_before_the_first_key_is_refused(raw: bytes, error: str) -> None:
    ours, theirs = socket.socketpair()
    ours.settimeout(0.1)
    try:
        theirs.sendall(raw)
        with pytest.raises(paramiko.SSHException, match=error):
            fastio.FastPacketizer(ours).read_message()
    finally:
        ours.close()
        theirs.close()
