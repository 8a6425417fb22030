"""What `put` and `get` print for people (not --json)."""

from __future__ import annotations

from pathlib import Path

import pytest

from remoteops.lab import Lab
from tests.helpers import run_cli as cli

pytestmark = pytest.mark.integration


def test_put_says_sent_and_get_says_fetched(lab: Lab, remote_dir: str, tmp_path: Path) -> None:
    src = tmp_path / "motd"
    src.write_bytes(b"hello\n")
    host = lab.hosts[0].name
    inv = str(lab.inventory)
    sent = cli("put", host, "-i", inv, str(src), f"{remote_dir}/")
    assert sent.returncode == 0, sent.stderr
    assert f"{host}: ok  1 sent, 0 unchanged, 6 B" in sent.stdout
    again = cli("put", host, "-i", inv, str(src), f"{remote_dir}/")
    assert f"{host}: ok  0 sent, 1 unchanged" in again.stdout
    fetched = cli("get", host, "-i", inv, f"{remote_dir}/motd", str(tmp_path / "got"))
    assert fetched.returncode == 0, fetched.stderr
    assert f"{host}: ok  1 fetched, 0 unchanged, 6 B" in fetched.stdout
    assert (tmp_path / "got" / host / remote_dir.lstrip("/") / "motd").read_bytes() == b"hello\n"
