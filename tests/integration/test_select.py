"""Never the wrong hosts: selections that touch the lab's real hosts."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from remoteops.lab import Lab
from tests.helpers import run_cli

pytestmark = pytest.mark.integration


def _touched(lab: Lab, marker: str) -> list[str]:
    return [h.name for h in lab.hosts if lab.host_path(h.name, marker).exists()]


def test_an_empty_retry_file_deploys_to_no_host(lab: Lab, tmp_path: Path) -> None:
    """A clean run leaves --retry-file empty; `-l @failed.txt` then once selected the
    whole fleet. It selects no host: exit 2, a message naming the file, nothing run."""
    inv = str(lab.inventory)
    failed = tmp_path / "failed.txt"
    clean = run_cli("run", "all", "-i", inv, "--retry-file", str(failed), "--", "true")
    assert clean.returncode == 0, clean.stderr
    assert failed.read_text() == ""
    comments = tmp_path / "comments.txt"
    comments.write_text("# hosts to retry\n\n   # none left\n")
    marker = f"/tmp/b3-{uuid.uuid4().hex[:10]}"
    for args in (
        ["all", "-l", f"@{failed}"],
        [f"@{failed}"],
        [f"@{comments}"],
        ["web", "-l", f"@{comments}"],
        [f"@{failed}:!db"],
    ):
        result = run_cli("run", *args, "-i", inv, "--", "touch", marker)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.splitlines()
        assert len(lines) == 2, (args, lines)
        path = str(comments if "comments" in " ".join(args) else failed)
        assert lines[0] == (
            f"remoteops: warning: pattern file {path!r} names no host (it is empty or holds "
            "only comments): it selects no host"
        )
        assert lines[1].startswith("remoteops: error: no host matches ")
        assert path in lines[1]
        assert _touched(lab, marker) == []
    # the same file once it names a host selects exactly that host
    failed.write_text(f"{lab.hosts[1].name}\n")
    result = run_cli("run", "all", "-l", f"@{failed}", "-i", inv, "--", "touch", marker)
    assert result.returncode == 0, result.stderr
    assert _touched(lab, marker) == [lab.hosts[1].name]
    lab.host_path(lab.hosts[1].name, marker).unlink()


@pytest.fixture
def second_port(lab: Lab, tmp_path: Path) -> Iterator[int]:
    """A port on the first lab host's address that leads to the second lab host."""
    from tests.conftest import free_port

    first, second = lab.hosts[0], lab.hosts[1]
    port = free_port()
    config = tmp_path / "proxy.json"
    route = {"listen": [first.address, port], "target": [second.address, second.port]}
    config.write_text(json.dumps({"latency_ms": 0, "routes": [route]}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "remoteops.lab.proxy", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection((first.address, port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, "the test's TCP forwarder exited"
                assert time.monotonic() < deadline, "the test's TCP forwarder never listened"
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_one_address_on_two_ports_is_two_hosts(lab: Lab, tmp_path: Path, second_port: int) -> None:
    """pssh's host list format: root@10.0.0.1 and root@10.0.0.1:2205 were merged into
    one host (the last port won), so one of the two machines never ran anything."""
    first, second = lab.hosts[0], lab.hosts[1]
    known = tmp_path / "known_hosts"
    lines = lab.known_hosts.read_text().splitlines()
    key = next(line for line in lines if line.startswith(f"[{second.address}]:{second.port} "))
    lines.append(f"[{first.address}]:{second_port} " + key.split(" ", 1)[1])
    known.write_text("\n".join(lines) + "\n")
    hosts = tmp_path / "hosts.txt"
    hosts.write_text(
        f"{lab.user}@{first.address}:{first.port}\n"
        f"{lab.user}@{first.address}:{second_port}\n"
        f"{lab.user}@{first.address}:{first.port}\n"  # a duplicate line: reported once
    )
    common = ["-i", str(hosts), "--key", str(lab.client_key), "--known-hosts", str(known)]
    names = [f"{first.address}:{first.port}", f"{first.address}:{second_port}"]

    listed = run_cli("inventory", "list", *common[:2])
    assert listed.returncode == 0, listed.stderr
    assert [line.strip() for line in listed.stdout.splitlines()[1:]] == names
    assert listed.stderr == (
        f"remoteops: warning: {hosts}: line 3 repeats line 1 ({names[0]}); each host is used once\n"
    )

    out = tmp_path / "out"
    result = run_cli("run", "all", *common, "--out-dir", str(out), "--", "hostname")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("repeats line 1") == 1
    assert (out / f"{names[0]}.out").read_text() == f"{first.name}\n"
    assert (out / f"{names[1]}.out").read_text() == f"{second.name}\n"

    got = tmp_path / "got"
    result = run_cli("get", names[1], "/etc/hostname", str(got), *common)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in got.iterdir()) == [names[1]]
    assert (got / names[1] / "etc" / "hostname").read_text() == f"{second.name}\n"
