"""The lab: real sshd servers that look like distinct hosts to OpenSSH's own client."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import paramiko
import pytest

from remoteops.lab import Lab, descendants, is_alive, lab_down, lab_up
from tests.conftest import free_port
from tests.helpers import run_cli as cli

pytestmark = pytest.mark.integration


def ssh(lab: Lab, host: str, command: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run ``command`` on a lab host with OpenSSH's client and strict host key checking."""
    return subprocess.run(
        ["ssh", "-F", str(lab.ssh_config), "-o", "StrictHostKeyChecking=yes", host, command],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        **kwargs,  # type: ignore[arg-type]
    )


def test_every_host_answers_openssh_with_its_own_hostname(lab: Lab) -> None:
    names = []
    for host in lab.hosts:
        result = ssh(lab, host.name, "hostname")
        assert result.returncode == 0, result.stderr
        names.append(result.stdout.strip())
    assert names == [h.name for h in lab.hosts]
    assert len(set(names)) == len(lab.hosts)


def test_hosts_have_distinct_addresses_and_host_keys(lab: Lab) -> None:
    assert len({h.address for h in lab.hosts}) == len(lab.hosts)
    lines = lab.known_hosts.read_text().splitlines()
    keys = {line.split()[2] for line in lines}
    assert len(lines) == len(lab.hosts)
    assert len(keys) == len(lab.hosts)


def test_file_systems_are_private_per_host(lab: Lab, remote_dir: str) -> None:
    first, second = lab.hosts[0].name, lab.hosts[1].name
    for area in ("/srv", remote_dir, "~"):
        path = f"{area}/only-on-first-{os.getpid()}"
        assert ssh(lab, first, f"echo hello > {path}").returncode == 0
        assert ssh(lab, first, f"cat {path}").stdout == "hello\n"
        assert ssh(lab, second, f"test -e {path}").returncode == 1
        ssh(lab, first, f"rm -f {path}")


def test_login_user_is_unprivileged_and_sudo_takes_the_password(lab: Lab) -> None:
    host = lab.hosts[0].name
    assert ssh(lab, host, "id -u").stdout.strip() != "0"
    password = lab.become_password_file.read_text()
    result = ssh(lab, host, "sudo -S -p '' id -u", input=password)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"
    wrong = ssh(lab, host, "sudo -S -p '' id -u", input="not-the-password\n")
    assert wrong.returncode != 0


def test_root_logs_in_with_the_client_key_into_a_private_root_home(lab: Lab) -> None:
    """Lab hosts accept root as real fleets do; each host's /root is its own, never ours."""
    marker = f"root-only-{uuid.uuid4().hex[:10]}"
    result = cli(
        "run", "all", "-i", str(lab.inventory), "-u", "root", "--json", "--",
        f"id -u; stat -c %a:%U /root; hostname > /root/{marker}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    hosts = {
        obj["host"]: obj
        for obj in map(json.loads, result.stdout.splitlines())
        if obj["type"] == "host"
    }
    assert set(hosts) == {h.name for h in lab.hosts}
    for host in lab.hosts:
        assert hosts[host.name]["stdout"].splitlines() == ["0", "700:root"]
        local = lab.host_path(host.name, f"/root/{marker}")
        assert local.parent == lab.host_root(host.name) / "root-home"
        assert local.read_text() == f"{host.name}\n"  # each host wrote its own /root
        local.unlink()
    assert not (Path("/root") / marker).exists()
    # The inventory's user is still the unprivileged one.
    assert ssh(lab, lab.hosts[0].name, "id -u").stdout.strip() != "0"


def test_lab_dir_under_root_home_still_isolates_root(
    lab_factory: list[Path], tmp_path: Path
) -> None:
    """The default lab dir is under $XDG_STATE_HOME, i.e. /root: binding /root must not hide it."""
    import tempfile

    lab_dir = Path(tempfile.mkdtemp(prefix=".remoteops-test-lab-", dir="/root"))
    lab_factory.append(lab_dir)
    try:
        home = lab_up(lab_dir, hosts=2, port=free_port()).lab
        marker = f"m-{uuid.uuid4().hex[:10]}"
        first, second = (h.name for h in home.hosts)
        for user in ("root", home.user):
            args = ["-l", user]
            shell = ["ssh", "-F", str(home.ssh_config), *args, first, f"touch ~/{marker}"]
            assert subprocess.run(shell, capture_output=True, timeout=30).returncode == 0
            again = ["ssh", "-F", str(home.ssh_config), *args, second, f"test -e ~/{marker}"]
            assert subprocess.run(again, capture_output=True, timeout=30).returncode == 1
        assert (home.host_root(first) / "root-home" / marker).exists()
        assert not (lab_dir.parent / marker).exists()
    finally:
        if (lab_dir / "lab.json").exists():
            lab_down(lab_dir)
        with contextlib.suppress(OSError):
            lab_dir.rmdir()


def test_inventory_lists_every_host_with_groups(lab: Lab) -> None:
    import yaml

    inventory = yaml.safe_load(lab.inventory.read_text())
    children = inventory["all"]["children"]
    web = set(children["web"]["hosts"])
    db = set(children["db"]["hosts"])
    eu = set(children["eu"]["hosts"])
    us = set(children["us"]["hosts"])
    names = {h.name for h in lab.hosts}
    assert web | db == names
    assert eu | us == names
    assert not (web & db)
    assert not (eu & us)
    for host in lab.hosts:
        group = "web" if host.name in web else "db"
        entry = children[group]["hosts"][host.name]
        assert (entry["ansible_host"], entry["ansible_port"]) == (host.address, host.port)


def test_status_json_reports_files_and_hosts(lab: Lab) -> None:
    result = cli("lab", "status", "--dir", str(lab.dir), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["dir"] == str(lab.dir)
    assert Path(data["inventory"]).is_file()
    assert Path(data["known_hosts"]).is_file()
    assert Path(data["client_key"]).is_file()
    assert [h["name"] for h in data["hosts"]] == [h.name for h in lab.hosts]
    assert all(h["answers"] for h in data["hosts"])


def test_up_on_a_running_lab_says_so(lab: Lab) -> None:
    same = cli("lab", "up", "--dir", str(lab.dir), "--hosts", str(len(lab.hosts)))
    assert same.returncode == 0
    assert "already running" in same.stderr
    other = cli("lab", "up", "--dir", str(lab.dir), "--hosts", str(len(lab.hosts) + 1))
    assert other.returncode == 2
    assert "lab down" in other.stderr
    assert "Traceback" not in other.stderr


def test_up_refuses_an_address_another_server_holds(
    lab_factory: list[Path], tmp_path: Path
) -> None:
    port = free_port()
    lab_dir = tmp_path / "clash"
    lab_factory.append(lab_dir)
    with socket.socket() as squatter:
        squatter.bind(("127.66.0.2", port))
        squatter.listen()
        result = cli("lab", "up", "--dir", str(lab_dir), "--hosts", "3", "--port", str(port))
    assert result.returncode == 2
    assert f"127.66.0.2:{port} (lab host web02) is taken" in result.stderr
    assert "Traceback" not in result.stderr
    # Nothing was started, and the port is usable again once freed.
    assert not (lab_dir / "lab.json").exists()
    lab = lab_up(lab_dir, hosts=3, port=port).lab
    assert all(is_alive(h.pid) for h in lab.hosts)


def test_fifty_hosts_then_down_leaves_nothing(lab_factory: list[Path], tmp_path: Path) -> None:
    lab_dir = tmp_path / "big"
    lab_factory.append(lab_dir)
    big = lab_up(lab_dir, hosts=50, port=free_port()).lab
    hostnames = set()
    for host in big.hosts:
        result = ssh(big, host.name, "hostname")
        assert result.returncode == 0, result.stderr
        hostnames.add(result.stdout.strip())
    assert len(hostnames) == 50
    assert ssh(big, "web01", "touch /srv/marker").returncode == 0
    assert ssh(big, "db25", "test -e /srv/marker").returncode == 1

    # A session still open at `lab down` time must go too.
    session = subprocess.Popen(
        ["ssh", "-F", str(big.ssh_config), "web02", "sleep 300"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not descendants([big.hosts[1].pid]):
            time.sleep(0.05)
        family = [*big.pids(), *descendants(big.pids())]
        assert len(family) > 50
        lab_down(lab_dir)
        assert not [pid for pid in family if is_alive(pid)]
        assert not lab_dir.exists()
    finally:
        session.kill()
        session.wait()


def test_latency_proxy_delays_every_round_trip(lab_factory: list[Path], tmp_path: Path) -> None:
    lab_dir = tmp_path / "slow"
    lab_factory.append(lab_dir)
    slow = lab_up(lab_dir, hosts=1, port=free_port(), latency_ms=100).lab
    host = slow.hosts[0]
    transport = paramiko.Transport((host.address, host.port))
    try:
        transport.start_client(timeout=10)
        transport.auth_publickey(
            slow.user, paramiko.Ed25519Key.from_private_key_file(str(slow.client_key))
        )
        rtts = []
        for _ in range(3):
            start = time.monotonic()
            transport.global_request("keepalive@openssh.com", wait=True)
            rtts.append(time.monotonic() - start)
    finally:
        transport.close()
    # A lower bound only: the proxy must add at least the requested delay.
    assert min(rtts) >= 0.100


def test_fallback_without_namespaces_still_serves_every_host(
    lab_factory: list[Path], tmp_path: Path
) -> None:
    """The non-root lab: distinct addresses and keys, shared hostname and files."""
    lab_dir = tmp_path / "plain"
    lab_factory.append(lab_dir)
    report = lab_up(lab_dir, hosts=3, port=free_port(), isolate=False)
    plain = report.lab
    assert not plain.is_root_mode
    assert any("hostname" in what for what in report.not_isolated)
    assert any("file system" in what for what in report.not_isolated)
    names = {ssh(plain, h.name, "hostname").stdout for h in plain.hosts}
    assert len(names) == 1  # the machine's own name: not isolated, as reported
    marker = tmp_path / "shared-marker"
    assert ssh(plain, plain.hosts[0].name, f"touch {marker}").returncode == 0
    assert ssh(plain, plain.hosts[1].name, f"test -e {marker}").returncode == 0


def test_lab_commands_print_paths_as_they_are(lab_factory: list[Path], tmp_path: Path) -> None:
    """A directory name holding [...] is printed as is, not read as a style (rich markup)."""
    lab_dir = tmp_path / "lab[blue]x[/blue]"
    lab_factory.append(lab_dir)
    up = cli("lab", "up", "--dir", str(lab_dir), "--hosts", "1", "--port", str(free_port()))
    assert up.returncode == 0, up.stderr
    assert f"inventory:   {lab_dir}/inventory.yml" in up.stderr
    path = cli("lab", "status", "--dir", str(lab_dir), "--inventory-path")
    assert path.stdout == f"{lab_dir}/inventory.yml\n"
    status = cli("lab", "status", "--dir", str(lab_dir))
    assert status.returncode == 0, status.stderr
    assert f"lab directory {lab_dir}" in status.stdout
    down = cli("lab", "down", "--dir", str(lab_dir))
    assert down.returncode == 0, down.stderr
    assert f"Lab in {lab_dir} is down" in down.stderr
