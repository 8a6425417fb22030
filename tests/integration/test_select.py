"""Never the wrong hosts: selections that touch the lab's real hosts."""

from __future__ import annotations

import uuid
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
