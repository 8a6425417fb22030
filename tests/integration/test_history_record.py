"""Every run, ping, put, get and play lands in the run history as it happens
(docs/history.md), with ``--no-history``, ``--job``, ``--rerun-failed``, ``--metrics``
and ``--report`` (docs/metrics.md, docs/reports.md), against the lab's real sshd."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from remoteops.history import HistoryStore
from remoteops.lab import Lab
from remoteops.metrics import read_metrics

pytestmark = pytest.mark.integration


def cli(
    state: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The CLI with its own state directory (the history lives there)."""
    return subprocess.run(
        [sys.executable, "-m", "remoteops", "--no-log-file", *args],
        env={**os.environ, "XDG_STATE_HOME": str(state), **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start(state: Path, lab: Lab, command: str) -> subprocess.Popen[str]:
    """``remoteops run all -- COMMAND`` started in the background, stdout a pipe."""
    return subprocess.Popen(
        [sys.executable, "-m", "remoteops", "--no-log-file", "run", "all", "-i",
         str(lab.inventory), "--", command],
        env={**os.environ, "XDG_STATE_HOME": str(state)},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def stop(proc: subprocess.Popen[str], how: signal.Signals) -> None:
    """Send ``how`` and reap the process (killed if it does not end in 30 s)."""
    try:
        proc.send_signal(how)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def store_of(state: Path) -> HistoryStore:
    return HistoryStore(state / "remoteops" / "history.sqlite3")


def _with_down_host(lab: Lab, tmp_path: Path, name: str = "down") -> Path:
    """The lab inventory plus a host ``name`` on a port where nothing listens."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = tmp_path / "with-down.yml"
    text = lab.inventory.read_text()
    entry = f"{name}: {{ansible_host: 127.0.0.1, ansible_port: {port}}}"
    text += f"    extra:\n      hosts:\n        {entry}\n"
    path.write_text(text)
    return path


# --------------------------------------------------------------------------- recording


def test_a_run_is_recorded_with_every_host_as_it_finished(lab: Lab, tmp_path: Path) -> None:
    state = tmp_path / "state"
    inv = str(_with_down_host(lab, tmp_path))
    done = cli(state, "run", "all", "-i", inv, "--connect-timeout", "3", "--", "echo hi; hostname")
    assert done.returncode == 4, done.stderr
    path = state / "remoteops" / "history.sqlite3"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    store = store_of(state)
    (run,) = store.list_runs()
    assert (run.command, run.pattern, run.job, run.exit_code, run.status) == (
        "run",
        "all",
        "run all",
        4,
        "failed",
    )
    assert run.argv[-2:] == ["--", "echo hi; hostname"]
    detail = store.show(run.id)
    by_host = {h["host"]: h for h in detail.hosts}
    assert set(by_host) == {h.name for h in lab.hosts} | {"down"}
    assert by_host["down"]["status"] == "unreachable"
    for host in lab.hosts:
        assert by_host[host.name]["status"] == "ok"
        assert by_host[host.name]["stdout"].startswith("hi\n")
    assert store.not_succeeded("run", "all") == (run.id, ["down"])


@pytest.mark.parametrize("how", ["--no-history", "REMOTEOPS_NO_HISTORY", "config"])
def test_history_can_be_turned_off(lab: Lab, tmp_path: Path, how: str) -> None:
    state = tmp_path / "state"
    args = ["ping", "all", "-i", str(lab.inventory), "-q"]
    env: dict[str, str] = {}
    if how == "--no-history":
        args.append("--no-history")
    elif how == "REMOTEOPS_NO_HISTORY":
        env["REMOTEOPS_NO_HISTORY"] = "1"
    else:
        config = tmp_path / "config.toml"
        config.write_text("[history]\nenabled = false\n")
        env["REMOTEOPS_CONFIG"] = str(config)
    done = cli(state, *args, env=env)
    assert done.returncode == 0, done.stderr
    assert not (state / "remoteops" / "history.sqlite3").exists()
    # The same without turning it off records the run: the test can tell.
    assert cli(state, "ping", "all", "-i", str(lab.inventory), "-q").returncode == 0
    assert len(store_of(state).list_runs()) == 1


def test_an_unwritable_history_is_one_warning_and_the_run_goes_on(lab: Lab, tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "remoteops").mkdir(parents=True)
    (state / "remoteops" / "history.sqlite3").mkdir()  # a directory where the file goes
    done = cli(state, "run", "all", "-i", str(lab.inventory), "--", "true")
    assert done.returncode == 0
    warnings = [line for line in done.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1, done.stderr
    assert "cannot record this run" in warnings[0]
    assert "Traceback" not in done.stderr


def test_every_command_is_recorded_under_its_job(lab: Lab, remote_dir: str, tmp_path: Path) -> None:
    state = tmp_path / "state"
    inv = str(lab.inventory)
    src = tmp_path / "a.txt"
    src.write_text("a\n")
    book = tmp_path / "book.yml"
    book.write_text("- hosts: web\n  steps:\n    - run: 'true'\n    - run: hostname\n")
    commands = [
        ["ping", "web", "-i", inv],
        ["put", "web", str(src), f"{remote_dir}/", "-i", inv, "--job", "push-a"],
        ["get", "web", f"{remote_dir}/a.txt", str(tmp_path / "got"), "-i", inv],
        ["play", str(book), "-i", inv],
    ]
    for args in commands:
        done = cli(state, *args, "-q")
        assert done.returncode == 0, (args, done.stderr)
    runs = list(reversed(store_of(state).list_runs()))
    assert [(r.command, r.job, r.exit_code) for r in runs] == [
        ("ping", "ping web", 0),
        ("put", "push-a", 0),
        ("get", "get web", 0),
        ("play", f"play {book}", 0),
    ]
    web = sorted(h.name for h in lab.hosts if "web" in h.groups)
    for run in runs[:3]:
        assert sorted(h["host"] for h in store_of(state).show(run.id).hosts) == web
    # A play keeps one record per host and step.
    play_hosts = store_of(state).show(runs[3].id).hosts
    assert len(play_hosts) == 2 * len(web)
    assert {h["step"] for h in play_hosts} == {1, 2}


def test_sigterm_mid_run_is_recorded_with_its_exit_code(lab: Lab, tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc = start(state, lab, "echo started; sleep 30")
    assert proc.stdout is not None
    first = proc.stdout.readline()  # a host started: the run is under way
    stop(proc, signal.SIGTERM)
    assert "started" in first
    assert proc.returncode == 143
    (run,) = store_of(state).list_runs()
    assert (run.exit_code, run.status) == (143, "failed")
    statuses = {h["status"] for h in store_of(state).show(run.id).hosts}
    assert statuses <= {"interrupted", "ok"}
    assert "interrupted" in statuses


def test_overlapping_runs_both_land(lab: Lab, tmp_path: Path) -> None:
    state = tmp_path / "state"
    procs = [start(state, lab, "sleep 0.5; hostname") for _ in range(2)]
    ended = [(proc, proc.communicate(timeout=120)[1]) for proc in procs]  # both reaped first
    for proc, err in ended:
        assert proc.returncode == 0, err
        assert "warning" not in err  # a new file, opened by both at once: no "locked"
    runs = store_of(state).list_runs()
    assert len(runs) == 2
    for run in runs:
        assert run.status == "ok"
        assert len(store_of(state).show(run.id).hosts) == len(lab.hosts)


# --------------------------------------------------------------------------- --rerun-failed


def test_rerun_failed_targets_only_the_hosts_that_did_not_succeed(lab: Lab, tmp_path: Path) -> None:
    state = tmp_path / "state"
    inv = str(lab.inventory)
    bad = lab.hosts[1].name
    flag = lab.host_path(bad, "/tmp/remoteops-rerun-flag")
    flag.write_text("x")
    try:
        first = cli(state, "run", "all", "-i", inv, "--", "test ! -e /tmp/remoteops-rerun-flag")
        assert first.returncode == 5
        # Only the failed host runs again: it now succeeds, the others are not touched.
        flag.unlink()
        again = cli(
            state,
            "run",
            "all",
            "-i",
            inv,
            "--rerun-failed",
            "--json",
            "--",
            "test ! -e /tmp/remoteops-rerun-flag",
        )
        assert again.returncode == 0, again.stderr
        hosts = [line for line in again.stdout.splitlines() if '"type": "host"' in line]
        assert len(hosts) == 1
        assert f'"host": "{bad}"' in hosts[0]
        # Nothing failed last time: nothing is contacted, exit 0, said once.
        none = cli(state, "run", "all", "-i", inv, "--rerun-failed", "--", "false")
        assert none.returncode == 0
        assert "nothing to rerun" in none.stderr
        assert none.stdout == ""
        assert len(store_of(state).list_runs()) == 2
    finally:
        flag.unlink(missing_ok=True)


def test_rerun_failed_without_an_earlier_run_is_a_usage_error(lab: Lab, tmp_path: Path) -> None:
    done = cli(tmp_path / "state", "ping", "all", "-i", str(lab.inventory), "--rerun-failed")
    assert done.returncode == 2
    assert "no earlier run of `ping` on all" in done.stderr
    assert "Traceback" not in done.stderr


# --------------------------------------------------------------------------- --metrics


def test_metrics_hold_the_outcome_and_keep_the_last_success(lab: Lab, tmp_path: Path) -> None:
    state = tmp_path / "state"
    prom = tmp_path / "textfile" / "job.prom"
    prom.parent.mkdir()
    inv = str(_with_down_host(lab, tmp_path))
    ok = cli(
        state, "run", "web", "-i", inv, "--job", "nightly", "--metrics", str(prom), "--", "true"
    )
    assert ok.returncode == 0, ok.stderr
    first = read_metrics(prom)["nightly"]
    assert first.exit_code == 0
    assert first.last_success is not None
    assert first.counts["ok"] == sum(1 for h in lab.hosts if "web" in h.groups)
    assert stat.S_IMODE(prom.stat().st_mode) == 0o644
    failed = cli(
        state,
        "run",
        "all",
        "-i",
        inv,
        "--job",
        "nightly",
        "--metrics",
        str(prom),
        "--connect-timeout",
        "3",
        "--",
        "true",
    )
    assert failed.returncode == 4
    second = read_metrics(prom)["nightly"]
    assert second.exit_code == 4
    assert second.counts["unreachable"] == 1
    assert second.last_success == pytest.approx(first.last_success)
    assert not [p for p in prom.parent.iterdir() if p.name != "job.prom"]  # no temporary left


def test_a_metrics_file_that_cannot_be_written_is_refused_before_any_host(
    lab: Lab, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    done = cli(
        state,
        "run",
        "all",
        "-i",
        str(lab.inventory),
        "--metrics",
        str(tmp_path / "nosuch" / "job.prom"),
        "--",
        "touch /tmp/never",
    )
    assert done.returncode == 2
    assert "does not exist; create it first" in done.stderr
    assert not (state / "remoteops" / "history.sqlite3").exists()
    assert not lab.host_path(lab.hosts[0].name, "/tmp/never").exists()


# --------------------------------------------------------------------------- --report


def test_report_names_every_host_and_the_changes_since_the_previous_run(
    lab: Lab, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    inv = str(lab.inventory)
    changed = lab.hosts[0].name
    note = lab.host_path(changed, "/tmp/remoteops-report-note")
    note.write_text("before\n")
    try:
        args = ["run", "all", "-i", inv, "--", "cat /tmp/remoteops-report-note 2>/dev/null; true"]
        assert cli(state, *args).returncode == 0
        note.write_text("after\n")
        report = tmp_path / "report.html"
        done = cli(state, *args[:-2], "--report", str(report), *args[-2:])
        assert done.returncode == 0, done.stderr
    finally:
        note.unlink(missing_ok=True)
    page = report.read_text()
    for host in lab.hosts:
        assert host.name in page
    assert "Changes since the previous run" in page
    assert "after" in page
    bad = cli(state, "ping", "all", "-i", inv, "--report", str(tmp_path / "no" / "r.html"))
    assert bad.returncode == 2
    assert "--report" in bad.stderr
    assert "create it first" in bad.stderr


def test_history_file_stays_consistent_when_the_process_is_killed(lab: Lab, tmp_path: Path) -> None:
    state = tmp_path / "state"
    fast = lab.host_path(lab.hosts[0].name, "/tmp/remoteops-kill-fast")
    fast.write_text("")
    proc = start(state, lab, "test -e /tmp/remoteops-kill-fast || sleep 20; echo done")
    try:
        assert proc.stdout is not None
        assert "done" in proc.stdout.readline()  # at least one host recorded
        time.sleep(0.3)
    finally:
        stop(proc, signal.SIGKILL)
        fast.unlink(missing_ok=True)
    db = sqlite3.connect(state / "remoteops" / "history.sqlite3")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        db.close()
    (run,) = store_of(state).list_runs()
    assert run.status == "incomplete"
    assert len(store_of(state).show(run.id).hosts) >= 1
