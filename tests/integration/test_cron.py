"""Cron and scripts: ``-q`` is silent on success, ``analyze`` keeps play steps apart,
and a reused ``--out-dir`` holds only the last run."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from remoteops.lab import Lab

pytestmark = pytest.mark.integration


def cron(*args: str, log: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI as cron runs it: an environment of PATH only, no terminal, stdin empty."""
    logging = ["--log-file", str(log)] if log else ["--no-log-file"]
    return subprocess.run(
        [sys.executable, "-m", "remoteops", *logging, *args],
        env={"PATH": "/usr/bin:/bin"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd="/",
    )


def _inventory(lab: Lab, tmp_path: Path, name: str, extra: dict[str, tuple[str, int]]) -> Path:
    """The lab inventory plus a group ``extra`` of hosts (name: (address, port))."""
    lines = lab.inventory.read_text().splitlines()
    lines += ["    extra:", "      hosts:"]
    for host, (address, port) in extra.items():
        lines.append(f"        {host}: {{ansible_host: {address}, ansible_port: {port}}}")
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _json(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


# --------------------------------------------------------------------------- -q


def test_quiet_prints_nothing_at_all_when_every_command_succeeds(
    lab: Lab, remote_dir: str, tmp_path: Path
) -> None:
    inv = str(lab.inventory)
    log = tmp_path / "remoteops.log"
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a\n")
    (src / "outside").symlink_to("/etc/hostname")  # skipped with a warning
    book = tmp_path / "book.yml"
    book.write_text(
        "- hosts: all\n  steps:\n    - run: hostname\n    - assert:\n        that: 'true'\n"
    )
    commands = {
        # A term that matches nothing is a warning: held back, and dropped on success.
        "run": ["run", "all:!nosuch", "-i", inv, "-q", "--", "hostname"],
        "run -g": ["run", "all", "-i", inv, "-q", "-g", "--", "hostname"],
        "run --analyze": [
            "run", "all", "-i", inv, "-q", "-a", "group", "-a", "grep:^nosuch$",
            "--fail-on-findings", "--", "hostname",
        ],
        "ping": ["ping", "all", "-i", inv, "-q"],
        "put": ["put", "all", f"{src}/", remote_dir, "-i", inv, "-q"],
        "get": ["get", "all", f"{remote_dir}/a.txt", str(tmp_path / "got"), "-i", inv, "-q"],
        "get --analyze": [
            "get", "all", f"{remote_dir}/a.txt", str(tmp_path / "got"), "-i", inv, "-q",
            "-a", "count:a",
        ],
        "play": ["play", str(book), "-i", inv, "-q"],
    }  # fmt: skip
    for what, args in commands.items():
        result = cron(*args, log=log)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), what
    # What was held back is in the log.
    text = log.read_text()
    assert "nosuch" in text
    assert "outside" in text
    # --json is the data asked for: still written, and stderr stays empty.
    result = cron("run", "all", "-i", inv, "-q", "--json", "--", "true")
    assert (result.returncode, result.stderr) == (0, "")
    assert [obj["type"] for obj in _json(result.stdout)].count("host") == len(lab.hosts)
    saved = tmp_path / "run.jsonl"
    saved.write_text(result.stdout)
    result = cron("analyze", "group", str(saved), "-q")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_quiet_failure_prints_the_failed_hosts_output_and_the_summary_only(
    lab: Lab, tmp_path: Path
) -> None:
    inv = str(lab.inventory)
    victim = lab.hosts[1].name
    check = f'hostname; test "$(hostname)" != {victim}'
    result = cron("run", "all:!nosuch", "-i", inv, "-q", "--", check)
    assert result.returncode == 5
    assert result.stdout.splitlines() == [f"{victim}: {victim}"]  # the failed host's output
    warning, counts, reason = result.stderr.splitlines()
    assert "nosuch" in warning  # held back, shown now the run failed
    assert f"{len(lab.hosts) - 1} ok, 1 failed" in counts
    assert re.fullmatch(rf"\s+{victim}: failed: exit code 1", reason)

    # Hosts with identical output folded (-g): only the failed ones.
    result = cron("run", "all", "-i", inv, "-q", "-g", "--", check)
    assert result.returncode == 5
    assert victim in result.stdout
    assert not {h.name for h in lab.hosts if h.name != victim} & set(
        re.findall(r"\w+", result.stdout)
    )
    assert len(result.stderr.splitlines()) == 2

    # play: the failed host's output and the summary; no recap.
    book = tmp_path / "book.yml"
    book.write_text(f"- hosts: all\n  steps:\n    - name: check\n      run: {json.dumps(check)}\n")
    result = cron("play", str(book), "-i", inv, "-q")
    assert result.returncode == 5
    assert "RECAP" not in result.stdout + result.stderr
    assert result.stdout.splitlines() == [f"{victim}: {victim}"]
    lines = result.stderr.splitlines()
    assert f"{len(lab.hosts) - 1} ok, 1 failed" in lines[0]
    assert re.fullmatch(rf"\s+{victim}: failed: step 1 'check': exit code 1", lines[1])
    assert len(lines) == 2

    # ping and put: the summary alone.
    with contextlib.closing(socket.socket()) as closed:
        closed.bind(("127.0.0.1", 0))  # bound, not listening: refused
        port = int(closed.getsockname()[1])
        mixed = _inventory(lab, tmp_path, "mixed.yml", {"gone": ("127.0.0.1", port)})
        result = cron("ping", "all", "-i", str(mixed), "-q")
    assert result.returncode == 4
    assert result.stdout == ""
    counts, reason = result.stderr.splitlines()
    assert f"{len(lab.hosts)} ok, 1 unreachable" in counts
    assert re.match(r"\s+gone: unreachable: ", reason)
    motd = tmp_path / "motd"
    motd.write_text("hello\n")
    result = cron("put", lab.hosts[0].name, str(motd), "/etc/motd", "-i", inv, "-q")
    assert result.returncode == 5
    assert result.stdout == ""
    counts, reason = result.stderr.splitlines()
    assert "0 ok, 1 failed" in counts
    assert re.match(rf"\s+{lab.hosts[0].name}: failed: remote /etc/", reason)


def test_the_summary_says_when_findings_decide_the_exit_code(lab: Lab) -> None:
    inv = str(lab.inventory)
    odd = lab.hosts[0].name
    args = ["run", "all", "-i", inv, "-a", f"grep:^{odd}$", "--fail-on-findings"]
    # Every host succeeded, the analysis found something: exit 5, and the summary says why.
    quiet = cron(*args, "-q", "--", "hostname")
    assert quiet.returncode == 5
    assert quiet.stdout == ""  # no tables with -q
    counts, finding = quiet.stderr.splitlines()
    assert counts.endswith("; 1 finding (--fail-on-findings)")
    assert f"{len(lab.hosts)} ok" in counts
    assert re.fullmatch(rf"\s+{odd}: grep:\^{odd}\$: .*", finding)
    # Without -q: the tables, then the same summary.
    loud = cron(*args, "--", "hostname")
    assert loud.returncode == 5
    assert "== grep:" in loud.stdout
    assert quiet.stderr.splitlines()[1:] == loud.stderr.splitlines()[-1:]
    assert loud.stderr.splitlines()[-2].endswith("; 1 finding (--fail-on-findings)")
    # With --json the summary line carries it, and stderr says it too.
    data = cron(*args, "--json", "--", "hostname")
    summary = _json(data.stdout)[-1]
    assert (summary["exit_code"], summary["findings"], data.returncode) == (5, 1, 5)
    assert "1 finding (--fail-on-findings)" in data.stderr


# --------------------------------------------------------------------------- analyze play --json


def test_analyze_keeps_the_steps_of_a_play_apart(lab: Lab, tmp_path: Path) -> None:
    odd = lab.hosts[0].name
    book = tmp_path / "book.yml"
    book.write_text(
        "- hosts: all\n"
        "  steps:\n"
        "    - name: kernel\n"
        "      run: uname -s\n"
        "    - name: flavour\n"
        f'      run: if [ "$(hostname)" = {odd} ]; then echo odd; else echo same; fi\n'
        "    - assert:\n"
        "        that: 'true'\n"
        "    - name: never\n"
        "      run: echo never\n"
        "      when: false\n"
    )
    played = cron("play", str(book), "-i", str(lab.inventory), "--json")
    assert played.returncode == 0, played.stderr
    saved = tmp_path / "play.jsonl"
    saved.write_text(played.stdout)
    n = len(lab.hosts)

    result = cron("analyze", "group", str(saved), "--json")
    assert result.returncode == 0, result.stderr
    group, summary = _json(result.stdout)
    assert summary["hosts"] == n
    rows = {(r["document"], r["hosts"]): r["count"] for r in group["rows"]}
    # One output per host per step that has output; the assert and the skipped step have none.
    assert sum(rows.values()) == 2 * n
    assert {document for document, _ in rows} == {"step 1 'kernel'", "step 2 'flavour'"}
    assert sorted(c for (d, _), c in rows.items() if d == "step 2 'flavour'") == [1, n - 1]
    assert group["outliers"] == [odd]

    # drift per step: only the odd host of step 2 differs from its step's majority.
    result = cron("analyze", "drift", str(saved), "--fail-on-findings")
    assert result.returncode == 5
    findings = [line.strip() for line in result.stdout.splitlines() if "! " in line]
    assert len(findings) == 1, result.stdout
    assert findings[0].startswith(f"! {odd} step 2 'flavour': differs from the majority")
    assert "document" in result.stdout  # the table says which step each row is about


# --------------------------------------------------------------------------- --out-dir


def test_a_reused_out_dir_holds_only_the_last_run(lab: Lab, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = lab.hosts[0]
    # `gone` answers the first night, not the second.
    night1 = _inventory(lab, tmp_path, "night1.yml", {"gone": (first.address, first.port)})
    result = cron("run", "all", "-i", str(night1), "--out-dir", str(out), "-q", "--", "echo old")
    assert result.returncode == 0, result.stderr
    assert (out / "gone.out").read_text() == "old\n"
    (out / "notes.out").write_text("mine\n")  # files remoteops did not write stay
    (out / "keep.txt").write_text("mine\n")

    web = [h.name for h in lab.hosts if "web" in h.groups]
    with contextlib.closing(socket.socket()) as closed:
        closed.bind(("127.0.0.1", 0))
        port = int(closed.getsockname()[1])
        night2 = _inventory(lab, tmp_path, "night2.yml", {"gone": ("127.0.0.1", port)})
        result = cron(
            "run", "web:gone", "-i", str(night2), "--out-dir", str(out), "--json",
            "-a", "group", "--", "echo new",
        )  # fmt: skip
    assert result.returncode == 4, result.stderr
    analysis = next(obj for obj in _json(result.stdout) if obj["type"] == "analysis")
    # The unreachable host's old file is not analysed as tonight's output.
    samples = {row["sample"]: row["hosts"] for row in analysis["rows"]}
    assert "old" not in samples
    assert samples["new"] == row_hosts(web)

    names = set(os.listdir(out))
    assert {f"{h}.{ext}" for h in web for ext in ("out", "err", "exit")} <= names
    left = {n for n in names if not n.startswith(".")} - {
        f"{h}.{ext}" for h in web for ext in ("out", "err", "exit")
    }
    assert left == {"notes.out", "keep.txt"}
    assert (out / "notes.out").read_text() == "mine\n"

    result = cron("analyze", "group", str(out), "--json")
    assert result.returncode == 0, result.stderr
    group, summary = _json(result.stdout)
    assert summary["hosts"] == len(web)
    assert [(row["hosts"], row["sample"]) for row in group["rows"]] == [(row_hosts(web), "new")]


def row_hosts(names: list[str]) -> str:
    from remoteops.nodeset import fold

    return fold(sorted(names))
