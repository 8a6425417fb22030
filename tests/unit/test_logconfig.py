"""Logging: one rotating log file, written safely by several processes at once."""

from __future__ import annotations

import io
import logging
import multiprocessing
from pathlib import Path

import pytest

from remoteops.logconfig import LogSettings, default_log_path, setup_logging


def _writer(log_file: str, tag: str, count: int) -> None:
    setup_logging(LogSettings(log_file=Path(log_file), max_bytes=20_000, backup_count=50))
    log = logging.getLogger("remoteops.test")
    for i in range(count):
        log.info("writer %s line %04d %s", tag, i, "x" * 60)


def test_default_path_follows_xdg_state_home(tmp_path: Path) -> None:
    assert default_log_path({"XDG_STATE_HOME": str(tmp_path)}) == (
        tmp_path / "remoteops" / "remoteops.log"
    )


def test_several_processes_share_one_rotating_log(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "remoteops.log"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(log_file), f"p{n}", 300)) for n in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    lines: list[str] = []
    for path in sorted(log_file.parent.glob("remoteops.log*")):
        if path.suffix == ".lock" or path.name.endswith(".lock"):
            continue
        lines += path.read_text().splitlines()
    records = [line for line in lines if " writer " in line]
    # Every line arrives whole, exactly once, across the rotated files.
    assert len(records) == 900
    assert len(set(records)) == 900
    for n in range(3):
        mine = [r for r in records if f"writer p{n} " in r]
        assert len(mine) == 300
        assert all(r.endswith("x" * 60) for r in mine)
    assert len(list(log_file.parent.glob("remoteops.log.*"))) >= 2  # it did rotate


def test_paramiko_stays_at_warning_unless_debug(tmp_path: Path) -> None:
    setup_logging(LogSettings(log_file=None))
    assert logging.getLogger("paramiko").level == logging.WARNING
    setup_logging(LogSettings(log_file=None, debug=True))
    assert logging.getLogger("paramiko").level == logging.DEBUG
    setup_logging(LogSettings(log_file=None))


def _log_failure_and_paramiko_dump() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("remoteops.test").debug("step failed", exc_info=True)
        logging.getLogger("paramiko.transport").error("Exception (client): boom")
        logging.getLogger("paramiko.transport").error("Traceback (most recent call last):")


def test_no_traceback_on_any_handler_without_debug(tmp_path: Path) -> None:
    """-vv shows remoteops' debug lines, with the exception in one line, never a traceback."""
    stream = io.StringIO()
    log_file = tmp_path / "remoteops.log"
    settings = LogSettings(log_file=log_file, verbosity=2, file_level=logging.DEBUG)
    setup_logging(settings, stderr_handler=logging.StreamHandler(stream))
    _log_failure_and_paramiko_dump()
    for handler in logging.getLogger("remoteops").handlers:
        handler.flush()
    for text in (stream.getvalue(), log_file.read_text()):
        assert "step failed (ValueError: boom)" in text
        assert "Traceback" not in text
        assert "paramiko" not in text
        assert len([line for line in text.splitlines() if "step failed" in line]) == 1

    stream = io.StringIO()
    setup_logging(LogSettings(debug=True), stderr_handler=logging.StreamHandler(stream))
    _log_failure_and_paramiko_dump()
    assert "Traceback" in stream.getvalue()  # --debug shows everything
    assert "Exception (client): boom" in stream.getvalue()
    setup_logging(LogSettings(log_file=None))


def _fail_in_a_thread() -> None:
    import threading

    def boom() -> None:
        raise ValueError("no such thing")

    thread = threading.Thread(target=boom, name="worker-7")
    thread.start()
    thread.join(10)


def test_an_exception_ending_a_thread_is_one_logged_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A thread's exception reaches the handlers (no traceback printed past them), as one
    plain line on stderr; with --debug the log keeps the whole traceback."""
    import threading

    previous = threading.excepthook
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    try:
        setup_logging(LogSettings(log_file=None), stderr_handler=handler)
        capsys.readouterr()
        _fail_in_a_thread()
        assert capsys.readouterr().err.splitlines() == [
            "remoteops: error: internal error in thread worker-7; rerun with --debug for the "
            "traceback (ValueError: no such thing)"
        ]
        assert stream.getvalue() == ""
        log_file = tmp_path / "debug.log"
        setup_logging(LogSettings(log_file=log_file, debug=True))
        _fail_in_a_thread()
        text = log_file.read_text()
        assert "Traceback (most recent call last)" in text
        assert "raise ValueError" in text
    finally:
        setup_logging(LogSettings(log_file=None))
        threading.excepthook = previous


def test_the_logger_builds_no_record_that_every_handler_would_drop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The remoteops logger's level is its lowest handler's: a debug line nobody keeps is
    never formatted, and what a handler keeps still reaches it."""
    stream = io.StringIO()
    root = logging.getLogger("remoteops")
    # pytest's own capture handlers (level NOTSET) keep everything: set them aside.
    foreign = [h for h in root.handlers if not getattr(h, "_remoteops_handler", False)]
    for handler in foreign:
        root.removeHandler(handler)
    try:
        setup_logging(LogSettings(log_file=None), stderr_handler=logging.StreamHandler(stream))
        assert not root.isEnabledFor(logging.INFO)
        logging.getLogger("remoteops.test").warning("kept %s", "here")
        assert "kept here" in capsys.readouterr().err  # a warning is a notice: stderr

        log_file = tmp_path / "remoteops.log"
        setup_logging(LogSettings(log_file=log_file), stderr_handler=logging.StreamHandler(stream))
        assert root.isEnabledFor(logging.INFO)  # the file keeps INFO
        assert not root.isEnabledFor(logging.DEBUG)
        logging.getLogger("remoteops.test").info("info line")
        for handler in root.handlers:
            handler.flush()
        assert "info line" in log_file.read_text()
        assert "info line" not in stream.getvalue()  # stderr shows warnings only

        setup_logging(
            LogSettings(log_file=None, verbosity=2), stderr_handler=logging.StreamHandler(stream)
        )
        assert root.isEnabledFor(logging.DEBUG)
        logging.getLogger("remoteops.test").debug("debug line")
        assert "debug line" in stream.getvalue()

        nosy = logging.Handler()  # NOTSET: keeps everything, so the logger passes it all
        root.addHandler(nosy)
        setup_logging(LogSettings(log_file=None), stderr_handler=logging.StreamHandler(stream))
        assert root.isEnabledFor(logging.DEBUG)
        root.removeHandler(nosy)
        # setup_logging gave paramiko's logger the root's handlers, this one too: a
        # Handler that cannot emit would break paramiko's threads in later tests.
        logging.getLogger("paramiko").removeHandler(nosy)
    finally:
        for handler in foreign:
            root.addHandler(handler)
        setup_logging(LogSettings(log_file=None))
