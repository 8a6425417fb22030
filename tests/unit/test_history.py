"""Run history (remoteops/history.py): real SQLite files, real processes, no mocks."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest

from remoteops.analysis.textscan import normalise
from remoteops.errors import UsageError
from remoteops.history import (
    MIGRATIONS,
    SCHEMA_VERSION,
    HistoryError,
    HistoryStore,
    default_history_path,
    parse_age,
    parse_since,
    parse_size,
    redact_argv,
    render_runs,
)
from remoteops.results import HostResult
from tests.helpers import python_in_mount_namespace

ROOT = Path(__file__).resolve().parents[2]


def _ok(host: str, out: bytes = b"", **kw: object) -> HostResult:
    return HostResult(host, "127.0.0.1", 22, "ok", exit_code=0, stdout=out, **kw)  # type: ignore[arg-type]


def _record(
    store: HistoryStore,
    results: list[HostResult],
    *,
    command: str = "run",
    pattern: str | None = "web",
    exit_code: int = 0,
    **kw: object,
) -> int:
    recorder = store.start_run(
        command=command,
        argv=["remoteops", command, pattern or "", "--", "uptime"],
        pattern=pattern,
        inventory="inv.yml",
        **kw,  # type: ignore[arg-type]
    )
    for result in results:
        recorder.host(result)
    recorder.finish(exit_code, 1.5, max_age_s=None, max_size=None)  # retention tested apart
    assert recorder.run_id is not None
    return recorder.run_id


# --------------------------------------------------------------------------- the file


def test_default_path_follows_xdg_state_home(tmp_path: Path) -> None:
    assert default_history_path({"XDG_STATE_HOME": str(tmp_path)}) == (
        tmp_path / "remoteops" / "history.sqlite3"
    )
    assert default_history_path({"HOME": "/nowhere"}).parts[-3:] == (
        "state",
        "remoteops",
        "history.sqlite3",
    )


def test_file_is_0600_in_a_0700_directory_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "state" / "remoteops" / "history.sqlite3"
    old = os.umask(0o022)
    try:
        _record(HistoryStore(path), [_ok("web1")])
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for extra in path.parent.glob("history.sqlite3-*"):  # -wal, -shm take the file's mode
        assert stat.S_IMODE(extra.stat().st_mode) == 0o600, extra


def test_a_run_and_its_hosts_read_back_as_json_records(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.sqlite3")
    results = [
        _ok("web1", b"up 3 days\n", duration_s=0.25, extra={"attempts": 2, "_private": 1}),
        HostResult("web2", "127.0.0.2", 2222, "failed", 3, b"", b"boom\n", 0.5, "exit 3"),
        HostResult("web3", "127.0.0.3", 22, "unreachable", error="connection refused"),
    ]
    run_id = _record(store, results, exit_code=5, user="alice")
    detail = store.show(run_id)
    assert detail.hosts == [r.to_json() for r in results]
    assert [list(h) for h in detail.hosts] == [list(r.to_json()) for r in results]  # key order
    run = detail.run
    assert (run.command, run.pattern, run.inventory, run.user) == ("run", "web", "inv.yml", "alice")
    assert (run.status, run.exit_code, run.duration_s, run.job) == ("failed", 5, 1.5, "run web")
    assert run.counts == {"ok": 1, "failed": 1, "unreachable": 1}
    lines = detail.to_json_lines()
    assert [line["type"] for line in lines] == ["run", "host", "host", "host", "summary"]
    assert lines[0]["hosts"] == 3
    assert lines[0]["failed"] == 1
    assert lines[0]["id"] == run_id
    assert lines[0]["started"].endswith("Z")
    assert lines[0]["ended"].endswith("Z")
    assert lines[-1] == {
        "v": 1,
        "type": "summary",
        "hosts": 3,
        "ok": 1,
        "failed": 1,
        "unreachable": 1,
        "hostkey": 0,
        "timeout": 0,
        "interrupted": 0,
        "skipped": 0,
        "duration_s": 1.5,
        "exit_code": 5,
    }
    json.dumps(lines)  # every record is plain JSON


def test_names_that_are_not_utf8_are_recorded_not_lost(tmp_path: Path) -> None:
    """A path given as bytes that are not UTF-8 (surrogate escapes in argv) reaches the
    pattern and a host's error; SQLite cannot store such text, the record shows them."""
    store = HistoryStore(tmp_path / "h.sqlite3")
    odd = "/tmp/kh-\udcff"
    bad = HostResult("web1", "127.0.0.1", 22, "hostkey", error=f"known_hosts {odd}: unreadable")
    run_id = _record(store, [bad], pattern=f"web:{odd}", exit_code=4)
    detail = store.show(run_id)
    assert detail.run.pattern == "web:/tmp/kh-\\udcff"
    assert detail.hosts[0]["error"] == bad.error  # the JSON record keeps it exactly
    assert detail.run.exit_code == 4


def test_output_is_capped_at_max_output_and_stored_compressed(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    store = HistoryStore(path)
    big = b"line of output\n" * 10_000  # 150,000 bytes
    run_id = _record(store, [_ok("web1", big, stdout_truncated=7)], max_output=1000)
    host = store.show(run_id).hosts[0]
    assert host["stdout"] == big[:1000].decode()
    assert host["stdout_truncated_bytes"] == 7 + len(big) - 1000
    assert host["stderr_truncated_bytes"] == 0
    run_id = _record(store, [_ok("web1", big)], max_output=1 << 20)
    with sqlite3.connect(path) as db:
        (blob,) = db.execute("SELECT stdout FROM hosts WHERE run_id = ?", (run_id,)).fetchone()
    assert zlib.decompress(blob) == big
    assert len(blob) < len(big) // 20


def test_recorder_takes_hosts_from_many_threads(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / "h.sqlite3")
    recorder = store.start_run(command="run", argv=[], pattern="all", inventory=None)
    threads = [
        threading.Thread(target=lambda t=t: [recorder.host(_ok(f"h{t}-{i}")) for i in range(50)])
        for t in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    recorder.finish(0, 1.0)
    assert recorder.run_id is not None
    hosts = store.hosts(recorder.run_id)
    assert len(hosts) == 400
    assert hosts == sorted(f"h{t}-{i}" for t in range(8) for i in range(50))


# --------------------------------------------------------------------------- redaction


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--db-password", "s3", "-v"], ["--db-password", "(hidden)", "-v"]),
        (["--client_secret=s3"], ["--client_secret=(hidden)"]),
        (["--token", "--verbose"], ["--token", "--verbose"]),  # no value given
        (["PGPASSWORD=s3", "psql"], ["PGPASSWORD=(hidden)", "psql"]),
        (["--env", "AWS_SECRET_ACCESS_KEY=s3"], ["--env", "AWS_SECRET_ACCESS_KEY=(hidden)"]),
        (["curl", "https://bob:s3@host/x"], ["curl", "https://bob:(hidden)@host/x"]),
        (["mysql", "-uroot", "-ps3", "db"], ["mysql", "-uroot", "-p(hidden)", "db"]),
        (["/usr/bin/mysqldump", "-ps3"], ["/usr/bin/mysqldump", "-p(hidden)"]),
        (["grep", "-pattern"], ["grep", "-pattern"]),  # -p only after a MySQL client
        (["mysql", "-p", "db"], ["mysql", "-p", "db"]),  # -p alone prompts; db is a name
        (["sshpass", "-p", "s3", "ssh", "h"], ["sshpass", "-p", "(hidden)", "ssh", "h"]),
        (["sshpass", "-ps3"], ["sshpass", "-p(hidden)"]),
        (["curl", "-u", "bob:s3", "-ubob:s3"], ["curl", "-u", "bob:(hidden)", "-ubob:(hidden)"]),
        (["curl", "--user=bob:s3", "-u", "bob"], ["curl", "--user=bob:(hidden)", "-u", "bob"]),
        (["curl -s --user bob:s3 https://x"], ["curl -s --user bob:(hidden) https://x"]),
        (["run", "--ask-pass", "web"], ["run", "--ask-pass", "web"]),  # remoteops' flag
        (["--user", "bob", "--key-file", "k"], ["--user", "bob", "--key-file", "k"]),
        (
            ["PGPASSWORD='a b' psql --password \"c d\" -c 'select 1'"],
            ["PGPASSWORD=(hidden) psql --password (hidden) -c 'select 1'"],
        ),
        (
            ["-e", '{"db_password": "a b", "user": "bob"}', "-e", "api_token: xyz"],
            ["-e", '{"db_password": (hidden), "user": "bob"}', "-e", "api_token: (hidden)"],
        ),
        (["echo", "at 12:00:01"], ["echo", "at 12:00:01"]),
    ],
)
def test_redact_argv_hides_secret_values_only(argv: list[str], expected: list[str]) -> None:
    assert redact_argv(argv) == expected


def test_secrets_of_the_command_line_never_reach_the_file(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    store = HistoryStore(path)
    recorder = store.start_run(
        command="run",
        argv=["remoteops", "run", "db", "--", "PGPASSWORD=Zq9sekrit psql -c 'select 1'"],
        pattern="db",
        inventory=None,
    )
    recorder.finish(0, 0.1)
    assert recorder.run_id is not None
    assert store.run(recorder.run_id).argv[-1] == "PGPASSWORD=(hidden) psql -c 'select 1'"
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"Zq9sekrit" not in raw


# --------------------------------------------------------------------------- option values


def test_ages_sizes_and_since_as_the_options_take_them() -> None:
    assert parse_age("90d") == 90 * 86400
    assert parse_age("12h") == 12 * 3600
    assert parse_age("2w") == 14 * 86400
    assert parse_age("30") == 30 * 86400  # a bare number is days
    assert parse_size("256M") == 256 << 20
    assert parse_size("1GiB") == 1 << 30
    assert parse_size("4096") == 4096
    assert parse_since("2d", now=1_000_000.0) == 1_000_000.0 - 2 * 86400
    assert parse_since("2026-12-01T06:00:00+00:00") == 1796104800.0
    with pytest.raises(UsageError, match=r"--max-age 'soon': give a number and a unit"):
        parse_age("soon")
    with pytest.raises(UsageError, match=r"--max-size '12 parsecs': give a size"):
        parse_size("12 parsecs")
    with pytest.raises(UsageError, match=r"--since 'yesterday': give an age \(2d, 12h\)"):
        parse_since("yesterday")


@pytest.mark.parametrize("text", ["90d", "12h", "30", "2.5", "2w", "45s"])
def test_the_config_reads_max_age_as_history_prune_does(text: str) -> None:
    """``[history] max-age = 30`` and ``history prune --max-age 30`` both mean 30 days."""
    from remoteops import config

    assert config.parse_age(text) == parse_age(text)
    if text.replace(".", "").isdigit():
        assert config.parse_age(float(text)) == parse_age(text)  # a TOML number
    assert config.parse_size("256M") == parse_size("256M")


# --------------------------------------------------------------------------- schema


# Version 1 of the schema exactly as it shipped: a file written by that remoteops.
V1_FILE_SQL = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES (1);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, started REAL NOT NULL, ended REAL,
    command TEXT NOT NULL, argv TEXT NOT NULL, user TEXT NOT NULL, inventory TEXT,
    pattern TEXT, exit_code INTEGER, duration_s REAL, machine TEXT NOT NULL, pid INTEGER NOT NULL
);
CREATE TABLE hosts (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, seq INTEGER NOT NULL,
    host TEXT NOT NULL, status TEXT NOT NULL, exit_code INTEGER, duration_s REAL NOT NULL,
    error TEXT, record TEXT NOT NULL, stdout BLOB NOT NULL, stderr BLOB NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX runs_command_pattern ON runs (command, pattern, id);
INSERT INTO runs VALUES (1, 1700000000.0, 1700000002.0, 'run', '["remoteops","run","web"]',
    'alice', 'inv.yml', 'web', 0, 2.0, 'oldbox', 1);
INSERT INTO runs VALUES (2, 1700000100.0, 1700000101.0, 'ping', '["remoteops","ping"]',
    'alice', NULL, NULL, 4, 1.0, 'oldbox', 1);
"""


def test_a_version_1_file_is_migrated_to_the_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(V1_FILE_SQL)
        record = _ok("web1", b"hello\n").to_json()
        del record["stdout"], record["stderr"]
        db.execute(
            "INSERT INTO hosts VALUES (1, 1, 'web1', 'ok', 0, 0.1, NULL, ?, ?, ?)",
            (json.dumps(record), zlib.compress(b"hello\n"), b""),
        )
    db.close()
    assert SCHEMA_VERSION > 1
    assert len(MIGRATIONS) == SCHEMA_VERSION
    store = HistoryStore(path)
    runs = store.list_runs()
    assert [(r.id, r.job, r.status) for r in runs] == [(2, "ping", "failed"), (1, "run web", "ok")]
    assert store.show(1).hosts[0]["stdout"] == "hello\n"
    assert store.last_success("run web") == 1700000002.0
    new = _record(store, [_ok("web1")], job="nightly")
    assert store.run(new).job == "nightly"
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()


def test_a_file_from_a_newer_remoteops_is_refused_in_one_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "h.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        db.execute("INSERT INTO schema_version VALUES (99)")
    db.close()
    with pytest.raises(HistoryError, match=r"schema version 99 is newer .*upgrade remoteops"):
        HistoryStore(path).list_runs()
    recorder = HistoryStore(path).start_run(command="run", argv=[], pattern="x", inventory=None)
    recorder.host(_ok("web1"))
    recorder.finish(0, 0.1)
    assert not recorder.active
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "cannot record this run" in warnings[0].getMessage()


def test_queries_without_a_file_say_so_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "none.sqlite3"
    with pytest.raises(HistoryError, match=r"none\.sqlite3: no history yet"):
        HistoryStore(path).list_runs()
    assert not path.exists()


# --------------------------------------------------------------------------- queries


@pytest.fixture
def store(tmp_path: Path) -> HistoryStore:
    return HistoryStore(tmp_path / "h.sqlite3")


def test_list_filters_and_limit(store: HistoryStore) -> None:
    t0 = time.time() - 3600
    a = _record(store, [_ok("w1")], started=t0)
    b = _record(store, [_ok("w1")], pattern="db", exit_code=5, started=t0 + 60)
    c = _record(store, [_ok("w1")], command="ping", pattern="web", started=t0 + 120)
    d = _record(store, [_ok("w1")], started=t0 + 180)
    assert [r.id for r in store.list_runs()] == [d, c, b, a]
    assert [r.id for r in store.list_runs(limit=2)] == [d, c]
    assert [r.id for r in store.list_runs(command="run")] == [d, b, a]
    assert [r.id for r in store.list_runs(pattern="web")] == [d, c, a]
    assert [r.id for r in store.list_runs(command="run", pattern="web")] == [d, a]
    assert [r.id for r in store.list_runs(status=["failed"])] == [b]
    assert [r.id for r in store.list_runs(status=["ok"], limit=1)] == [d]
    assert [r.id for r in store.list_runs(since=t0 + 100)] == [d, c]
    assert [r.id for r in store.list_runs(job="run db")] == [b]
    with pytest.raises(UsageError, match="--status bogus: use ok, failed, running, incomplete"):
        store.list_runs(status=["bogus"])


def test_resolve_ids_last_and_last_n(store: HistoryStore) -> None:
    a = _record(store, [_ok("w1")])
    b = _record(store, [_ok("w1")], command="ping")
    c = _record(store, [_ok("w1")])
    assert store.resolve("last") == c
    assert store.resolve("last~1") == b
    assert store.resolve("last~2") == a
    assert store.resolve(str(a)) == a
    assert store.resolve("last~1", command="run", pattern="web") == a
    with pytest.raises(UsageError, match=r"run 'last~3': no such run in the history"):
        store.resolve("last~3")
    with pytest.raises(UsageError, match=r"no such run in the history of that command"):
        store.resolve(str(b), command="run", pattern="web")
    with pytest.raises(UsageError, match=r"run 'yesterday': give a run id, last or last~N"):
        store.resolve("yesterday")


def test_hosts_of_a_run_by_status_feed_a_rerun(store: HistoryStore) -> None:
    run_id = _record(
        store,
        [
            _ok("web1"),
            HostResult("web2", "a", 22, "failed", 1),
            HostResult("web3", "a", 22, "unreachable"),
            HostResult("web4", "a", 22, "timeout"),
            # a playbook: web1 failed at a later step
            HostResult("web1", "a", 22, "failed", 1, extra={"play": 1, "step": 2}),
        ],
    )
    assert store.hosts(run_id, ["failed", "unreachable"]) == ["web1", "web2", "web3"]
    assert store.hosts(run_id) == ["web1", "web2", "web3", "web4"]
    with pytest.raises(UsageError, match="--status broken: use ok, failed"):
        store.hosts(run_id, ["broken"])
    with pytest.raises(UsageError, match="run 999: no such run"):
        store.hosts(999)


def test_diff_of_the_last_two_runs_of_the_same_command_and_pattern(store: HistoryStore) -> None:
    first = _record(
        store,
        [
            _ok("same", b"a\n"),
            _ok("output", b"load 0.10\n"),
            _ok("down"),
            _ok("gone"),
            _ok("stamped", b"at 2026-12-05T02:00:00Z on stamped\n"),
        ],
    )
    _record(store, [_ok("same", b"other command\n")], command="ping")  # not compared
    second = _record(
        store,
        [
            _ok("same", b"a\n"),
            _ok("output", b"load 0.35\n"),
            HostResult("down", "a", 22, "unreachable", error="refused"),
            _ok("new"),
            _ok("stamped", b"at 2026-12-06T02:00:00Z on stamped\n"),
        ],
        exit_code=4,
    )
    diff = store.diff()
    assert (diff.a.id, diff.b.id) == (first, second)
    assert diff.names("status") == ["down"]
    assert diff.names("output") == ["output", "stamped"]
    assert diff.names("added") == ["new"]
    assert diff.names("gone") == ["gone"]
    down = next(h for h in diff.hosts if h.host == "down")
    assert down.before == {"status": "ok", "exit_code": 0}
    assert down.after == {"status": "unreachable", "exit_code": None}
    # normalised as group:normalize does: numbers and times masked
    normalised = store.diff(first, second, normalize=True)
    assert normalised.names("output") == []
    assert normalise(b"load 0.10\n", host="output") == normalise(b"load 0.35\n", host="output")
    assert store.diff(second).a.id == first  # one run: compared with its predecessor
    record = diff.to_json()
    assert record["type"] == "diff"
    assert record["status_changed"] == ["down"]
    assert {"host": "output", "change": "output", "streams": ["stdout"]}.items() <= next(
        h for h in record["hosts"] if h["host"] == "output"
    ).items()
    with pytest.raises(UsageError, match="no earlier run of `run` on web"):
        store.diff(first)


# --------------------------------------------------------------------------- processes


WRITER = """
import sys, time
from pathlib import Path
from remoteops.history import HistoryStore
from remoteops.results import HostResult
path, name, count, gate = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
for _ in range(600):
    if gate.exists():
        break
    time.sleep(0.05)
recorder = HistoryStore(path).start_run(command="run", argv=[], pattern=name, inventory=None)
for i in range(count):
    recorder.host(HostResult(f"{name}-{i}", "a", 22, "ok", 0, b"x" * 2000))
print("recorded", flush=True)
if sys.argv[5] == "finish":
    recorder.finish(0, 1.0)
else:
    time.sleep(300)
"""


def _writer(path: Path, name: str, count: int, gate: Path, end: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), name, str(count), str(gate), end],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def test_overlapping_runs_of_several_processes_all_land(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    gate = tmp_path / "go"
    procs = [_writer(path, f"p{n}", 60, gate, "finish") for n in range(5)]
    gate.touch()  # all start writing together
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert err == ""  # no warning: the busy timeout waited for the other writers
    runs = HistoryStore(path).list_runs()
    assert sorted(r.pattern or "" for r in runs) == [f"p{n}" for n in range(5)]
    assert all(r.status == "ok" and r.counts == {"ok": 60} for r in runs)


def test_a_killed_run_stays_marked_incomplete_and_the_file_intact(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite3"
    gate = tmp_path / "go"
    gate.touch()
    proc = _writer(path, "killed", 25, gate, "hang")
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "recorded\n"
        store = HistoryStore(path)
        assert [r.status for r in store.list_runs()] == ["running"]
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    _record(store, [_ok("after")])  # the file takes new runs
    runs = store.list_runs()
    assert [(r.pattern, r.status) for r in runs] == [("web", "ok"), ("killed", "incomplete")]
    killed = runs[1]
    assert killed.counts == {"ok": 25}
    assert killed.ended is None
    assert killed.exit_code is None
    assert store.show(killed.id).summary_json()["exit_code"] is None
    assert [r.id for r in store.list_runs(status=["incomplete"])] == [killed.id]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()


# --------------------------------------------------------------------------- failures

FAILING_RUN = """
import logging, os, sys
from pathlib import Path
from remoteops.history import HistoryStore
from remoteops.logconfig import LogSettings, setup_logging
from remoteops.results import HostResult
setup_logging(LogSettings(), stderr_handler=logging.StreamHandler())
recorder = HistoryStore(Path(sys.argv[1])).start_run(
    command="run", argv=[], pattern="all", inventory=None)
for i in range(40):
    recorder.host(HostResult(f"h{i}", "a", 22, "ok", 0, os.urandom(8000)))
recorder.finish(0, 1.0)
print("the run went on", recorder.run_id is not None)
if recorder.run_id is not None:
    import sqlite3
    db = sqlite3.connect(sys.argv[1])
    print("integrity", db.execute("PRAGMA integrity_check").fetchone()[0])
    print("hosts", db.execute("SELECT count(*) FROM hosts").fetchone()[0])
"""


def _in_namespace(setup: str, history: Path) -> subprocess.CompletedProcess[str]:
    return python_in_mount_namespace(setup, FAILING_RUN, str(history))


def _one_warning(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("remoteops: warning: history "), lines[0]
    assert "the run goes on" in lines[0]
    return lines[0]


def test_a_full_disk_warns_once_and_the_run_goes_on(tmp_path: Path) -> None:
    mount = tmp_path / "mnt"
    mount.mkdir()
    done = _in_namespace(f"mount -t tmpfs -o size=256k tmpfs {mount}", mount / "h.sqlite3")
    assert "full" in _one_warning(done)
    out = done.stdout.splitlines()
    assert out[0] == "the run went on True"
    assert out[1] == "integrity ok"  # what was written before the disk filled is intact
    assert 0 < int(out[2].split()[1]) < 40
    assert not (mount / "h.sqlite3").exists()  # the tmpfs went with the namespace


def test_an_unwritable_directory_warns_once_and_the_run_goes_on(tmp_path: Path) -> None:
    mount = tmp_path / "mnt"
    mount.mkdir()
    done = _in_namespace(
        f"mount -t tmpfs -o ro,size=64k tmpfs {mount}", mount / "remoteops" / "h.sqlite3"
    )
    assert "Read-only file system" in _one_warning(done)
    assert done.stdout.splitlines() == ["the run went on False"]


def test_an_unwritable_history_file_warns_once_and_is_left_as_it_was(tmp_path: Path) -> None:
    """root ignores file modes, so the file is made unwritable by a read-only bind mount."""
    directory = tmp_path / "state"
    path = directory / "h.sqlite3"
    first = _record(HistoryStore(path), [_ok("web1")])
    before = path.read_bytes()
    done = _in_namespace(
        f"mount --bind {directory} {directory} && mount -o remount,bind,ro {directory}", path
    )
    assert "Read-only file system" in _one_warning(done)
    assert done.stdout.splitlines()[0] == "the run went on False"
    assert path.read_bytes() == before
    assert [r.id for r in HistoryStore(path).list_runs()] == [first]


# --------------------------------------------------------------------------- retention


def test_prune_by_age_keeps_recent_and_running_runs(store: HistoryStore) -> None:
    now = time.time()
    old = _record(store, [_ok("w1")], started=now - 100 * 86400)
    recent = _record(store, [_ok("w1")], started=now - 86400)
    running = store.start_run(
        command="run", argv=[], pattern="web", inventory=None, started=now - 200 * 86400
    )
    result = store.prune(max_age_s=30 * 86400, max_size=None)
    assert result.runs_deleted == 1
    ids = [r.id for r in store.list_runs()]
    assert old not in ids
    assert recent in ids
    assert running.run_id in ids
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT count(*) FROM hosts WHERE run_id = ?", (old,)).fetchone() == (0,)
    db.close()
    running.finish(0, 1.0)


def test_prune_by_size_drops_the_oldest_runs_and_shrinks_the_file(store: HistoryStore) -> None:
    for _ in range(20):
        _record(store, [_ok(f"h{i}", os.urandom(20_000)) for i in range(5)])  # ~100 kB a run
    newest = store.resolve("last")
    result = store.prune(max_age_s=None, max_size=500_000, vacuum=True)
    assert result.vacuumed
    assert 10 <= result.runs_deleted < 20
    assert result.bytes_after <= 600_000 < result.bytes_before
    assert store.path.stat().st_size <= 600_000
    ids = [r.id for r in store.list_runs(limit=None)]
    assert ids[0] == newest
    assert ids == sorted(ids, reverse=True)
    assert min(ids) > result.runs_deleted  # the oldest went first
    nothing = store.prune(max_age_s=None, max_size=500_000)
    assert nothing.runs_deleted == 0
    assert not nothing.vacuumed


def test_finishing_a_run_applies_the_retention(store: HistoryStore) -> None:
    old = _record(store, [_ok("w1")], started=time.time() - 100 * 86400)
    kept = _record(store, [_ok("w1")], started=time.time() - 10 * 86400)
    recorder = store.start_run(command="run", argv=[], pattern="x", inventory=None)
    recorder.finish(0, 1.0)  # 90 days by default
    assert [r.id for r in store.list_runs()] == [recorder.run_id, kept]
    first = recorder.run_id
    recorder = store.start_run(command="run", argv=[], pattern="x", inventory=None)
    recorder.finish(0, 1.0, max_age_s=86400, max_size=None)
    assert [r.id for r in store.list_runs()] == [recorder.run_id, first]
    assert old not in [r.id for r in store.list_runs(limit=None)]


def test_rerun_failed_takes_the_last_run_of_the_command_and_pattern(store: HistoryStore) -> None:
    with pytest.raises(UsageError, match="no earlier run of `run` on web"):
        store.not_succeeded("run", "web")
    last = _record(
        store,
        [_ok("w1"), HostResult("w2", "a", 22, "failed", 1), HostResult("w3", "a", 22, "timeout")],
        exit_code=3,
    )
    _record(store, [HostResult("w9", "a", 22, "failed", 1)], pattern="db", exit_code=5)
    running = store.start_run(command="run", argv=[], pattern="web", inventory=None)
    running.host(HostResult("w1", "a", 22, "failed", 1))
    assert store.not_succeeded("run", "web") == (last, ["w2", "w3"])  # not the one running
    running.finish(5, 1.0)
    assert store.not_succeeded("run", "web") == (running.run_id, ["w1"])


def test_the_terminal_forms_of_list_and_diff(store: HistoryStore) -> None:
    _record(store, [_ok("w1", b"a"), _ok("w2"), _ok("w3")], started=1_800_000_000.0)
    _record(
        store,
        [
            _ok("w1", b"b"),
            HostResult("w2", "a", 22, "failed", 2),
            _ok("w4"),
            HostResult("w5", "a", 22, "ok", 0, extra={"play": 1, "step": 3}),
        ],
        exit_code=5,
        started=1_800_000_060.0,
    )
    table = render_runs(store.list_runs()).splitlines()
    assert table[0].split() == ["ID", "STARTED", "STATUS", "EXIT", "SECONDS", "HOSTS", "JOB"]
    assert table[1].split()[3:] == ["failed", "5", "1.5", "3", "ok,", "1", "failed", "run", "web"]
    assert table[2].split()[3:] == ["ok", "0", "1.5", "3", "ok", "run", "web"]
    assert store.diff().render_text().splitlines() == [
        "run 1 -> run 2 (run web)",
        "w1: stdout changed",
        "w2: ok -> failed (exit 2)",
        "w3: gone (was ok)",
        "w4: added (ok)",
        "w5 play 1 step 3: added (ok)",
    ]
    assert store.diff(1, 1).render_text().splitlines()[1:] == ["no host changed"]


def test_a_reused_pid_is_not_taken_for_a_live_run(store: HistoryStore) -> None:
    """A run whose process died long ago, its PID now another process's (this one)."""
    recorder = store.start_run(command="run", argv=[], pattern="web", inventory=None)
    assert [r.status for r in store.list_runs()] == ["running"]
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE runs SET process = 'an-earlier-boot:12345'")
    db.close()
    assert [r.status for r in store.list_runs()] == ["incomplete"]
    recorder.finish(0, 1.0)


# --------------------------------------------------------------------------- analysis


def _finding(analyzer: str, host: str, message: str) -> dict[str, object]:
    return {
        "v": 1,
        "type": "analysis",
        "analyzer": analyzer,
        "args": None,
        "title": f"{analyzer} of the outputs",
        "columns": [],
        "rows": [],
        "findings": [{"host": host, "document": "stdout", "message": message}],
        "errors": [],
    }


def test_a_runs_analysis_records_are_kept_shown_and_pruned(store: HistoryStore) -> None:
    recorder = store.start_run(command="run", argv=[], pattern="web", inventory=None)
    recorder.host(_ok("w1", b"x\n"))
    recorder.analysis([_finding("group", "w1", "outlier"), {"v": 1, "type": "summary"}])
    recorder.finish(5, 1.0, max_age_s=None, max_size=None)
    recorder.analysis([_finding("grep", "w1", "ERROR seen")])  # after finish: kept too
    assert recorder.run_id is not None
    other = _record(store, [_ok("w1")])
    detail = store.show(recorder.run_id)
    assert [a["analyzer"] for a in detail.analysis] == ["group", "grep"]
    lines = detail.to_json_lines()
    assert [r["type"] for r in lines] == ["run", "host", "analysis", "analysis", "summary"]
    assert lines[-1]["findings"] == 2
    assert "findings" not in store.show(other).to_json_lines()[-1]  # as --json without --analyze
    store.prune(max_age_s=0, max_size=None)
    with sqlite3.connect(store.path) as db:
        assert db.execute("SELECT count(*) FROM analysis").fetchone() == (0,)
    db.close()


def test_keeping_analysis_records_never_raises(
    store: HistoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = store.start_run(command="run", argv=[], pattern="web", inventory=None)
    recorder.finish(0, 1.0, max_age_s=None, max_size=None)
    store.path.chmod(0o400)
    try:
        if os.geteuid() == 0:  # root writes through a mode: take the table away instead
            with sqlite3.connect(store.path) as db:
                db.execute("DROP TABLE analysis")
            db.close()
        recorder.analysis([_finding("group", "w1", "outlier")])
    finally:
        store.path.chmod(0o600)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert "cannot record this run" in warnings[0]
