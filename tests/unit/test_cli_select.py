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


def _run_logged(log: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The command line with a log file (run_cli passes --no-log-file)."""
    return subprocess.run(
        [sys.executable, "-m", "remoteops", "--log-file", str(log), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


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
    result = _run_logged(log, *NO_SUCH)
    assert result.returncode == 0, result.stderr
    assert _listed(result.stdout) == expected["web:!nosuch"]
    assert result.stderr == (
        "remoteops: warning: no host or group matches 'nosuch' (in 'web:!nosuch'); "
        "it excludes nothing\n"
    )
    assert "no host or group matches 'nosuch'" in log.read_text()

    # Nothing selected: the error alone names the term that matched nothing, in one line.
    both = run_cli("inventory", "list", "web:&nosuch", "-i", str(CASE / "hosts.yml"))
    assert both.returncode == 2
    assert both.stderr.splitlines() == [
        "remoteops: error: no host matches 'web:&nosuch': 'nosuch' matches no host or group; "
        "see `remoteops inventory graph`",
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


SECRET = "S3cr3tPassw0rd!"
KEY_LINE = "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW"


def _inventory_dir(root: Path) -> Path:
    """An inventory directory that also holds what people keep beside inventories."""
    inv = root / "inv"
    (inv / "keys").mkdir(parents=True)
    (inv / "group_vars").mkdir()
    (inv / "hosts.yml").write_text("web:\n  hosts:\n    web01:\n    web02:\n")
    (inv / "more").write_text("db01\nroot@db02:2222\n")  # a plain host list
    (inv / "vault_pass").write_text(SECRET + "\n")
    (inv / "keys" / "id_ed25519").write_text(
        f"-----BEGIN OPENSSH PRIVATE KEY-----\n{KEY_LINE}\n-----END OPENSSH PRIVATE KEY-----\n"
    )
    (inv / "token").write_text(f"token={SECRET}\n")
    (inv / "blob").write_bytes(b"\x80\x81" + SECRET.encode())
    # Ansible's ignored names and extensions are passed over without a word
    for ignored in ("notes.txt", "old.bak", "x.retry", "README.md", ".hidden", "a.cfg", "b~"):
        (inv / ignored).write_text(SECRET + "\n")
    (inv / "group_vars" / "web.yml").write_text("motd: hello\n")
    return inv


def test_files_in_an_inventory_directory_are_never_echoed(tmp_path: Path) -> None:
    """-i DIR printed `... 'S3cr3tPassw0rd!' is not [user@]host[:port]` on stderr and
    in the log. A file that is not an inventory is skipped, named, never quoted."""
    inv = _inventory_dir(tmp_path)
    log = tmp_path / "remoteops.log"
    result = _run_logged(log, "-v", "inventory", "list", "-i", str(inv))
    assert result.returncode == 0, result.stderr
    assert sorted(_listed(result.stdout)) == ["db01", "db02", "web01", "web02"]
    everything = result.stdout + result.stderr + log.read_text()
    assert SECRET not in everything
    assert KEY_LINE not in everything
    assert "BEGIN OPENSSH" not in everything
    assert [line for line in result.stderr.splitlines() if "skipped" in line] == [
        f"remoteops: warning: inventory directory {inv}: skipped 4 files that are not "
        "inventories remoteops reads: blob (not UTF-8 text), keys/id_ed25519 (line 1: no "
        "host name or IP address at the start of the line), token (line 1: key=value where "
        "a host name should be), vault_pass (line 1: no host name or IP address at the "
        "start of the line)"
    ]
    for ignored in ("notes.txt", "old.bak", "x.retry", "README.md", ".hidden", "a.cfg"):
        assert ignored not in everything


def test_a_directory_of_many_other_files_is_one_line(tmp_path: Path) -> None:
    """-i /tmp printed hundreds of lines: one line names a few, the log names each."""
    inv = tmp_path / "tmp"
    inv.mkdir()
    for n in range(40):
        (inv / f"session-{n:02d}").write_text(f"{SECRET}-{n}\n")
    (inv / "hosts").write_text("h1\n")
    log = tmp_path / "remoteops.log"
    result = _run_logged(log, "inventory", "list", "-i", str(inv))
    assert result.returncode == 0, result.stderr
    assert _listed(result.stdout) == ["h1"]
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"remoteops: warning: inventory directory {inv}: skipped 40 files")
    assert line.endswith("and 35 more (each is named in the log)")
    logged = log.read_text()
    assert SECRET not in result.stderr + logged
    for n in range(40):
        assert f"skipped session-{n:02d} (line 1: no host name or IP address at" in logged


def test_a_host_list_given_with_i_names_the_line_not_its_text(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text(f"web01\n# ok so far\nroot@web02:2222\n{SECRET}\n")
    result = run_cli("inventory", "list", "-i", str(hosts))
    assert result.returncode == 2
    assert SECRET not in result.stderr
    assert result.stderr.startswith(
        f"remoteops: error: {hosts}:4: not [user@]host[:port] (no host name or IP address); "
    )
    assert len(result.stderr.splitlines()) == 1


def test_inventory_with_yaml_dates_prints_as_ansible_inventory_does() -> None:
    """`window: 2024-01-01` made `inventory list --json` and `inventory host` exit 1
    with 'Object of type date is not JSON serializable'."""
    case = DATA / "yaml_types"
    expected = json.loads((case / "expected_list.json").read_text())
    listed = run_cli("inventory", "list", "--json", "-i", "hosts.yml", cwd=case)
    assert listed.returncode == 0, listed.stderr
    # ansible-inventory --list writes json.dumps(sort_keys=True, indent=4): the same text
    assert listed.stdout == json.dumps(expected, sort_keys=True, indent=4) + "\n"

    host = run_cli("inventory", "host", "web01", "--json", "-i", "hosts.yml", cwd=case)
    assert host.returncode == 0, host.stderr
    got = json.loads(host.stdout)["vars"]
    want = expected["_meta"]["hostvars"]["web01"]
    assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)

    text = run_cli("inventory", "host", "web02", "-i", "hosts.yml", cwd=case)
    assert text.returncode == 0, text.stderr
    assert '  window: "2025-12-31"\n' in text.stdout
    assert '  stamp_tz: "2024-01-01T10:20:30+02:00"\n' in text.stdout
    assert '  null: "null_name"\n' in text.stdout


def test_warnings_about_the_operators_files_are_plain_lines(tmp_path: Path) -> None:
    """Inventory and playbook warnings name FILE:LINE in one plain line, no logger prefix."""
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n"
        "  hosts:\n"
        "    a: {x: '{{ y }}', ansible_host: 127.0.0.1}\n"
        "    web: {ansible_host: 127.0.0.1}\n"
        "  badkey: 1\n"
        "  children:\n"
        "    web:\n"
        "      hosts: {a: null}\n"
    )
    playbook = tmp_path / "site.yml"
    step = "  steps: [{assert: {that: ['1 == 1']}}]\n"
    playbook.write_text(f"- hosts: nosuch\n{step}- hosts: a\n{step}")
    listed = run_cli("inventory", "list", "-i", str(inventory))
    assert listed.returncode == 0, listed.stderr
    lines = listed.stderr.splitlines()
    assert len(lines) == 3, lines
    assert all(line.startswith(f"remoteops: warning: {inventory}") for line in lines[:2]), lines
    assert lines[2] == "remoteops: warning: Found both group and host with same name: web"
    assert "WARNING" not in listed.stderr

    checked = run_cli("play", str(playbook), "--check", "-i", str(inventory))
    assert checked.returncode == 0, checked.stderr
    assert f"remoteops: warning: {playbook}:1: play " in checked.stderr, checked.stderr
    assert "WARNING" not in checked.stderr
