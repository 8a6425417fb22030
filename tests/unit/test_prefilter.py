"""logscan's grep prefilter: the same result as reading the file in Python, always.

grep is run for real (the one on PATH); where a test needs grep to fail, be
slow or be missing, PATH holds a script of that name, or no grep at all.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from remoteops.analysis import prefilter
from remoteops.analysis.builtins import BUILTINS, LogscanConfig
from remoteops.analysis.model import AnalyzerSpec, Document
from remoteops.analysis.stage import AnalysisStage
from remoteops.fastswitch import ENV_SWITCH
from tests.unit.test_textscan import SETTINGS, _tricky_log, blocks, ref_logscan_map

# Literals grep can take (-F), and regexes it cannot (Python reads the file).
PATTERNS = [None, "ERROR", "error", "x1 x", "é", "-e", "disk 9", r"\d+ ms", "(?i)fatal"]
_EXTRA = st.sampled_from([b"\0", b"\0\0ERROR\0", b"\xff\xfe", b"\r\n", b"\n", b"A" * 70_000])
tricky = st.builds(
    lambda block, extra, at: block[:at] + extra + block[at:], blocks, _EXTRA, st.integers(0, 400)
)


def _counting(started: list[str]) -> Any:
    """The real prefilter, noting in ``started`` each file grep is started on."""
    real = prefilter.candidate_blocks

    def counted(path: str, *args: Any, **kwargs: Any) -> Any:
        started.append(path)
        return real(path, *args, **kwargs)

    return counted


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files grep was started on (the real prefilter, counted)."""
    started: list[str] = []
    monkeypatch.setattr(prefilter, "candidate_blocks", _counting(started))
    monkeypatch.delenv(ENV_SWITCH, raising=False)
    return started


def _map(pattern: str | None, path: Path, *, fast: bool) -> Any:
    saved = os.environ.pop(ENV_SWITCH, None)
    if not fast:
        os.environ[ENV_SWITCH] = "1"
    try:
        doc = Document("web01", "app.log", path=str(path))
        return BUILTINS["logscan"].map(LogscanConfig(pattern=pattern), doc)
    finally:
        os.environ.pop(ENV_SWITCH, None)
        if saved is not None:
            os.environ[ENV_SWITCH] = saved


def _is_literal(pattern: str | None) -> bool:
    return pattern is None or not any(c in ".^$*+?{}[]\\|()" for c in pattern)


@SETTINGS
@given(data=tricky, pattern=st.sampled_from(PATTERNS))
def test_logscan_with_the_prefilter_is_logscan_without_it(data: bytes, pattern: str | None) -> None:
    """NULs, CRLF, bytes that are no UTF-8, a last line without newline, a line longer
    than grep's buffer: grep's candidates through the exact predicate give what
    reading the file in Python gives, and grep runs for every literal."""
    started: list[str] = []
    real = prefilter.candidate_blocks
    prefilter.candidate_blocks = _counting(started)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "app.log"
            path.write_bytes(data)
            fast = _map(pattern, path, fast=True)
            assert fast == _map(pattern, path, fast=False)
            assert fast == ref_logscan_map(
                LogscanConfig(pattern=pattern), Document("web01", "app.log", path=str(path))
            )
    finally:
        prefilter.candidate_blocks = real  # type: ignore[assignment]
    assert len(started) == (1 if _is_literal(pattern) else 0)


def _run_both(name: str, args: str, path: Path) -> tuple[Any, Any]:
    impl = BUILTINS[name]
    config = impl.configure(AnalyzerSpec(name, args))
    doc = Document("web01", "app.log", path=str(path))
    fast = impl.map(config, doc)
    os.environ[ENV_SWITCH] = "1"
    try:
        return fast, impl.map(config, doc)
    finally:
        del os.environ[ENV_SWITCH]


@SETTINGS
@given(data=tricky, pattern=st.sampled_from([p for p in PATTERNS if p]))
def test_grep_and_count_with_the_prefilter_are_without_it(data: bytes, pattern: str) -> None:
    """grep (lines, the first ones shown) and count (matches) of a literal: grep's
    candidates give what reading the file gives; a regex is read in Python."""
    started: list[str] = []
    real = prefilter.candidate_blocks
    prefilter.candidate_blocks = _counting(started)
    saved = os.environ.pop(ENV_SWITCH, None)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "app.log"
            path.write_bytes(data)
            for name in ("grep", "count"):
                fast, slow = _run_both(name, pattern, path)
                assert fast == slow
    finally:
        prefilter.candidate_blocks = real  # type: ignore[assignment]
        if saved is not None:
            os.environ[ENV_SWITCH] = saved
    assert len(started) == (2 if _is_literal(pattern) else 0)


@pytest.mark.parametrize("pattern", [None, "ERROR", "x1 x"])
def test_prefilter_blocks_are_whole_lines_however_small(
    tmp_path: Path, spawned: list[str], pattern: str | None
) -> None:
    """grep's output read a few bytes at a time is cut into blocks at line ends only."""
    path = tmp_path / "app.log"
    path.write_bytes(_tricky_log())
    needles = (pattern.encode(),) if pattern else (b"error", b"fatal", b"crit")
    for size in (1, 7, 4096):
        found = list(
            prefilter.candidate_blocks(str(path), needles, ignore_case=not pattern, block_size=size)
        )
        assert all(block.endswith(b"\n") for block in found)
        lines = b"".join(found).split(b"\n")[:-1]
        wanted = [
            line
            for line in path.read_bytes().split(b"\n")
            if any(n in (line.lower() if not pattern else line) for n in needles)
        ]
        assert lines == wanted


# A script standing in for grep answers --version as GNU grep does (else it is not used).
_GNU_VERSION = '[ "$1" = --version ] && { echo "grep (GNU grep) 3.8"; exit 0; }\n'


def _script(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.mark.parametrize("pattern", [None, "ERROR"])
def test_no_grep_on_path_gives_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spawned: list[str], pattern: str | None
) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(_tricky_log())
    expected = _map(pattern, path, fast=False)
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert not prefilter.usable()
    assert _map(pattern, path, fast=True) == expected
    assert spawned == []
    monkeypatch.setenv("PATH", os.defpath)
    assert _map(pattern, path, fast=True) == expected
    assert spawned == [str(path)]


@pytest.mark.parametrize(
    ("version", "used"),
    [
        # A GNU grep that prints a wrong line and exits 2 (an error): its output is dropped.
        ("grep (GNU grep) 3.8", True),
        # Another grep may treat long lines or NULs otherwise: only GNU grep is trusted.
        ("grep 1.0", False),
    ],
)
def test_a_failing_or_foreign_grep_falls_back_to_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str, used: bool
) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(_tricky_log())
    expected = _map(None, path, fast=False)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    ran = tmp_path / "ran"
    answer = f'[ "$1" = --version ] && {{ echo "{version}"; exit 0; }}\n'
    _script(bin_dir, "grep", f"{answer}: > {ran}\necho 'ERROR not in the file'\nexit 2\n")
    monkeypatch.setenv("PATH", str(bin_dir))
    assert prefilter.usable() == used
    assert _map(None, path, fast=True) == expected
    assert ran.exists() == used


def test_a_file_changed_while_grep_reads_it_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file grows while grep reads it: the result is the file's as read afterwards."""
    path = tmp_path / "app.log"
    path.write_bytes(_tricky_log() + b"\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _script(
        bin_dir,
        "grep",
        f'{shutil.which("grep")} "$@"\n'
        f"printf '2024-05-02T00:00:00Z web01 FATAL appended\\n' >> {path}\n",
    )
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.defpath}")
    got = _map(None, path, fast=True)
    assert b"appended" in path.read_bytes()
    assert got == _map(None, path, fast=False)
    assert b"<host> FATAL appended" in got[1]


def _gone(pid: int) -> bool:
    """The process has exited and been reaped (a zombie still answers kill 0)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _sleeping_grep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A log, and a "grep" first on PATH that writes its pid to a file and sleeps 300 s."""
    path = tmp_path / "app.log"
    path.write_bytes(_tricky_log())
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pid_file = tmp_path / "grep.pid"
    _script(
        bin_dir,
        "grep",
        f"{_GNU_VERSION}echo $$ > {pid_file}.tmp\nmv {pid_file}.tmp {pid_file}\nexec sleep 300\n",
    )
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.defpath}")
    monkeypatch.delenv(ENV_SWITCH, raising=False)
    return path, pid_file


def _pid_of(pid_file: Path, waiting: Callable[[], bool]) -> int:
    """The sleeping grep's pid, once it has started (60 s at most, while ``waiting()``)."""
    deadline = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < deadline and waiting():
        time.sleep(0.02)
    assert pid_file.exists(), "grep was never started"
    return int(pid_file.read_text())


def test_closing_the_stage_kills_and_reaps_its_grep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A grep that would run for minutes: cancelling the stage ends it, reaped, at once."""
    path, pid_file = _sleeping_grep(tmp_path, monkeypatch)
    stage = AnalysisStage(["logscan"], workers=0)
    stage.start()
    try:
        stage.submit_document(Document("web01", "app.log", path=str(path)))
        pid = _pid_of(pid_file, lambda: True)
        assert not _gone(pid)
        stage.cancel()
    finally:
        stage.close()
    assert _gone(pid)
    assert stage.finish().interrupted


def _scan_in_worker(path: str) -> None:
    from remoteops.analysis.worker import init_worker

    init_worker(None, [])
    BUILTINS["logscan"].map(LogscanConfig(), Document("web01", "app.log", path=path))


def test_a_terminated_worker_kills_and_reaps_its_grep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stage ends its workers with SIGTERM: a worker's grep goes with it, reaped."""
    import multiprocessing

    path, pid_file = _sleeping_grep(tmp_path, monkeypatch)
    worker = multiprocessing.get_context("spawn").Process(target=_scan_in_worker, args=(str(path),))
    worker.start()
    try:
        pid = _pid_of(pid_file, worker.is_alive)
        worker.terminate()
        worker.join(30)
    finally:
        if worker.is_alive():
            worker.kill()
            worker.join(30)
    assert worker.exitcode == -15
    assert _gone(pid)
