"""`--stdin -`, and host names that cannot be file names, against the lab's real sshd servers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from remoteops.lab import Lab
from tests.helpers import run_cli as cli

pytestmark = pytest.mark.integration

LONG = "h" + "x" * 299  # 300 characters: a valid inventory name, too long for a file name


def accepted(lab: Lab, host: str) -> int:
    """Logins sshd accepted so far on ``host`` (LogLevel VERBOSE logs one line per login)."""
    return lab.sshd_log(host).read_text(errors="replace").count("Accepted publickey")


def long_name_inventory(lab: Lab, tmp_path: Path) -> Path:
    """The lab's inventory with one more web host: a 300-character name for the first
    lab host's address."""
    data = yaml.safe_load(lab.inventory.read_text())
    first = lab.hosts[0]
    web = data["all"]["children"]["web"]["hosts"]
    web[LONG] = {"ansible_host": first.address, "ansible_port": first.port}
    path = tmp_path / "long.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_stdin_dash_sends_standard_input_once_to_every_host(lab: Lab) -> None:
    payload = "line one\nline two\n" * 100
    result = cli("run", "all", "-i", str(lab.inventory), "--stdin", "-", "--json", "--", "cat",
                 stdin=payload)  # fmt: skip
    assert result.returncode == 0, result.stderr
    hosts = [line for line in result.stdout.splitlines() if '"type": "host"' in line]
    assert len(hosts) == len(lab.hosts)
    import json

    assert {json.loads(h)["stdout"] for h in hosts} == {payload}


def get_playbook(tmp_path: Path, dest: str) -> Path:
    """A playbook of one get step into ``dest`` (its line 4) on the web hosts."""
    path = tmp_path / "fetch.yml"
    path.write_text(
        f"- hosts: web\n  steps:\n    - get:\n        dest: {dest}\n        src: /etc/hostname\n"
    )
    return path


def test_a_command_that_ends_without_reading_its_stdin_keeps_its_result(
    lab: Lab, tmp_path: Path
) -> None:
    """As with ssh: a command that exits before reading what --stdin sends (the channel is
    closed under the write) is that command's result, never a connection failure."""
    data = tmp_path / "big"
    data.write_bytes(b"x" * (16 << 20))  # far more than the channel's window
    result = cli("run", "all", "-i", str(lab.inventory), "--json", "--stdin", str(data),
                 "--", "exit 3")  # fmt: skip
    assert result.returncode == 5, result.stderr
    hosts = [r for r in map(json.loads, result.stdout.splitlines()) if r["type"] == "host"]
    assert len(hosts) == len(lab.hosts)
    for host in hosts:
        assert (host["status"], host["exit_code"]) == ("failed", 3), host


@pytest.mark.parametrize("command", ["run", "get", "play"])
def test_a_host_name_too_long_for_a_file_is_refused_before_any_host_is_contacted(
    lab: Lab, tmp_path: Path, command: str
) -> None:
    inventory = long_name_inventory(lab, tmp_path)
    first = lab.hosts[0].name
    before = accepted(lab, first)
    out = tmp_path / "out"
    args = {
        "run": ["run", "web", "-i", str(inventory), "--out-dir", str(out), "--", "hostname"],
        "get": ["get", "web", "-i", str(inventory), "/etc/hostname", str(out)],
        "play": ["play", str(get_playbook(tmp_path, str(out))), "-i", str(inventory)],
    }[command]
    result = cli(*args)

    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("remoteops: error: ")
    assert f"host '{LONG[:40]}...' cannot name a file there (300 bytes" in lines[0]
    assert "ansible_host" in lines[0]
    assert "internal error" not in result.stderr
    assert not out.exists()  # nothing was written, not even the directory
    time.sleep(0.3)  # sshd logs a login as it accepts it; give it time to appear
    assert accepted(lab, first) == before  # no host was contacted


def test_a_templated_get_dest_refuses_the_long_name_on_its_host_only(
    lab: Lab, tmp_path: Path
) -> None:
    """A dest that depends on the host is known only as the step runs: that host fails
    with the reason, the others fetch."""
    inventory = long_name_inventory(lab, tmp_path)
    out = tmp_path / "out"
    playbook = get_playbook(tmp_path, "'{{ playbook_dir }}/out'")
    result = cli("play", str(playbook), "-i", str(inventory), "--json")
    assert result.returncode == 5, result.stderr
    assert "internal error" not in result.stderr
    assert "Traceback" not in result.stderr
    import json

    hosts = {
        record["host"]: record
        for record in map(json.loads, result.stdout.splitlines())
        if record["type"] == "host"
    }
    assert hosts[LONG]["status"] == "failed"
    assert "cannot name a file there (300 bytes" in hosts[LONG]["error"]
    web = [h for h in hosts if h != LONG]
    assert web
    assert all(hosts[h]["status"] == "ok" for h in web)
    assert all((out / h / "etc" / "hostname").is_file() for h in web)


def test_a_long_host_name_works_with_retry_file_and_does_not_widen_the_prefix_column(
    lab: Lab, tmp_path: Path
) -> None:
    inventory = long_name_inventory(lab, tmp_path)
    retry = tmp_path / "failed.txt"
    first = lab.hosts[0].name
    # The long name's host (the first lab host) fails; the others succeed.
    command = f"hostname; test $(hostname) != {first}"
    result = cli("run", "web", "-i", str(inventory), "--retry-file", str(retry), "--", command)
    assert result.returncode == 5, result.stderr
    assert sorted(retry.read_text().split()) == sorted([first, LONG])
    # Other hosts' lines are padded to 40 characters at most, not to the long name.
    web = [h.name for h in lab.hosts if h.name.startswith("web")]
    for name in web[1:]:
        (line,) = [x for x in result.stdout.splitlines() if x.startswith(f"{name} ")]
        assert line.index(":") <= 40, line
    assert f"{LONG}: {first}" in result.stdout.splitlines()
    # The retry file selects the long name again.
    again = cli("inventory", "list", "-i", str(inventory), "-l", f"@{retry}")
    assert again.returncode == 0, again.stderr
    assert LONG in again.stdout.split()
