"""The HTML report's page, read back with the standard library's HTML parser."""

from __future__ import annotations

import base64
import hashlib
import os
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from remoteops.htmlreport import (
    OutputChange,
    ReportDiff,
    ReportRun,
    StatusChange,
    render_report,
    write_report,
)
from remoteops.report import render_gathered
from remoteops.results import HostResult

T0 = datetime(2026, 12, 6, 3, 0, tzinfo=UTC)
RUN = ReportRun(
    "run", "remoteops run web -- uptime", "web", "fleet.yml", T0, T0 + timedelta(seconds=4), 5
)


def host(name: str, status: str = "ok", stdout: str = "", **fields: Any) -> dict[str, Any]:
    record = {
        "v": 1,
        "type": "host",
        "host": name,
        "address": "127.0.0.1",
        "port": 22,
        "status": status,
        "exit_code": 0 if status == "ok" else 1,
        "stdout": stdout,
        "stderr": "",
        "duration_s": 0.5,
        "error": None if status == "ok" else "exit code 1",
    }
    return {**record, **fields}


class Page(HTMLParser):
    """Every element with its attributes, the text in each element with an id, and the
    text inside <style>."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.style = ""
        self.chunks: dict[str, list[str]] = {}
        self._open: list[tuple[str, str | None]] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.elements.append((tag, attributes))
        if tag not in ("meta", "br", "img", "link", "input"):
            self._open.append((tag, attributes.get("id")))

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._open and self._open[-1][0] == "style":
            self.style += data
        for _, ident in self._open:
            if ident:
                self.chunks.setdefault(ident, []).append(data)

    def text(self, ident: str) -> str:
        """The text inside the element with this id, as it is."""
        return "".join(self.chunks[ident])

    def words(self, ident: str) -> str:
        """The text inside the element with this id, one space between words and elements."""
        return " ".join(" ".join(self.chunks[ident]).split())

    def tags(self, name: str) -> list[dict[str, str | None]]:
        return [attrs for tag, attrs in self.elements if tag == name]

    def by_class(self, tag: str, cls: str) -> list[dict[str, str | None]]:
        return [a for a in self.tags(tag) if cls in (a.get("class") or "").split()]


HOSTILE = (
    '<script>fetch("http://127.0.0.1:9/x")</script><img src=http://127.0.0.1:9/i onerror=alert(1)>'
    '</pre></details><a href="http://127.0.0.1:9/">x</a><style>body{display:none}</style>'
    "\x1b]0;title\x07 &amp; ' \""
)


def test_what_hosts_sent_cannot_add_markup() -> None:
    records = [
        host("web01", stdout=HOSTILE),
        host("web02", "failed", stdout="", stderr=HOSTILE, error=HOSTILE),
        host('web03"><b>', stdout="ok\n"),
    ]
    analysis = [
        {
            "type": "analysis",
            "analyzer": "grep",
            "args": HOSTILE,
            "label": HOSTILE,
            "title": HOSTILE,
            "columns": ["host", HOSTILE],
            "rows": [{"host": "web01", HOSTILE: HOSTILE}],
            "findings": [{"host": "web01", "document": HOSTILE, "message": HOSTILE}],
            "errors": [{"host": "web02", "document": None, "error": HOSTILE}],
        }
    ]
    diff = ReportDiff(
        HOSTILE,
        [StatusChange("web02", HOSTILE, "failed")],
        [OutputChange("web01", HOSTILE)],
        added=["web03"],
    )
    # What a user typed is shown as safely (a pattern, an inventory path, a command line).
    run = ReportRun("run", HOSTILE, HOSTILE, HOSTILE, T0, T0, 5, HOSTILE)
    text = render_report(run, records, analysis=analysis, diff=diff)
    page = Page(text)
    assert not page.tags("script")
    assert not page.tags("img")
    assert len(page.tags("style")) == 1
    for tag, attrs in page.elements:
        assert not [a for a in attrs if a.startswith("on")], tag
        if "href" in attrs:
            assert (attrs["href"] or "").startswith("#"), attrs
    # The text is all there, as text: control characters escaped as the terminal shows them.
    outputs = page.text("outputs")
    assert '<script>fetch("http://127.0.0.1:9/x")</script>' in outputs
    assert "\\x1b]0;title\\x07 &amp; ' \"" in outputs
    assert "\x1b" not in text
    assert 'web03"><b>' in page.text("hosts")


def test_the_page_may_load_nothing_but_its_own_style() -> None:
    page = Page(render_report(RUN, [host("web01", stdout="hi\n")]))
    (meta,) = [m for m in page.tags("meta") if m.get("http-equiv") == "Content-Security-Policy"]
    policy = dict(
        part.strip().split(" ", 1) for part in (meta["content"] or "").split(";") if part.strip()
    )
    assert policy["default-src"] == "'none'"
    digest = base64.b64encode(hashlib.sha256(page.style.encode()).digest()).decode()
    assert policy["style-src"] == f"'sha256-{digest}'"
    assert "script-src" not in policy  # default-src 'none': no script at all
    assert page.style.strip()
    assert not [a for _, a in page.elements if "style" in a]  # inline styles would be refused


def test_host_map_and_table_follow_the_inventory_order() -> None:
    finished = [host("web10"), host("web02", "unreachable"), host("db01"), host("web01")]
    order = ["web01", "web02", "web10", "db01", "not-matched"]
    page = Page(render_report(RUN, finished, order=order))
    cells = page.tags("a")
    cells = [a for a in cells if (a.get("title") or "").count(": ") == 1 and not a.get("id")]
    assert [c["title"] for c in cells[:4]] == [
        "web01: ok",
        "web02: unreachable",
        "web10: ok",
        "db01: ok",
    ]
    assert "s-unreachable" in (cells[1]["class"] or "")
    rows = [a["id"] for a in page.tags("tr") if (a.get("id") or "").startswith("h-")]
    assert [c["href"] for c in cells[:4]] == [f"#{r}" for r in rows]
    assert [page.words(r).split()[0] for r in rows] == ["web01", "web02", "web10", "db01"]


def test_identical_outputs_are_folded_as_gather_folds_them() -> None:
    results = [
        HostResult("web01", "a", 22, "ok", 0, b"same\n"),
        HostResult("web02", "a", 22, "ok", 0, b"same\n"),
        HostResult("web04", "a", 22, "ok", 0, b"same\n"),
        HostResult("web03", "a", 22, "failed", 2, b"other\n", error="exit code 2"),
    ]
    page = Page(render_report(RUN, results))
    groups = [a["id"] for a in page.tags("details") if (a.get("id") or "").startswith("o-")]
    assert len(groups) == 2
    first, second = (page.text(g) for g in groups)
    assert "web[01-02,04] (3)" in first
    assert "same" in first
    assert "web03 (1)" in second
    # The same text --gather prints for the group, outcome line included.
    gathered = render_gathered(results)
    assert "other\n[failed: exit code 2]\n" in gathered
    assert "other\n[failed: exit code 2]\n" in second


def test_outputs_are_cut_to_keep_the_page_small() -> None:
    big = [host(f"n{i:04d}", stdout=f"n{i:04d} " + "x" * 20_000) for i in range(300)]
    text = render_report(RUN, big, max_output=1000, output_budget=100_000)
    page = Page(text)
    assert len(text) < 400_000
    outputs = page.text("outputs")
    assert "19007 more characters not shown" in outputs  # of 20,007 in the first group
    assert "n0000 " in outputs
    assert "n0299" in outputs  # every group is listed, past the budget too
    assert "n0299 (1) 20007 characters not shown." in page.words("outputs")
    assert "300 outputs are cut short" in outputs


def test_a_play_shows_each_host_once_with_its_worst_status() -> None:
    def step(name: str, number: int, status: str, stdout: str) -> dict[str, Any]:
        return host(name, status, stdout, play=1, step=number, step_name=f"s{number}")

    records = [
        step("web01", 1, "ok", "one\n"),
        step("web02", 1, "ok", "one\n"),
        step("web01", 2, "failed", "two\n"),
        step("web02", 2, "ok", "two\n"),
        step("web01", 3, "skipped", ""),
        step("web02", 3, "ok", "three\n"),
    ]
    page = Page(render_report(RUN, records))
    rows = {page.words(r).split()[0]: page.words(r) for r in page.chunks if r.startswith("h-")}
    assert rows["web01"].split()[1] == "failed"
    assert rows["web02"].split()[1] == "ok"
    assert "1.50" in rows["web01"]  # three steps of 0.5 s
    assert "web[01-02] (2) step 1 's1'" in page.words("outputs")
    links = [a for a in page.tags("a") if (a.get("href") or "").startswith("#o-")]
    assert len(links) == 6  # each host's row links to its output of each step
    assert "1 failed" in page.words("status")


def test_findings_show_hosts_folded() -> None:
    analysis = [
        {
            "v": 1,
            "type": "analysis",
            "analyzer": "threshold",
            "args": "df.use% > 90",
            "label": "disk nearly full",
            "title": "df.use% > 90",
            "columns": ["host", "value"],
            "rows": [{"host": f"web0{i}", "value": 95} for i in range(1, 4)],
            "findings": [
                {"host": f"web0{i}", "document": "stdout", "message": "df.use% 95 > 90"}
                for i in range(1, 4)
            ],
            "errors": [],
        }
    ]
    records = [host(f"web0{i}") for i in range(1, 5)]
    page = Page(render_report(RUN, records, analysis=analysis))
    findings = page.words("findings")
    assert "threshold:df.use% > 90 [disk nearly full]: df.use% > 90" in findings
    assert "web[01-03] (3) : df.use% 95 > 90" in findings


def test_the_diff_names_each_kind_of_change_and_marks_the_hosts() -> None:
    records = [host("web01"), host("web02", "failed"), host("web03"), host("web04")]
    diff = ReportDiff(
        "run 41, 2026-12-05 03:00",
        status_changed=[StatusChange("web02", "ok", "failed")],
        output_changed=[
            OutputChange("web03", "-1.0\n+1.1\n"),
            OutputChange("web04", "-1.0\n+1.1\n"),
        ],
        added=["web04"],
        gone=["web05", "web06"],
    )
    page = Page(render_report(RUN, records, diff=diff))
    text = page.words("diff")
    assert "Compared with run 41, 2026-12-05 03:00." in text
    assert "web02 ok failed" in text
    assert "web[03-04] (2) -1.0 +1.1" in text  # the same change once, hosts folded
    assert "New hosts web04" in text
    assert "Hosts gone web[05-06] (2)" in text
    changed = [a["title"] for a in page.by_class("a", "chg")]
    assert changed == ["web02: failed", "web03: ok", "web04: ok"]
    same = Page(render_report(RUN, records, diff=ReportDiff("run 41")))
    assert "Nothing changed" in same.text("diff")


def test_durations_show_the_stragglers() -> None:
    records = [host(f"web{i:02d}", duration_s=1.0) for i in range(1, 60)]
    records.append(host("web60", duration_s=30.0))
    page = Page(render_report(RUN, records))
    bars = page.by_class("rect", "slow")
    assert bars  # the histogram's last bin and the straggler's bar
    links = [a["href"] for a in page.tags("a") if a.get("href") == "#h-59"]
    assert links  # the straggler's bar leads to its row
    assert "slowest 30.00 s" in page.text("durations")


def test_write_report_replaces_the_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    target.write_text("old")
    assert write_report(target, RUN, [host("web01")]) == target
    assert target.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert os.listdir(tmp_path) == ["report.html"]
    (tmp_path / "dir.html").mkdir()
    with pytest.raises(OSError):
        write_report(tmp_path / "dir.html", RUN, [host("web01")])
    assert sorted(os.listdir(tmp_path)) == ["dir.html", "report.html"]  # no temporary left
    with pytest.raises(OSError):
        write_report(tmp_path / "missing" / "report.html", RUN, [host("web01")])


def test_other_records_of_a_json_run_are_ignored() -> None:
    summary = {"v": 1, "type": "summary", "hosts": 1, "exit_code": 0}
    text = render_report(RUN, [host("web01"), summary])
    assert re.findall(r'<tr id="h-\d+">', text) == ['<tr id="h-0">']


def test_a_run_that_matched_no_host_still_has_a_page() -> None:
    page = Page(render_report(RUN, []))
    assert page.words("status").startswith("Status 0 hosts 0 ok 0 failed 5 exit code")
    assert not page.by_class("a", "s-ok")


def test_an_unfinished_run_and_changes_in_playbook_steps() -> None:
    run = ReportRun("play", "remoteops play site.yml", "all", None, T0, None, None, "7")
    diff = ReportDiff(
        "run 6",
        status_changed=[StatusChange("web01", "ok", "failed (exit 2)", step="step 2 'restart'")],
        output_changed=[OutputChange("web02", "", step="step 1 'check'")],
    )
    page = Page(render_report(run, [host("web01", "failed"), host("web02")], diff=diff))
    assert "the run did not finish" in page.words("status")
    assert "- exit code" in page.words("status")
    changes = page.words("diff")
    assert "web01 step 2 'restart' ok failed (exit 2)" in changes
    assert "web02 (1) step 1 'check'" in changes
    badges = [a["class"] for a in page.by_class("span", "badge") if a is not None]
    assert "badge s-failed" in badges  # "failed (exit 2)" is coloured as failed
    assert "badge s-other" not in badges
