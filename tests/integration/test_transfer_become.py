"""Files as another user: `put`, `get` and play's put/get steps with --become, on the lab.

Every remote path here is under a lab host's private /srv (never this machine's
/etc): a directory owned by root with mode 0700, which the login user cannot
even look into. Also: a failure names the path the user asked for, never a
temporary name, so identical failures on many hosts fold into one line.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from remoteops.lab import Lab
from remoteops.nodeset import fold
from tests.helpers import run_cli as cli
from tests.integration.test_transfer import json_lines

pytestmark = pytest.mark.integration


@pytest.fixture
def root_dir(lab: Lab) -> Iterator[str]:
    """A fresh directory /srv/r-<id> on every lab host, owned by root, mode 0700."""
    name = f"/srv/r-{uuid.uuid4().hex[:10]}"
    local_dirs = []
    for host in lab.hosts:
        local = lab.host_path(host.name, name)
        local.mkdir()
        local.chmod(0o700)
        local_dirs.append(local)
    try:
        yield name
    finally:
        for local in local_dirs:
            shutil.rmtree(local, ignore_errors=True)


def transfer(
    lab: Lab, verb: str, *args: str, pattern: str = "all"
) -> subprocess.CompletedProcess[str]:
    return cli(verb, pattern, "-i", str(lab.inventory), *args)


# --------------------------------------------------------------------------- messages


def test_permission_denied_names_the_destination_and_folds_across_hosts(
    lab: Lab, root_dir: str, tmp_path: Path
) -> None:
    src = tmp_path / "motd"
    src.write_text("welcome\n")
    dest = f"{root_dir}/motd"
    expected = f"remote {dest}: Permission denied"
    names = [h.name for h in lab.hosts]
    result = transfer(lab, "put", str(src), dest, "--mode", "0644")
    assert result.returncode == 5, result.stdout + result.stderr
    assert ".remoteops" not in result.stderr  # no temporary name anywhere
    folded = [line for line in result.stderr.splitlines() if line.startswith("  ")]
    assert folded == [f"  {fold(names)} ({len(names)}): failed: {expected}"]
    as_json = transfer(lab, "put", "--json", str(src), dest)
    hosts, _ = json_lines(as_json.stdout)
    assert {obj["error"] for obj in hosts.values()} == {expected}
    assert all(list(lab.host_path(n, root_dir).iterdir()) == [] for n in names)
