"""Helpers shared by the tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_cli(
    *args: str,
    cwd: Path | None = None,
    stdin: str | None = None,
    timeout: float = 120,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m remoteops --no-log-file ARGS`` as a user would, in a new process."""
    return subprocess.run(
        [sys.executable, "-m", "remoteops", "--no-log-file", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
        input=stdin,
        env=env,
    )
