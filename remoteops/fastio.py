"""Bulk data over paramiko at close to the speed of the cipher.

paramiko's cost for bulk data is per packet and per copy, in Python: the
transport thread reads each packet with two ``recv`` calls, builds a
``Message``, copies the data into an ``array`` (``BufferedPipe``), and the
reader copies it out twice more; sending builds a ``Message``, waits on two
locks and an event and makes several copies per 32 KiB packet (OpenSSH's
largest for a session channel). With AES-GCM the cipher itself costs little
(about 10 GB/s here), so that overhead is most of a transfer's CPU time.

``FastPacketizer`` (used by ``session.transport._Transport``) keeps paramiko's wire
format, sequence numbers, re-key accounting and keepalives, and adds, only
while an AES-GCM key is in use on a plain socket:

* receiving: large ``recv_into`` reads into one buffer, one ``decrypt`` per
  packet straight from it, and ``CHANNEL_DATA`` for a channel registered with
  ``attach`` handed to its ``ChunkPipe`` as a memoryview of the decrypted
  packet: no ``Message``, no array, no further copy, and no trip through
  ``Transport.run`` for each packet;
* sending: ``send_all`` frames, encrypts and writes many ``CHANNEL_DATA``
  packets at once (one ``sendmsg`` per batch) within the channel's window.

Whatever the cipher, every packet is written with one system call when the
kernel takes it whole (``FastPacketizer.write_all``), not after a ``poll``.

Anything else (other ciphers, compression, a ProxyJump channel or
ProxyCommand as the socket, every other message) takes paramiko's own path.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import paramiko
from paramiko.buffered_pipe import PipeTimeout
from paramiko.common import cMSG_CHANNEL_WINDOW_ADJUST
from paramiko.message import Message
from paramiko.packet import NeedRekeyException, Packetizer

__all__ = [
    "ChunkPipe",
    "CountingPacketizer",
    "FastPacketizer",
    "attach",
    "detach",
    "read_chunks",
    "send_all",
    "skip_written",
]

_MSG_CHANNEL_DATA = 94
_GCM_TAG = 16
_RECV_BUFFER = 256 * 1024  # one recv_into takes what the kernel has, up to this (stays in cache)
# Until a bulk channel is attached: a run of 1,000 hosts holds 1,000 of these.
_IDLE_BUFFER = 16 * 1024
_MAX_PACKET = 4 * 1024 * 1024  # a larger length field is a broken stream, not a packet
_SEND_BATCH = 1024 * 1024  # bytes framed and written per sendmsg
_IOV_MAX = 1024
_HEADER = struct.Struct(">IBBII")  # length, padding, type, channel, data length

Chunk = bytes | memoryview


class ChunkPipe:
    """paramiko's ``BufferedPipe`` interface over a deque of chunks, never copied.

    The transport thread appends the data of each packet; the reader takes
    whole chunks (``take``) and writes them out with one ``pwritev``.
    ``read`` (what ``Channel.recv`` calls) still works, for any other reader.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._chunks: deque[Chunk] = deque()
        self._size = 0
        self._closed = False
        self._want = 0  # a reader waits for this many bytes (0: nobody waits)
        self._event: Any = None

    def set_event(self, event: Any) -> None:
        """Like ``BufferedPipe.set_event``: ``event`` is set while data or EOF is pending."""
        with self._lock:
            self._event = event
            if self._closed or self._size:
                event.set()
            else:
                event.clear()

    def feed(self, data: Chunk) -> None:
        """Append one chunk (called by the transport thread)."""
        with self._lock:
            self._chunks.append(data)
            self._size += len(data)
            if self._event is not None:
                self._event.set()
            if self._want and self._size >= self._want:
                self._cv.notify()

    def read_ready(self) -> bool:
        """True if ``take`` or ``read`` would return data at once."""
        return self._size > 0

    def take(self, limit: int, timeout: float | None, wait_for: int = 1) -> list[Chunk] | None:
        """Up to ``limit`` bytes as a list of chunks; [] at EOF, None on timeout.

        Waits (at most ``timeout``) until ``wait_for`` bytes are buffered or
        the pipe is closed, then returns what there is: a reader that asks
        for 1 MiB is woken once per MiB, not once per packet.
        """
        with self._lock:
            if self._size < wait_for and not self._closed:
                self._want = max(1, wait_for)
                try:
                    self._cv.wait(timeout)
                finally:
                    self._want = 0
            if not self._size:
                return [] if self._closed else None
            out: list[Chunk] = []
            taken = 0
            chunks = self._chunks
            while chunks and taken < limit and len(out) < _IOV_MAX:
                chunk = chunks.popleft()
                room = limit - taken
                if len(chunk) > room:
                    view = memoryview(chunk)
                    chunks.appendleft(view[room:])
                    chunk = view[:room]
                out.append(chunk)
                taken += len(chunk)
            self._size -= taken
            if not self._size and not self._closed and self._event is not None:
                self._event.clear()
            return out

    def read(self, nbytes: int, timeout: float | None = None) -> bytes:
        """``BufferedPipe.read``: at most ``nbytes`` bytes; b"" at EOF; PipeTimeout on timeout."""
        chunks = self.take(nbytes, timeout)
        if chunks is None:
            raise PipeTimeout()
        return b"".join(chunks)

    def close(self) -> None:
        """No more data will come: wake the reader."""
        with self._lock:
            self._closed = True
            self._cv.notify_all()
            if self._event is not None:
                self._event.set()

    def __len__(self) -> int:
        return self._size


def _engine_fields(obj: object) -> Any:
    """The packetizer seen untyped: paramiko keeps its cipher state in private attributes."""
    return obj


class CountingPacketizer(Packetizer):
    """paramiko's Packetizer that counts the packets it receives, for the keepalive check.

    paramiko counts received bytes too, but privately (``_Packetizer__received_bytes``)
    and only for re-keying, which resets it. ``received`` only grows.
    """

    def __init__(self, sock: Any) -> None:
        super().__init__(sock)
        self.received = 0

    def read_message(self) -> tuple[int, Message]:
        ptype, message = super().read_message()
        self.received += 1
        return ptype, message


class FastPacketizer(CountingPacketizer):
    """paramiko's Packetizer with a fast path for AES-GCM on a plain socket (see the module).

    Used only while ``fastpaths.enabled()``: its private names are in
    ``fastpaths.PARAMIKO_INTERNALS``.
    """

    def __init__(self, sock: Any) -> None:
        super().__init__(sock)
        self._fast_socket: socket.socket | None = sock if isinstance(sock, socket.socket) else None
        self._rbuf = bytearray(_IDLE_BUFFER)
        self._rview = memoryview(self._rbuf)
        # Set by other threads (attach/detach); only the reading thread resizes.
        self._buffer_size = _IDLE_BUFFER
        self._rstart = 0
        self._rend = 0
        self._sinks: dict[int, ChunkPipe] = {}
        self._zeros = bytes(64)
        self._handshake_deadline: float | None = None
        self._handshake_done = False

    # ----------------------------------------------------------------- handshake timeout

    # paramiko starts a threading.Timer (one more thread per connection) whose
    # only effect is a flag read by handshake_timed_out(); a deadline compared
    # there answers the same without the thread. Same rules: started once,
    # never timed out before it starts or after the handshake completes.

    def start_handshake(self, timeout: float) -> None:
        if self._handshake_deadline is None:
            self._handshake_deadline = time.monotonic() + float(timeout)

    def handshake_timed_out(self) -> bool:
        deadline = self._handshake_deadline
        return deadline is not None and not self._handshake_done and time.monotonic() >= deadline

    def complete_handshake(self) -> None:
        if self._handshake_deadline is not None:
            self._handshake_done = True

    # ----------------------------------------------------------------- channels

    def add_sink(self, chanid: int, pipe: ChunkPipe) -> None:
        """Hand CHANNEL_DATA for local channel ``chanid`` straight to ``pipe``."""
        self._sinks[chanid] = pipe
        self._buffer_size = _RECV_BUFFER

    def remove_sink(self, chanid: int) -> None:
        """Stop handing data for ``chanid`` to its pipe."""
        self._sinks.pop(chanid, None)
        if not self._sinks:
            self._buffer_size = _IDLE_BUFFER

    def can_send_fast(self) -> bool:
        """True while outgoing packets use AES-GCM on a plain socket."""
        p = _engine_fields(self)
        return (
            self._fast_socket is not None
            and p._Packetizer__aead_out
            and p._Packetizer__compress_engine_out is None
            and not p._Packetizer__dump_packets
        )

    # ----------------------------------------------------------------- receiving

    def read_message(self) -> tuple[int, Message]:
        p = _engine_fields(self)
        if (
            self._fast_socket is None
            or p._Packetizer__compress_engine_in is not None
            or p._Packetizer__dump_packets
        ):
            self._spill()
            ptype, message = super().read_message()
            return ptype, message
        if not p._Packetizer__aead_in:
            if (
                p._Packetizer__block_engine_in is None
                and not p._Packetizer__mac_size_in
                and not p._Packetizer__etm_in
            ):
                return self._read_plain_packet()
            self._spill()
            ptype, message = super().read_message()
            return ptype, message
        if p._Packetizer__remainder:
            self._take_remainder()
        for _ in range(1 << 30):  # bounded: each turn consumes one packet from the socket
            plain, seqno, end = self._read_aead_packet()
            ptype = plain[1]
            if ptype == _MSG_CHANNEL_DATA and self._sinks and end >= 10:
                chanid, length = struct.unpack_from(">II", plain, 2)
                pipe = self._sinks.get(chanid)
                if pipe is not None and 10 + length <= end:
                    if length:
                        pipe.feed(memoryview(plain)[10 : 10 + length])
                    if self.need_rekey():
                        # Back to Transport.run, which starts the key exchange.
                        raise NeedRekeyException()
                    if p._Packetizer__closed:  # Transport.close() while data streams in
                        raise EOFError()
                    continue
            message = Message(plain[2:end])
            message.seqno = seqno
            return ptype, message
        raise paramiko.SSHException("packet loop did not end")

    def _read_plain_packet(self) -> tuple[int, Message]:
        """The next packet before the first key is in use (the key exchange itself).

        paramiko reads each one with two ``recv`` calls of its exact parts;
        here one read takes what has arrived (the server's key exchange reply
        and NEWKEYS come together), with paramiko's checks: blocking, padding,
        sequence number, re-key accounting.
        """
        p = _engine_fields(self)
        if p._Packetizer__remainder:
            self._take_remainder()
        block = p._Packetizer__block_size_in
        if self._rend - self._rstart < block:
            self._fill(block, check_rekey=True)
        start = self._rstart
        size = int.from_bytes(self._rbuf[start : start + 4], "big")
        if size < 5 or size > _MAX_PACKET:
            raise paramiko.SSHException(f"Invalid packet length {size}")
        if (size + 4) % block != 0:
            raise paramiko.SSHException("Invalid packet blocking")
        total = 4 + size
        if self._rend - start < total:
            self._fill(total, check_rekey=False)
            start = self._rstart
        plain = bytes(self._rview[start + 4 : start + total])
        self._rstart = start + total
        end, seqno = self._received(plain, size, size + 4)
        message = Message(plain[2:end])
        message.seqno = seqno
        return plain[1], message

    def _read_aead_packet(self) -> tuple[bytes, int, int]:
        """Decrypt the next packet: (plaintext, its sequence number, end of its payload)."""
        p = _engine_fields(self)
        if self._rend - self._rstart < 4:
            self._fill(4, check_rekey=True)
        start = self._rstart
        size = int.from_bytes(self._rbuf[start : start + 4], "big")
        if size < 5 or size > _MAX_PACKET:
            raise paramiko.SSHException(f"Invalid packet length {size}")
        total = 4 + size + _GCM_TAG
        if self._rend - start < total:
            self._fill(total, check_rekey=False)
            start = self._rstart
        view = self._rview
        iv = p._Packetizer__iv_in
        plain: bytes = p._Packetizer__block_engine_in.decrypt(
            iv, view[start + 4 : start + total], view[start : start + 4]
        )
        self._rstart = start + total
        counter = int.from_bytes(iv[4:], "big") + 1
        p._Packetizer__iv_in = iv[:4] + counter.to_bytes(8, "big")
        end, seqno = self._received(plain, size, size + _GCM_TAG + 4)
        return plain, seqno, end

    def _received(self, plain: bytes, size: int, raw_size: int) -> tuple[int, int]:
        """One packet read (``plain`` from its padding length on, ``size`` its length
        field, ``raw_size`` its bytes on the wire): (end of its payload, its sequence number).

        paramiko's checks and accounting: padding, sequence number, re-keying.
        """
        p = _engine_fields(self)
        end = size - plain[0]
        if end < 2:
            raise paramiko.SSHException("Invalid packet padding")
        seqno: int = p._Packetizer__sequence_number_in
        next_seq = (seqno + 1) & 0xFFFFFFFF
        if next_seq == 0 and not p._initial_kex_done:
            raise paramiko.SSHException("Sequence number rolled over during initial kex!")
        p._Packetizer__sequence_number_in = next_seq
        self._count_received(raw_size)
        self.received += 1
        return end, seqno

    def _count_received(self, raw_size: int) -> None:
        """paramiko's re-key accounting for one received packet."""
        p = _engine_fields(self)
        p._Packetizer__received_bytes += raw_size
        p._Packetizer__received_packets += 1
        if p._Packetizer__need_rekey:
            p._Packetizer__received_bytes_overflow += raw_size
            p._Packetizer__received_packets_overflow += 1
            if (
                p._Packetizer__received_packets_overflow >= self.REKEY_PACKETS_OVERFLOW_MAX
                or p._Packetizer__received_bytes_overflow >= self.REKEY_BYTES_OVERFLOW_MAX
            ):
                raise paramiko.SSHException("Remote transport is ignoring rekey requests")
        elif (
            p._Packetizer__received_packets >= self.REKEY_PACKETS
            or p._Packetizer__received_bytes >= self.REKEY_BYTES
        ):
            p._Packetizer__received_bytes_overflow = 0
            p._Packetizer__received_packets_overflow = 0
            p._trigger_rekey()

    def _fill(self, need: int, *, check_rekey: bool) -> None:
        """Have at least ``need`` raw bytes buffered; paramiko's ``read_all`` semantics."""
        if self._rend - self._rstart >= need:
            return
        size, have = self._buffer_size, len(self._rbuf)
        # Grow when a bulk channel is attached; shrink once it is gone.
        if size > have or (have >= _RECV_BUFFER > size >= self._rend - self._rstart):
            self._resize(size)
        room = len(self._rbuf) - self._rend
        if need > len(self._rbuf) - self._rstart or room < len(self._rbuf) // 4:
            self._compact(need)
        sock = self._fast_socket
        assert sock is not None
        p = _engine_fields(self)
        while self._rend - self._rstart < need:
            if self.handshake_timed_out():
                raise EOFError()
            try:
                got = sock.recv_into(self._rview[self._rend :])
            except TimeoutError:
                got = -1
            except OSError as exc:
                if exc.errno == errno.EAGAIN:
                    got = -1
                elif p._Packetizer__closed:
                    raise EOFError() from None
                else:
                    raise
            if got == 0:
                raise EOFError()
            if got > 0:
                self._rend += got
                continue
            if p._Packetizer__closed:
                raise EOFError()
            if check_rekey and self._rend == self._rstart and p._Packetizer__need_rekey:
                raise NeedRekeyException()
            p._check_keepalive()

    def _compact(self, need: int) -> None:
        """Move the unread bytes to the front, growing the buffer if a packet needs it."""
        if need > len(self._rbuf):
            self._resize(need + self._buffer_size)
            return
        pending = bytes(self._rview[self._rstart : self._rend])
        self._rbuf[: len(pending)] = pending
        self._rstart, self._rend = 0, len(pending)

    def _resize(self, size: int) -> None:
        """A new buffer of ``size`` bytes (never less than what is buffered), unread bytes first."""
        pending = bytes(self._rview[self._rstart : self._rend])
        size = max(size, len(pending))
        if size == len(self._rbuf) and self._rstart == 0:
            return
        self._rbuf = bytearray(size)
        self._rview = memoryview(self._rbuf)
        self._rbuf[: len(pending)] = pending
        self._rstart, self._rend = 0, len(pending)

    def _take_remainder(self) -> None:
        """Bytes paramiko read ahead (after the banner) go first into the buffer."""
        p = _engine_fields(self)
        extra: bytes = p._Packetizer__remainder
        p._Packetizer__remainder = b""
        pending = bytes(self._rview[self._rstart : self._rend])
        data = extra + pending
        if len(data) > len(self._rbuf):
            self._rbuf = bytearray(len(data) + _RECV_BUFFER)
            self._rview = memoryview(self._rbuf)
        self._rbuf[: len(data)] = data
        self._rstart, self._rend = 0, len(data)

    def _spill(self) -> None:
        """Before paramiko's own reader runs: give it the bytes buffered here."""
        if self._rend > self._rstart:
            p = _engine_fields(self)
            p._Packetizer__remainder = bytes(self._rview[self._rstart : self._rend]) + bytes(
                p._Packetizer__remainder
            )
            self._rstart = self._rend = 0

    # ----------------------------------------------------------------- sending

    def write_all(self, out: bytes) -> None:  # type: ignore[override]  # paramiko passes bytes
        """paramiko's ``write_all``, in one system call when the kernel takes it all.

        Python keeps a socket with a timeout non-blocking underneath and polls
        it before every ``send``: one more system call, and one more hand-over
        of the GIL among a run's threads, per packet, useless while the send
        buffer has room, as it nearly always has for a handshake or a request.
        So the first attempt writes at once; what it leaves (a full buffer)
        goes through paramiko's loop, which waits and retries as before. Any
        other error ends the transport with EOFError, as paramiko's does.
        """
        sock = self._fast_socket
        if sock is not None and out:
            try:
                sent = os.write(sock.fileno(), out)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                raise EOFError() from None
            _engine_fields(self)._Packetizer__keepalive_last = time.time()
            if sent == len(out):
                return
            out = out[sent:]
        super().write_all(out)

    def send_channel_data(self, remote_chanid: int, data: memoryview, max_data: int) -> None:
        """Frame, encrypt and write ``data`` as CHANNEL_DATA packets of at most ``max_data``.

        The caller holds the transport's ``clear_to_send_lock`` (no key
        exchange can start meanwhile) and has taken the bytes from the
        channel's window. Packets are padded with zeros, as paramiko does for
        counter modes: under GCM the padding is encrypted and authenticated.
        """
        p = _engine_fields(self)
        sock = self._fast_socket
        assert sock is not None
        with p._Packetizer__write_lock:
            engine = p._Packetizer__block_engine_out
            iv = p._Packetizer__iv_out
            fixed, counter = iv[:4], int.from_bytes(iv[4:], "big")
            seq = p._Packetizer__sequence_number_out
            block = p._Packetizer__block_size_out
            zeros = self._zeros
            header = _HEADER
            parts: list[Chunk] = []
            sent = 0
            packets = 0
            for offset in range(0, len(data), max_data):
                chunk = data[offset : offset + max_data]
                length = len(chunk)
                padding = 3 + block - ((9 + length + 4) % block)
                head = header.pack(
                    10 + length + padding, padding, _MSG_CHANNEL_DATA, remote_chanid, length
                )
                cipher = engine.encrypt(
                    fixed + counter.to_bytes(8, "big"),
                    b"".join((head[4:], chunk, zeros[:padding])),
                    head[:4],
                )
                counter += 1
                parts.append(head[:4])
                parts.append(cipher)
                sent += 4 + len(cipher)
                packets += 1
            p._Packetizer__iv_out = fixed + counter.to_bytes(8, "big")
            next_seq = (seq + packets) & 0xFFFFFFFF
            p._Packetizer__sequence_number_out = next_seq
            self._write_parts(sock, parts)
            p._Packetizer__sent_bytes += sent
            p._Packetizer__sent_packets += packets
            if (
                p._Packetizer__sent_packets >= self.REKEY_PACKETS
                or p._Packetizer__sent_bytes >= self.REKEY_BYTES
            ) and not p._Packetizer__need_rekey:
                p._Packetizer__received_bytes_overflow = 0
                p._Packetizer__received_packets_overflow = 0
                p._trigger_rekey()

    def _write_parts(self, sock: socket.socket, parts: list[Chunk]) -> None:
        """``sendall`` of a list of buffers with ``sendmsg``; paramiko's retry rules."""
        p = _engine_fields(self)
        p._Packetizer__keepalive_last = time.time()
        views = [memoryview(part) for part in parts]
        index = 0
        for _ in range(1 << 30):  # bounded: every turn writes bytes or waits 0.1 s
            if index >= len(views):
                return
            try:
                sent = sock.sendmsg(views[index : index + _IOV_MAX])
            except TimeoutError:
                sent = 0
            except OSError as exc:
                if exc.errno == errno.EAGAIN:
                    sent = 0
                else:
                    raise EOFError() from exc
            if sent == 0 and p._Packetizer__closed:
                raise EOFError()
            index = skip_written(views, index, sent)


def skip_written(views: list[memoryview], index: int, done: int) -> int:
    """After a gather write of ``views[index:]`` took ``done`` bytes: the next index.

    A view written in part is replaced by its unwritten rest.
    """
    while done and index < len(views):
        if done >= len(views[index]):
            done -= len(views[index])
            index += 1
        else:
            views[index] = views[index][done:]
            done = 0
    return index


# --------------------------------------------------------------------------- channel helpers


def _packetizer(channel: paramiko.Channel) -> FastPacketizer | None:
    transport = channel.get_transport()
    packetizer = transport.packetizer if transport is not None else None
    return packetizer if isinstance(packetizer, FastPacketizer) else None


def attach(channel: paramiko.Channel) -> ChunkPipe:
    """Give a new channel (before any data arrives) a ``ChunkPipe`` fed without copies."""
    pipe = ChunkPipe()
    channel.in_buffer = pipe  # type: ignore[assignment]
    packetizer = _packetizer(channel)
    if packetizer is not None:
        packetizer.add_sink(channel.get_id(), pipe)
    return pipe


def detach(channel: paramiko.Channel) -> None:
    """Stop the direct delivery set up by ``attach``."""
    packetizer = _packetizer(channel)
    if packetizer is not None:
        packetizer.remove_sink(channel.get_id())


def read_chunks(
    channel: paramiko.Channel, limit: int, timeout: float, wait_for: int = 1
) -> list[Chunk] | None:
    """Up to ``limit`` bytes of an attached channel's data; [] at EOF, None on timeout.

    ``wait_for`` as in ``ChunkPipe.take`` (keep it well under the channel's
    window). Acknowledges what it takes (window adjust), as ``Channel.recv`` does.
    """
    pipe = channel.in_buffer
    if not isinstance(pipe, ChunkPipe):
        raise TypeError("read_chunks needs a channel set up with attach()")
    chunks = pipe.take(limit, timeout, wait_for)
    if chunks:
        ack = _private(channel)._check_add_window(sum(len(c) for c in chunks))
        if ack > 0:
            message = Message()
            message.add_byte(cMSG_CHANNEL_WINDOW_ADJUST)
            message.add_int(channel.remote_chanid)
            message.add_int(ack)
            _private(channel.get_transport())._send_user_message(message)
    return chunks


def _private(obj: object) -> Any:
    """paramiko objects seen untyped, for calls with no public form (window, send lock)."""
    return obj


def send_all(
    channel: paramiko.Channel, data: Chunk, stopped: Callable[[], bool] = lambda: False
) -> None:
    """``channel.sendall(data)``, framed and written in batches when the transport allows it.

    Raises OSError if the channel closes first, and stops (raising
    InterruptedError) once ``stopped()`` is true while waiting for window.
    """
    view = memoryview(data).cast("B")
    packetizer = _packetizer(channel)
    if packetizer is None or not packetizer.can_send_fast():
        for offset in range(0, len(view), _SEND_BATCH):
            if stopped():
                raise InterruptedError("stopped")
            channel.sendall(bytes(view[offset : offset + _SEND_BATCH]))
        return
    chan = _private(channel)
    transport = _private(channel.get_transport())
    max_data = max(1024, chan.out_max_packet_size - 64)
    offset = 0
    for _ in range(1 << 30):  # bounded: every turn sends bytes or waits 0.1 s
        if offset >= len(view):
            return
        with chan.lock:
            while chan.out_window_size == 0 and not (chan.closed or chan.eof_sent):
                if stopped():
                    raise InterruptedError("stopped")
                chan.out_buffer_cv.wait(0.1)
            if chan.closed or chan.eof_sent:
                raise OSError("Socket is closed")
            size = min(len(view) - offset, chan.out_window_size, _SEND_BATCH)
            chan.out_window_size -= size
        _send_batch(
            transport, packetizer, chan.remote_chanid, view[offset : offset + size], max_data
        )
        offset += size


def _send_batch(
    transport: Any, packetizer: FastPacketizer, remote_chanid: int, data: memoryview, max_data: int
) -> None:
    """Write one batch once no key exchange is under way (``_send_user_message``'s rules)."""
    start = time.monotonic()
    while True:
        transport.clear_to_send.wait(0.1)
        if not transport.active:
            raise OSError("connection lost")
        transport.clear_to_send_lock.acquire()
        if transport.clear_to_send.is_set():
            break
        transport.clear_to_send_lock.release()
        if time.monotonic() > start + transport.clear_to_send_timeout:
            raise paramiko.SSHException("Key-exchange timed out waiting for key negotiation")
    try:
        if packetizer.can_send_fast():
            packetizer.send_channel_data(remote_chanid, data, max_data)
            return
    finally:
        transport.clear_to_send_lock.release()
    # The cipher changed under us (not AES-GCM after a re-key): paramiko's way.
    for offset in range(0, len(data), max_data):
        message = Message()
        message.add_byte(bytes([_MSG_CHANNEL_DATA]))
        message.add_int(remote_chanid)
        message.add_string(bytes(data[offset : offset + max_data]))
        transport._send_user_message(message)
