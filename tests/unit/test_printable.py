"""What hosts send, rendered for a terminal: control characters escaped, nothing lost."""

from __future__ import annotations

import io
import json
import logging

from remoteops.logconfig import PrintableFormatter
from remoteops.printable import json_safe, printable, printable_bytes
from remoteops.report import JsonLinesWriter, LivePrinter, render_gathered, render_summary
from remoteops.results import HostResult, RunResult

HOSTILE = b"a\x1b]0;pwned\x07b\x1b[2J\rweb02: forged\x08\x7f\tz \xff caf\xc3\xa9 \xc2\x9b"
SHOWN = "a\\x1b]0;pwned\\x07b\\x1b[2J\\rweb02: forged\\x08\\x7f\tz \\xff café \\x9b"


def test_control_characters_but_tab_are_escaped() -> None:
    assert printable_bytes(HOSTILE) == SHOWN
    assert printable("one\ntwo") == "one\\ntwo"
    assert printable("one\ntwo\r\n", keep_newlines=True) == "one\ntwo\\r\n"
    assert printable("plain text, tabs\tand ünïcödé") == "plain text, tabs\tand ünïcödé"


def test_json_keeps_the_value_and_escapes_del_and_c1() -> None:
    text = json.dumps({"s": "\x7f\x9b\x1b é"}, ensure_ascii=False)
    safe = json_safe(text)
    assert "\x7f" not in safe
    assert "\x9b" not in safe
    assert json.loads(safe) == {"s": "\x7f\x9b\x1b é"}
    out = io.StringIO()
    JsonLinesWriter(out).record({"stdout": "\x9b2J"})
    assert out.getvalue() == '{"stdout": "\\u009b2J"}\n'


def test_live_lines_and_gathered_blocks_are_escaped() -> None:
    out, err = io.BytesIO(), io.BytesIO()
    printer = LivePrinter(out, err, width=5)
    printer.line("web01", "stdout", HOSTILE + b"\r")  # a pty's CRLF line end
    printer.line("web01", "stderr", b"\x1b[31mred")
    assert out.getvalue() == f"web01: {SHOWN}\n".encode()
    assert err.getvalue() == b"web01: \\x1b[31mred\n"
    results = [
        HostResult(
            host=h, address="a", port=22, status="ok", exit_code=0, stdout=HOSTILE + b"\r\nnext\r\n"
        )
        for h in ("web01", "web02")
    ]
    text = render_gathered(results)
    assert text.endswith(f"web[01-02] (2)\n---------------\n{SHOWN}\nnext\n")
    assert "\x1b" not in render_gathered(results)


def test_failure_messages_are_escaped() -> None:
    run = RunResult()
    run.add(
        HostResult(
            host="web01",
            address="a",
            port=22,
            status="failed",
            error="remote /x/\x1b]0;t\x07: denied",
        )
    )
    assert "remote /x/\\x1b]0;t\\x07: denied" in render_summary(run)
    failed = HostResult(
        host="db01",
        address="a",
        port=22,
        status="failed",
        exit_code=1,
        stdout=b"\x1b[2J",
        error="e",
    )
    assert render_gathered([failed]) == (
        "---------------\ndb01 (1)\n---------------\n\\x1b[2J\n[failed: e]\n"
    )


def test_log_messages_are_escaped_tracebacks_keep_their_lines() -> None:
    formatter = PrintableFormatter("%(levelname)s %(message)s")
    record = logging.LogRecord(
        "remoteops", logging.WARNING, __file__, 1, "remote %s: skipped", ("a\nb\x1b",), None
    )
    assert formatter.format(record) == "WARNING remote a\\nb\\x1b: skipped"
    try:
        raise ValueError("x")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    assert "\nTraceback (most recent call last):\n" in formatter.format(record)
