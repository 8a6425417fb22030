"""Process shards (``--procs``): the same run as one process.

(Ctrl-C and SIGTERM with ``--procs 2``: tests/integration/test_stop.py.)

A 200-host lab from the session lab's six sshds: inventory hosts are names
with the address and port of a lab host (one sshd serves many of them), and
what a host does depends on the lab host it reaches (each has its own
hostname), its login, its known_hosts file or a closed port, so every status
a run can end with is there.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from remoteops.lab import Lab, descendants, is_alive
from tests.helpers import run_cli
from tests.integration.test_stop import _cleanup, _host_lines, _running, _token, _wait_for

pytestmark = pytest.mark.integration

HOSTS = 200
# What the inventory host of each index does (index mod the length).
KINDS = ("ok", "ok", "failed", "timeout", "unreachable", "auth", "hostkey")
# The lab host each kind reaches (ok: 0 and 1 in turn; unreachable: none).
LAB_HOST = {"failed": 2, "timeout": 3, "auth": 4, "hostkey": 5}
TIMEOUT_S = 3


def _closed_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (connecting is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _big_inventory(lab: Lab, tmp_path: Path, count: int = HOSTS) -> Path:
    """``count`` inventory hosts over the lab's sshds, each KIND in turn."""
    lines = lab.known_hosts.read_text().splitlines()
    # The hostkey hosts' known_hosts gives their server another lab host's key.
    victim = lab.hosts[LAB_HOST["hostkey"]]
    other_key = lines[0].split(" ", 1)[1]
    bad = tmp_path / "known_hosts.bad"
    bad.write_text(f"[{victim.address}]:{victim.port} {other_key}\n")
    closed = _closed_port()
    hosts: dict[str, dict[str, Any]] = {}
    for index in range(count):
        kind = KINDS[index % len(KINDS)]
        lab_host = lab.hosts[LAB_HOST.get(kind, index % 2)]
        entry: dict[str, Any] = {"ansible_host": lab_host.address, "ansible_port": lab_host.port}
        if kind == "unreachable":
            entry = {"ansible_host": "127.0.0.1", "ansible_port": closed}
        elif kind == "auth":
            entry["ansible_user"] = "no-such-user"
        elif kind == "hostkey":
            entry = {
                "ansible_host": victim.address,
                "ansible_port": victim.port,
                "ansible_ssh_common_args": f"-o UserKnownHostsFile={bad}",
            }
        hosts[f"h{index:03d}-{kind}"] = entry
    inventory = {
        "all": {
            "vars": {
                "ansible_user": lab.user,
                "ansible_ssh_private_key_file": str(lab.client_key),
                "ansible_ssh_common_args": f"-o UserKnownHostsFile={lab.known_hosts}",
            },
            "hosts": hosts,
        }
    }
    path = tmp_path / "big.yml"
    path.write_text(yaml.safe_dump(inventory))
    return path


def _records(stdout: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The host records (by host name) and the summary, without durations."""
    objs = [json.loads(line) for line in stdout.splitlines()]
    for obj in objs:
        obj.pop("duration_s")
    hosts = sorted((o for o in objs if o["type"] == "host"), key=lambda o: o["host"])
    (summary,) = [o for o in objs if o["type"] == "summary"]
    return hosts, summary


def kinds_command(
    lab: Lab,
    *,
    failed: str = "echo bad >&2",
    timeout: str = "",
    rest: str = "echo out-$(hostname)",
) -> str:
    """A command the inventory's kinds answer as named: the failed host runs ``failed``
    and exits 3, the timeout host runs ``timeout`` and sleeps 60 s, the others ``rest``."""
    names = {kind: lab.hosts[LAB_HOST[kind]].name for kind in ("failed", "timeout")}
    return (
        f"case $(hostname) in {names['failed']}) {failed}; exit 3;; "
        f"{names['timeout']}) {timeout + '; ' if timeout else ''}sleep 60;; esac; {rest}"
    )


def test_procs_2_gives_the_records_of_procs_1_on_200_hosts(lab: Lab, tmp_path: Path) -> None:
    inventory = _big_inventory(lab, tmp_path)
    command = kinds_command(lab)
    runs = {}
    for procs in ("1", "2"):
        retry = tmp_path / f"retry-{procs}.txt"
        proc = run_cli(
            "-v", "run", "all", "-i", str(inventory), "--json", "--procs", procs,
            "-t", str(TIMEOUT_S), "--retry-file", str(retry), "--", command, timeout=180,
        )  # fmt: skip
        assert "Traceback" not in proc.stderr, proc.stderr
        sharded = f"--procs: {HOSTS} hosts over 2 processes" in proc.stderr
        assert sharded == (procs == "2"), proc.stderr[-2000:]
        runs[procs] = (proc.returncode, *_records(proc.stdout), retry.read_text())
    code, hosts, summary, retry_text = runs["1"]
    assert runs["2"] == runs["1"]
    # Every status a run can end with is among them, each where it belongs.
    assert len(hosts) == HOSTS
    assert summary["hosts"] == HOSTS
    by_kind: dict[str, set[str]] = {}
    for obj in hosts:
        by_kind.setdefault(obj["host"].split("-", 1)[1], set()).add(obj["status"])
    assert by_kind == {
        "ok": {"ok"},
        "failed": {"failed"},
        "timeout": {"timeout"},
        "unreachable": {"unreachable"},
        "auth": {"unreachable"},
        "hostkey": {"hostkey"},
    }
    auth = next(o for o in hosts if o["host"].endswith("-auth"))
    assert "auth" in auth["error"].lower(), auth
    assert code == 3  # a timeout outranks the rest (docs/exit-codes.md)
    assert retry_text.split() == sorted(o["host"] for o in hosts if o["status"] != "ok")


def test_accept_new_keys_from_every_shard_are_kept(lab: Lab, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    proc = run_cli(
        "-v", "ping", "all", "-i", str(lab.inventory), "--procs", "2", "--json",
        "--host-key-policy", "accept-new", "--known-hosts", str(known),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    expected = set(lab.known_hosts.read_text().splitlines())
    assert set(known.read_text().splitlines()) == expected
    assert len(expected) == len(lab.hosts)
    # What the workers log reaches the parent's stderr, once per host.
    for host in lab.hosts:
        assert proc.stderr.count(f"Host {host.address!r}: added ssh-ed25519 key") == 1, proc.stderr


def _start(argv: list[str], mark: str | None = None) -> subprocess.Popen[str]:
    """The CLI in a session of its own, as a terminal's foreground job would be."""
    env = {**os.environ, **({"REMOTEOPS_TEST_MARK": mark} if mark else {})}
    return subprocess.Popen(
        [sys.executable, "-m", "remoteops", "--no-log-file", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env=env,
    )


def test_a_worker_that_dies_reports_its_hosts_and_nothing_runs_twice(
    lab: Lab, remote_dir: str
) -> None:
    token = _token()
    # Shards are interleaved: the first worker has hosts 0, 2, 4; they wait, the others end.
    waiting = [h.name for h in lab.hosts[0::2]]
    quick = [h.name for h in lab.hosts[1::2]]
    command = (
        f"echo ran >> {remote_dir}/ran; "
        f"case $(hostname) in {'|'.join(waiting)}) sleep 600.{token};; esac"
    )
    argv = ["run", "all", "-i", str(lab.inventory), "--json", "--procs", "2", "--", command]
    with _cleanup([token]):
        proc = _start(argv)
        try:
            assert proc.stdout is not None
            seen = [json.loads(proc.stdout.readline())["host"] for _ in quick]
            assert sorted(seen) == sorted(quick)
            assert _wait_for(lambda: len(_running(token)) >= len(waiting), 20), _running(token)
            first = min(descendants([proc.pid]))  # forked first: the first shard
            os.kill(first, signal.SIGKILL)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 5, out + err
    hosts = _host_lines(out)
    assert sorted(hosts) == sorted(waiting)  # the quick hosts were read above
    for obj in hosts.values():
        assert obj["status"] == "failed", obj
        assert obj["error"] == "interrupted: worker process died (killed by SIGKILL)", obj
    assert "Traceback" not in err
    for host in lab.hosts:  # each host ran the command once
        assert lab.host_path(host.name, f"{remote_dir}/ran").read_text() == "ran\n", host.name


def test_play_refuses_procs_above_one(lab: Lab) -> None:
    book = Path(__file__).resolve().parents[2] / "playbooks" / "version-audit.yml"
    proc = run_cli("play", str(book), "-i", str(lab.inventory), "--procs", "2")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "remoteops: error: --procs 2: play runs in one process (each step waits for every "
        "host); drop --procs"
    ]
    # From the environment (meant for run, ping, put, get) it is passed over.
    env = {**os.environ, "REMOTEOPS_PROCS": "2"}
    proc = run_cli("play", str(book), "-i", str(lab.inventory), "-q", env=env)
    assert proc.returncode in (0, 5), proc.stderr


def test_out_dir_and_gather_are_those_of_one_process(lab: Lab, tmp_path: Path) -> None:
    command = "hostname; echo err-$(hostname) >&2; test $(hostname) != " + lab.hosts[1].name
    seen = {}
    for procs in ("1", "2"):
        out_dir = tmp_path / f"out-{procs}"
        for _ in range(2):  # the second run removes the first one's files, shards or not
            proc = run_cli(
                "run", "all", "-i", str(lab.inventory), "--procs", procs, "--gather",
                "--out-dir", str(out_dir), "--", command,
            )  # fmt: skip
        manifest = (out_dir / ".remoteops-last-run").read_text().splitlines()
        files = {p.name: p.read_bytes() for p in out_dir.iterdir() if p.name[0] != "."}
        seen[procs] = (proc.returncode, proc.stdout, files, sorted(manifest))
    assert seen["2"] == seen["1"]
    assert seen["1"][0] == 5
    assert len(seen["1"][2]) == 3 * len(lab.hosts)


def test_workers_whose_parent_is_killed_stop_their_remote_commands(lab: Lab) -> None:
    token = _token()
    argv = ["run", "all", "-i", str(lab.inventory), "--procs", "2", "--", f"sleep 600.{token}"]
    with _cleanup([token]):
        proc = _start(argv)
        try:
            assert _wait_for(lambda: len(_running(token)) >= len(lab.hosts), 20), _running(token)
            workers = descendants([proc.pid])
            assert len(workers) == 2, workers
            proc.kill()  # SIGKILL: the parent can tell nobody
            proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        # The workers see their pipe close, stop every remote command and exit.
        assert _wait_for(lambda: not _running(token), timeout=10), _running(token)
        assert _wait_for(lambda: not [p for p in workers if is_alive(p)], timeout=10), workers
