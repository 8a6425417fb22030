"""remoteops.fileops: the atomic write and the timed flock the file writers share."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from remoteops.fileops import flock_within, write_atomic


def test_the_mode_is_kept_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        write_atomic(tmp_path / "a.prom", b"x 1\n", mode=0o644)
        write_atomic(tmp_path / "b.html", b"<p>", mode=None)  # as a new file gets
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.prom").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.html").stat().st_mode) == 0o600
    assert (tmp_path / "a.prom").read_bytes() == b"x 1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.prom", "b.html"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    target.mkdir()  # the rename over it fails
    with pytest.raises(OSError):
        write_atomic(target, b"new", mode=None)
    assert target.is_dir()
    assert list(tmp_path.iterdir()) == [target]


def test_a_planted_link_at_the_temporary_name_is_never_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    temp = tmp_path / ".retry.tmp"
    temp.symlink_to(victim)
    with pytest.raises(OSError):
        write_atomic(tmp_path / "retry", b"web01\n", temp=temp)
    assert victim.read_bytes() == b"keep"
    assert not (tmp_path / "retry").exists()


def test_flock_within_waits_then_gives_up(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    holder = os.open(path, os.O_RDWR | os.O_CREAT)
    other = os.open(path, os.O_RDWR)
    try:
        assert flock_within(holder, 0)
        start = time.monotonic()
        assert not flock_within(other, 0.2)
        assert time.monotonic() - start >= 0.2
        os.close(holder)
        holder = -1
        assert flock_within(other, 0)
    finally:
        for fd in (holder, other):
            if fd >= 0:
                os.close(fd)
