"""Messages a person reads: counts in agreement, folded host lists, numbers in full,
statuses said once, the closest names for a misspelled pattern."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from remoteops.analysis import AnalysisStage, parse_spec
from remoteops.analysis.model import show_number
from remoteops.logconfig import LogSettings, setup_logging
from remoteops.patterns import Unmatched, close_names, no_match_message
from remoteops.playbook import HostCounts, PlaybookResult, render_recap
from remoteops.playbook.runner import _later
from remoteops.report import failure_line, render_summary
from remoteops.results import HostResult, RunResult
from remoteops.wording import plural, span
from tests.helpers import run_cli

CASE = Path(__file__).parent.parent / "data" / "inventories" / "group_subscripts" / "hosts.yml"


def _result(host: str, status: str = "ok", error: str | None = None, **extra: object) -> HostResult:
    return HostResult(host, "127.0.0.1", 22, status, error=error, extra=extra)  # type: ignore[arg-type]


def _run(*results: HostResult) -> RunResult:
    run = RunResult()
    for result in results:
        run.add(result)
    return run


# --------------------------------------------------------------------------- counts


def test_plural_and_span() -> None:
    assert plural(1, "host") == "1 host"
    assert plural(0, "host") == "0 hosts"
    assert plural(2, "match", "matches") == "2 matches"
    assert span(3, 3, "batch", "batches") == "batch 3"
    assert span(3, 5, "batch", "batches") == "batches 3-5"


def test_one_host_is_one_host_in_the_summary() -> None:
    assert render_summary(_run(_result("web01"))).startswith("1 host: 1 ok (")
    assert render_summary(_run(_result("web01"), _result("web02"))).startswith("2 hosts: 2 ok")


def test_a_rollout_names_one_remaining_batch_as_batch_3() -> None:
    batches = [["web01"], ["web02", "web03"], ["db01", "db02"]]
    assert _later(batches, 3) == "; batch 3 (2 hosts) not started"
    assert _later(batches, 2) == "; batches 2-3 (4 hosts) not started"
    assert _later(batches, 4) == ""
    assert _later([["web01"], ["web02"]], 2) == "; batch 2 (1 host) not started"


# --------------------------------------------------------------------------- statuses


def test_a_status_is_said_once() -> None:
    """An error that starts with its status word is not preceded by it again."""
    line = failure_line(_result("web01", "interrupted", "interrupted while connecting"))
    assert line == "web01: interrupted while connecting\n"
    line = failure_line(_result("web01", "failed", "exit code 3"))
    assert line == "web01: failed: exit code 3\n"


def test_retried_hosts_say_how_many_attempts_were_made() -> None:
    why = "connection to 10.0.0.1:22 refused; is sshd running on that port?"
    retried = [_result(f"web0{n}", "unreachable", why, attempts=3) for n in range(1, 6)]
    summary = render_summary(_run(*retried, _result("db01")))
    assert summary.splitlines()[1:] == [f"  web[01-05] (5): unreachable after 3 attempts: {why}"]
    assert failure_line(retried[0]) == f"web01: unreachable after 3 attempts: {why}\n"
    assert retried[0].to_json()["attempts"] == 3


# --------------------------------------------------------------------------- analysis


def _analyse(specs: list[str], outputs: dict[str, bytes]) -> str:
    with AnalysisStage([parse_spec(s) for s in specs], workers=0) as stage:
        for host, stdout in outputs.items():
            stage.submit(HostResult(host, "127.0.0.1", 22, "ok", exit_code=0, stdout=stdout))
        return stage.finish().render_text()


def test_grep_lists_hosts_with_matches_and_folds_findings() -> None:
    outputs = {f"web0{n}": b"ok\nERROR disk\n" for n in range(1, 6)}
    outputs |= {"db01": b"ok\n", "db02": b"ok\n"}
    text = _analyse(["grep:ERROR"], outputs)
    lines = text.splitlines()
    assert lines[0] == "== grep:ERROR: 5 lines match on 5 of 7 hosts"
    assert not any(line.lstrip().startswith("db0") for line in lines), text
    assert "  no match on db[01-02] (2) (grep:hosts=all:REGEX lists them)" in lines
    assert "  ! web[01-05] (5): 1 line matches 'ERROR'" in lines
    every = _analyse(["grep:hosts=all:ERROR"], outputs).splitlines()
    assert any(line.split()[:2] == ["db01", "0"] for line in every), every
    one = _analyse(["grep:ERROR", "count:ERROR", "logscan"], {"web01": b"ERROR x\n"})
    assert "== grep:ERROR: 1 line matches on 1 of 1 host" in one
    assert "== count:ERROR: 1 match over 1 host" in one
    assert "== logscan: 1 error line on 1 of 1 host, 1 distinct message (top 10)" in one
    assert "  ! web01: 1 error line" in one


def test_extract_prints_numbers_as_written() -> None:
    df = (
        b"Filesystem     1024-blocks     Used Available Capacity Mounted on\n"
        b"/dev/vda        264212084 24307436  82083476      23% /\n"
    )
    text = _analyse(
        ["extract:df", "extract:size=(?P<size>[0-9.]+)"],
        {"web01": df, "web02": b"size=270553436160.5\n"},
    )
    assert "270553174016" in text  # 264212084 blocks of 1 KiB
    assert "270553436160.5" in text
    assert "e+" not in text
    assert show_number(2.5e-07) == "0.00000025"
    assert show_number(1e16) == "10000000000000000"


# --------------------------------------------------------------------------- patterns


def test_the_closest_names_are_suggested() -> None:
    names = ["all", "web", "db", "eu", "web01", "web02", "db01"]
    assert close_names("wbe", names) == ("web",)
    assert close_names("WEB", names) == ("web",)
    assert close_names("wbe01", names) == ("web01",)
    assert close_names("xyzzy", names) == ()
    assert close_names("wbe*", names) == ()  # a glob is not a misspelling


def test_no_match_names_the_term_that_matched_nothing() -> None:
    wbe = Unmatched("wbe", "wbe", ("web",))
    assert no_match_message("wbe", None, [wbe]) == (
        "no host matches 'wbe'; did you mean web?",
        True,
    )
    assert no_match_message("wbe:&eu", None, [Unmatched("wbe", "wbe:&eu", ("web",))]) == (
        "no host matches 'wbe:&eu': 'wbe' matches no host or group; did you mean web?",
        True,
    )
    assert no_match_message("web:&db", None, []) == ("no host matches 'web:&db'", False)
    warning = Unmatched("!wbe", "web:!wbe", ("web",)).warning()
    assert (
        warning
        == "no host or group matches 'wbe' (in 'web:!wbe'); it excludes nothing; did you mean web?"
    )


def test_inventory_commands_suggest_a_misspelled_host_or_group() -> None:
    listed = run_cli("inventory", "list", "wbe", "-i", str(CASE))
    assert listed.returncode == 2
    assert listed.stderr == "remoteops: error: no host matches 'wbe'; did you mean web?\n"
    both = run_cli("inventory", "list", "db:wbe", "-i", str(CASE))
    assert both.returncode == 0
    assert both.stderr == (
        "remoteops: warning: no host or group matches 'wbe' (in 'db:wbe'); ignoring it; "
        "did you mean web?\n"
    )
    host = run_cli("inventory", "host", "wbe01", "-i", str(CASE))
    assert host.returncode == 2
    assert host.stderr == f"remoteops: error: host 'wbe01' is not in {CASE}; did you mean web01?\n"


# --------------------------------------------------------------------------- play, logging


def test_the_recap_counts_interrupted_steps_apart() -> None:
    result = PlaybookResult(
        recap={"web01": HostCounts(ok=1, interrupted=1), "web02": HostCounts(ok=2)}
    )
    lines = render_recap(result).splitlines()
    assert lines[1] == (
        "web01  ok=1 changed=0 failed=0 skipped=0 unreachable=0 ignored=0 interrupted=1"
    )
    assert lines[2].endswith("interrupted=0")
    plain = render_recap(PlaybookResult(recap={"web01": HostCounts(ok=1)}))
    assert "interrupted" not in plain


def test_a_warning_has_no_logger_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    """Every warning of remoteops' own loggers reaches stderr as one plain line, marked
    as a notice or not."""
    stream = __import__("io").StringIO()
    try:
        setup_logging(LogSettings(log_file=None), stderr_handler=logging.StreamHandler(stream))
        capsys.readouterr()
        logging.getLogger("remoteops.cli_transfer").warning("local %s: skipped", "/x")
        logging.getLogger("remoteops.transfer").info("not shown without -v")
        assert capsys.readouterr().err == "remoteops: warning: local /x: skipped\n"
        assert stream.getvalue() == ""
    finally:
        setup_logging(LogSettings(log_file=None))
