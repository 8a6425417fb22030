"""Faults a fleet really has, against the lab's real sshd servers and small fault servers.

Every test checks the failing host's ``status``, its one-line ``error``, the exit
code of docs/exit-codes.md, and that the healthy lab hosts of the same run are unaffected.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from remoteops.lab import Lab, descendants
from tests.helpers import run_cli as cli

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "remoteops", "--no-log-file"]


# --------------------------------------------------------------------------- helpers


def json_lines(output: str) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    hosts = {obj["host"]: obj for obj in lines if obj["type"] == "host"}
    summary = [obj for obj in lines if obj["type"] == "summary"]
    assert len(summary) == 1, output[-2000:]
    assert lines[-1]["type"] == "summary"
    return hosts, summary[0]


def run(
    lab: Lab, *args: str, pattern: str = "all", inventory: Path | None = None, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return cli("run", pattern, "-i", str(inventory or lab.inventory), *args, **kwargs)


def assert_one_line_error(obj: dict[str, Any]) -> str:
    error = obj["error"]
    assert isinstance(error, str), obj
    assert error.strip(), obj
    assert "\n" not in error, error
    assert "Traceback" not in error, error
    return error


def assert_healthy(lab: Lab, hosts: dict[str, dict[str, Any]], *, skip: str = "") -> None:
    """Every lab host except ``skip`` ran and succeeded."""
    for host in lab.hosts:
        if host.name == skip:
            continue
        assert hosts[host.name]["status"] == "ok", hosts[host.name]
        assert hosts[host.name]["error"] is None
        assert hosts[host.name]["exit_code"] == 0


def _mixed_inventory(lab: Lab, tmp_path: Path, extra: dict[str, tuple[str, int]]) -> Path:
    """The lab inventory plus a group ``faults`` of extra hosts (name: (address, port))."""
    lines = lab.inventory.read_text().splitlines()
    lines += ["    faults:", "      hosts:"]
    for name, (address, port) in extra.items():
        lines.append(f"        {name}: {{ansible_host: {address}, ansible_port: {port}}}")
    path = tmp_path / "mixed.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _closed_port() -> socket.socket:
    """A socket bound on 127.0.0.1 but not listening: connecting to its port is refused.

    Kept open by the caller so that no other process takes the port meanwhile.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def _cmdlines() -> Iterator[tuple[int, list[bytes]]]:
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                raw = fh.read()
        except OSError:
            continue
        yield int(entry.name), raw.rstrip(b"\0").split(b"\0")


def _sleepers(marker: str) -> list[int]:
    """PIDs of ``sleep MARKER`` processes (lab hosts share this machine's process table)."""
    want = [b"sleep", marker.encode()]
    return [pid for pid, argv in _cmdlines() if argv == want]


def _wait_for(predicate: Callable[[], bool], *, timeout: float, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def _family(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    return [pid, *descendants([pid])]


# --------------------------------------------------------------------------- fault servers


class FaultServer:
    """A TCP server on 127.0.0.1 that runs ``behave(conn, stop)`` for every connection.

    Threads are daemons, bounded in time, and never raise (pytest turns unhandled
    thread exceptions into failures).
    """

    LIFETIME = 120.0

    def __init__(self, behave: Callable[[socket.socket, threading.Event], None]) -> None:
        self._behave = behave
        self._server = socket.socket()
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(16)
        self._server.settimeout(0.2)
        self.port = int(self._server.getsockname()[1])
        self.stop = threading.Event()
        self.connections = 0
        self._held: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._accept_thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        deadline = time.monotonic() + self.LIFETIME
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = self._server.accept()
            except OSError:
                continue
            self.connections += 1
            self._held.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            self._behave(conn, self.stop)

    def __enter__(self) -> FaultServer:
        self._accept_thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._accept_thread.join(5)
        for conn in self._held:
            with contextlib.suppress(OSError):
                conn.close()
        for thread in self._threads:
            thread.join(5)
        self._server.close()


def _drip_banner(conn: socket.socket, stop: threading.Event) -> None:
    """An SSH banner one byte every 2 seconds, never finished (bounded to ~2 minutes)."""
    text = b"SSH-2.0-" + b"x" * 52
    for byte in text:
        conn.sendall(bytes([byte]))
        if stop.wait(2.0):
            return


def _http_and_close(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    conn.close()


def _silent(conn: socket.socket, stop: threading.Event) -> None:
    stop.wait(60)


def _garbage_then_wait(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"".join(b"garbage line %d\r\n" % i for i in range(120)))
    stop.wait(60)


@pytest.fixture
def drip_server() -> Iterator[FaultServer]:
    with FaultServer(_drip_banner) as server:
        yield server


# --------------------------------------------------------------------------- 1. drip


def test_dripping_banner_times_out_at_the_connect_deadline(
    lab: Lab, tmp_path: Path, drip_server: FaultServer
) -> None:
    inventory = _mixed_inventory(lab, tmp_path, {"drip": ("127.0.0.1", drip_server.port)})
    start = time.monotonic()
    result = run(lab, "--json", "--connect-timeout", "3", "--", "hostname", inventory=inventory)
    elapsed = time.monotonic() - start
    assert result.returncode == 3, result.stdout + result.stderr
    hosts, summary = json_lines(result.stdout)
    assert hosts["drip"]["status"] == "timeout"
    error = assert_one_line_error(hosts["drip"])
    assert f"127.0.0.1:{drip_server.port}" in error
    assert drip_server.connections >= 1
    assert_healthy(lab, hosts)
    assert summary["timeout"] == 1
    assert summary["ok"] == len(lab.hosts)
    assert summary["exit_code"] == 3
    # The connect deadline ended it: not earlier, and not paramiko's banner timeout
    # (each byte arriving within 2 s restarts that one, so it would wait ~2 minutes).
    assert 2.5 <= elapsed < 20


def test_failed_connections_report_how_long_they_took(
    lab: Lab, tmp_path: Path, drip_server: FaultServer
) -> None:
    """duration_s of a host that timed out while connecting is the time it took, not 0."""
    inventory = _mixed_inventory(lab, tmp_path, {"drip": ("127.0.0.1", drip_server.port)})
    result = run(lab, "--json", "--connect-timeout", "2", "--", "hostname", inventory=inventory)
    assert result.returncode == 3, result.stdout + result.stderr
    hosts, _ = json_lines(result.stdout)
    assert hosts["drip"]["status"] == "timeout"
    assert_healthy(lab, hosts)
    assert 1.5 <= hosts["drip"]["duration_s"] < 10, hosts["drip"]


# --------------------------------------------------------------------------- 2. garbage


@pytest.mark.parametrize(
    ("behave", "detail"),
    [(_http_and_close, "banner"), (_garbage_then_wait, "protocol version")],
    ids=["http-then-close", "garbage-then-wait"],
)
def test_garbage_banner_is_unreachable_naming_the_address(
    lab: Lab,
    tmp_path: Path,
    behave: Callable[[socket.socket, threading.Event], None],
    detail: str,
) -> None:
    with FaultServer(behave) as server:
        inventory = _mixed_inventory(lab, tmp_path, {"garbage": ("127.0.0.1", server.port)})
        start = time.monotonic()
        result = run(
            lab, "--json", "--connect-timeout", "10", "--", "hostname", inventory=inventory
        )
        elapsed = time.monotonic() - start
    assert result.returncode == 4, result.stdout + result.stderr
    hosts, summary = json_lines(result.stdout)
    assert hosts["garbage"]["status"] == "unreachable"
    error = assert_one_line_error(hosts["garbage"])
    assert f"127.0.0.1:{server.port}" in error
    assert detail in error.lower()
    assert_healthy(lab, hosts)
    assert summary["unreachable"] == 1
    assert summary["exit_code"] == 4
    assert elapsed < 9  # an error, not the connect deadline, ended it


# --------------------------------------------------------------------------- 3. wrong key


@pytest.fixture
def fresh_key(tmp_path: Path) -> Path:
    key = tmp_path / "wrong_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "wrong", "-f", str(key)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return key


def _no_agent_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}


def test_wrong_key_fails_authentication_and_is_not_retried(
    lab: Lab, tmp_path: Path, fresh_key: Path
) -> None:
    victim = lab.hosts[0]
    text = lab.inventory.read_text()
    assert "ansible_ssh_private_key_file" in text
    stripped = tmp_path / "nokey.yml"
    stripped.write_text(
        "".join(
            line
            for line in text.splitlines(keepends=True)
            if "ansible_ssh_private_key_file" not in line
        )
    )
    log = lab.sshd_log(victim.name)
    connections_before = log.read_text().count("Connection from")
    # As the brief has it: --key with a key the host does not know, and --retries to
    # show that an authentication failure is never retried.
    result = run(
        lab,
        "--json",
        "--no-ssh-config",
        "--retries",
        "2",
        "--key",
        str(fresh_key),
        "--",
        "true",
        pattern=victim.name,
        inventory=stripped,
        env=_no_agent_env(),
    )
    assert result.returncode == 4, result.stdout + result.stderr
    hosts, summary = json_lines(result.stdout)
    assert hosts[victim.name]["status"] == "unreachable"
    error = assert_one_line_error(hosts[victim.name])
    assert "authentication" in error.lower()
    assert "failed" in error
    assert lab.user in error
    assert f"{victim.address}:{victim.port}" in error
    assert summary["unreachable"] == 1
    time.sleep(0.3)  # sshd writes its log line after the client has gone
    assert log.read_text().count("Connection from") - connections_before == 1

    # In a run with the healthy hosts: only the host given the wrong key fails.
    mixed = tmp_path / "mixed-key.yml"
    mixed.write_text(
        text.replace(
            f"{victim.name}: {{ansible_host: {victim.address}, ansible_port: {victim.port}}}",
            f"{victim.name}: {{ansible_host: {victim.address}, ansible_port: {victim.port}, "
            f"ansible_ssh_private_key_file: {fresh_key}}}",
        )
    )
    assert mixed.read_text() != text
    result = run(
        lab, "--json", "--no-ssh-config", "--", "true", inventory=mixed, env=_no_agent_env()
    )
    assert result.returncode == 4, result.stdout + result.stderr
    hosts, summary = json_lines(result.stdout)
    assert hosts[victim.name]["status"] == "unreachable"
    assert "authentication" in assert_one_line_error(hosts[victim.name]).lower()
    assert_healthy(lab, hosts, skip=victim.name)
    assert summary["ok"] == len(lab.hosts) - 1


# --------------------------------------------------------------------------- 4. dropped SYNs


@pytest.fixture
def blackhole() -> Iterator[str]:
    """An address whose SYNs go nowhere: no RST, no ICMP, the connect just hangs.

    A network namespace joined by a veth pair; both ends are ours. The root
    namespace's neighbour entry for the far end is a MAC nobody has, so the far
    end's interface drops every frame (this kernel lacks tc's matchall and
    gact, and this avoids iptables).
    """
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 for a network namespace")
    tag = f"{os.getpid() % 10000}{random.randrange(100)}"
    netns, host_if, ns_if = f"rofault{tag}", f"rofh{tag}", f"rofn{tag}"
    octet = random.randrange(1, 60) * 4
    near, far = f"169.254.{200 + octet % 50}.{octet + 1}", f"169.254.{200 + octet % 50}.{octet + 2}"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)

    created_ns = False
    try:
        ip("netns", "add", netns)
        created_ns = True
        ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if, "netns", netns)
        ip("addr", "add", f"{near}/30", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("-n", netns, "addr", "add", f"{far}/30", "dev", ns_if)
        ip("-n", netns, "link", "set", ns_if, "up")
        ip("-n", netns, "link", "set", "lo", "up")
        ip(
            "neigh",
            "replace",
            far,
            "lladdr",
            "02:00:5e:00:53:99",
            "dev",
            host_if,
            "nud",
            "permanent",
        )
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            socket.create_connection((far, 22), timeout=2).close()
        assert time.monotonic() - start >= 1.9  # it hung: no RST, no unreachable
        yield far
    finally:
        if created_ns:
            # Deleting the namespace deletes its veth end, which deletes our end too.
            subprocess.run(["ip", "netns", "del", netns], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=10)


def test_host_dropping_syns_times_out_quickly(lab: Lab, tmp_path: Path, blackhole: str) -> None:
    inventory = _mixed_inventory(lab, tmp_path, {"blackhole": (blackhole, 22)})
    start = time.monotonic()
    result = run(lab, "--json", "--connect-timeout", "2", "--", "hostname", inventory=inventory)
    elapsed = time.monotonic() - start
    assert result.returncode == 3, result.stdout + result.stderr
    hosts, summary = json_lines(result.stdout)
    assert hosts["blackhole"]["status"] == "timeout"
    error = assert_one_line_error(hosts["blackhole"])
    assert f"{blackhole}:22" in error
    assert "timed out" in error or "deadline" in error
    assert_healthy(lab, hosts)
    assert summary["timeout"] == 1
    assert summary["exit_code"] == 3
    assert 1.5 <= elapsed < 15


# --------------------------------------------------------------------------- 5. frozen host


def test_host_frozen_mid_command_is_caught_by_keepalives(lab: Lab) -> None:
    victim = lab.hosts[1]
    marker = f"5.0{random.randrange(10**6):06d}"
    proc = subprocess.Popen(
        [
            *CLI,
            "run",
            "all",
            "-i",
            str(lab.inventory),
            "--json",
            "-t",
            "60",
            "--keepalive-interval",
            "1",
            "--keepalive-count",
            "2",
            "--",
            f"sleep {marker}; echo done",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stopped: list[int] = []
    start = time.monotonic()
    try:

        def victim_running() -> bool:
            return bool(set(_sleepers(marker)) & set(_family(victim.pid)))

        if not _wait_for(victim_running, timeout=15):
            proc.kill()
            out, err = proc.communicate(timeout=30)
            pytest.fail(f"the command never started on {victim.name}:\n{out}\n{err}")
        time.sleep(0.5)
        for pid in _family(victim.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
        try:
            out, err = proc.communicate(timeout=25)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=30)
            pytest.fail(f"the run hung on the frozen host:\n{out}\n{err}")
        elapsed = time.monotonic() - start
    finally:
        for pid in [*stopped, *_family(victim.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode == 3, out + err
    hosts, summary = json_lines(out)
    assert hosts[victim.name]["status"] == "timeout", hosts[victim.name]
    error = assert_one_line_error(hosts[victim.name])
    assert "keepalive" in error.lower()
    assert hosts[victim.name]["duration_s"] < 10
    for host in lab.hosts:
        if host.name != victim.name:
            assert hosts[host.name]["status"] == "ok"
            assert hosts[host.name]["stdout"] == "done\n"
    assert summary["timeout"] == 1
    assert summary["exit_code"] == 3
    assert elapsed < 15


# --------------------------------------------------------------------------- 6. 300 MB


def _run_measured(args: list[str], tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run the CLI under /usr/bin/time; return the result and its peak RSS in KiB."""
    time_bin = shutil.which("time", path="/usr/bin:/bin")
    if time_bin is None:
        pytest.skip("/usr/bin/time is not installed (apt-get install time)")
    rss_file = tmp_path / f"rss-{time.monotonic_ns()}"
    result = subprocess.run(
        [time_bin, "-f", "%M", "-o", str(rss_file), *CLI, *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    return result, int(rss_file.read_text().split()[-1])


def test_300mb_of_stdout_is_capped_in_json_and_kept_whole_in_out_dir(
    lab: Lab, tmp_path: Path
) -> None:
    big = lab.hosts[0].name
    size = 300_000_000
    command = f'if [ "$(hostname)" = {big} ]; then head -c {size} /dev/zero; else hostname; fi'
    limit_kib = 200 * 1024

    result, rss = _run_measured(
        ["run", "all", "-i", str(lab.inventory), "--json", "--", command], tmp_path
    )
    assert result.returncode == 0, result.stderr
    hosts, summary = json_lines(result.stdout)
    kept = 1024 * 1024
    assert hosts[big]["status"] == "ok"
    assert hosts[big]["stdout"].startswith("\x00" * kept)
    assert hosts[big]["stdout"][kept:] == f"\n[remoteops: {size - kept} more bytes not kept]\n"
    assert hosts[big]["stdout_truncated_bytes"] == size - kept
    for host in lab.hosts:
        if host.name != big:
            assert hosts[host.name]["status"] == "ok"
            assert hosts[host.name]["stdout"] == f"{host.name}\n"
    assert summary["exit_code"] == 0
    assert rss < limit_kib, f"peak RSS {rss} KiB"

    out = tmp_path / "out"
    result, rss = _run_measured(
        ["run", "all", "-i", str(lab.inventory), "--json", "--out-dir", str(out), "--", command],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    hosts, _ = json_lines(result.stdout)
    assert all(obj["status"] == "ok" for obj in hosts.values())
    assert (out / f"{big}.out").stat().st_size == size
    with open(out / f"{big}.out", "rb") as fh:
        assert fh.read(1 << 20).count(b"\0") == 1 << 20
    assert (out / f"{big}.exit").read_text().strip() == "0"
    assert rss < limit_kib, f"peak RSS {rss} KiB"


# --------------------------------------------------------------------------- 7. binary


def test_binary_output_exact_in_out_dir_replaced_in_json(lab: Lab, tmp_path: Path) -> None:
    data = bytes(range(256))
    command = (
        "python3 -c 'import sys; b = bytes(range(256)); "
        "sys.stdout.buffer.write(b); sys.stderr.buffer.write(b[::-1])'"
    )
    out = tmp_path / "out"
    result = run(lab, "--json", "--out-dir", str(out), "--", command)
    assert result.returncode == 0, result.stdout + result.stderr
    hosts, summary = json_lines(result.stdout)
    for host in lab.hosts:
        obj = hosts[host.name]
        assert obj["status"] == "ok"
        assert obj["exit_code"] == 0
        assert (out / f"{host.name}.out").read_bytes() == data
        assert (out / f"{host.name}.err").read_bytes() == data[::-1]
        assert obj["stdout"] == data.decode("utf-8", errors="replace")
        assert obj["stderr"] == data[::-1].decode("utf-8", errors="replace")
        assert "\ufffd" in obj["stdout"]
        assert obj["stdout"].startswith("\x00\x01\x02")
    assert summary["exit_code"] == 0


# --------------------------------------------------------------------------- 8. interrupts


def _interrupt_run(
    lab: Lab, sig: int, *extra: str, inventory: Path | None = None
) -> tuple[int, str, str, str, float]:
    """Start a long command everywhere, send ``sig`` once it runs on every lab host."""
    marker = f"30.{random.randrange(10**6):06d}"
    proc = subprocess.Popen(
        [
            *CLI,
            "run",
            "all",
            "-i",
            str(inventory or lab.inventory),
            *extra,
            "--",
            f"sleep {marker}; echo never",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        started = _wait_for(lambda: len(_sleepers(marker)) >= len(lab.hosts), timeout=15)
        time.sleep(0.3)
        assert started, "the command did not start on every host"
        sent = time.monotonic()
        proc.send_signal(sig)
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=30)
            pytest.fail(f"the run did not end within 20 s of signal {sig}:\n{out}\n{err}")
        return proc.returncode, out, err, marker, time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        if proc.returncode not in (130, 143):
            # This test's own remote commands, found by their unique marker.
            for pid in _sleepers(marker):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _assert_no_leftovers(lab: Lab, marker: str) -> None:
    assert _wait_for(lambda: not _sleepers(marker), timeout=5), _sleepers(marker)
    pattern = f"sleep [{marker[0]}]{marker[1:]}"
    check = run(lab, "--json", "--", f"pgrep -f '{pattern}' || echo gone")
    assert check.returncode == 0, check.stdout + check.stderr
    hosts, _ = json_lines(check.stdout)
    assert {name: obj["stdout"] for name, obj in hosts.items()} == {
        h.name: "gone\n" for h in lab.hosts
    }


def test_sigint_stops_remote_commands_and_exits_130(lab: Lab) -> None:
    code, out, err, marker, elapsed = _interrupt_run(lab, signal.SIGINT)
    assert code == 130, out + err
    assert elapsed < 10
    assert "interrupted" in out + err
    assert f"{len(lab.hosts)} interrupted" in err
    assert "never" not in out
    assert "Traceback" not in err
    _assert_no_leftovers(lab, marker)


def test_sigterm_reports_every_host_interrupted_and_exits_143(lab: Lab) -> None:
    code, out, err, marker, elapsed = _interrupt_run(lab, signal.SIGTERM, "--json")
    assert code == 143, out + err
    assert elapsed < 10
    hosts, summary = json_lines(out)
    assert set(hosts) == {h.name for h in lab.hosts}
    for obj in hosts.values():
        assert obj["status"] == "interrupted"
        # The status says interrupted; the error says what became of the command.
        assert assert_one_line_error(obj) == "the command was stopped on the host"
        assert obj["stdout"] == ""
    assert summary["exit_code"] == 143
    assert summary["hosts"] == len(lab.hosts)
    assert "Traceback" not in err
    _assert_no_leftovers(lab, marker)


def test_sigterm_during_a_connect_ends_the_run_promptly(lab: Lab, tmp_path: Path) -> None:
    """A host still connecting (silent server, long --connect-timeout) must not hold an
    interrupted run until its connect deadline, and it was interrupted, not timed out."""
    with FaultServer(_silent) as server:
        inventory = _mixed_inventory(lab, tmp_path, {"silent": ("127.0.0.1", server.port)})
        code, out, err, marker, elapsed = _interrupt_run(
            lab, signal.SIGTERM, "--json", "--connect-timeout", "60", inventory=inventory
        )
    assert code == 143, out + err
    hosts, summary = json_lines(out)
    assert set(hosts) == {"silent", *(h.name for h in lab.hosts)}
    for host in lab.hosts:
        assert hosts[host.name]["status"] == "interrupted"
    assert hosts["silent"]["status"] == "interrupted", hosts["silent"]
    assert "interrupted" in assert_one_line_error(hosts["silent"])
    assert summary["exit_code"] == 143
    assert elapsed < 10
    _assert_no_leftovers(lab, marker)


# --------------------------------------------------------------------------- 9. pty


def test_pty_gives_a_terminal_and_no_pty_gives_none(lab: Lab) -> None:
    result = run(lab, "--json", "--pty", "--", "tty")
    assert result.returncode == 0, result.stdout + result.stderr
    hosts, _ = json_lines(result.stdout)
    for host in lab.hosts:
        obj = hosts[host.name]
        assert obj["status"] == "ok"
        assert re.fullmatch(r"/dev/pts/\d+\r?\n", obj["stdout"]), obj["stdout"]

    victim = lab.hosts[0].name
    result = run(lab, "--json", "--", f'if [ "$(hostname)" = {victim} ]; then tty; else true; fi')
    assert result.returncode == 5, result.stdout + result.stderr
    hosts, summary = json_lines(result.stdout)
    assert hosts[victim]["status"] == "failed"
    assert hosts[victim]["exit_code"] == 1
    assert hosts[victim]["stdout"] == "not a tty\n"
    assert "exit code 1" in assert_one_line_error(hosts[victim])
    assert_healthy(lab, hosts, skip=victim)
    assert summary["failed"] == 1
    assert summary["exit_code"] == 5


# --------------------------------------------------------------------------- 10. retries


def test_retries_against_a_closed_port_back_off_and_still_say_refused(
    lab: Lab, tmp_path: Path
) -> None:
    with contextlib.closing(_closed_port()) as closed:
        port = int(closed.getsockname()[1])
        inventory = _mixed_inventory(lab, tmp_path, {"closed": ("127.0.0.1", port)})
        start = time.monotonic()
        result = cli(
            "-v", "run", "all", "-i", str(inventory), "--json", "--retries", "2", "--", "hostname"
        )
        elapsed = time.monotonic() - start
    assert result.returncode == 4, result.stdout + result.stderr
    hosts, summary = json_lines(result.stdout)
    assert hosts["closed"]["status"] == "unreachable"
    error = assert_one_line_error(hosts["closed"])
    assert "refused" in error
    assert f"127.0.0.1:{port}" in error
    # Two backoffs of 0.5 s and 1 s, each jittered by a factor in [0.5, 1.5).
    assert elapsed >= 0.75
    assert "retry 1/2" in result.stderr
    assert "retry 2/2" in result.stderr
    assert_healthy(lab, hosts)
    assert summary["unreachable"] == 1
    assert summary["exit_code"] == 4


# --------------------------------------------------------------------------- 11. quiet, colour


def _quiet_command(victim: str) -> str:
    return (
        f'if [ "$(hostname)" = {victim} ]; then echo out-bad; echo err-bad >&2; exit 3; '
        "else echo out-good; echo err-good >&2; fi"
    )


def test_quiet_shows_only_failed_hosts(lab: Lab) -> None:
    victim = lab.hosts[0].name
    result = run(lab, "--quiet", "--", _quiet_command(victim))
    assert result.returncode == 5, result.stdout + result.stderr
    both = result.stdout + result.stderr
    assert "out-good" not in both
    assert "err-good" not in both
    assert re.search(rf"^{victim}\s*: out-bad$", result.stdout, re.MULTILINE), result.stdout
    assert "err-bad" in both
    assert "exit code 3" in result.stderr
    assert f"{len(lab.hosts) - 1} ok" in result.stderr
    for host in lab.hosts[1:]:
        assert not re.search(rf"\b{host.name}\b", both), both


def _run_on_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Run the CLI with stdout and stderr on a pseudo-terminal; return its code and output."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [*CLI, *args], stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env
        )
    finally:
        os.close(slave)
    chunks: list[bytes] = []
    try:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
        return proc.wait(30), b"".join(chunks).decode("utf-8", errors="replace")
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)


def test_no_color_and_non_terminal_output_have_no_escapes(lab: Lab) -> None:
    victim = lab.hosts[0].name
    base = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    args = ["run", "all", "-i", str(lab.inventory), "--", _quiet_command(victim)]

    piped = run(lab, "--", _quiet_command(victim), env=base)
    assert piped.returncode == 5
    assert "\x1b[" not in piped.stdout + piped.stderr
    assert "out-good" in piped.stdout
    assert f"{len(lab.hosts) - 1} ok" in piped.stderr

    terminal = {**base, "TERM": "xterm-256color", "NO_COLOR": "1"}
    code, text = _run_on_terminal(args, terminal)
    assert code == 5, text
    assert "\x1b[" not in text, text
    assert "out-bad" in text
    assert "out-good" in text

    # The control: on a terminal without NO_COLOR the host prefixes are coloured.
    code, text = _run_on_terminal(args, {**base, "TERM": "xterm-256color"})
    assert code == 5, text
    assert "\x1b[" in text
