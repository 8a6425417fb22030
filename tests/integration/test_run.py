"""`run` and `ping` against the lab's real sshd servers and small fault servers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remoteops.lab import Lab
from tests.helpers import run_cli as cli

pytestmark = pytest.mark.integration


def json_lines(output: str) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    hosts = {obj["host"]: obj for obj in lines if obj["type"] == "host"}
    summary = [obj for obj in lines if obj["type"] == "summary"]
    assert len(summary) == 1
    assert lines[-1]["type"] == "summary"
    return hosts, summary[0]


def run(
    lab: Lab, *args: str, pattern: str = "all", **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return cli("run", pattern, "-i", str(lab.inventory), *args, **kwargs)


def test_every_host_returns_its_own_hostname(lab: Lab) -> None:
    result = run(lab, "--json", "--", "hostname")
    assert result.returncode == 0, result.stderr
    hosts, summary = json_lines(result.stdout)
    assert set(hosts) == {h.name for h in lab.hosts}
    for name, obj in hosts.items():
        assert obj["status"] == "ok"
        assert obj["exit_code"] == 0
        assert obj["stdout"] == f"{name}\n"
        assert obj["error"] is None
    assert summary["hosts"] == len(lab.hosts)
    assert summary["ok"] == len(lab.hosts)
    assert summary["exit_code"] == 0
    # The pipelined login sends each request once: sshd saw no protocol error.
    for host in lab.hosts:
        assert "dispatch_protocol_error" not in lab.sshd_log(host.name).read_text()
    assert "Oops" not in result.stderr


def test_live_lines_are_prefixed_by_host(lab: Lab) -> None:
    result = run(lab, "--", "echo one; echo two")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    for host in lab.hosts:
        mine = [
            line.split(":", 1)[1].strip()
            for line in lines
            if line.split(":")[0].strip() == host.name
        ]
        assert mine == ["one", "two"]


def test_exit_codes_and_signals(lab: Lab) -> None:
    names = [h.name for h in lab.hosts]
    script = (
        f"case $(hostname) in {names[0]}) exit 0;; {names[1]}) exit 1;; "
        f"{names[2]}) exit 255;; {names[3]}) kill -9 $$;; *) exit 0;; esac"
    )
    result = run(lab, "--json", "--", script)
    assert result.returncode == 5
    hosts, summary = json_lines(result.stdout)
    assert hosts[names[0]]["status"] == "ok"
    assert (hosts[names[1]]["status"], hosts[names[1]]["exit_code"]) == ("failed", 1)
    assert (hosts[names[2]]["status"], hosts[names[2]]["exit_code"]) == ("failed", 255)
    assert hosts[names[3]]["status"] == "failed"
    assert hosts[names[3]]["exit_code"] is None
    assert hosts[names[3]]["error"] == "killed by SIGKILL"
    assert hosts[names[3]]["signal"] == "SIGKILL"
    assert summary["failed"] == 3


def test_gather_folds_identical_output(lab: Lab) -> None:
    result = run(lab, "--gather", "--", "echo same")
    assert result.returncode == 0
    assert result.stdout.count("same") == 1
    assert f"({len(lab.hosts)})" in result.stdout


def test_out_dir_keeps_exact_bytes(lab: Lab, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run(
        lab, "--out-dir", str(out), "--json", "--", "printf '\\377\\000bin'; printf err >&2; exit 2"
    )
    assert result.returncode == 5
    hosts, _ = json_lines(result.stdout)
    for host in lab.hosts:
        assert (out / f"{host.name}.out").read_bytes() == b"\xff\x00bin"
        assert (out / f"{host.name}.err").read_bytes() == b"err"
        assert (out / f"{host.name}.exit").read_text().strip() == "2"
        assert hosts[host.name]["stdout"] == "\ufffd\x00bin"
    assert not list(out.glob(".*part"))


def test_large_output_is_capped_with_a_marker(lab: Lab) -> None:
    result = run(
        lab, "--json", "--max-output", "1000", "--", "head -c 200000 /dev/zero | tr '\\0' x"
    )
    assert result.returncode == 0
    hosts, _ = json_lines(result.stdout)
    for obj in hosts.values():
        assert obj["stdout"].startswith("x" * 1000)
        assert "199000 more bytes not kept" in obj["stdout"]
        assert obj["stdout_truncated_bytes"] == 199000


def test_command_timeout_stops_the_remote_process(lab: Lab) -> None:
    first = lab.hosts[0].name
    # A unique duration marks this test's process (lab hosts share one PID space).
    marker = f"3133{os.getpid() % 1000}.{time.time_ns() % 10**6}"
    result = run(lab, "--json", "-t", "1", "--", f"sleep {marker}; echo never", pattern=first)
    assert result.returncode == 3
    hosts, summary = json_lines(result.stdout)
    assert hosts[first]["status"] == "timeout"
    assert "--timeout" in hosts[first]["error"]
    assert summary["timeout"] == 1
    check = run(
        lab, "--", f"pgrep -f 'sleep [{marker[0]}]{marker[1:]}' || echo gone", pattern=first
    )
    assert "gone" in check.stdout


def test_become_with_password_file_and_stdin(lab: Lab, tmp_path: Path) -> None:
    data = tmp_path / "stdin.txt"
    data.write_text("from-stdin\n")
    result = run(
        lab,
        "--json",
        "--become",
        "--become-password-file",
        str(lab.become_password_file),
        "--stdin",
        str(data),
        "--",
        "id -u; cat",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    hosts, _ = json_lines(result.stdout)
    password = lab.become_password_file.read_text().strip()
    for obj in hosts.values():
        assert obj["stdout"] == "0\nfrom-stdin\n"
        assert password not in obj["stdout"] + obj["stderr"]


def test_env_is_sent_or_its_refusal_reported(lab: Lab) -> None:
    ok = run(
        lab, "--json", "--env", "REMOTEOPS_GREETING=hi there", "--", 'echo "$REMOTEOPS_GREETING"'
    )
    assert ok.returncode == 0
    hosts, _ = json_lines(ok.stdout)
    assert all(obj["stdout"] == "hi there\n" for obj in hosts.values())
    refused = run(lab, "--json", "--env", "NOT_ACCEPTED=1", "--", "true")
    assert refused.returncode == 5
    hosts, _ = json_lines(refused.stdout)
    assert all("refused --env NOT_ACCEPTED" in obj["error"] for obj in hosts.values())


def test_no_matching_host_exits_2_naming_the_pattern(lab: Lab) -> None:
    result = run(lab, "--", "true", pattern="nosuchgroup")
    assert result.returncode == 2
    assert "nosuchgroup" in result.stderr
    assert "Traceback" not in result.stderr


def test_retry_file_lists_failed_hosts(lab: Lab, tmp_path: Path) -> None:
    retry = tmp_path / "retry"
    first = lab.hosts[0].name
    result = run(lab, "--retry-file", str(retry), "--", f'test "$(hostname)" != {first}')
    assert result.returncode == 5
    assert retry.read_text() == f"{first}\n"
    again = run(lab, "--json", "-l", f"@{retry}", "--", "hostname")
    hosts, _ = json_lines(again.stdout)
    assert list(hosts) == [first]


def test_ping_reports_rtt_and_server_version(lab: Lab) -> None:
    result = cli("ping", "all", "-i", str(lab.inventory), "--json")
    assert result.returncode == 0, result.stderr
    hosts, _ = json_lines(result.stdout)
    for obj in hosts.values():
        assert obj["status"] == "ok"
        assert obj["server_version"].startswith("SSH-2.0-OpenSSH")
        assert obj["rtt_ms"] > 0


# --------------------------------------------------------------------------- host keys


def _inventory_with(lab: Lab, tmp_path: Path, known_hosts: Path) -> Path:
    text = lab.inventory.read_text().replace(str(lab.known_hosts), str(known_hosts))
    path = tmp_path / "inventory.yml"
    path.write_text(text)
    return path


def _accepted_logins(lab: Lab, host: str) -> int:
    return lab.sshd_log(host).read_text().count("Accepted publickey")


def _auth_attempts(lab: Lab, host: str) -> int:
    log = lab.sshd_log(host).read_text()
    return (
        log.count("Accepted publickey")
        + log.count("Failed publickey")
        + log.count("Postponed publickey")
    )


def test_unknown_host_key_is_refused_before_authentication(lab: Lab, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    inventory = _inventory_with(lab, tmp_path, empty)
    first = lab.hosts[0].name
    before = _auth_attempts(lab, first)
    result = cli("run", first, "-i", str(inventory), "--json", "--", "true")
    assert result.returncode == 4
    hosts, summary = json_lines(result.stdout)
    assert hosts[first]["status"] == "hostkey"
    assert "SHA256:" in hosts[first]["error"]
    assert "accept-new" in hosts[first]["error"]
    assert summary["unreachable"] == 1
    time.sleep(0.2)
    assert _auth_attempts(lab, first) == before
    assert empty.read_text() == ""


def test_accept_new_records_keys_then_strict_passes(lab: Lab, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text("# mine\n")
    inventory = _inventory_with(lab, tmp_path, known)
    result = cli(
        "run", "all", "-i", str(inventory), "--host-key-policy", "accept-new", "--", "true"
    )
    assert result.returncode == 0, result.stderr
    lines = known.read_text().splitlines()
    assert lines[0] == "# mine"
    assert sorted(lines[1:]) == sorted(lab.known_hosts.read_text().splitlines())
    strict = cli("run", "all", "-i", str(inventory), "--", "true")
    assert strict.returncode == 0


def test_changed_host_key_is_refused_under_every_policy(lab: Lab, tmp_path: Path) -> None:
    lines = lab.known_hosts.read_text().splitlines()
    # Give the first host the second host's key.
    name0, _, _ = lines[0].split(" ", 2)
    _, type1, key1 = lines[1].split(" ", 2)
    known = tmp_path / "known_hosts"
    known.write_text("\n".join([f"{name0} {type1} {key1}", *lines[1:]]) + "\n")
    before = known.read_bytes()
    inventory = _inventory_with(lab, tmp_path, known)
    first = lab.hosts[0].name
    for policy in ("strict", "accept-new"):
        result = cli(
            "run", "all", "-i", str(inventory), "--json", "--host-key-policy", policy, "--", "true"
        )
        assert result.returncode == 4
        hosts, summary = json_lines(result.stdout)
        assert hosts[first]["status"] == "hostkey"
        assert "CHANGED" in hosts[first]["error"]
        assert summary["ok"] == len(lab.hosts) - 1
    assert known.read_bytes() == before


# --------------------------------------------------------------------------- fault servers


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never sends a banner."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = server.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


def _mixed_inventory(lab: Lab, tmp_path: Path, extra: dict[str, int]) -> Path:
    lines = lab.inventory.read_text().splitlines()
    lines += ["    faults:", "      hosts:"]
    for name, port in extra.items():
        lines.append(f"        {name}: {{ansible_host: 127.0.0.1, ansible_port: {port}}}")
    path = tmp_path / "mixed.yml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_silent_server_times_out_and_healthy_hosts_are_unaffected(
    lab: Lab, tmp_path: Path, silent_server: int
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = int(probe.getsockname()[1])
    inventory = _mixed_inventory(lab, tmp_path, {"silent": silent_server, "closed": closed_port})
    start = time.monotonic()
    result = cli(
        "run", "all", "-i", str(inventory), "--json", "--connect-timeout", "2", "--", "hostname"
    )
    elapsed = time.monotonic() - start
    assert result.returncode == 3  # timeout wins over unreachable
    hosts, summary = json_lines(result.stdout)
    assert hosts["silent"]["status"] == "timeout"
    assert hosts["closed"]["status"] == "unreachable"
    assert "refused" in hosts["closed"]["error"]
    for host in lab.hosts:
        assert hosts[host.name]["status"] == "ok"
    assert summary["ok"] == len(lab.hosts)
    assert elapsed < 60  # generous: the deadline, not a hang, ended the run


def test_python_api_streams_results(lab: Lab) -> None:
    import remoteops

    inventory = remoteops.load_inventory([lab.inventory])
    names = [h.name for h in inventory.select("web")]
    targets = remoteops.resolve_targets(inventory, names)
    with remoteops.Executor(targets, limits=remoteops.Limits(max_workers=2)) as executor:
        results = list(executor.run_command(remoteops.CommandSpec(command="hostname")))
    assert sorted(r.host for r in results) == sorted(names)
    assert all(r.stdout.decode().strip() == r.host for r in results)
    run = remoteops.RunResult()
    for r in results:
        run.add(r)
    assert run.exit_code == 0
    run.raise_on_error()


def test_closed_stdout_does_not_fail_hosts(lab: Lab) -> None:
    command = (
        f"{sys.executable} -m remoteops --no-log-file run all -i {lab.inventory} "
        "-- 'seq 1 20000' | head -1; exit ${PIPESTATUS[0]}"
    )
    result = subprocess.run(
        command, shell=True, executable="/bin/bash", capture_output=True, text=True, timeout=60
    )
    # 141: the output was cut short (README, exit codes); every host had started and finished.
    assert result.returncode == 141, result.stderr
    assert result.stdout.count("\n") == 1
    assert f"{len(lab.hosts)} finished, 0 not started" in result.stderr
    assert "failed" not in result.stderr
    assert "Traceback" not in result.stderr


def test_proxy_jump_shares_one_connection_to_the_jump_host(lab: Lab, tmp_path: Path) -> None:
    jump, *behind = lab.hosts
    option = f"-o UserKnownHostsFile={lab.known_hosts}"
    hop = f"{lab.user}@{jump.address}:{jump.port}"
    text = lab.inventory.read_text().replace(option, f"{option} -o ProxyJump={hop}")
    inventory = tmp_path / "jump.yml"
    inventory.write_text(text)
    before = _accepted_logins(lab, jump.name)
    names = ",".join(h.name for h in behind)
    result = cli("run", names, "-i", str(inventory), "--json", "--", "hostname")
    assert result.returncode == 0, result.stdout + result.stderr
    hosts, _ = json_lines(result.stdout)
    assert {n: o["stdout"].strip() for n, o in hosts.items()} == {h.name: h.name for h in behind}
    time.sleep(0.3)
    # One login on the jump host carried every host behind it.
    assert _accepted_logins(lab, jump.name) == before + 1


def test_two_hundred_hosts_give_two_hundred_distinct_answers(
    lab_factory: list[Path], tmp_path: Path
) -> None:
    from remoteops.lab import lab_up
    from tests.conftest import free_port

    lab_dir = tmp_path / "fleet"
    lab_factory.append(lab_dir)
    fleet = lab_up(lab_dir, hosts=200, port=free_port()).lab
    result = cli("run", "all", "-i", str(fleet.inventory), "--json", "--", "hostname", timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    hosts, summary = json_lines(result.stdout)
    assert summary["ok"] == 200
    assert {name: obj["stdout"] for name, obj in hosts.items()} == {
        h.name: f"{h.name}\n" for h in fleet.hosts
    }


def test_revoked_host_key_is_refused(lab: Lab, tmp_path: Path) -> None:
    lines = lab.known_hosts.read_text().splitlines()
    _, key_type, key = lines[0].split(" ", 2)
    known = tmp_path / "known_hosts"
    known.write_text("\n".join([f"@revoked * {key_type} {key}", *lines]) + "\n")
    inventory = _inventory_with(lab, tmp_path, known)
    result = cli(
        "run",
        "all",
        "-i",
        str(inventory),
        "--json",
        "--host-key-policy",
        "accept-new",
        "--",
        "true",
    )
    assert result.returncode == 4
    hosts, summary = json_lines(result.stdout)
    first = lab.hosts[0].name
    assert hosts[first]["status"] == "hostkey"
    assert "revoked" in hosts[first]["error"].lower()
    assert summary["ok"] == len(lab.hosts) - 1


def test_ssh_config_strict_host_key_checking_accept_new(lab: Lab, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    inventory = _inventory_with(lab, tmp_path, known)
    config = tmp_path / "ssh_config"
    config.write_text("Host *\n  StrictHostKeyChecking accept-new\n")
    result = cli("run", "all", "-i", str(inventory), "-F", str(config), "--", "true")
    assert result.returncode == 0, result.stderr
    assert len(known.read_text().splitlines()) == len(lab.hosts)
    # An explicit --host-key-policy still wins over ssh_config.
    known.write_text("")
    strict = cli(
        "run",
        "all",
        "-i",
        str(inventory),
        "-F",
        str(config),
        "--host-key-policy",
        "strict",
        "--",
        "true",
    )
    assert strict.returncode == 4


def test_proxy_command_from_the_inventory(lab: Lab, tmp_path: Path) -> None:
    jump = lab.hosts[0]
    option = f"-o UserKnownHostsFile={lab.known_hosts}"
    proxy = f"ssh -F {lab.ssh_config} -W %h:%p {jump.name}"
    text = lab.inventory.read_text().replace(option, f'{option} -o "ProxyCommand={proxy}"')
    inventory = tmp_path / "proxy.yml"
    inventory.write_text(text)
    target = lab.hosts[1].name
    before = _accepted_logins(lab, jump.name)
    result = cli("run", target, "-i", str(inventory), "--json", "--", "hostname")
    assert result.returncode == 0, result.stdout + result.stderr
    hosts, _ = json_lines(result.stdout)
    assert hosts[target]["stdout"] == f"{target}\n"
    time.sleep(0.3)
    assert _accepted_logins(lab, jump.name) == before + 1  # OpenSSH's ssh -W logged in there
