"""docs/json.md against what real runs print on the lab: every key printed is
documented under its record type, and every key documented as always there is.

A row is "always there" unless its meaning says "only ..." or starts with the
commands, steps or analyzers it belongs to and a colon (`` `get` steps: ...``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from remoteops.lab import Lab
from tests.helpers import run_cli

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _tables() -> dict[str, tuple[set[str], set[str]]]:
    """Each heading of docs/json.md: (every key of its table, the keys always present)."""
    text = (ROOT / "docs" / "json.md").read_text()
    found: dict[str, tuple[set[str], set[str]]] = {}
    for heading, body in re.findall(r"^#{2,3} ([^\n]*)\n(.*?)(?=^#{2,3} |\Z)", text, re.M | re.S):
        every: set[str] = set()
        always: set[str] = set()
        for line in body.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not line.startswith("| `") or len(cells) < 3:
                continue
            keys = set(re.findall(r"`([\w%]+)`", cells[0]))
            every |= keys
            if "only" not in cells[2] and not re.match(r"(`[^`]+`[\w ,]*)+:", cells[2]):
                always |= keys
        if every:
            found[heading] = (every, always)
    return found


def _objects(*args: str) -> list[dict[str, object]]:
    done = run_cli(*args)
    assert done.returncode in (0, 5), done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def _check(
    objects: list[dict[str, object]], kind: str, *headings: str, some: tuple[str, ...] = ()
) -> None:
    """Every ``kind`` line has only keys of ``headings`` and ``some`` (tables whose keys
    only some lines have: a playbook's ping and transfer steps), and every key that
    ``headings`` say is always there."""
    tables = _tables()
    every = set().union(*(tables[h][0] for h in (*headings, *some)))
    always = set().union(*(tables[h][1] for h in headings))
    shown = [o for o in objects if o["type"] == kind]
    assert shown, f"no {kind} line"
    for obj in shown:
        undocumented = set(obj) - every
        assert not undocumented, f"docs/json.md, {headings}: document {sorted(undocumented)}"
        absent = always - set(obj)
        assert not absent, f"docs/json.md, {headings}: {sorted(absent)} are not always there"


def test_json_lines_match_the_documented_keys(lab: Lab, remote_dir: str, tmp_path: Path) -> None:
    inv = ["-i", str(lab.inventory), "--json"]
    run = _objects("run", "all", *inv, "--max-output", "2", "--", "echo hello; echo err >&2")
    _check(run, "host", "host")
    assert all("stdout_truncated_bytes" in o for o in run if o["type"] == "host")
    _check(run, "summary", "summary")
    killed = _objects("run", "web01", *inv, "--", "kill -9 $$")
    _check(killed, "host", "host")
    assert killed[0].get("signal"), killed[0]
    _check(_objects("ping", "all", *inv), "host", "host", "ping adds")
    (tmp_path / "f.txt").write_text("ERROR one\n")
    put = _objects("put", "all", *inv, str(tmp_path / "f.txt"), f"{remote_dir}/")
    _check(put, "host", "host", "put and get add")
    got = _objects(
        "get", "all", *inv, f"{remote_dir}/f.txt", str(tmp_path / "got"), "-a", "grep:ERROR"
    )
    _check(got, "host", "host", "put and get add")
    _check(got, "analysis", "analysis")
    _check(got, "summary", "summary")
    assert all("findings" in o for o in got if o["type"] == "summary")
    for analyzer in ("group:normalize", "count:ERROR", "logscan", "drift", "extract:df"):
        ran = _objects(
            "run",
            "all",
            *inv,
            "-a",
            analyzer,
            "-a",
            "threshold:df.use% > 101",
            "--",
            f"df -P /; cat {remote_dir}/f.txt",
        )
        _check(ran, "analysis", "analysis")
    analyzed = _objects("analyze", "logscan", str(tmp_path / "got"), "--json")
    _check(analyzed, "analysis", "analysis")
    summary = [o for o in analyzed if o["type"] == "summary"]
    assert summary
    assert set(summary[0]) == _tables()["analyze's summary"][0]

    book = tmp_path / "book.yml"
    book.write_text(
        "- hosts: web\n  steps:\n"
        f"    - run: cat {remote_dir}/f.txt\n      register: out\n"
        "    - ping:\n"
        f"    - put: {{src: f.txt, dest: {remote_dir}/again/}}\n"
        f"    - get: {{src: {remote_dir}/f.txt, dest: {tmp_path}/fetched}}\n"
        "      register: fetched\n"
        "    - analyze: {analyzer: 'grep:ERROR', src: out, fail_on_findings: false}\n"
        "    - assert: {that: out.rc == 0}\n"
        "    - run: 'false'\n      ignore_errors: true\n"
    )
    (tmp_path / "f.txt").write_text("ERROR one\n")
    play = _objects("play", str(book), *inv)
    steps = ("ping adds", "put and get add")
    _check(play, "host", "host", "play adds", some=steps)
    _check(play, "analysis", "analysis")
    _check(play, "summary", "summary")
    assert all({"recap", "stopped"} <= set(o) for o in play if o["type"] == "summary")
    assert {"dest", "msg", "findings", "ignored"} <= set().union(*(set(o) for o in play))
    checked = _objects("play", str(book), *inv, "--check")
    _check(checked, "host", "host", "play adds", some=steps)
    assert any(o.get("check_mode") and o.get("would") for o in checked)
