"""`remoteops history ...` and `remoteops report` as a user runs them (a new process, no
terminal), on history files written through the recording API in a state directory of
the test's own (XDG_STATE_HOME)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from remoteops.history import HistoryStore, default_history_path
from remoteops.results import HostResult, RunResult
from tests.chromium import Chromium, find_chromium
from tests.helpers import run_cli

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DAY = 86400.0


def _env(state: Path, **more: str) -> dict[str, str]:
    return {**os.environ, "XDG_STATE_HOME": str(state), **more}


def _record(
    store: HistoryStore,
    results: list[HostResult],
    *,
    command: str = "run",
    pattern: str = "web",
    exit_code: int = 0,
    started: float | None = None,
    analysis: list[dict[str, Any]] | None = None,
) -> int:
    recorder = store.start_run(
        command=command,
        argv=["remoteops", command, pattern, "--", "deploy", "--token", "s3cret"],
        pattern=pattern,
        inventory="web1,web2,web3,web4",
        started=started,
    )
    for result in results:
        recorder.host(result)
    recorder.analysis(analysis or [])
    recorder.finish(exit_code, 2.5, max_age_s=None, max_size=None)
    assert recorder.run_id is not None
    return recorder.run_id


def _host(name: str, status: str = "ok", out: bytes = b"", code: int | None = 0) -> HostResult:
    return HostResult(name, "127.0.0.1", 2222, status, code, out, duration_s=0.25)  # type: ignore[arg-type]


FINDING = {
    "v": 1,
    "type": "analysis",
    "analyzer": "grep",
    "args": "v2",
    "label": None,
    "title": "lines matching v2",
    "columns": ["host", "matches"],
    "rows": [{"host": "web1", "matches": 1}],
    "findings": [{"host": "web1", "document": "stdout", "message": "v2 seen on web1"}],
    "errors": [],
}


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A state directory whose history holds: an old `ping all`, then two runs of
    `run web` (web2 fails, web3 is unreachable, web1's output changes, web4 is new)."""
    store = HistoryStore(default_history_path({"XDG_STATE_HOME": str(tmp_path)}))
    now = time.time()
    _record(
        store, [_host("web1", out=b"pong\n")], command="ping", pattern="all", started=now - 3 * DAY
    )
    _record(
        store,
        [_host("web1", out=b"v1 up 10 days\n"), _host("web2"), _host("web3")],
        started=now - DAY - 3600,
    )
    _record(
        store,
        [
            _host("web1", out=b"v2 up 11 days\n"),
            _host("web2", "failed", b"", 2),
            HostResult("web3", "127.0.0.3", 2222, "unreachable", error="connection refused"),
            _host("web4"),
        ],
        exit_code=4,
        started=now - 60,
        analysis=[FINDING],
    )
    return tmp_path


def _cli(state: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env=_env(state, **env))


def _lines(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def _one_error_line(done: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert done.returncode == code, (done.stdout, done.stderr)
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("remoteops: error: "), line
    for word in words:
        assert word in line, line


def _doc_keys(doc: str, heading: str) -> set[str]:
    """The keys of the table under ``heading`` in docs/DOC."""
    text = (ROOT / "docs" / doc).read_text()
    body = re.split(rf"^#+ {re.escape(heading)}\n", text, flags=re.M)[1]
    body = re.split(r"^#+ ", body, flags=re.M)[0]
    keys: set[str] = set()
    for line in body.splitlines():
        if line.startswith("| `"):
            keys |= set(re.findall(r"`(\w+)`", line.split("|")[1]))
    return keys


# --------------------------------------------------------------------------- list


def test_list_prints_runs_newest_first_as_a_table_or_run_records(state: Path) -> None:
    table = _cli(state, "history", "list")
    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines()]
    assert rows[0] == ["ID", "STARTED", "STATUS", "EXIT", "SECONDS", "HOSTS", "JOB"]
    assert [(r[0], r[3], r[4]) for r in rows[1:]] == [
        ("3", "failed", "4"),
        ("2", "ok", "0"),
        ("1", "ok", "0"),
    ]
    runs = _lines(_cli(state, "history", "list", "--json"))
    assert [r["id"] for r in runs] == [3, 2, 1]
    for run in runs:
        assert set(run) == _doc_keys("history.md", "run")
    assert runs[0]["argv"][-2:] == ["--token", "(hidden)"]
    assert (runs[0]["failed"], runs[0]["unreachable"], runs[0]["hosts"]) == (1, 1, 4)
    assert [r["id"] for r in _lines(_cli(state, "history", "list", "--json", "-n", "1"))] == [3]
    assert [
        r["id"] for r in _lines(_cli(state, "history", "list", "--json", "--command", "ping"))
    ] == [1]
    assert [
        r["id"]
        for r in _lines(_cli(state, "history", "list", "--json", "--status", "failed,running"))
    ] == [3]
    assert [r["id"] for r in _lines(_cli(state, "history", "list", "--json", "--since", "2d"))] == [
        3,
        2,
    ]
    assert [
        r["id"] for r in _lines(_cli(state, "history", "list", "--json", "--pattern", "all"))
    ] == [1]
    nothing = _cli(state, "history", "list", "--job", "nightly")
    assert (nothing.returncode, nothing.stdout) == (0, "")
    assert nothing.stderr == "remoteops: no run matches\n"


def test_bad_options_are_one_line_and_exit_2(state: Path) -> None:
    _one_error_line(_cli(state, "history", "list", "--status", "broken"), 2, "--status broken")
    _one_error_line(_cli(state, "history", "list", "--since", "yesterday"), 2, "--since")
    _one_error_line(_cli(state, "history", "list", "-n", "-1"), 2, "-n -1")
    _one_error_line(_cli(state, "history", "hosts", "last", "--status", "gone"), 2, "--status gone")
    _one_error_line(_cli(state, "history", "prune", "--max-age", "forever"), 2, "--max-age")


# --------------------------------------------------------------------------- show


def test_show_json_has_the_records_of_json_and_the_summary(state: Path) -> None:
    records = _lines(_cli(state, "history", "show", "last", "--json"))
    types = ["run", "host", "host", "host", "host", "analysis", "summary"]
    assert [r["type"] for r in records] == types
    run, *hosts, analysis, summary = records
    assert analysis == FINDING
    assert run["id"] == 3
    live = RunResult()
    web1 = _host("web1", out=b"v2 up 11 days\n")
    live.add(web1)
    assert hosts[0] == web1.to_json()  # exactly what --json printed
    for host in hosts:
        assert set(host) <= _doc_keys("json.md", "host")
    assert set(summary) == {*live.summary_json(), "findings"}
    assert summary["findings"] == 1
    assert (summary["hosts"], summary["ok"], summary["failed"], summary["unreachable"]) == (
        4,
        2,
        1,
        1,
    )
    assert summary["exit_code"] == 4
    assert _lines(_cli(state, "history", "show", "last~1", "--json"))[0]["id"] == 2
    scoped = _lines(_cli(state, "history", "show", "last", "--command", "ping", "--json"))
    assert scoped[0]["id"] == 1


def test_show_on_a_pipe_prints_the_run_its_hosts_and_folded_outputs(state: Path) -> None:
    done = _cli(state, "history", "show", "3")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert "run 3: run web" in text
    assert "remoteops run web -- deploy --token '(hidden)'" in text
    assert "s3cret" not in text
    assert re.search(
        r"^web3\s+unreachable\s+-\s+0\.00\s+unreachable: connection refused$", text, re.M
    )
    assert "web[1,4] (2)" not in text  # different outputs are not folded together
    assert "v2 up 11 days" in text
    assert "grep:v2: lines matching v2\n  web1: v2 seen on web1\n" in text


@pytest.mark.parametrize(
    ("run", "words"),
    [
        ("lst", ["'lst'", "give a run id, last or last~N"]),
        ("999", ["'999'", "no such run"]),
        ("last~9", ["'last~9'", "no such run"]),
    ],
)
def test_a_bad_run_is_one_line_and_exit_2(state: Path, run: str, words: list[str]) -> None:
    _one_error_line(_cli(state, "history", "show", run), 2, *words)
    _one_error_line(_cli(state, "report", run, "-o", str(state / "r.html")), 2, *words)
    assert not (state / "r.html").exists()


def test_an_empty_history_says_so(tmp_path: Path) -> None:
    listed = _cli(tmp_path, "history", "list", "--json")
    assert (listed.returncode, listed.stdout) == (0, "")
    assert "no runs recorded yet" in listed.stderr
    for args in (("history", "show", "last"), ("history", "diff"), ("history", "hosts", "1")):
        _one_error_line(_cli(tmp_path, *args), 2, "the history has no runs yet")
    _one_error_line(_cli(tmp_path, "history", "list", "--status", "bad"), 2, "--status bad")
    pruned = _cli(tmp_path, "history", "prune")
    assert (pruned.returncode, pruned.stdout) == (0, "deleted 0 runs\n")
    assert not (tmp_path / "remoteops").exists()  # reading made no file


def test_an_unreadable_history_is_one_line_and_exit_1(tmp_path: Path) -> None:
    path = default_history_path({"XDG_STATE_HOME": str(tmp_path)})
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a database " * 1000)
    _one_error_line(_cli(tmp_path, "history", "list"), 1, str(path), "cannot read the history")


# --------------------------------------------------------------------------- diff and hosts


def test_diff_names_the_changed_hosts(state: Path) -> None:
    text = _cli(state, "history", "diff")
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines() == [
        "run 2 -> run 3 (run web)",
        "web1: stdout changed",
        "web2: ok -> failed (exit 2)",
        "web3: ok -> unreachable",
        "web4: added (ok)",
    ]
    (diff,) = _lines(_cli(state, "history", "diff", "2", "3", "--json"))
    assert set(diff) == _doc_keys("history.md", "diff")
    assert (diff["a"], diff["b"], diff["normalized"]) == (2, 3, False)
    assert diff["status_changed"] == ["web2", "web3"]
    assert (diff["output_changed"], diff["added"], diff["gone"]) == (["web1"], ["web4"], [])
    # Normalised, web1's "v1 up 10 days" and "v2 up 11 days" are the same.
    (same,) = _lines(_cli(state, "history", "diff", "3", "--json", "--normalize"))
    assert (same["a"], same["normalized"], same["output_changed"]) == (2, True, [])
    backwards = _lines(_cli(state, "history", "diff", "3", "2", "--json"))[0]
    assert (backwards["added"], backwards["gone"]) == ([], ["web4"])
    _one_error_line(_cli(state, "history", "diff", "1"), 2, "no earlier run of `ping` on all")


def test_hosts_feed_a_limit_file(state: Path, tmp_path: Path) -> None:
    done = _cli(state, "history", "hosts", "last", "--status", "failed,unreachable")
    assert (done.returncode, done.stdout) == (0, "web2\nweb3\n")
    every = _cli(state, "history", "hosts", "last~1")
    assert every.stdout == "web1\nweb2\nweb3\n"
    retry = tmp_path / "retry.txt"
    retry.write_text(done.stdout)
    selected = _cli(state, "inventory", "list", "-i", "web1,web2,web3,web4", "-l", f"@{retry}")
    assert selected.returncode == 0, selected.stderr
    assert [line.strip() for line in selected.stdout.splitlines()[1:]] == ["web2", "web3"]


# --------------------------------------------------------------------------- prune


def test_prune_takes_its_defaults_from_the_config_and_compacts(state: Path) -> None:
    config = state / "config.toml"
    config.write_text('[history]\nmax-age = "2d"\n')
    done = _cli(state, "history", "prune", REMOTEOPS_CONFIG=str(config))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("deleted 1 run; ")
    assert done.stdout.endswith("(compacted)\n")
    left = _lines(_cli(state, "history", "list", "--json"))
    assert [r["id"] for r in left] == [3, 2]
    again = _cli(state, "history", "prune", "--max-age", "12h", REMOTEOPS_CONFIG=str(config))
    assert again.stdout.startswith("deleted 1 run; "), again.stderr  # the option beats the file
    assert [r["id"] for r in _lines(_cli(state, "history", "list", "--json"))] == [3]
    by_size = _cli(state, "history", "prune", "--max-size", "1")
    assert by_size.stdout.startswith("deleted 1 run; "), by_size.stderr
    assert _cli(state, "history", "list", "--json").stdout == ""


# --------------------------------------------------------------------------- closed output


def test_a_closed_stdout_ends_quietly(state: Path) -> None:
    """stdout closed when it starts (`>&-`), or by its reader half-way (`| head -c 1`)."""
    store = HistoryStore(default_history_path({"XDG_STATE_HOME": str(state)}))
    big = os.urandom(600_000).hex().encode()  # 1.2 MB: more than a pipe holds
    _record(store, [_host("big1", out=big)], pattern="big")
    python = f"{sys.executable} -m remoteops --no-log-file"
    closed = subprocess.run(
        ["bash", "-c", f"{python} history show last --json >&-"],
        env=_env(state),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (closed.returncode, closed.stderr) == (0, "")
    cut = subprocess.run(
        [
            "bash",
            "-c",
            f'{python} history show last --json | head -c 1 >/dev/null; echo "${{PIPESTATUS[0]}}"',
        ],
        env=_env(state),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert cut.stdout == "141\n", cut.stderr
    assert "Traceback" not in cut.stderr
    assert (
        cut.stderr
        == "remoteops: stdout was closed (broken pipe): the output was cut short (exit code 141)\n"
    )


# --------------------------------------------------------------------------- report


def test_report_of_a_recorded_run_opens_in_chromium(state: Path, tmp_path: Path) -> None:
    tmp_path = tmp_path / "reports"
    tmp_path.mkdir()
    if find_chromium() is None:
        pytest.fail("chromium is missing: scripts/setup installs it (apt-get install chromium)")
    path = tmp_path / "last.html"
    done = _cli(state, "report", "last", "-o", str(path))
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    page = path.read_text()
    assert "s3cret" not in page
    bad = _cli(state, "report", "last", "-o", str(tmp_path / "no" / "r.html"))
    _one_error_line(bad, 2, "-o ", "does not exist; create it first")
    _one_error_line(_cli(state, "report", "last", "-o", str(tmp_path)), 2, "is a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.html"]
    with Chromium(state / "profile", width=1000, height=720) as browser:
        load = browser.load(path)
        assert load.errors == []
        assert [u for u in load.requests if not u.startswith("file:")] == []
        shown = browser.evaluate(
            "[[...document.querySelectorAll('#hosts tbody tr')].map(tr => tr.cells[0].textContent),"
            " document.querySelector('#diff') && document.querySelector('#diff').innerText,"
            " document.querySelector('#findings') && document.querySelector('#findings').innerText]"
        )
    hosts, diff, findings = shown
    assert hosts == ["web1", "web2", "web3", "web4"]
    assert "Compared with run 2, " in diff
    assert "-v1 up 10 days" in diff
    assert "+v2 up 11 days" in diff
    assert "web4" in diff  # a new host
    assert "v2 seen on web1" in findings
