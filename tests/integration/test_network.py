"""Hostile and broken networks: servers that misbehave.

Each hostile server is a small Python socket server on 127.0.0.1 (bounded in
time); the stopped sshd is a real lab host of the test's own, frozen with
SIGSTOP.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from remoteops.lab import lab_up
from tests.conftest import free_port
from tests.integration.test_faults import FaultServer, _drip_banner, _silent

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "remoteops"]


# --------------------------------------------------------------------------- E10


def _ssh1_banner(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"SSH-1.5-Cisco-1.25\r\n")
    stop.wait(60)


def _binary_garbage(conn: socket.socket, stop: threading.Event) -> None:
    rng = random.Random(11)
    conn.sendall(bytes(rng.randrange(256) for _ in range(3000)) + b"\r\n")
    stop.wait(60)


def _reset_mid_key_exchange(conn: socket.socket, stop: threading.Event) -> None:
    """A server banner, then half of a key exchange packet once the client's arrives, then RST."""
    conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
    conn.settimeout(10)
    received = b""
    while b"\n" not in received or len(received) < received.index(b"\n") + 64:
        chunk = conn.recv(4096)  # the client's banner, then its KEXINIT
        if not chunk:
            return
        received += chunk
    conn.sendall(struct.pack(">IB", 1020, 6) + b"\x14" + bytes(200))  # a KEXINIT cut short
    time.sleep(0.2)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


@dataclass(frozen=True)
class Outcome:
    json: subprocess.CompletedProcess[str]
    plain: subprocess.CompletedProcess[str]
    log: str


def _run_both(inventory: Path, tmp_path: Path, *extra: str, timeout: float = 60) -> Outcome:
    """``run all -- true`` with and without --json, at once, sharing one --log-file."""
    log = tmp_path / "remoteops.log"
    argv = [*CLI, "--log-file", str(log), "run", "all", "-i", str(inventory), *extra]
    procs = [
        subprocess.Popen(
            [*argv, *mode, "--", "true"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for mode in (["--json"], [])
    ]
    done = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return Outcome(done[0], done[1], log.read_text() if log.exists() else "")


def _assert_clean(outcome: Outcome, host: str, status: str, code: int) -> None:
    """Right status and exit code, one line per host, and no traceback anywhere."""
    for result in (outcome.json, outcome.plain):
        assert result.returncode == code, result.stdout + result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        assert "paramiko" not in result.stderr, result.stderr
        assert f"{host}: {status}: " in result.stderr, result.stderr
    records = [json.loads(line) for line in outcome.json.stdout.splitlines()]
    (record,) = [r for r in records if r["type"] == "host"]
    assert (record["host"], record["status"]) == (host, status)
    assert "\n" not in record["error"]
    assert "Traceback" not in outcome.log
    assert "paramiko" not in outcome.log
    assert f"{host}: {status}: " in outcome.log  # the outcome is logged, in one line


def _inventory(tmp_path: Path, name: str, port: int) -> Path:
    path = tmp_path / "hostile.yml"
    path.write_text(
        f"all:\n  hosts:\n    {name}: {{ansible_host: 127.0.0.1, ansible_port: {port}}}\n"
    )
    return path


@pytest.mark.parametrize(
    ("behave", "status", "code"),
    [
        (_silent, "timeout", 3),
        (_drip_banner, "timeout", 3),
        (_binary_garbage, "unreachable", 4),
        (_ssh1_banner, "unreachable", 4),
        (_reset_mid_key_exchange, "unreachable", 4),
    ],
    ids=["no-banner", "dripped-banner", "garbage", "ssh1-banner", "reset-mid-kex"],
)
def test_hostile_server_is_one_line_without_traceback(
    tmp_path: Path,
    behave: Callable[[socket.socket, threading.Event], None],
    status: str,
    code: int,
) -> None:
    with FaultServer(behave) as server:
        inventory = _inventory(tmp_path, "hostile", server.port)
        outcome = _run_both(inventory, tmp_path, "--connect-timeout", "2")
        assert server.connections >= 2
    _assert_clean(outcome, "hostile", status, code)


def test_stopped_sshd_times_out_without_traceback(tmp_path: Path, lab_factory: list[Path]) -> None:
    """A real sshd, frozen: the kernel accepts the TCP connection, no banner ever comes."""
    lab_dir = tmp_path / "stopped-lab"
    lab_factory.append(lab_dir)
    lab = lab_up(lab_dir, hosts=1, port=free_port()).lab
    host = lab.hosts[0]
    os.kill(host.pid, signal.SIGSTOP)
    try:
        outcome = _run_both(lab.inventory, tmp_path, "--connect-timeout", "2")
    finally:
        os.kill(host.pid, signal.SIGCONT)
    _assert_clean(outcome, host.name, "timeout", 3)


def test_debug_keeps_the_details_in_the_log(tmp_path: Path) -> None:
    log = tmp_path / "debug.log"
    with FaultServer(_ssh1_banner) as server:
        inventory = _inventory(tmp_path, "old", server.port)
        argv = [*CLI, "--debug", "--log-file", str(log), "run", "all", "-i", str(inventory)]
        result = subprocess.run(
            [*argv, "--", "true"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 4, result.stderr
    text = log.read_text()
    assert "paramiko.transport" in text
    assert "Incompatible version (1.5 instead of 2.0)" in text
