"""A session channel that never opens: the server does not answer, refuses, or closes.

After authentication every operation opens a session channel (``run``'s
command, ``put``/``get``'s SFTP) or sends keepalives (``ping``). When the
server never answers, the host is ``timeout``; when it refuses (OpenSSH's
``MaxSessions 0``, a real sshd here) or closes the connection first, it is
``unreachable``; each with one line saying that nothing ran, never an
"internal error", and listed in the retry file. A pooled connection that the
server closed between two operations is replaced, not reported.

The servers that misbehave after authentication are paramiko servers in this
process on 127.0.0.1 (the hostile peer, not the code under test), bounded in
time; the refusing one is a real sshd started by the test.
"""

from __future__ import annotations

import contextlib
import getpass
import io
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paramiko
import pytest

import remoteops
from remoteops.lab import find_sshd, render_sshd_config, wait_for_banner
from remoteops.lab.keys import ed25519_keypair
from tests.conftest import _require_sshd, free_port
from tests.integration.test_faults import FaultServer

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "remoteops", "--no-log-file"]
LIFETIME = 60.0


class _Peer(paramiko.ServerInterface):
    """One connection of ``HostileSSH``: any key logs in, then ``behave`` decides."""

    def __init__(self, owner: HostileSSH, transport: paramiko.Transport, number: int) -> None:
        self.owner = owner
        self.transport = transport
        # "first-close": the first connection closes at its first channel, later ones serve.
        self.behave = owner.behave
        if owner.behave == "first-close":
            self.behave = "close-at-channel" if number == 1 else "serve"

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        if self.behave == "close-after-auth":
            threading.Thread(target=self._close_once_authenticated, daemon=True).start()
        return paramiko.AUTH_SUCCESSFUL

    def _close_once_authenticated(self) -> None:
        deadline = time.monotonic() + 10
        while not self.transport.is_authenticated() and time.monotonic() < deadline:
            time.sleep(0.005)
        self.transport.close()

    def check_global_request(self, kind: str, msg: paramiko.Message) -> bool:
        if self.behave == "silent":
            self.owner.stop.wait(LIFETIME)
        elif self.behave == "close-after-auth":
            self.transport.close()  # when the closing thread was slower
        return False  # as OpenSSH answers keepalive@openssh.com

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if self.behave == "silent":
            self.owner.stop.wait(LIFETIME)  # never answers while the test runs
        elif self.behave in ("close-at-channel", "close-after-auth"):
            self.transport.close()  # (after auth: when the closing thread was slower)
        elif self.behave == "serve" and kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        def answer() -> None:
            with contextlib.suppress(Exception):
                time.sleep(0.05)  # after the request's reply
                channel.sendall(b"served\n")
                channel.send_exit_status(0)
                channel.close()

        threading.Thread(target=answer, daemon=True).start()
        return True


class HostileSSH:
    """What a ``FaultServer`` does with each connection: an SSH server that accepts
    any client key, then, per ``behave``:

    - ``silent``: never answers a channel open or a keepalive;
    - ``close-after-auth``: closes the connection right after authentication;
    - ``close-at-channel``: closes the connection when a channel is asked for;
    - ``first-close``: the first connection as ``close-at-channel``, the others
      open channels and answer every command with ``served``.
    """

    def __init__(self, behave: str) -> None:
        self.behave = behave
        private, self.public = ed25519_keypair()
        self.key = paramiko.Ed25519Key.from_private_key(io.StringIO(private.decode()))
        self.stop = threading.Event()
        self._count = 0
        self._lock = threading.Lock()

    def __call__(self, conn: socket.socket, stop: threading.Event) -> None:
        self.stop = stop
        with self._lock:
            self._count += 1
            number = self._count
        transport = paramiko.Transport(conn)
        transport.add_server_key(self.key)
        try:
            with contextlib.suppress(Exception):
                transport.start_server(server=_Peer(self, transport, number))
            stop.wait(LIFETIME)
        finally:
            transport.close()


@dataclass(frozen=True)
class Client:
    """The client side of a test: an inventory naming one host, with its key files."""

    inventory: Path
    dir: Path


def _client(tmp_path: Path, port: int, host_public: str, user: str) -> Client:
    private, public = ed25519_keypair()
    key = tmp_path / "client_key"
    key.write_bytes(private)
    key.chmod(0o600)
    (tmp_path / "client_key.pub").write_text(public + "\n")
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {host_public}\n")
    inventory = tmp_path / "hostile.yml"
    inventory.write_text(
        "all:\n  hosts:\n    hostile:\n"
        f"      ansible_host: 127.0.0.1\n      ansible_port: {port}\n"
        f"      ansible_user: {user}\n      ansible_ssh_private_key_file: {key}\n"
        f"      ansible_ssh_common_args: -o UserKnownHostsFile={known}\n"
    )
    (tmp_path / "up.txt").write_text("payload\n")
    return Client(inventory, tmp_path)


OPERATIONS = {
    "run": ["--", "echo", "ran"],
    "ping": [],
    "put": ["{dir}/up.txt", "/tmp/"],
    "get": ["/etc/hostname", "{dir}/got"],
}


def _operate(client: Client, operation: str) -> tuple[dict[str, object], int]:
    """``operation`` on the host with --json, a 2 s connect deadline and a retry file:
    the host's record and the exit code; stderr is checked for one clean line."""
    retry = client.dir / f"retry-{operation}.txt"
    argv = [operation, "all", "-i", str(client.inventory), "--connect-timeout", "2"]
    argv += ["--json", "--retry-file", str(retry)]
    argv += [part.format(dir=client.dir) for part in OPERATIONS[operation]]
    result = subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=60, check=False)
    assert "Traceback" not in result.stderr, result.stderr
    assert "internal error" not in result.stderr + result.stdout, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    (record,) = [r for r in records if r["type"] == "host"]
    if record["status"] != "ok":
        assert retry.read_text().split() == ["hostile"]  # nothing ran: run it again later
        assert "\n" not in str(record["error"])
        assert f"hostile: {record['status']}: {record['error']}" in result.stderr
    return record, result.returncode


@pytest.mark.parametrize("operation", ["run", "put", "get"])
def test_a_channel_never_opened_is_a_timeout(tmp_path: Path, operation: str) -> None:
    hostile = HostileSSH("silent")
    with FaultServer(hostile) as server:
        client = _client(tmp_path, server.port, hostile.public, "rolab")
        record, code = _operate(client, operation)
    assert (record["status"], code) == ("timeout", 3), record
    assert record["error"] == (
        "the server did not open a session channel within 2s (--connect-timeout); "
        "nothing ran: the host may be overloaded"
    )


def test_keepalives_never_answered_are_a_timeout(tmp_path: Path) -> None:
    hostile = HostileSSH("silent")
    with FaultServer(hostile) as server:
        client = _client(tmp_path, server.port, hostile.public, "rolab")
        record, code = _operate(client, "ping")
    assert (record["status"], code) == ("timeout", 3), record
    assert record["error"] == "no answer to 3 keepalives within 2s; the connection was closed"


@pytest.mark.parametrize("behave", ["close-after-auth", "close-at-channel"])
@pytest.mark.parametrize("operation", ["run", "ping", "put", "get"])
def test_a_connection_closed_after_authentication_is_unreachable(
    tmp_path: Path, operation: str, behave: str
) -> None:
    hostile = HostileSSH(behave)
    with FaultServer(hostile) as server:
        client = _client(tmp_path, server.port, hostile.public, "rolab")
        record, code = _operate(client, operation)
    if behave == "close-at-channel" and operation == "ping":  # ping opens no channel
        assert record["status"] == "ok", record
        return
    assert (record["status"], code) == ("unreachable", 4), record
    where = f"127.0.0.1:{server.port}"
    assert record["error"] in (
        f"the connection to {where} was closed before a session channel opened "
        "(after authentication); nothing ran",
        f"the connection to {where} was closed before it answered a keepalive",
    )
    assert ("keepalive" in str(record["error"])) == (operation == "ping")


@pytest.fixture
def refusing_sshd(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """A real OpenSSH sshd with ``MaxSessions 0``: it authenticates, then refuses
    every session channel. Yields its port and its host key's public line."""
    _require_sshd()
    sshd = find_sshd()
    assert sshd is not None
    etc = tmp_path / "sshd"
    (etc / "authorized_keys").mkdir(parents=True)
    private, public = ed25519_keypair()
    (etc / "ssh_host_ed25519_key").write_bytes(private)
    (etc / "ssh_host_ed25519_key").chmod(0o600)
    port = free_port()
    config = render_sshd_config(address="127.0.0.1", port=port, etc=str(etc), is_root_mode=False)
    assert "MaxSessions 100\n" in config
    (etc / "sshd_config").write_text(config.replace("MaxSessions 100\n", "MaxSessions 0\n"))
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privsep directory
    proc = subprocess.Popen(
        [sshd, "-D", "-r", "-f", str(etc / "sshd_config"), "-E", str(etc / "sshd.log")],
        stdin=subprocess.DEVNULL,
    )
    try:
        assert wait_for_banner("127.0.0.1", port, timeout=10), (etc / "sshd.log").read_text()
        yield port, public
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("operation", ["run", "put", "get"])
def test_a_refused_channel_is_unreachable(
    tmp_path: Path, refusing_sshd: tuple[int, str], operation: str
) -> None:
    port, public = refusing_sshd
    user = getpass.getuser()
    (tmp_path / "client").mkdir()
    client = _client(tmp_path / "client", port, public, user)
    (tmp_path / "sshd" / "authorized_keys" / user).write_text(
        (client.dir / "client_key.pub").read_text()
    )
    record, code = _operate(client, operation)
    assert (record["status"], code) == ("unreachable", 4), record
    # OpenSSH 9.2 answers "open failed", code 2 (SSH_OPEN_CONNECT_FAILED); others code 1.
    error = str(record["error"])
    assert error.startswith(f"127.0.0.1:{port} refused to open a session channel ("), error
    assert error.endswith(
        "); nothing ran: check sshd's MaxSessions and the account's restrictions"
    ), error


def test_a_pooled_connection_closed_between_operations_is_replaced(tmp_path: Path) -> None:
    hostile = HostileSSH("first-close")
    with FaultServer(hostile) as server:
        client = _client(tmp_path, server.port, hostile.public, "rolab")
        loaded = remoteops.load_inventory([client.inventory])
        targets = remoteops.resolve_targets(loaded, ["hostile"])
        with remoteops.Executor(targets, timeouts=remoteops.Timeouts(connect=5)) as executor:
            (pinged,) = executor.ping()
            assert pinged.status == "ok", pinged.error
            # The pooled connection is still up: the server closes it at the channel.
            (ran,) = executor.run_command(remoteops.CommandSpec(command="echo hi"))
        assert (ran.status, ran.stdout, ran.error) == ("ok", b"served\n", None)
        assert server.connections == 2
