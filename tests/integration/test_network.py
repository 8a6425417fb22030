"""Hostile and broken networks: servers that misbehave, and a resolver that never answers.

Each hostile server is a small Python socket server on 127.0.0.1 (bounded in
time); the stopped sshd is a real lab host of the test's own, frozen with
SIGSTOP. The resolver tests run the CLI inside a network namespace the test
creates, whose resolv.conf points at a UDP socket of the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
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


# --------------------------------------------------------------------------- E11

_DNS_SERVER = """
import socket, sys, time
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 53))
sock.settimeout(0.5)
print("ready", flush=True)
end = time.monotonic() + 180
while time.monotonic() < end:
    try:
        data, peer = sock.recvfrom(4096)
    except TimeoutError:
        continue
    i, labels = 12, []
    while i < len(data) and data[i]:
        labels.append(data[i + 1 : i + 1 + data[i]]); i += 1 + data[i]
    print("query", b".".join(labels).decode("ascii", "replace"), flush=True)
    if labels and labels[0].startswith(b"silent"):
        continue  # read, never answer
    # NXDOMAIN: the query's id and question, QR and RD/RA set, RCODE 3, no records
    sock.sendto(data[:2] + b"\\x81\\x83\\x00\\x01" + bytes(6) + data[12 : i + 5], peer)
"""


Completed = subprocess.CompletedProcess[str]


@dataclass
class DnsNamespace:
    """A network namespace whose resolv.conf and hosts are the test's own."""

    name: str
    etc: Path

    def resolv_conf(self, text: str) -> None:
        (self.etc / "resolv.conf").write_text(text)

    def cli(self, *args: str, timeout: float = 120) -> tuple[Completed, float]:
        """Run remoteops in the namespace; its result and how long it took."""
        start = time.monotonic()
        try:
            result = subprocess.run(
                ["ip", "netns", "exec", self.name, *CLI, "--no-log-file", *args],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"remoteops still running after {timeout} s: {exc.stderr!r}")
        return result, time.monotonic() - start


@pytest.fixture
def dns_netns() -> Iterator[DnsNamespace]:
    """A namespace with only loopback, a silent-or-NXDOMAIN resolver on 127.0.0.1:53.

    Names whose first label starts with ``silent`` are read and never answered;
    every other name gets NXDOMAIN. ``ip netns exec`` bind-mounts the files of
    /etc/netns/NAME over /etc: resolv.conf, a hosts file that knows only
    localhost, and an nsswitch.conf that asks files, then DNS.
    """
    if os.geteuid() != 0 or shutil.which("ip") is None:
        if os.environ.get("CI"):
            pytest.fail("CI runs as root with iproute2: the DNS namespace must be tested")
        pytest.skip("needs root and iproute2 for a network namespace")
    name = f"rodns{os.getpid() % 100000}{random.randrange(1000)}"
    etc = Path("/etc/netns") / name
    server: subprocess.Popen[str] | None = None
    created = False
    try:
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=10)
        created = True
        subprocess.run(
            ["ip", "-n", name, "link", "set", "lo", "up"],
            check=True,
            capture_output=True,
            timeout=10,
        )
        etc.mkdir(parents=True)
        (etc / "hosts").write_text("127.0.0.1 localhost\n::1 localhost\n")
        (etc / "nsswitch.conf").write_text("hosts: files dns\n")
        # A stuck lookup would last 2 x 15 s: far beyond any connect deadline.
        (etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:15 attempts:2\n")
        server = subprocess.Popen(
            ["ip", "netns", "exec", name, sys.executable, "-c", _DNS_SERVER],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        yield DnsNamespace(name, etc)
    finally:
        if server is not None:
            server.kill()  # the PID this fixture started (ip exec()s into python)
            server.communicate(timeout=10)
        if created:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
        shutil.rmtree(etc, ignore_errors=True)
        with contextlib.suppress(OSError):
            etc.parent.rmdir()  # only if no other namespace has files there


def _dns_inventory(tmp_path: Path, hosts: dict[str, str]) -> Path:
    path = tmp_path / "dns.yml"
    lines = ["all:", "  hosts:"]
    lines += [f"    {name}: {{ansible_host: {address}}}" for name, address in hosts.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _host_records(output: str) -> dict[str, dict[str, object]]:
    records = [json.loads(line) for line in output.splitlines()]
    return {r["host"]: r for r in records if r["type"] == "host"}


def test_silent_resolver_ends_at_the_connect_deadline(
    tmp_path: Path, dns_netns: DnsNamespace
) -> None:
    inventory = _dns_inventory(
        tmp_path, {"web1": "silent.remoteops.test", "db1": "gone.remoteops.test"}
    )
    result, elapsed = dns_netns.cli(
        "run", "all", "-i", str(inventory), "--json", "--connect-timeout", "3", "--", "true"
    )
    assert result.returncode == 4, result.stdout + result.stderr
    hosts = _host_records(result.stdout)
    assert hosts["web1"]["status"] == "unreachable"
    error = str(hosts["web1"]["error"])
    assert error.startswith("cannot resolve silent.remoteops.test: no answer"), error
    assert hosts["db1"]["status"] == "unreachable"
    assert str(hosts["db1"]["error"]).startswith("cannot resolve gone.remoteops.test: "), hosts
    # At the deadline, not the resolver's 30 s, and the stuck lookup does not hold the exit.
    assert 2.5 <= elapsed < 8, elapsed
    assert float(str(hosts["db1"]["duration_s"])) < 2  # NXDOMAIN: no wait
    assert "Traceback" not in result.stderr


def test_name_without_a_resolver_cannot_resolve(tmp_path: Path, dns_netns: DnsNamespace) -> None:
    dns_netns.resolv_conf("nameserver 127.0.0.2\n")  # nothing listens there
    inventory = _dns_inventory(tmp_path, {"web1": "web1.remoteops.test"})
    result, elapsed = dns_netns.cli("run", "all", "-i", str(inventory), "--", "true")
    assert result.returncode == 4, result.stdout + result.stderr
    assert "web1: unreachable: cannot resolve web1.remoteops.test: " in result.stderr
    assert elapsed < 8


_MANY_LOOKUPS = """
import sys, threading, time
from remoteops.resolve import ResolveError, Resolver

resolver = Resolver(max_lookups=4)
errors, peak = [], 0

def work(i):
    try:
        resolver.resolve(f"silent{i % 6}.remoteops.test", 22, deadline=time.monotonic() + 1.5)
    except ResolveError as exc:
        errors.append(str(exc))

workers = [threading.Thread(target=work, args=(i,)) for i in range(40)]
for w in workers:
    w.start()
while any(w.is_alive() for w in workers):
    peak = max(peak, sum(t.name.startswith("resolve ") for t in threading.enumerate()))
    time.sleep(0.005)
print(len(errors), peak, resolver.in_flight())
"""


def test_stuck_lookups_are_bounded_and_do_not_hold_the_exit(dns_netns: DnsNamespace) -> None:
    """40 lookups of 6 silent names with room for 4: at most 4 threads, all done at the deadline."""
    start = time.monotonic()
    result = subprocess.run(
        ["ip", "netns", "exec", dns_netns.name, sys.executable, "-c", _MANY_LOOKUPS],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    failed, peak, in_flight = map(int, result.stdout.split())
    assert failed == 40
    assert 1 <= peak <= 4
    assert in_flight == 4  # still stuck in the C library, abandoned
    assert elapsed < 10  # not the resolver's 30 s
