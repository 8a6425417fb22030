"""Analysis on a real Dask distributed cluster on 127.0.0.1 (``--cluster``).

The module starts ``dask scheduler`` and two ``dask worker`` processes (one
thread each, no dashboard, no nanny: one process each, ended by its PID) and
compares ``remoteops analyze --cluster`` with the local process pool.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_cli as cli
from tests.readme import README

pytestmark = pytest.mark.integration

PLUGINS = Path(__file__).parent.parent / "data" / "analysis"
DASK = Path(sys.executable).with_name("dask")
WORKERS = 2


def plugin_env(**more: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(PLUGINS), os.getcwd()]), **more)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End a process this module started, by its PID: TERM, then KILL after 15 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)


def _wait_for(path: Path, pattern: str, proc: subprocess.Popen[bytes], limit: float) -> str:
    """The first match of ``pattern`` in the log file ``path`` (bounded wait)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        found = re.search(pattern, path.read_text(errors="replace"))
        if found:
            return found.group(1)
        assert proc.poll() is None, path.read_text(errors="replace")
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not in {path} after {limit} s")


def _start(command: list[str], out: Any, cwd: Path) -> subprocess.Popen[bytes]:
    """Start a Dask process in a session of its own (a Ctrl-C sent to a test's group
    does not reach it), its output in ``out``; the analyzer plugins importable."""
    return subprocess.Popen(
        command, stdout=out, stderr=out, cwd=cwd, env=plugin_env(), start_new_session=True
    )


@contextlib.contextmanager
def _dask_cluster(
    work: Path, workers: int, *, hide: Path | None = None
) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """A scheduler on 127.0.0.1 and ``workers`` workers: its address and the processes
    (the scheduler first); all stopped by PID at the end. ``hide``: a directory the
    last worker sees empty (an empty file system mounted over it, in a mount
    namespace of its own)."""
    procs: list[subprocess.Popen[bytes]] = []
    common = ["--no-dashboard", "--host", "127.0.0.1"]
    work.mkdir(exist_ok=True)
    try:
        log = work / "scheduler.log"
        with open(log, "wb") as out:
            command = [str(DASK), "scheduler", "--port", "0", *common]
            procs.append(_start(command, out, work))
        address = _wait_for(log, r"Scheduler at:\s+(tcp://127\.0\.0\.1:\d+)", procs[0], 60)
        logs = []
        for n in range(workers):
            logs.append(work / f"worker{n}.log")
            with open(logs[-1], "wb") as out:
                command = [str(DASK), "worker", address, "--nthreads", "1", "--no-nanny"]
                command += ["--local-directory", str(work / f"w{n}"), *common]
                if hide is not None and n == workers - 1:
                    mount = 'mount -t tmpfs tmpfs "$0" && exec "$@"'
                    command = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                               mount, str(hide), *command]  # fmt: skip
                procs.append(_start(command, out, work))
        for n, path in enumerate(logs):
            _wait_for(path, r"(Registered to)", procs[n + 1], 60)
        yield address, procs
    finally:
        for proc in reversed(procs):  # workers first, then the scheduler
            _stop(proc)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The address of a scheduler on 127.0.0.1 with two workers, for the module."""
    started = time.monotonic()
    with _dask_cluster(tmp_path_factory.mktemp("dask"), WORKERS) as (address, _procs):
        print(f"\ncluster of {WORKERS} workers up in {time.monotonic() - started:.2f} s")
        yield address


def _logs(root: Path) -> Path:
    """A get LOCAL_DIR: a log per host (one over the 16 MiB chunk, so split in ranges)."""
    for index in range(4):
        host = f"web{index}"
        (root / host / "var").mkdir(parents=True)
        lines = []
        for n in range(3000):
            if n % (5 + index) == 0:
                lines.append(f"2024-05-01T10:{n % 60:02d}:00Z {host} app[{n}]: ERROR disk {n}")
            elif n % 13 == 0:
                lines.append(f"May  1 10:00:{n % 60:02d} {host} kernel: panic: oops {n:x}")
            else:
                lines.append(f"2024-05-01T10:00:00Z {host} app[{n}]: INFO fine {n}")
        text = "\n".join(lines) + "\n"
        if index == 0:
            text *= 90  # ~19 MiB: two ranges of at most 16 MiB, and one of them is carried
        (root / host / "var" / "app.log").write_text(text)
        (root / host / "os-release").write_text(f'ID=debian\nVERSION_ID="12"\nNAME={index % 2}\n')
    return root


ANALYZERS = [
    "logscan:top=5", "-a", "grep:ERROR disk 1[0-9]\\b", "-a", "count:panic", "-a", "group",
    "-a", "group:normalize", "-a", "drift:normalize", "-a", "extract:os-release",
    "-a", "threshold:os-release.version_id > 11",
]  # fmt: skip


def _analyses(output: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    lines = [json.loads(line) for line in output.splitlines()]
    summary = lines[-1]
    assert summary["type"] == "summary"
    del summary["duration_s"]
    return lines[:-1], summary


def test_analyze_on_the_cluster_gives_the_local_answer(cluster: str, tmp_path: Path) -> None:
    logs = _logs(tmp_path / "logs")
    started = time.monotonic()
    local = cli("analyze", *ANALYZERS, str(logs), "--json")
    local_s = time.monotonic() - started
    started = time.monotonic()
    remote = cli("analyze", *ANALYZERS, str(logs), "--json", "--cluster", cluster)
    remote_s = time.monotonic() - started
    print(f"\nanalyze: local {local_s:.2f} s, cluster {remote_s:.2f} s")
    assert local.returncode == 0, local.stderr
    assert remote.returncode == 0, remote.stderr
    analyses, summary = _analyses(remote.stdout)
    assert (analyses, summary) == _analyses(local.stdout)
    kinds = [a["analyzer"] for a in analyses]
    assert kinds == ["logscan", "grep", "count", "group", "group", "drift", "extract", "threshold"]
    assert analyses[0]["total"] > 0
    assert analyses[2]["total"] > 0
    assert summary["hosts"] == 4

    # REMOTEOPS_CLUSTER is --cluster; a scheduler's address without scheme is tcp://.
    env = dict(os.environ, REMOTEOPS_CLUSTER=cluster.removeprefix("tcp://"))
    by_env = subprocess.run(
        [sys.executable, "-m", "remoteops", "--no-log-file", "analyze", "count:panic",
         str(logs), "--json"],
        capture_output=True, text=True, timeout=120, check=False, env=env,
    )  # fmt: skip
    assert by_env.returncode == 0, by_env.stderr
    assert _analyses(by_env.stdout)[0][0] == analyses[2]


def test_the_readme_command_on_a_cluster(cluster: str, tmp_path: Path) -> None:
    """README, "More than one machine": its analyze line, HOST being this cluster's."""
    (line,) = [
        line.split("   #")[0]
        for line in README.read_text().splitlines()
        if line.startswith("remoteops analyze") and "--cluster tcp://HOST:8786" in line
    ]
    words = shlex.split(line.replace("tcp://HOST:8786", cluster))
    _logs(tmp_path / "logs")
    result = cli(*words[1:], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "logscan" in result.stdout
    assert result.stdout == cli(*words[1:-2], cwd=tmp_path).stdout  # the same, locally


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_scheduler_is_one_line_and_exit_2(tmp_path: Path) -> None:
    logs = tmp_path / "logs" / "web1"
    logs.mkdir(parents=True)
    (logs / "app.log").write_text("ERROR one\n")
    address = f"tcp://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    result = cli(
        "analyze", "count:ERROR", str(logs.parent), "--cluster", address, "--cluster-timeout", "1"
    )
    assert time.monotonic() - started < 30  # bounded by --cluster-timeout, with slack
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"remoteops: error: --cluster {address}: no Dask scheduler answered within 1 s; "
        "start one ('dask scheduler') or check the address"
    ]
    # The config file's keys are the options' names: the same answer from there.
    config = tmp_path / "config.toml"
    config.write_text(f'cluster = "{address}"\ncluster-timeout = 1\n')
    config.chmod(0o600)
    env = dict(os.environ, REMOTEOPS_CONFIG=str(config))
    from_config = cli("analyze", "count:ERROR", str(logs.parent), env=env)
    assert from_config.returncode == 2
    assert from_config.stderr == result.stderr
    bad = cli("analyze", "count:ERROR", str(logs.parent), "--cluster", "udp://127.0.0.1:1")
    assert bad.returncode == 2
    assert len(bad.stderr.splitlines()) == 1
    assert "not a Dask scheduler address" in bad.stderr


def test_without_distributed_cluster_says_how_to_install_it(tmp_path: Path) -> None:
    """``import distributed`` fails (a module of that name first on the path raises)."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "distributed.py").write_text("raise ImportError('hidden by the test')\n")
    (tmp_path / "logs" / "web1").mkdir(parents=True)
    (tmp_path / "logs" / "web1" / "app.log").write_text("ERROR one\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(shim), os.getcwd()]))
    result = subprocess.run(
        [sys.executable, "-m", "remoteops", "--no-log-file", "analyze", "count:ERROR",
         str(tmp_path / "logs"), "--cluster", "tcp://127.0.0.1:8786"],
        capture_output=True, text=True, timeout=120, check=False, env=env,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "remoteops: error: --cluster needs Dask distributed, which is not installed: "
        "pip install 'remoteops[dask]'"
    ]
    # Without --cluster nothing needs it.
    plain = subprocess.run(
        [sys.executable, "-m", "remoteops", "--no-log-file", "analyze", "count:ERROR",
         str(tmp_path / "logs"), "--json"],
        capture_output=True, text=True, timeout=120, check=False, env=env,
    )  # fmt: skip
    assert plain.returncode == 0, plain.stderr


def test_ctrl_c_during_a_cluster_analysis_stops_it(cluster: str, tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    for host in ("web1", "web2", "web3", "web4", "web5"):
        (logs / host).mkdir(parents=True)
        (logs / host / "app.log").write_text("ERROR one\n")
    marks = tmp_path / "marks"
    marks.mkdir()
    # Each task sleeps 3 s: a task already running on a worker ends with it.
    proc = subprocess.Popen(
        [sys.executable, "-m", "remoteops", "--no-log-file", "analyze",
         f"plugins:announce:{marks}:3", str(logs), "--cluster", cluster, "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=plugin_env(),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(os.listdir(marks)) < WORKERS:
            time.sleep(0.05)
        assert len(os.listdir(marks)) == WORKERS  # one task running on each worker
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        out, err = proc.communicate(timeout=60)
        stopped = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    assert stopped < 20, stopped  # not waiting for the 3 hosts still queued (9 s)
    summary = json.loads(out.splitlines()[-1])
    assert summary["exit_code"] == 130
    time.sleep(4)  # the two running tasks end; the cancelled ones never start
    assert len(os.listdir(marks)) == WORKERS


def test_a_scheduler_that_goes_away_is_one_line_exit_2_and_partial_results(
    tmp_path: Path,
) -> None:
    logs = tmp_path / "logs"
    for host in ("web1", "web2", "web3", "web4"):
        (logs / host).mkdir(parents=True)
        (logs / host / "app.log").write_text("ERROR one\n")
    marks = tmp_path / "marks"
    marks.mkdir()
    with _dask_cluster(tmp_path / "dask", 1) as (address, procs):
        # One worker, one task at a time, 3 s each: web1 is done when web2 starts, and
        # its result has 1.5 s to reach the client before the scheduler goes away,
        # with web2 still running then.
        proc = subprocess.Popen(
            [sys.executable, "-m", "remoteops", "--no-log-file", "analyze",
             f"plugins:announce:{marks}:3", "-a", "count:ERROR", str(logs), "--cluster", address,
             "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=plugin_env(),
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(os.listdir(marks)) < 2:
                time.sleep(0.05)
            assert len(os.listdir(marks)) == 2
            time.sleep(1.5)
            _stop(procs[0])
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            # A worker without its scheduler keeps trying to reach it, deaf to TERM.
            procs[1].kill()
            procs[1].wait(15)
    assert proc.returncode == 2, err
    assert err.splitlines() == [
        f"remoteops: error: --cluster {address}: the scheduler went away during the "
        "analysis; the results above are partial"
    ]
    announce, count, summary = (json.loads(line) for line in out.splitlines())
    assert summary["exit_code"] == 2
    assert announce["interrupted"]
    assert count["interrupted"]
    assert [row["host"] for row in announce["rows"]] == ["web1"]
    assert announce["errors"] == count["errors"] == []
