"""One engine, one session pool: every operation on a host reuses its one connection.

Connections are counted where they land: each lab sshd logs one "Accepted
publickey" line per login (LogLevel VERBOSE).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

import remoteops
from remoteops.execution import Lease, Work
from remoteops.lab import Lab
from remoteops.operations import run_on
from remoteops.results import HostResult
from remoteops.transfer import SourceSet, get, put
from tests.integration.test_play import json_lines, play, write_book

pytestmark = pytest.mark.integration


def _logins(lab: Lab, hosts: Iterable[str]) -> dict[str, int]:
    return {
        h: lab.sshd_log(h).read_text(errors="replace").count("Accepted publickey") for h in hosts
    }


def _new_logins(lab: Lab, before: dict[str, int], want: int) -> dict[str, int]:
    """Logins since ``before`` per host, once each host shows ``want`` (sshd may log
    a moment after the client is in; a count above ``want`` is returned at once)."""
    deadline = time.monotonic() + 10
    while True:
        now = _logins(lab, before)
        new = {h: now[h] - before[h] for h in before}
        if all(n >= want for n in new.values()) or time.monotonic() > deadline:
            return new
        time.sleep(0.05)


def _by_host(results: Iterator[HostResult]) -> dict[str, HostResult]:
    return {r.host: r for r in results}


@pytest.fixture
def executor(lab: Lab) -> Iterator[remoteops.Executor]:
    inventory = remoteops.load_inventory([lab.inventory])
    targets = remoteops.resolve_targets(inventory, [h.name for h in lab.hosts[:3]])
    with remoteops.Executor(targets, timeouts=remoteops.Timeouts(command=60)) as made:
        yield made


def test_every_operation_of_an_executor_reuses_one_connection_per_host(
    lab: Lab, executor: remoteops.Executor, tmp_path: Path, remote_dir: str
) -> None:
    names = [t.name for t in executor.targets]
    before = _logins(lab, names)
    ran = _by_host(executor.run_command(remoteops.CommandSpec(command="hostname")))
    assert {h: r.stdout.decode().strip() for h, r in ran.items()} == {h: h for h in names}
    (tmp_path / "motd").write_text("hello\n")
    sent = _by_host(put(executor, SourceSet.scan([str(tmp_path / "motd")]), f"{remote_dir}/"))
    assert {h: (r.status, r.extra["files"]) for h, r in sent.items()} == {
        h: ("ok", 1) for h in names
    }
    fetched = _by_host(get(executor, [f"{remote_dir}/motd"], tmp_path / "got"))
    assert all(r.status == "ok" for r in fetched.values()), fetched
    for host in names:
        assert (tmp_path / "got" / host / remote_dir.lstrip("/") / "motd").read_text() == "hello\n"
    pinged = _by_host(executor.ping())
    assert all(r.status == "ok" for r in pinged.values()), pinged
    # Four operations, one login per host: the first connected, the others reused it.
    assert _new_logins(lab, before, 1) == {h: 1 for h in names}


def test_fan_out_runs_work_on_a_subset_on_the_pooled_session(
    lab: Lab, executor: remoteops.Executor
) -> None:
    names = [t.name for t in executor.targets]
    before = _logins(lab, names)
    leases: list[tuple[str, float]] = []

    def whoami(lease: Lease) -> HostResult:
        leases.append((lease.target.name, lease.connect_s))
        spec = remoteops.CommandSpec(command="hostname")
        return run_on(lease.session, spec, cancel=lease.cancel, timeout=30)

    subset = executor.targets[:2]
    first = _by_host(executor.fan_out(whoami, subset))
    assert {h: r.stdout.decode().strip() for h, r in first.items()} == {
        t.name: t.name for t in subset
    }
    second = _by_host(executor.fan_out(whoami, subset[1:]))
    assert list(second) == [subset[1].name]
    assert second[subset[1].name].status == "ok"
    # The first call connected (connect_s > 0), the second reused the connection.
    assert [c > 0 for h, c in leases if h == subset[1].name] == [True, False]
    new = _new_logins(lab, before, 1)
    assert new == {subset[0].name: 1, subset[1].name: 1, names[2]: 0}


def test_a_connection_lost_under_an_operation_is_reported_then_replaced(
    lab: Lab, executor: remoteops.Executor
) -> None:
    host = executor.targets[0]
    before = _logins(lab, [host.name])
    # The command's parent is the server's process of this connection.
    lost = _by_host(executor.fan_out(_run("kill -9 $PPID"), [host]))[host.name]
    assert lost.status == "unreachable", lost
    assert "lost mid-command" in (lost.error or "")
    again = _by_host(executor.fan_out(_run("echo back"), [host]))[host.name]
    assert again.status == "ok", again.error
    assert again.stdout == b"back\n"
    assert _new_logins(lab, before, 2) == {host.name: 2}


def _run(command: str) -> Work:
    def work(lease: Lease) -> HostResult:
        spec = remoteops.CommandSpec(command=command)
        return run_on(lease.session, spec, cancel=lease.cancel, timeout=30)

    return work


def test_a_playbook_with_more_hosts_than_forks_keeps_one_connection_per_host(
    lab: Lab, tmp_path: Path
) -> None:
    """Steps in lockstep on 3 hosts, 1 at a time: the pool holds every host's
    connection (not just ``forks`` of them) from the first step to the last, put,
    get (through sudo) and ping steps included."""
    hosts = [h.name for h in lab.hosts[:3]]
    (tmp_path / "motd").write_text("hello\n")
    remote = f"/tmp/engine-{uuid.uuid4().hex[:8]}"
    book = write_book(
        tmp_path,
        f"- hosts: {','.join(hosts)}\n"
        "  steps:\n"
        "    - run: hostname\n"
        f"    - put: {{src: motd, dest: {remote}/}}\n"
        f"    - run: cat {remote}/motd\n"
        f"    - get: {{src: {remote}/motd, dest: {tmp_path / 'got'}}}\n"
        "      become: true\n"
        "    - ping:\n"
        f"    - run: rm -r {remote}\n",
    )
    before = _logins(lab, hosts)
    result = play(
        lab,
        book,
        "--json",
        "--forks",
        "1",
        "--become-password-file",
        str(lab.become_password_file),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines, summary = json_lines(result.stdout)
    assert summary["ok"] == 3
    assert len(lines) == 18
    assert all((tmp_path / "got" / h / remote.lstrip("/") / "motd").exists() for h in hosts)
    assert _new_logins(lab, before, 1) == {h: 1 for h in hosts}
