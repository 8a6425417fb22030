"""The history's runs as HTML reports (remoteops/reporting.py): real SQLite history files
written through the recording API, real HostResult objects, no mocks."""

from __future__ import annotations

import html
from datetime import datetime
from pathlib import Path

import pytest

from remoteops.errors import UsageError
from remoteops.history import HistoryStore
from remoteops.htmlreport import OutputChange, StatusChange
from remoteops.reporting import (
    DIFF_LINES,
    output_diff,
    previous_diff,
    report_diff,
    report_run,
    write_history_report,
)
from remoteops.results import HostResult

T0 = 1_700_000_000.0  # in the past: runs end after they start


def _ok(host: str, out: bytes = b"", **kw: object) -> HostResult:
    return HostResult(host, "127.0.0.1", 22, "ok", exit_code=0, stdout=out, **kw)  # type: ignore[arg-type]


def _step(host: str, step: int, status: str = "ok", out: bytes = b"") -> HostResult:
    extra = {"play": 1, "step": step, "step_name": f"s{step}"}
    return HostResult(host, "a", 22, status, 0 if status == "ok" else 1, out, extra=extra)  # type: ignore[arg-type]


def _record(
    store: HistoryStore,
    results: list[HostResult],
    *,
    command: str = "run",
    pattern: str | None = "web",
    exit_code: int | None = 0,
    started: float = T0,
    argv: list[str] | None = None,
) -> int:
    recorder = store.start_run(
        command=command,
        argv=argv or ["remoteops", command, pattern or "", "--", "uptime"],
        pattern=pattern,
        inventory="inv.yml",
        started=started,
    )
    for result in results:
        recorder.host(result)
    if exit_code is not None:
        recorder.finish(exit_code, 1.5, max_age_s=None, max_size=None)
    assert recorder.run_id is not None
    return recorder.run_id


@pytest.fixture
def store(tmp_path: Path) -> HistoryStore:
    return HistoryStore(tmp_path / "history.sqlite3")


def test_a_recorded_run_as_the_report_shows_it(store: HistoryStore) -> None:
    run_id = _record(
        store,
        [_ok("w1")],
        argv=["/usr/local/bin/remoteops", "run", "web", "--", "PGPASSWORD=s3cret psql -c 'x y'"],
        exit_code=5,
    )
    run = report_run(store.run(run_id))
    assert (
        run.command_line == "remoteops run web -- 'PGPASSWORD=(hidden) psql -c '\"'\"'x y'\"'\"''"
    )
    assert "s3cret" not in run.command_line
    assert (run.command, run.pattern, run.inventory, run.exit_code) == ("run", "web", "inv.yml", 5)
    assert run.run_id == str(run_id)
    assert run.started.tzinfo is not None
    assert run.started.timestamp() == T0
    assert run.ended is not None
    assert run.ended.tzinfo is not None
    assert run.ended > run.started


def test_a_run_that_never_finished_has_no_end_and_no_exit_code(store: HistoryStore) -> None:
    run_id = _record(store, [_ok("w1")], pattern=None, exit_code=None, argv=["x/__main__.py"])
    run = report_run(store.run(run_id))
    assert (run.ended, run.exit_code, run.pattern) == (None, None, "")
    assert run.command_line == "remoteops"
    assert isinstance(run.started, datetime)


def _two_runs(store: HistoryStore) -> tuple[int, int]:
    first = _record(
        store,
        [
            _ok("w1", b"kernel 6.1.0-27\nsame\n"),
            _ok("w2"),
            _ok("w3"),
            _ok("w6", b"kernel 6.1.0-27\nsame\n"),
            _step("w5", 1),
        ],
    )
    second = _record(
        store,
        [
            _ok("w1", b"kernel 6.1.0-28\nsame\n"),
            HostResult("w2", "a", 22, "failed", 2, stderr=b"boom\n"),
            _ok("w4"),
            _ok("w6", b"kernel 6.1.0-28\nsame\n"),
            _step("w5", 1),
            _step("w5", 2, "failed"),
        ],
        exit_code=5,
        started=T0 + 60,
    )
    return first, second


def test_a_diff_as_the_report_shows_it(store: HistoryStore) -> None:
    first, second = _two_runs(store)
    diff = report_diff(store.diff(first, second))
    assert diff.previous.startswith(f"run {first}, ")
    assert list(diff.status_changed) == [
        StatusChange("w2", "ok", "failed (exit 2)"),
        StatusChange("w5", "not run", "failed (exit 1)", step="step 2 's2'"),
    ]
    assert diff.added == ["w4"]
    assert diff.gone == ["w3"]
    expected = (
        f"--- stdout (run {first})\n+++ stdout (run {second})\n@@ -1,2 +1,2 @@\n"
        "-kernel 6.1.0-27\n+kernel 6.1.0-28\n same\n"
    )
    assert list(diff.output_changed) == [OutputChange("w1", expected), OutputChange("w6", expected)]


def test_a_normalised_diff_shows_only_what_made_the_outputs_differ(store: HistoryStore) -> None:
    first = _record(store, [_ok("w1", b"up 10 days\nw1 listens on 8080\nmode a\n")])
    second = _record(store, [_ok("w1", b"up 11 days\nw1 listens on 8081\nmode b\n")])
    diff = report_diff(store.diff(first, second, normalize=True))
    assert diff.previous.endswith(", outputs normalised")
    (change,) = diff.output_changed
    removed = [
        line for line in change.diff.splitlines() if line.startswith("-") and "---" not in line
    ]
    assert removed == ["-mode a"], change.diff


def test_big_outputs_are_diffed_in_part_and_within_a_budget(store: HistoryStore) -> None:
    many = b"".join(b"line %d\n" % i for i in range(DIFF_LINES + 10))
    first = _record(store, [_ok("w1", many), _ok("w2", b"a\n")])
    second = _record(store, [_ok("w1", many.replace(b"line", b"LINE")), _ok("w2", b"b\n")])
    cut = report_diff(store.diff(first, second), max_diff=300)
    w1 = next(c for c in cut.output_changed if c.host == "w1")
    assert w1.diff.startswith(f"--- stdout (run {first})\n")
    assert "more characters)" in w1.diff
    assert len(w1.diff) < 400
    whole = output_diff("stdout", many, b"x\n" + many, limit=10**7)
    assert whole.endswith(f"(only the first {DIFF_LINES} lines of each were compared)\n")
    nothing = report_diff(store.diff(first, second), budget=0)
    assert [c.diff for c in nothing.output_changed] == ["", ""]
    assert [c.host for c in nothing.output_changed] == ["w1", "w2"]


def test_previous_diff_is_none_when_there_is_nothing_to_compare(
    store: HistoryStore, tmp_path: Path
) -> None:
    assert previous_diff(store, 1) is None  # no file: and none is made
    assert not store.path.exists()
    first, second = _two_runs(store)
    assert previous_diff(store, first) is None  # the first run of its command and pattern
    assert previous_diff(store, 999) is None  # no such run
    other = _record(store, [_ok("w1")], pattern="db")
    assert previous_diff(store, other) is None
    found = previous_diff(store, second)
    assert found is not None
    assert found.previous.startswith(f"run {first}, ")
    assert {c.host for c in found.status_changed} == {"w2", "w5"}
    broken = tmp_path / "broken.sqlite3"
    broken.write_bytes(b"this is not a database" * 100)
    assert previous_diff(HistoryStore(broken), 1) is None


def test_a_recorded_run_written_as_a_report(store: HistoryStore, tmp_path: Path) -> None:
    first, second = _two_runs(store)
    recorder = store.start_run(command="run", argv=[], pattern="other", inventory=None)
    recorder.host(_ok("w1"))
    finding = {"host": "w1", "document": "stdout", "message": "<b>kept</b> finding"}
    recorder.analysis([{"type": "analysis", "analyzer": "grep", "findings": [finding]}])
    recorder.finish(0, 1.0, max_age_s=None, max_size=None)
    assert recorder.run_id is not None
    analysed = write_history_report(store, recorder.run_id, tmp_path / "a.html").read_text()
    assert "&lt;b&gt;kept&lt;/b&gt; finding" in analysed
    path = write_history_report(store, second, tmp_path / "r.html", order=["w6", "w5"])
    page = html.unescape(path.read_text())
    assert f"Compared with run {first}, " in page
    assert "+kernel 6.1.0-28" in page
    assert "boom" in page
    assert page.index('"h-0"><td>w6<') < page.index('"h-1"><td>w5<') < page.index("<td>w1<")
    assert (
        "Compared with"
        not in write_history_report(store, first, tmp_path / "first.html").read_text()
    )
    with pytest.raises(UsageError, match="run 999: no such run"):
        write_history_report(store, 999, tmp_path / "none.html")
    assert not (tmp_path / "none.html").exists()
    with pytest.raises(OSError):
        write_history_report(store, second, tmp_path / "no" / "such" / "dir.html")
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
