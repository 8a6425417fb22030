"""A reader that closes remoteops' output (`| head -1`) against the lab's real sshd servers.

Each test gives the command a real pipe and closes its read end the way
`head -1` does: nothing is mocked. The command must finish what it started,
start nothing new, say so in one line on stderr and in the log, and exit 141.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from remoteops.lab import Lab
from tests.helpers import gated_rolling_config

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = ROOT / "playbooks"
NOTICE = "stdout was closed (broken pipe)"


def start(
    args: list[str], log: Path, err: Path, *, stderr_too: bool = False
) -> subprocess.Popen[bytes]:
    """Start remoteops with stdout on a pipe the test reads; stderr to ``err`` (or the pipe)."""
    with err.open("wb") as err_file:
        return subprocess.Popen(
            [sys.executable, "-m", "remoteops", "--log-file", str(log), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if stderr_too else err_file,
            stdin=subprocess.DEVNULL,
        )


def close_after(
    proc: subprocess.Popen[bytes], lines: int, *, until: bytes | None = None
) -> list[bytes]:
    """Read ``lines`` lines (or up to one holding ``until``), then close the pipe as head does."""
    assert proc.stdout is not None
    seen: list[bytes] = []
    for _ in range(10_000):
        if until is None and len(seen) >= lines:
            break
        line = proc.stdout.readline()
        assert line, f"output ended early: {seen!r}"
        seen.append(line)
        if until is not None and until in line:
            break
    proc.stdout.close()
    return seen


def finish(proc: subprocess.Popen[bytes]) -> int:
    try:
        return proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def notice_lines(err: Path) -> list[str]:
    return [
        line for line in err.read_text().splitlines() if NOTICE in line and "remoteops:" in line
    ]


def web_hosts(lab: Lab) -> list[str]:
    return [h.name for h in lab.hosts if h.name.startswith("web")]


def deployed(lab: Lab, host: str, app_dir: str) -> tuple[bool, bool]:
    """(got the config, loaded it): the restart step records the config's sha256."""
    conf = lab.host_path(host, f"{app_dir}/app.conf")
    loaded = lab.host_path(host, f"{app_dir}/loaded.sha256")
    if not conf.exists():
        return False, loaded.exists()
    digest = hashlib.sha256(conf.read_bytes()).hexdigest()
    return True, loaded.exists() and loaded.read_text().strip() == digest


# --------------------------------------------------------------------------- play


def test_rolling_config_closed_after_one_line_leaves_no_batch_half_done(
    lab: Lab, remote_dir: str, tmp_path: Path
) -> None:
    log, err = tmp_path / "remoteops.log", tmp_path / "stderr"
    app_dir = f"{remote_dir}/app"
    book = PLAYBOOKS / "rolling-config.yml"
    proc = start(
        ["play", str(book), "-i", str(lab.inventory), "-e", f"app_dir={app_dir}"], log, err
    )
    (first,) = close_after(proc, 1)
    assert first.startswith(b"PLAY 1 [rolling config update]")
    code = finish(proc)

    assert code == 141, err.read_text()
    # serial [1, 25%]: one host per batch, in inventory order. Every host that got
    # the config also ran the restart step and loaded it; the hosts touched are
    # whole batches from the first, and the rollout stopped at a batch boundary.
    states = [deployed(lab, host, app_dir) for host in web_hosts(lab)]
    for host, (got, loaded) in zip(web_hosts(lab), states, strict=True):
        assert got == loaded, f"{host}: config {got}, restarted with it {loaded}"
    touched = [got for got, _ in states]
    assert touched == sorted(touched, reverse=True)
    (line,) = notice_lines(err)
    assert "rollout stopped at a batch boundary" in line
    assert "Traceback" not in err.read_text()
    assert "rollout stopped at a batch boundary" in log.read_text()
    assert "exit code 141" in log.read_text()


def test_rolling_config_closed_mid_batch_finishes_the_batch_then_stops(
    lab: Lab, remote_dir: str, tmp_path: Path
) -> None:
    log, err = tmp_path / "remoteops.log", tmp_path / "stderr"
    app_dir, gate = f"{remote_dir}/app", f"{remote_dir}/go"
    # The pipe closes with batch 1 half-way through: at the gate after the upload.
    book = gated_rolling_config(tmp_path)
    args = ["play", str(book), "-i", str(lab.inventory), "-e", f"app_dir={app_dir} gate={gate}"]
    proc = start(args, log, err)
    web = web_hosts(lab)
    # The config is on the first host and the restart step is still to come.
    close_after(proc, 0, until=b"at-the-gate")
    assert deployed(lab, web[0], app_dir) == (True, False)
    for host in web:  # open every gate: nothing may wait on it if the rollout went on
        lab.host_path(host, gate).touch()
    code = finish(proc)

    assert code == 141, err.read_text()
    assert deployed(lab, web[0], app_dir) == (True, True)  # restarted with the new config
    for host in web[1:]:
        assert not lab.host_path(host, app_dir).exists(), f"{host} was started"
    (line,) = notice_lines(err)
    later = f"batches 2-{len(web)}" if len(web) > 2 else "batch 2"
    assert f"batch 1/{len(web)} finished, {later} ({len(web) - 1} hosts) not started" in line
    text = log.read_text()
    assert line.removeprefix("remoteops: ") in text
    assert f"{len(web)} hosts: 1 ok, {len(web) - 1} skipped" in text
    assert "exit code 141" in text


# --------------------------------------------------------------------------- run


def test_run_closed_stdout_starts_no_new_host_and_started_ones_finish(
    lab: Lab, remote_dir: str, tmp_path: Path
) -> None:
    log, err, retry = tmp_path / "remoteops.log", tmp_path / "stderr", tmp_path / "retry"
    # One host at a time; each prints a line, then waits for the test's go file.
    command = (
        f"echo start; touch {remote_dir}/started; i=0; "
        f"while [ ! -e {remote_dir}/go ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; "
        f"touch {remote_dir}/finished"
    )
    args = ["run", "all", "-i", str(lab.inventory), "-f", "1", "--retry-file", str(retry)]
    proc = start([*args, "--", command], log, err)
    names = [h.name for h in lab.hosts]
    (first,) = close_after(proc, 1)
    assert first.split(b":")[0].strip() == names[0].encode()
    for name in names:
        lab.host_path(name, f"{remote_dir}/go").touch()
    code = finish(proc)

    assert code == 141, err.read_text()
    # The first host finished after the pipe closed; the second had started when
    # remoteops found the pipe closed (writing its first line) and finished too.
    for name in names[:2]:
        assert lab.host_path(name, f"{remote_dir}/finished").exists(), name
    for name in names[2:]:
        assert not lab.host_path(name, f"{remote_dir}/started").exists(), f"{name} was started"
    assert sorted(retry.read_text().split()) == sorted(names[2:])
    (line,) = notice_lines(err)
    assert f"2 finished, {len(names) - 2} not started (exit code 141)" in line
    assert err.read_text().count("not started") == 2  # the notice and one folded summary line
    text = log.read_text()
    assert line.removeprefix("remoteops: ") in text
    assert "exit code 141" in text


# --------------------------------------------------------------------------- put, get, ping


@pytest.mark.parametrize("command", ["ping", "put", "get"])
def test_closed_stdout_exits_141_with_one_line_and_a_log_entry(
    lab: Lab, remote_dir: str, tmp_path: Path, command: str
) -> None:
    log, err = tmp_path / "remoteops.log", tmp_path / "stderr"
    source = tmp_path / "app.conf"
    source.write_bytes(b"workers=4\n" * 1000)
    paths = {
        "ping": [],
        "put": [str(source), f"{remote_dir}/"],
        "get": ["/etc/hostname", str(tmp_path / "fetched")],
    }[command]
    proc = start([command, "all", "-i", str(lab.inventory), "-f", "1", *paths], log, err)
    close_after(proc, 0)  # the reader is gone before the first line
    code = finish(proc)

    assert code == 141, err.read_text()
    assert "Traceback" not in err.read_text()
    (line,) = notice_lines(err)
    assert "no host was started after that" in line
    assert line.removeprefix("remoteops: ") in log.read_text()
    if command == "put":
        # Each host has the whole file or nothing: a host in flight finished.
        for host in lab.hosts:
            local = lab.host_path(host.name, remote_dir)
            names = sorted(p.name for p in local.iterdir())
            assert names in ([], ["app.conf"]), (host.name, names)
            if names:
                assert (local / "app.conf").read_bytes() == source.read_bytes()
        assert (lab.host_path(lab.hosts[0].name, remote_dir) / "app.conf").exists()


def test_stdout_and_stderr_closed_together_log_the_notice_only(lab: Lab, tmp_path: Path) -> None:
    log, err = tmp_path / "remoteops.log", tmp_path / "stderr"
    proc = start(["ping", "all", "-i", str(lab.inventory), "-f", "1"], log, err, stderr_too=True)
    close_after(proc, 0)
    code = finish(proc)

    assert code == 141
    text = log.read_text()
    assert f"{NOTICE}: no host was started after that" in text
    assert "exit code 141" in text
    assert "Traceback" not in text
    assert not os.path.getsize(err)  # stderr went to the closed pipe, not this file


@pytest.mark.parametrize("closed", ["<&-", ">&-", "2>&-", "<&- >&- 2>&-"])
def test_a_stream_closed_before_the_start_is_dev_null(
    lab: Lab, tmp_path: Path, closed: str
) -> None:
    """`>&-` is no reader going away but no output wanted: the run runs, as Python's
    print() treats a closed stream, with its usual outcome (and no traceback)."""
    log = tmp_path / "remoteops.log"
    command = (
        f"{sys.executable} -m remoteops --log-file {log} run all -i {lab.inventory} "
        f"-- hostname {closed}"
    )
    result = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    n = len(lab.hosts)
    assert f"{n} hosts: {n} ok" in log.read_text()
    if ">&-" not in closed:
        assert sorted(line.split(": ")[1] for line in result.stdout.splitlines()) == sorted(
            h.name for h in lab.hosts
        )
