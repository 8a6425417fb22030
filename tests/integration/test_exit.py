"""How the command ends: its log records the outcome, and nothing it started outlives it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from remoteops.lab import Lab

pytestmark = pytest.mark.integration


def _marked(mark: str) -> list[int]:
    needle = f"REMOTEOPS_TEST_MARK={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_run_with_analysis_logs_its_outcome_and_leaves_no_process(
    lab: Lab, tmp_path: Path
) -> None:
    mark = uuid.uuid4().hex
    log = tmp_path / "remoteops.log"
    failing = lab.hosts[1].name
    argv = [sys.executable, "-m", "remoteops", "--log-file", str(log), "run", "all"]
    argv += ["-i", str(lab.inventory), "--analyze", "group", "--"]
    argv += [f"hostname; test $(hostname) != {failing}"]
    proc = subprocess.run(
        argv,
        env={**os.environ, "REMOTEOPS_TEST_MARK": mark},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 5, proc.stderr
    assert "== group:" in proc.stdout
    text = log.read_text()
    n = len(lab.hosts)
    assert f"{n} hosts: {n - 1} ok, 1 failed" in text
    assert "exit code 5" in text
    assert f"{failing}: failed: exit code 1" in text
    # The analysis workers and their forkserver went with the command.
    deadline = time.monotonic() + 10
    while _marked(mark) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _marked(mark) == []
