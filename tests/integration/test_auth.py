"""Authentication against real sshd: key files, encrypted keys, ssh-agent, passwords."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from remoteops.lab import Lab
from tests.helpers import run_cli

pytestmark = pytest.mark.integration

PASSPHRASE = "correct horse battery staple"


def _env_without_agent() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SSH_AUTH_SOCK", None)
    return env


def _keyless_inventory(lab: Lab, tmp_path: Path, extra: str = "") -> Path:
    lines = [
        line
        for line in lab.inventory.read_text().splitlines()
        if "ansible_ssh_private_key_file" not in line
    ]
    if extra:
        index = lines.index("  vars:") + 1
        lines.insert(index, extra)
    path = tmp_path / "keyless.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def encrypted_key(lab: Lab, tmp_path: Path) -> Iterator[Path]:
    """An encrypted ed25519 key authorised on every lab host for this test only."""
    key = tmp_path / "enc_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", PASSPHRASE, "-f", str(key)], check=True
    )
    public = (tmp_path / "enc_key.pub").read_text()
    files = [lab.host_root(h.name) / "etc-ssh" / "authorized_keys" / lab.user for h in lab.hosts]
    saved = {f: f.read_text() for f in files}
    for f in files:
        f.write_text(saved[f] + public)
    try:
        yield key
    finally:
        for f, text in saved.items():
            f.write_text(text)


def _statuses(stdout: str) -> dict[str, dict[str, object]]:
    objs = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return {o["host"]: o for o in objs if o["type"] == "host"}


def test_encrypted_key_with_passphrase_file(lab: Lab, tmp_path: Path, encrypted_key: Path) -> None:
    inventory = _keyless_inventory(lab, tmp_path)
    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    ok = run_cli(
        "run",
        "all",
        "-i",
        str(inventory),
        "--key",
        str(encrypted_key),
        "--key-passphrase-file",
        str(secret),
        "--json",
        "--",
        "true",
        env=_env_without_agent(),
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert PASSPHRASE not in ok.stdout + ok.stderr

    without = run_cli(
        "run",
        "all",
        "-i",
        str(inventory),
        "--key",
        str(encrypted_key),
        "--json",
        "--",
        "true",
        env=_env_without_agent(),
    )
    assert without.returncode == 4
    for obj in _statuses(without.stdout).values():
        assert obj["status"] == "unreachable"
        assert "is encrypted" in str(obj["error"])
        assert "--key-passphrase-file" in str(obj["error"])


def test_passphrase_is_asked_once_on_a_terminal(
    lab: Lab, tmp_path: Path, encrypted_key: Path
) -> None:
    inventory = _keyless_inventory(lab, tmp_path)
    argv = [
        sys.executable,
        "-m",
        "remoteops",
        "--no-log-file",
        "run",
        "all",
        "-i",
        str(inventory),
        "--key",
        str(encrypted_key),
        "--",
        "hostname",
    ]
    pid, fd = pty.fork()
    if pid == 0:  # child: the CLI on a fresh terminal
        os.execve(sys.executable, argv, _env_without_agent())
    output = b""
    prompts = 0
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break  # EIO: the child closed the terminal
            if not chunk:
                break
            output += chunk
            if output.count(b"Passphrase for") > prompts:
                prompts += 1
                os.write(fd, PASSPHRASE.encode() + b"\n")
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert prompts == 1, output.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, output.decode(errors="replace")
    raw = output.decode(errors="replace")
    assert PASSPHRASE not in raw  # the terminal never echoed it
    assert "\x1b[" in raw  # host prefixes are coloured on a terminal
    text = re.sub(r"\x1b\[[0-9;]*m", "", raw)
    for host in lab.hosts:
        assert re.search(rf"{host.name}\s*: {host.name}", text)


def test_ssh_agent_keys_are_used(lab: Lab, tmp_path: Path) -> None:
    inventory = _keyless_inventory(lab, tmp_path)
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        env = dict(_env_without_agent(), SSH_AUTH_SOCK=str(sock))
        subprocess.run(["ssh-add", "-q", str(lab.client_key)], env=env, check=True)
        result = run_cli("run", "all", "-i", str(inventory), "--json", "--", "true", env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        no_agent = run_cli(
            "run", "all", "-i", str(inventory), "--json", "--", "true", env=_env_without_agent()
        )
        assert no_agent.returncode == 4
    finally:
        agent.terminate()
        agent.wait(10)


def test_password_from_inventory(lab: Lab, tmp_path: Path) -> None:
    password = lab.become_password_file.read_text().strip()
    inventory = _keyless_inventory(lab, tmp_path, extra=f"    ansible_password: {password}")
    first = lab.hosts[0].name
    before = lab.sshd_log(first).read_text().count("Accepted password")
    result = run_cli(
        "run", first, "-i", str(inventory), "--json", "--", "id -un", env=_env_without_agent()
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert _statuses(result.stdout)[first]["stdout"] == f"{lab.user}\n"
    assert password not in result.stderr
    time.sleep(0.2)
    assert lab.sshd_log(first).read_text().count("Accepted password") == before + 1


def test_ask_pass_needs_a_terminal(lab: Lab) -> None:
    result = run_cli("run", "all", "-i", str(lab.inventory), "--ask-pass", "--", "true")
    assert result.returncode == 2
    assert "needs a terminal" in result.stderr
