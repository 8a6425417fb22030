"""Helpers shared by the tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

PLAYBOOKS = Path(__file__).resolve().parents[1] / "playbooks"


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


def gated_rolling_config(tmp_path: Path) -> Path:
    """rolling-config.yml with one more step after the upload: it prints ``at-the-gate``,
    then waits (at most 60 s) for the file ``{{ gate }}`` on the host, so a test can act
    while the new config is on the host and the restart step is still to come."""
    steps_dir = tmp_path / "book"
    shutil.copytree(PLAYBOOKS / "files", steps_dir / "files")
    (play,) = yaml.safe_load((PLAYBOOKS / "rolling-config.yml").read_text())
    names = [s["name"] for s in play["steps"]]
    gate = {
        "name": "gate",
        "run": "echo at-the-gate; i=0; while [ ! -e {{ gate }} ] && [ $i -lt 600 ]; "
        "do sleep 0.1; i=$((i+1)); done",
        "changed_when": False,
    }
    play["steps"].insert(names.index("upload the config") + 1, gate)
    book = steps_dir / "rolling-config.yml"
    book.write_text(yaml.safe_dump([play], sort_keys=False))
    return book


def python_in_mount_namespace(
    setup: str, code: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """``python -c CODE ARGS`` after the shell commands ``setup`` (mounts: a tiny tmpfs, a
    read-only bind) in a private mount namespace, so the mounts end with the process."""
    return subprocess.run(
        [
            *("unshare", "-m", "--propagation", "private", "sh", "-c"),
            f'{setup} && exec "$0" -c "$@"',
            sys.executable,
            code,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PLAYBOOKS.parent,
        check=False,
    )
