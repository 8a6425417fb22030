"""Cron and scripts: ``-q`` is silent on success, ``analyze`` keeps play steps apart,
and a reused ``--out-dir`` holds only the last run."""

from __future__ import annotations

import contextlib
import json
import os
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
