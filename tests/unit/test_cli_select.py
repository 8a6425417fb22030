"""Which hosts the command line selects, and what it says about it on stderr.

Node sets after a group's name, terms that match nothing, and what `inventory`
prints, through the real command line (a new process each time).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import run_cli

DATA = Path(__file__).resolve().parents[1] / "data" / "inventories"
CASE = DATA / "group_subscripts"
NO_SUCH = ["inventory", "list", "web:!nosuch", "-i", str(CASE / "hosts.yml")]


def _listed(stdout: str) -> list[str]:
    """Host names of `inventory list` (after its folded summary line)."""
    return [line.strip() for line in stdout.splitlines()[1:]]


def test_a_nodeset_after_a_group_name_selects_the_hosts_it_names() -> None:
    """web and db are groups: web[01-03] once selected web02-web04 (Ansible's
    legacy subscript, with a warning) and db[01-03] selected db02-db04."""
    inv = str(CASE / "hosts.yml")
    for pattern, want in [
        ("web[01-03]", ["web01", "web02", "web03"]),
        ("db[01-03]", ["db01", "db02", "db03"]),
        ("web[02,04-05]:&prod", ["web02"]),
    ]:
        result = run_cli("inventory", "list", pattern, "-i", inv)
        assert result.returncode == 0, result.stderr
        assert _listed(result.stdout) == want, pattern
        assert result.stderr == "", pattern


def test_a_folded_name_printed_by_inventory_list_selects_the_same_hosts() -> None:
    inv = str(CASE / "hosts.yml")
    first = run_cli("inventory", "list", "db:!db03:web[0:1]", "-i", inv)
    assert first.returncode == 0, first.stderr
    folded = first.stdout.splitlines()[0].split(": ", 1)[1]
    assert folded == "db[01-02,04-05],web[01-02]"
    again = run_cli("inventory", "list", folded, "-i", inv)
    assert again.returncode == 0, again.stderr
    assert sorted(_listed(again.stdout)) == sorted(_listed(first.stdout))
    # as --limit too
    limited = run_cli("inventory", "list", "all", "-l", folded, "-i", inv)
    assert sorted(_listed(limited.stdout)) == sorted(_listed(first.stdout))


def test_subscripts_and_letter_globs_keep_ansibles_meaning() -> None:
    expected = json.loads((CASE / "expected_patterns.json").read_text())
    for pattern in ("web[0:2]", "web[1]", "web[-1]", "db-[a-c]"):
        result = run_cli("inventory", "list", pattern, "-i", str(CASE / "hosts.yml"))
        assert result.returncode == 0, result.stderr
        assert _listed(result.stdout) == expected[pattern], pattern


def test_a_term_matching_nothing_is_one_plain_line_on_stderr(tmp_path: Path) -> None:
    """web:!nosuch: Ansible's result (every web host), and one line naming the term,
    without a logger prefix such as 'WARNING remoteops.patterns:'; the log has it too."""
    expected = json.loads((CASE / "expected_patterns.json").read_text())
    log = tmp_path / "remoteops.log"
    result = subprocess.run(
        [sys.executable, "-m", "remoteops", "--log-file", str(log), *NO_SUCH],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert _listed(result.stdout) == expected["web:!nosuch"]
    assert result.stderr == (
        "remoteops: warning: no host or group matches 'nosuch' (in 'web:!nosuch'); "
        "it excludes nothing\n"
    )
    assert "no host or group matches 'nosuch'" in log.read_text()

    both = run_cli("inventory", "list", "web:&nosuch", "-i", str(CASE / "hosts.yml"))
    assert both.returncode == 2
    assert both.stderr.splitlines() == [
        "remoteops: warning: no host or group matches 'nosuch' (in 'web:&nosuch'); "
        "the intersection leaves no host",
        "remoteops: error: no host matches 'web:&nosuch'; see `remoteops inventory graph`",
    ]


def test_the_warning_is_the_same_plain_line_at_a_terminal() -> None:
    """At a terminal stderr goes through rich's log handler; a notice does not."""
    import pty

    main, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "remoteops", "--no-log-file", *NO_SUCH],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=secondary,
        env={**os.environ, "COLUMNS": "200", "TERM": "xterm"},
    )
    os.close(secondary)
    seen = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(main, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=max(1.0, deadline - time.monotonic())) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main)
    assert seen.decode().replace("\r\n", "\n") == (
        "remoteops: warning: no host or group matches 'nosuch' (in 'web:!nosuch'); "
        "it excludes nothing\n"
    )
