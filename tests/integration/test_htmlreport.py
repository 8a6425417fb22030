"""The HTML report of real lab runs, opened in headless Chromium (Debian's `chromium`).

Chromium is part of what scripts/setup installs: a missing one fails these tests, it
never skips them.
"""

from __future__ import annotations

import difflib
import json
import os
import random
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from remoteops.htmlreport import OutputChange, ReportDiff, ReportRun, StatusChange, write_report
from remoteops.lab import Lab
from remoteops.nodeset import fold
from tests.chromium import Chromium, PageLoad, find_chromium, png_colours
from tests.helpers import run_cli

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# Every host's name as the page holds it: the host map's titles and the host table's rows.
HOST_NAMES = """(() => {
  const map = [...document.querySelectorAll('#map .map a')].map(a => a.title.split(': ')[0]);
  const rows = [...document.querySelectorAll('#hosts tbody tr')]
    .map(tr => tr.cells[0].textContent);
  return {map, rows};
})()"""

# The host whose row is the top row one sees (the first row not under the sticky header).
SHOWN_ROW = """(() => {
  const row = document.querySelector('#hosts tr:target');
  const top = row.getBoundingClientRect().top;
  const seen = document.elementFromPoint(40, top + 4);
  return seen && seen.closest('tr') === row ? row.cells[0].textContent : null;
})()"""


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    if find_chromium() is None:
        pytest.fail("chromium is missing: scripts/setup installs it (apt-get install chromium)")
    profile = tmp_path_factory.mktemp("chromium") / "profile"
    with Chromium(profile, width=1000, height=720) as browser:
        yield browser


@dataclass
class Listener:
    """A local HTTP server's address, and what was sent to it."""

    url: str
    requests: list[bytes] = field(default_factory=list)


@pytest.fixture
def listener() -> Iterator[Listener]:
    """A local HTTP port that records every request sent to it (there must be none)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    found = Listener(f"http://127.0.0.1:{server.getsockname()[1]}")
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    found.requests.append(conn.recv(4096))
                except OSError:
                    found.requests.append(b"")
                conn.sendall(b"HTTP/1.0 204 No Content\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def lab_run(lab: Lab, command: str) -> tuple[ReportRun, list[dict[str, Any]]]:
    """``remoteops run all --json -- COMMAND`` on the lab: the run and its host records."""
    started = datetime.now(UTC)
    done = run_cli("run", "all", "-i", str(lab.inventory), "--json", "--", command)
    ended = datetime.now(UTC)
    records = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert records[-1]["type"] == "summary", done.stderr
    assert records[-1]["exit_code"] == done.returncode
    line = f"remoteops run all -i {lab.inventory.name} --json -- {command}"
    info = ReportRun("run", line, "all", lab.inventory.name, started, ended, done.returncode)
    return info, [r for r in records if r["type"] == "host"]


def changes(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> ReportDiff:
    """What the history's diff reports, for two runs' records (the test's own, simple one)."""
    old = {r["host"]: r for r in before}
    new = {r["host"]: r for r in after}
    status = [
        StatusChange(h, old[h]["status"], r["status"])
        for h, r in new.items()
        if h in old and old[h]["status"] != r["status"]
    ]
    output = [
        OutputChange(h, "".join(difflib.unified_diff(a, b, "before", "now", n=0)))
        for h, r in new.items()
        if h in old
        for a, b in [(old[h]["stdout"].splitlines(True), r["stdout"].splitlines(True))]
        if a != b
    ]
    gone = sorted(set(old) - set(new))
    return ReportDiff("the run before", status, output, sorted(set(new) - set(old)), gone)


def open_report(chromium: Chromium, path: Path) -> PageLoad:
    """Load the page; nothing but the file itself is requested and nothing is logged."""
    load = chromium.load(path)
    assert load.requests == [path.resolve().as_uri()]
    assert load.blocked == {}
    assert load.errors == []
    return load


def test_a_lab_run_report_shows_every_host_in_chromium(
    lab: Lab, chromium: Chromium, tmp_path: Path
) -> None:
    """A run where one host fails and one host's output changed since the run before."""
    names = [h.name for h in lab.hosts]
    failing, changing = names[0], names[1]
    _, before = lab_run(lab, "echo version 1.0")
    run, after = lab_run(
        lab,
        f"case $(hostname) in {changing}) echo version 1.1;; "
        f"{failing}) echo version 1.0; echo disk full >&2; exit 3;; *) echo version 1.0;; esac",
    )
    assert run.exit_code == 5
    diff = changes(before, after)
    assert [c.host for c in diff.status_changed] == [failing]
    assert [c.host for c in diff.output_changed] == [changing]
    report = write_report(tmp_path / "report.html", run, after, diff=diff, order=names)

    open_report(chromium, report)
    shown = chromium.evaluate(HOST_NAMES)
    assert shown == {"map": names, "rows": names}
    assert chromium.evaluate("document.scripts.length") == 0  # the same with scripts off
    assert chromium.evaluate("document.querySelector('#map .map .s-failed').title") == (
        f"{failing}: failed"
    )
    text = chromium.evaluate("document.body.innerText")
    assert "disk full" in text
    assert "+version 1.1" in text
    picture = chromium.screenshot(tmp_path / "report.png", height=1100, scale=0.75)
    assert png_colours(picture) > 50  # text and colours, not a blank page
    if os.environ.get("REMOTEOPS_README_SCREENSHOT"):
        # The README's picture: REMOTEOPS_README_SCREENSHOT=1 pytest -k lab_run_report
        shutil.copyfile(tmp_path / "report.png", ROOT / "docs" / "img" / "report.png")


def test_a_play_report_shows_each_host_once_and_each_step_folded(
    lab: Lab, chromium: Chromium, tmp_path: Path
) -> None:
    names = [h.name for h in lab.hosts]
    book = tmp_path / "book.yml"
    book.write_text(
        "- hosts: all\n  steps:\n"
        "    - {name: who, run: hostname}\n"
        f'    - {{name: check, run: test "$(hostname)" != {names[0]}}}\n'
        "    - {name: after, run: echo done}\n"
    )
    started = datetime.now(UTC)
    done = run_cli("play", str(book), "-i", str(lab.inventory), "--json")
    records = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    run = ReportRun("play", "remoteops play book.yml", "all", None, started, None, None)
    report = write_report(tmp_path / "play.html", run, records, order=names)

    open_report(chromium, report)
    assert chromium.evaluate(HOST_NAMES) == {"map": names, "rows": names}
    statuses = chromium.evaluate(
        "[...document.querySelectorAll('#hosts tbody tr')].map(tr => tr.cells[1].textContent)"
    )
    assert statuses == ["failed"] + ["ok"] * (len(names) - 1)
    groups = chromium.evaluate(
        "[...document.querySelectorAll('#outputs summary')].map(s => s.textContent)"
    )
    assert f"ok {fold(names[1:])} ({len(names) - 1}) step 3 'after'" in groups


def test_hostile_output_cannot_load_anything_or_run_script(
    lab: Lab, chromium: Chromium, listener: Listener, tmp_path: Path
) -> None:
    url = listener.url
    markup = (
        f'<script>fetch("{url}/script")</script><img src="{url}/img">'
        f'<link rel="stylesheet" href="{url}/css"><iframe src="{url}/frame"></iframe>'
        f'<meta http-equiv="refresh" content="0;url={url}/refresh"></pre><b>bold</b>'
    )
    run, records = lab_run(lab, f"echo '{markup}'")
    assert all(r["stdout"] == markup + "\n" for r in records)
    report = write_report(tmp_path / "hostile.html", run, records)

    open_report(chromium, report)
    assert chromium.evaluate("document.scripts.length + document.images.length") == 0
    assert chromium.evaluate("document.querySelectorAll('iframe, link, #outputs b').length") == 0
    assert markup in chromium.evaluate("document.querySelector('#outputs pre').textContent")
    assert listener.requests == []


def test_the_policy_refuses_loads_even_from_markup_that_got_in(
    chromium: Chromium, listener: Listener, tmp_path: Path
) -> None:
    """Defence in depth: were escaping ever broken, the page's CSP still refuses scripts
    and every load from anywhere."""
    url = listener.url
    t0 = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
    run = ReportRun("run", "remoteops run all -- true", "all", None, t0, t0, 0)
    record = {"host": "web01", "status": "ok", "stdout": "", "duration_s": 0.1}
    report = write_report(tmp_path / "tampered.html", run, [record])
    page = report.read_text(encoding="utf-8")
    injected = f'<img src="{url}/img"><script>document.title = "ran"</script>'
    report.write_text(page.replace("<body>", "<body>" + injected, 1), encoding="utf-8")

    load = chromium.load(report)
    assert chromium.evaluate("document.title") != "ran"
    assert load.requests == [report.resolve().as_uri(), f"{url}/img"]
    assert load.blocked == {f"{url}/img": "csp"}
    assert any("Content Security Policy" in e for e in load.errors), load.errors
    assert listener.requests == []


def fleet(hosts: int) -> list[dict[str, Any]]:
    """Host records of a large synthetic fleet: half print the same line, half something of
    their own (a few hundred bytes); some fail or time out; a few are far slower."""
    rng = random.Random(14)
    records = []
    for i in range(hosts):
        status = rng.choice(["ok"] * 95 + ["failed"] * 3 + ["unreachable", "timeout"])
        own = f"node{i:04d} up {rng.randint(1, 900)} days\n" + "load " * 60 + "\n"
        records.append(
            {
                "v": 1,
                "type": "host",
                "host": f"node{i:04d}",
                "address": f"10.1.{i // 250}.{i % 250}",
                "port": 22,
                "status": status,
                "exit_code": 0 if status == "ok" else None if status != "failed" else 1,
                "stdout": own if i % 2 else "Linux 6.1.0-28-amd64 x86_64\n",
                "stderr": "",
                "duration_s": rng.expovariate(4) + (25.0 if i % 997 == 0 else 0.0),
                "error": None if status == "ok" else f"{status}: something went wrong",
            }
        )
    return records


def test_a_5000_host_report_stays_small_and_opens_quickly(
    chromium: Chromium, tmp_path: Path
) -> None:
    records = fleet(5000)
    t0 = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
    run = ReportRun("run", "remoteops run all -- uptime", "all", "fleet.yml", t0, t0, 5, "5000")
    report = write_report(tmp_path / "fleet.html", run, records)
    size = report.stat().st_size
    assert size < 4_000_000

    load = open_report(chromium, report)
    shown = chromium.evaluate(HOST_NAMES)
    names = [r["host"] for r in records]
    assert shown == {"map": names, "rows": names}
    assert png_colours(chromium.screenshot(tmp_path / "fleet.png")) > 50
    # A host's square leads to its row, shown (not under the table's sticky header).
    chromium.evaluate("document.querySelector('#map a[href=\"#h-4000\"]').click()")
    assert chromium.evaluate(SHOWN_ROW) == "node4000"
    print(
        f"5000-host report: {size} bytes, first paint after {load.paint_ms:.0f} ms,"
        f" load event after {load.load_ms:.0f} ms"
    )
    # The issue asks for under 2 s; a generous bound on a shared, noisy machine.
    assert load.load_ms < 10_000
