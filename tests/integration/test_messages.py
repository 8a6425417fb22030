"""What a person reads after a run against real sshd servers: one line per problem, in
plain words, precise (the signal's name, sudo's refusal, how many attempts), counts in
agreement, host lists folded, and a suggestion for a misspelled pattern."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from remoteops.lab import Lab, lab_up
from tests.conftest import free_port
from tests.helpers import run_cli as cli

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-m", "remoteops", "--no-log-file"]


def _touched(lab: Lab, path: str) -> list[str]:
    return [h.name for h in lab.hosts if lab.host_path(h.name, path).exists()]


def _signal_once_started(args: list[str], sig: int) -> tuple[int, str, str]:
    """Run the CLI until one of its hosts prints 'started', send ``sig``, return what it said."""
    proc = subprocess.Popen(
        [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=False
    )
    assert proc.stdout is not None
    seen = b""
    try:
        deadline = time.monotonic() + 30
        while b"started" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                seen += chunk
        assert b"started" in seen, seen
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    return proc.returncode, (seen + out).decode(), err.decode()


# --------------------------------------------------------------------------- run


def test_a_killed_command_names_its_signal_and_one_host_is_one_host(lab: Lab) -> None:
    host = lab.hosts[0].name
    result = cli("run", host, "-i", str(lab.inventory), "--", "kill -9 $$")
    assert result.returncode == 5, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == f"{host}: failed: killed by SIGKILL"
    assert lines[1].startswith("1 host: 0 ok, 1 failed ("), lines
    assert lines[2:] == [f"  {host}: failed: killed by SIGKILL"]
    as_json = cli("run", host, "-i", str(lab.inventory), "--json", "--", "kill -TERM $$")
    (obj,) = [json.loads(line) for line in as_json.stdout.splitlines()[:1]]
    assert (obj["status"], obj["signal"], obj["error"]) == (
        "failed",
        "SIGTERM",
        "killed by SIGTERM",
    )


def test_a_wrong_sudo_password_is_said_as_such(lab: Lab, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    host = lab.hosts[0].name
    base = ["run", host, "-i", str(lab.inventory), "--become"]
    result = cli(*base, "--become-password-file", str(wrong), "--", "id -u")
    assert result.returncode == 5, result.stderr
    assert f"{host}: failed: sudo: wrong password for {lab.user};" in result.stderr
    assert "exit code 1" not in result.stderr
    missing = cli(*base, "--", "id -u")
    assert f"{host}: failed: sudo: {lab.user} needs a password" in missing.stderr
    right = cli(*base, "--become-password-file", str(lab.become_password_file), "--", "id -u")
    assert right.returncode == 0, right.stderr
    assert right.stdout == f"{host}: 0\n"


def test_bad_key_and_connect_timeout_are_refused_before_any_host(lab: Lab, tmp_path: Path) -> None:
    marker = f"/tmp/never-{uuid.uuid4().hex[:10]}"
    missing = tmp_path / "no-such-key"
    for args, said in (
        (["--key", str(missing)], f"--key {missing}: No such file or directory"),
        (["--connect-timeout", "0"], "--connect-timeout must be more than 0 seconds"),
        (["-t", "0"], "--timeout must be more than 0 seconds"),
    ):
        result = cli("run", "all", "-i", str(lab.inventory), *args, "--", "touch", marker)
        assert result.returncode == 2, (args, result.stderr)
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"remoteops: error: {said}"), line
    assert _touched(lab, marker) == []


def test_retries_say_how_many_attempts_were_made(lab: Lab, tmp_path: Path) -> None:
    with contextlib.closing(socket.socket()) as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        port = closed.getsockname()[1]
        inventory = tmp_path / "hosts.yml"
        inventory.write_text(
            "all:\n  hosts:\n    gone:\n"
            f"      ansible_host: 127.0.0.1\n      ansible_port: {port}\n"
        )
        result = cli(
            "run", "all", "-i", str(inventory), "--retries", "2", "--known-hosts",
            str(lab.known_hosts), "--json", "--", "true",
        )  # fmt: skip
        text = cli(
            "run", "all", "-i", str(inventory), "--retries", "1", "--known-hosts",
            str(lab.known_hosts), "--", "true",
        )  # fmt: skip
    assert result.returncode == 4, result.stderr
    (host,) = [json.loads(line) for line in result.stdout.splitlines() if '"host"' in line]
    assert host["attempts"] == 3
    assert host["status"] == "unreachable"
    assert f"gone: unreachable after 2 attempts: connection to 127.0.0.1:{port} refused" in (
        text.stderr
    )


def test_sigterm_stops_the_run_without_offering_ctrl_c(lab: Lab) -> None:
    host = lab.hosts[0].name
    code, _out, err = _signal_once_started(
        ["run", host, "-i", str(lab.inventory), "--", "echo started; sleep 60"], signal.SIGTERM
    )
    assert code == 143, err
    lines = err.splitlines()
    assert lines[0] == "remoteops: terminated (SIGTERM); stopping remote commands"
    assert "Ctrl-C" not in err
    assert f"{host}: interrupted: the command was stopped on the host" in lines
    assert "interrupted: interrupted" not in err
    assert "1 host: 0 ok, 1 interrupted" in err


def test_put_warnings_have_no_logger_prefix(lab: Lab, remote_dir: str, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.txt").write_text("a\n")
    os.mkfifo(tree / "pipe")
    host = lab.hosts[0].name
    result = cli("put", host, str(tree), f"{remote_dir}/", "-i", str(lab.inventory))
    assert result.returncode == 0, result.stderr
    assert f"remoteops: warning: local {tree}/pipe: not a regular file; skipped" in result.stderr
    assert "WARNING" not in result.stderr
    assert "remoteops.cli_transfer" not in result.stderr


def test_analysis_lists_matching_hosts_folds_findings_and_keeps_numbers(lab: Lab) -> None:
    web = sorted(h.name for h in lab.hosts if h.name.startswith("web"))
    others = sorted(h.name for h in lab.hosts if not h.name.startswith("web"))
    result = cli(
        "run", "all", "-i", str(lab.inventory), "--gather",
        "-a", "grep:^web", "-a", "extract:size=(?P<size>[0-9.]+)",
        "--", "hostname; echo size=270553436160.5",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # The tables follow the hosts' (gathered) output; -q would print neither on success.
    tables = result.stdout[result.stdout.index("== grep:") :]
    lines = tables.splitlines()
    assert lines[0] == f"== grep:^web: {len(web)} lines match on {len(web)} of 6 hosts"
    for name in others:
        assert not any(line.split()[:1] == [name] for line in lines[:4]), result.stdout
    assert f"  ! web[01-{len(web):02d}] ({len(web)}): 1 line matches '^web'" in lines
    assert any(line.startswith("  no match on db[01-") for line in lines), result.stdout
    assert tables.count("270553436160.5") == len(lab.hosts)
    assert "e+" not in tables


# --------------------------------------------------------------------------- patterns


def test_a_misspelled_pattern_gets_one_line_and_a_suggestion(lab: Lab, tmp_path: Path) -> None:
    marker = f"/tmp/never-{uuid.uuid4().hex[:10]}"
    inventory = str(lab.inventory)
    result = cli("run", "wbe", "-i", inventory, "--", "touch", marker)
    assert result.returncode == 2
    assert result.stderr == (
        f"remoteops: error: no host matches 'wbe'; did you mean web? (inventory {inventory})\n"
    )
    both = cli("run", "wbe:&eu", "-i", inventory, "--", "touch", marker)
    assert both.returncode == 2
    assert both.stderr.splitlines() == [
        "remoteops: error: no host matches 'wbe:&eu': 'wbe' matches no host or group; "
        f"did you mean web? (inventory {inventory})"
    ]
    limited = cli("run", "web", "-l", "wbe01", "-i", inventory, "--", "touch", marker)
    assert "'wbe01' matches no host or group; did you mean web01?" in limited.stderr
    book = tmp_path / "book.yml"
    book.write_text(f"- hosts: wbe\n  steps:\n    - run: touch {marker}\n")
    played = cli("play", str(book), "-i", inventory)
    assert played.returncode == 2
    assert played.stderr == (
        f"remoteops: error: {book}:1: play 'play 1': no host matches 'wbe'; did you mean web?\n"
    )
    assert _touched(lab, marker) == []


# --------------------------------------------------------------------------- play


def test_ctrl_c_in_play_says_interrupted_not_failed(lab: Lab, tmp_path: Path) -> None:
    book = tmp_path / "book.yml"
    book.write_text(
        "- hosts: web\n"
        "  steps:\n"
        "    - name: nap\n"
        "      run: echo started; sleep 60\n"
        "    - name: after\n"
        "      run: echo after\n"
    )
    code, out, err = _signal_once_started(
        ["play", str(book), "-i", str(lab.inventory)], signal.SIGINT
    )
    assert code == 130, err
    assert "remoteops: interrupted during step 1 'nap'" in err.splitlines()
    assert "failed" not in err
    assert "after" not in out
    recap = out[out.index("RECAP") :].splitlines()[1:]
    assert recap, out
    for line in recap:
        assert "failed=0" in line, out
        assert "interrupted=1" in line, out


def test_a_rollout_stopped_with_one_batch_left_names_batch_3(lab: Lab, tmp_path: Path) -> None:
    names = [h.name for h in lab.hosts]  # inventory order: batches of two
    book = tmp_path / "book.yml"
    book.write_text(
        "- hosts: all\n"
        "  serial: 2\n"
        "  steps:\n"
        f"    - run: case {{{{ inventory_hostname }}}} in {names[2]}|{names[3]}) exit 1;; esac\n"
    )
    result = cli("play", str(book), "-i", str(lab.inventory), "--json")
    assert result.returncode == 5, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["stopped"].endswith(": all 2 hosts failed; batch 3 (2 hosts) not started")
    assert "batches 3-3" not in result.stderr


# --------------------------------------------------------------------------- lab


def test_lab_up_names_a_dead_host_and_how_to_restart(
    lab_factory: list[Path], tmp_path: Path
) -> None:
    lab_dir = tmp_path / "small"
    lab_factory.append(lab_dir)
    port = free_port()
    small = lab_up(lab_dir, hosts=2, port=port).lab
    dead = small.hosts[1]
    os.kill(dead.pid, signal.SIGTERM)  # the lab's own sshd, started by this test
    deadline = time.monotonic() + 10
    while dead.pid in small.live_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    result = cli("lab", "up", "--dir", str(lab_dir), "--hosts", "2", "--port", str(port))
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert f"but 1 of its 2 hosts is down: {dead.name} ({dead.name}'s sshd exited" in line
    assert line.endswith(
        f"restart the lab: remoteops lab down --dir {lab_dir} && remoteops lab up "
        f"--dir {lab_dir} --hosts 2 --port {port}"
    )
