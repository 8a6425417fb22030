"""A nightly job as cron runs it (no terminal, an environment of PATH and HOME only):
the history, its diff and hosts, the metrics file and the HTML report tell what
changed from one night to the next (issue: "Made for cron")."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from remoteops.lab import Lab
from remoteops.metrics import read_metrics

pytestmark = pytest.mark.integration

NOTE = "/tmp/remoteops-nightly-note"


def cron(home: Path, *args: str) -> subprocess.Popen[str]:
    """``remoteops ARGS`` started as cron starts it: ``env -i PATH HOME``, stdin empty,
    output to pipes (cron mails them), from /."""
    return subprocess.Popen(
        ["env", "-i", "PATH=/usr/bin:/bin", f"HOME={home}", sys.executable, "-m",
         "remoteops", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd="/",
    )  # fmt: skip


def done(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def run(home: Path, *args: str) -> tuple[int, str, str]:
    return done(cron(home, *args))


def _inventory(lab: Lab, path: Path, flaky: tuple[str, int]) -> None:
    """The lab's hosts plus ``flaky`` at (address, port)."""
    address, port = flaky
    path.write_text(
        lab.inventory.read_text()
        + f"    extra:\n      hosts:\n        flaky: {{ansible_host: {address}, "
        f"ansible_port: {port}}}\n"
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _json(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_a_nightly_job_run_twice_tells_what_changed(lab: Lab, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    inv = tmp_path / "fleet.yml"
    first_host, changed = lab.hosts[0], lab.hosts[1].name
    _inventory(lab, inv, (first_host.address, first_host.port))  # flaky answers tonight
    metrics = tmp_path / "textfile" / "nightly.prom"
    metrics.parent.mkdir()
    report = tmp_path / "nightly.html"
    job = ["run", "all", "-q", "-i", str(inv), "--job", "nightly", "--metrics", str(metrics),
           "--report", str(report), "--connect-timeout", "3", "--", f"cat {NOTE}"]  # fmt: skip
    notes = {h.name: lab.host_path(h.name, NOTE) for h in lab.hosts}
    try:
        for path in notes.values():
            path.write_text("release 41\n")
        # Night 1: every host answers, the same note everywhere. -q: cron mails nothing.
        assert run(home, *job) == (0, "", "")
        night1 = read_metrics(metrics)["nightly"]
        assert night1.exit_code == 0
        assert night1.counts["ok"] == len(lab.hosts) + 1
        # Night 2: one host's note changed, flaky is down; a ping overlaps the job.
        notes[changed].write_text("release 42\n")
        _inventory(lab, inv, ("127.0.0.1", _closed_port()))
        overlapping = cron(home, "ping", "all", "-i", str(inv), "-q", "--connect-timeout", "3")
        code, out, err = run(home, *job)
        assert code == 4
        assert "flaky" in err
        assert done(overlapping)[0] == 4
    finally:
        for path in notes.values():
            path.unlink(missing_ok=True)

    # The history holds all three runs; the diff of the job names exactly the two hosts.
    code, out, err = run(home, "history", "list", "--json")
    assert code == 0, err
    runs = _json(out)  # newest first; the ping and night 2 started together, either order
    assert sorted((r["command"], r["job"], r["exit_code"], r["status"]) for r in runs) == [
        ("ping", "ping all", 4, "failed"),
        ("run", "nightly", 0, "ok"),
        ("run", "nightly", 4, "failed"),
    ]
    night1_id, night2_id = sorted(r["id"] for r in runs if r["job"] == "nightly")
    code, out, err = run(
        home, "history", "diff", "last", "--command", "run", "--pattern", "all", "--json"
    )
    assert code == 0, err
    (diff,) = _json(out)
    assert (diff["a"], diff["b"]) == (night1_id, night2_id)
    assert diff["status_changed"] == ["flaky"]
    assert diff["output_changed"] == [changed]
    assert diff["added"] == diff["gone"] == []

    # The hosts that did not succeed feed the rerun, once flaky is back.
    code, out, err = run(
        home, "history", "hosts", "last", "--command", "run", "--pattern", "all",
        "--status", "failed,unreachable",
    )  # fmt: skip
    assert (code, out) == (0, "flaky\n"), err
    retry = tmp_path / "retry.txt"
    retry.write_text(out)
    _inventory(lab, inv, (first_host.address, first_host.port))
    code, out, err = run(home, "run", "all", "-i", str(inv), "-l", f"@{retry}", "--json",
                         "--no-history", "--", "true")  # fmt: skip
    assert code == 0, err
    assert [r["host"] for r in _json(out) if r["type"] == "host"] == ["flaky"]

    # The metrics file: night 2 failed, the last success is night 1's.
    night2 = read_metrics(metrics)["nightly"]
    assert night2.exit_code == 4
    assert night2.counts["unreachable"] == 1
    assert night2.counts["ok"] == len(lab.hosts)
    assert night2.last_success == pytest.approx(night1.finished)

    # The report of night 2: flaky down, and both changes since night 1.
    page = report.read_text()
    for host in [*notes, "flaky"]:
        assert host in page
    assert "Changes since the previous run" in page
    assert "release 42" in page
    assert "unreachable" in page
    # Night 1's report, from the history.
    earlier = tmp_path / "night1.html"
    code, out, err = run(home, "report", str(night1_id), "-o", str(earlier))
    assert code == 0, err
    assert "release 41" in earlier.read_text()
    assert "release 42" not in earlier.read_text()
