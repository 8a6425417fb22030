"""Pure parts of the engine and the report: no sockets here."""

from __future__ import annotations

import io
import json
import shlex
import threading
import time
from collections.abc import Callable

import pytest

from remoteops.execution import CommandSpec, default_forks
from remoteops.report import JsonLinesWriter, LivePrinter, gather, render_gathered, render_summary
from remoteops.results import HostResult, RunResult, exit_code_for
from remoteops.session import CommandOutput, Watchdog
from remoteops.session.channel import _LineSplitter
from remoteops.target import Target


def result(host: str, status: str = "ok", out: bytes = b"", code: int | None = 0) -> HostResult:
    return HostResult(
        host=host,
        address="127.0.0.1",
        port=22,
        status=status,
        exit_code=code,
        stdout=out,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        ([], 0),
        (["ok", "ok"], 0),
        (["ok", "failed"], 5),
        (["failed", "unreachable"], 4),
        (["hostkey", "failed"], 4),
        (["unreachable", "timeout", "failed"], 3),
        (["ok", "interrupted"], 5),
    ],
)
def test_exit_code_order_is_3_then_4_then_5(statuses: list[str], code: int) -> None:
    assert exit_code_for(statuses) == code


def test_interruption_decides_the_exit_code() -> None:
    assert exit_code_for(["ok", "timeout"], interrupted_by=130) == 130


def test_summary_counts_hostkey_as_unreachable() -> None:
    run = RunResult()
    for r in (result("a"), result("b", "hostkey", code=None), result("c", "failed", code=2)):
        run.add(r)
    summary = run.summary_json()
    assert (summary["ok"], summary["unreachable"], summary["failed"]) == (1, 1, 1)
    assert summary["exit_code"] == 4
    assert sorted(run.failed_hosts) == ["b", "c"]


def test_default_forks_follow_hosts_and_file_limit() -> None:
    assert default_forks(10, nofile=20000) == 10
    assert default_forks(5000, nofile=1_000_000) == 256
    assert default_forks(5000, nofile=1024) == 256
    assert default_forks(5000, nofile=400) == 100
    assert default_forks(1, nofile=1) == 1


def test_become_never_puts_the_password_on_the_command_line() -> None:
    target = Target(name="h", address="a", port=22, user="u")
    spec = CommandSpec(
        command="echo 'it''s'; rm -rf /tmp/x",
        become=True,
        become_password="s3cret",
        stdin=b"data",
    )
    line, stdin, answer = spec.remote_command(target)
    assert "s3cret" not in line
    assert answer is None
    assert stdin is not None
    assert stdin.startswith(b"s3cret\n")  # for sudo; the command reads past a marker line
    assert stdin.endswith(b"\ndata")
    assert shlex.split(line)[-1].endswith(spec.command)  # quoted as one argument
    on_tty, nothing, _ = CommandSpec(
        command="id", pty=True, become=True, become_password="s3cret"
    ).remote_command(target)
    assert "s3cret" not in on_tty
    assert nothing is None  # the password waits for sudo's prompt
    no_password, _, _ = CommandSpec(command="id", become=True).remote_command(target)
    assert no_password.startswith("sudo -n ")


def test_gather_folds_hosts_with_identical_results() -> None:
    results = [result(f"web{i:02d}", out=b"same\n") for i in range(1, 6)] + [
        result("db01", out=b"other\n")
    ]
    groups = gather(results)
    assert [len(hosts) for hosts, _ in groups] == [5, 1]
    text = render_gathered(results)
    assert "web[01-05] (5)" in text
    assert text.count("same") == 1


def test_failure_summary_groups_identical_reasons() -> None:
    run = RunResult()
    for name in ("web01", "web02"):
        run.add(HostResult(name, "x", 22, "unreachable", error="connection refused"))
    run.add(result("db01"))
    text = render_summary(run)
    assert text.splitlines()[0].startswith("3 hosts: 1 ok, 2 unreachable")
    assert "web[01-02] (2): unreachable: connection refused" in text


def test_live_lines_are_never_torn_between_threads() -> None:
    out = io.BytesIO()
    printer = LivePrinter(out, out, width=6)
    payload = b"x" * 5000

    def worker(host: str) -> None:
        for _ in range(200):
            printer.line(host, "stdout", payload)

    threads = [threading.Thread(target=worker, args=(f"h{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = out.getvalue().split(b"\n")[:-1]
    assert len(lines) == 1600
    assert all(line.endswith(b": " + payload) for line in lines)


def test_json_lines_replace_invalid_utf8() -> None:
    out = io.StringIO()
    JsonLinesWriter(out).host(result("h", out=b"\xff ok"))
    assert json.loads(out.getvalue())["stdout"] == "\ufffd ok"


def test_line_splitter_holds_partial_lines() -> None:
    seen: list[bytes] = []
    splitter = _LineSplitter("h", "stdout", lambda h, s, line: seen.append(line))
    splitter.feed(b"ab")
    splitter.feed(b"c\nde")
    assert seen == [b"abc"]
    splitter.flush()
    assert seen == [b"abc", b"de"]


def test_captured_output_is_capped_with_a_marker() -> None:
    captured = CommandOutput(limit=4)
    captured.add(b"abc")
    captured.add(b"defgh")
    assert captured.truncated == 4
    assert captured.value() == b"abcd\n[remoteops: 4 more bytes not kept]\n"


def test_watchdog_runs_due_callbacks_and_skips_cancelled() -> None:
    dog = Watchdog()
    fired: list[str] = []
    done = threading.Event()
    dog.schedule(time.monotonic() + 0.05, lambda: fired.append("late"))
    token = dog.schedule(time.monotonic() + 0.01, lambda: fired.append("cancelled"))
    dog.cancel(token)
    dog.schedule(time.monotonic() + 0.1, done.set)
    assert done.wait(5)
    dog.stop()
    assert fired == ["late"]


def test_watchdog_keeps_every_deadline_though_only_a_sooner_one_wakes_it() -> None:
    """schedule() wakes the thread only for a deadline sooner than the one it sleeps
    until: each callback still runs at its time, in deadline order, whatever order
    they were scheduled in."""
    dog = Watchdog()
    fired: list[tuple[str, float]] = []
    done = threading.Event()
    start = time.monotonic()

    def at(name: str) -> Callable[[], None]:
        return lambda: fired.append((name, time.monotonic() - start))

    dog.schedule(start + 2.0, at("c"))  # the thread starts and sleeps until c
    dog.schedule(start + 2.1, at("d"))  # later than c: no wake-up needed
    dog.schedule(start + 0.3, at("b"))  # sooner: wakes it, now sleeping until b
    dog.schedule(start + 0.1, at("a"))
    dog.schedule(start + 2.2, done.set)
    try:
        assert done.wait(10)
    finally:
        dog.stop()
    assert [name for name, _ in fired] == ["a", "b", "c", "d"]
    for (name, when), due in zip(fired, (0.1, 0.3, 2.0, 2.1), strict=True):
        assert when >= due - 0.01, (name, when)
    # "a" and "b" were not held back until the deadline set first (generous bound).
    assert fired[1][1] < 1.5
