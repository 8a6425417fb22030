"""The pure parts of the bulk-data fast path: ChunkPipe and the stream helpers of transfer."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest
from paramiko.buffered_pipe import PipeTimeout

from remoteops import fastio
from remoteops.errors import TransferError
from remoteops.fastio import ChunkPipe
from remoteops.transfer import SourceFile, _pwrite_all, _source_blocks, _truncate_chunks


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
