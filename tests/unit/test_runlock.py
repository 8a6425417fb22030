"""``--lock FILE``: a second run is refused with exit 75 before it contacts anything."""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path

from tests.helpers import run_cli

INVENTORY = ["inventory", "list", "all", "-i", "alpha,beta"]


def _hold(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.write(fd, b"4242\n")
    return fd


def test_free_lock_runs_and_records_the_holder(tmp_path: Path) -> None:
    lock = tmp_path / "nightly.lock"
    proc = run_cli("--lock", str(lock), *INVENTORY)
    assert proc.returncode == 0, proc.stderr
    assert "alpha" in proc.stdout
    assert lock.read_text().strip().isdigit()


def test_held_lock_exits_75_naming_file_and_holder(tmp_path: Path) -> None:
    lock = tmp_path / "nightly.lock"
    fd = _hold(lock)
    try:
        proc = run_cli("--lock", str(lock), *INVENTORY)
    finally:
        os.close(fd)
    assert proc.returncode == 75
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(lock) in lines[0]
    assert "pid 4242" in lines[0]
    assert "--lock-wait" in lines[0]
    # The refused run did not take the lock over.
    assert lock.read_text() == "4242\n"


def test_lock_from_environment(tmp_path: Path) -> None:
    lock = tmp_path / "env.lock"
    fd = _hold(lock)
    try:
        env = {**os.environ, "REMOTEOPS_LOCK": str(lock)}
        proc = run_cli(*INVENTORY, env=env)
    finally:
        os.close(fd)
    assert proc.returncode == 75, proc.stderr


def test_lock_wait_takes_the_lock_once_released(tmp_path: Path) -> None:
    lock = tmp_path / "wait.lock"
    fd = _hold(lock)
    release = threading.Timer(1.0, os.close, args=(fd,))
    release.start()
    try:
        proc = run_cli("--lock", str(lock), "--lock-wait", "60", *INVENTORY)
    finally:
        release.join()
    assert proc.returncode == 0, proc.stderr
    assert lock.read_text().strip() != "4242"


def test_lock_in_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    proc = run_cli("--lock", str(tmp_path / "no" / "such" / "x.lock"), *INVENTORY)
    assert proc.returncode == 2
    assert "--lock" in proc.stderr
    assert "Traceback" not in proc.stderr
