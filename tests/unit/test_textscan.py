"""The fast paths of the text analyzers against plain, line-at-a-time reference code.

The references below are the straightforward versions (one line, one regex
call at a time) of what logscan, grep, count and the normalisation of group
and drift compute; the real ones work on whole blocks at once and must give
exactly the same answers, on tricky inputs too: CRLF, no trailing newline,
invalid UTF-8, long lines, lines at byte-range boundaries, several timestamp
formats, keywords inside words.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from remoteops.analysis.builtins import BUILTINS, LogscanConfig
from remoteops.analysis.model import Document, iter_line_blocks, iter_line_buffers
from remoteops.analysis.textscan import (
    DEFAULT_KEYWORDS,
    MASKS,
    LineMatcher,
    leading_timestamp,
    normalise,
    split_timestamps,
)

# --------------------------------------------------------------------------- references


def ref_normalise(data: bytes, host: str | None = None) -> bytes:
    if host:
        data = data.replace(host.encode(), b"<host>")
    for pattern, mask in MASKS:
        data = pattern.sub(mask, data)
    return data


def ref_keyword_lines(block: bytes, keywords: tuple[str, ...]) -> list[tuple[int, int]]:
    spans = []
    start = 0
    for line in block.split(b"\n"):
        end = start + len(line)
        lowered = line.lower()
        for word in keywords:
            word_b = word.encode()
            if any(
                pos == 0 or not lowered[pos - 1 : pos].isalnum()
                for pos in (m.start() for m in re.finditer(re.escape(word_b), lowered))
            ):
                spans.append((start, end))
                break
        start = end + 1
    if spans and spans[-1][0] == len(block):  # the "line" after a final newline
        spans.pop()
    return spans


def ref_regex_lines(block: bytes, pattern: str) -> list[tuple[int, int]]:
    # The search-from-the-next-line loop of before, kept as the fallback for
    # matches that span lines; the fast path must give what it gives.
    return LineMatcher(pattern=pattern)._regex_spans(block)


def ref_logscan_map(config: LogscanConfig, doc: Document) -> tuple[int, dict[bytes, list[Any]]]:
    messages: dict[bytes, list[Any]] = {}
    total = 0
    for block in iter_line_blocks(doc):
        if config.pattern:
            spans = ref_regex_lines(block, config.pattern)
        else:
            spans = ref_keyword_lines(block, DEFAULT_KEYWORDS)
        for start, end in spans:
            line = block[start:end]
            total += 1
            stamp = leading_timestamp(line)
            body = line[len(stamp[1]) :] if stamp else line
            key = ref_normalise(body, doc.host).strip()
            when = stamp or ("", "")
            entry = messages.get(key)
            if entry is None:
                messages[key] = [1, when, when, line[:300]]
                continue
            entry[0] += 1
            if when[0] and (not entry[1][0] or when[0] < entry[1][0]):
                entry[1] = when
            if when[0] >= entry[2][0]:
                entry[2] = when
    return total, messages


def ref_iter_line_blocks(doc: Document, block_size: int) -> list[bytes]:
    """The blocks as read before: ``block_size`` at a time, the partial last line carried."""
    out = []
    end = doc.end
    assert doc.path is not None
    with open(doc.path, "rb", buffering=0) as fh:
        offset = doc.start
        if offset > 0:
            fh.seek(offset - 1)
            if fh.read(1) != b"\n":
                fh.seek(offset)
                for _ in range(10**9):
                    chunk = fh.read(65536)
                    if not chunk:
                        break
                    newline = chunk.find(b"\n")
                    if newline != -1:
                        offset += newline + 1
                        break
                    offset += len(chunk)
        if end is not None and offset >= end:
            return out
        fh.seek(offset)
        carry = b""
        data_start = offset
        while end is None or data_start < end:
            chunk = fh.read(block_size)
            if not chunk:
                if carry:
                    out.append(carry)
                return out
            data = carry + chunk if carry else chunk
            if end is not None and data_start + len(data) >= end:
                cut = data.find(b"\n", end - 1 - data_start)
                if cut != -1:
                    out.append(data[: cut + 1])
                    return out
                carry = data
                continue
            newline = data.rfind(b"\n")
            if newline == -1:
                carry = data
                continue
            out.append(data[: newline + 1])
            carry = data[newline + 1 :]
            data_start += newline + 1
    return out


def ref_count(block: bytes, pattern: str) -> int:
    return sum(1 for _ in re.finditer(pattern.encode(), block, re.MULTILINE))


# --------------------------------------------------------------------------- inputs

_TOKENS = [
    b"error", b"ERROR", b"Error", b"eRRoR", b"terror", b"_error", b"9error", b"-error", b"fatal",
    b"FATAL:", b"crit", b"critical", b"panic", b"emerg", b"emergency", b" ", b" ", b" ", b"  ",
    b"   ", b"\t", b" \t ", b"\r", b"\r\n", b"\n", b"\n", b"0x1f", b"0x", b"0X1F", b"x", b"0",
    b"7", b"42", b"123", b"deadbeef42", b"abcdef", b"ABC123", b"123456", b"12ab", b"12:00:01",
    b"1:02:03.5", b"99:99:99", b"12:00:00.5x", b"2024-05-01T12:00:01.123Z",
    b"2024-05-01 12:00:01,5+02:00", b"2024-05-01T12:00:01-0700", b"May  1 12:00:00",
    b"Dec 31 23:59:59", b"Jan 01 00:00:00", b"xMay  1 12:00:00", b"123e4567-e89b-12d3-a456-",
    b"426614174000", b"10.0.0.7", b"1.5.", b"..", b".", b"web01", b"web1", b"<", b">", b"\xff",
    b"\xfe\xff", b"\xc3\xa9", b"_", b"-", b":", b"a", b"Z", b"T", b"+", b"[", b"]",
]  # fmt: skip
_LINE_STARTS = [
    b"",
    b"2024-05-01T12:00:01Z ",
    b"2024-05-01T12:00:01.5Z ",
    b"2024-05-01 12:00:01 ",
    b"2024-04-30T23:59:59+02:00 ",
    b"May  1 12:00:00 ",
    b"May 10 12:00:00 ",
    b"Apr  9 08:00:00 ",
    b"web01 ",
]

tokens = st.lists(st.sampled_from(_TOKENS), max_size=40).map(b"".join)
lines = st.builds(lambda start, rest: start + rest, st.sampled_from(_LINE_STARTS), tokens)
documents = st.lists(lines, max_size=30).map(b"\n".join) | st.binary(max_size=300)
blocks = st.builds(
    lambda doc, newline: doc + b"\n" if newline and doc else doc, documents, st.booleans()
)
hosts = st.sampled_from([None, "web01", "web1", "a"])
REGEXES = [
    "error",
    "ERROR",
    "rr",
    "ERROR disk",
    r"e\w+or",
    r"\d+:\d+",
    "x$",
    "^",
    "$",
    "a*",
    r"\s\d",
    r"\n",
    r"0\n2",
    r"(?<=\n)2",
    r"[^x]",
    "(?s).{3}",
    r"\berror\b",
    "(?i)fatal|panic",
    "5+",
    r"\r$",
]
# A deeper search: REMOTEOPS_FUZZ_EXAMPLES=20000 pytest tests/unit/test_textscan.py
SETTINGS = settings(
    max_examples=int(os.environ.get("REMOTEOPS_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)

# --------------------------------------------------------------------------- properties


@SETTINGS
@given(data=documents, host=hosts)
def test_normalise_is_the_masks_applied_in_turn(data: bytes, host: str | None) -> None:
    assert normalise(data, host=host) == ref_normalise(data, host)


@SETTINGS
@given(block=blocks)
def test_keyword_lines_are_the_lines_with_a_keyword_at_a_word_start(block: bytes) -> None:
    matcher = LineMatcher(keywords=DEFAULT_KEYWORDS)
    assert matcher.lines(block) == ref_keyword_lines(block, DEFAULT_KEYWORDS)


@SETTINGS
@given(block=blocks, pattern=st.sampled_from(REGEXES))
def test_regex_lines_and_counts(block: bytes, pattern: str) -> None:
    matcher = LineMatcher(pattern=pattern)
    assert matcher.lines(block) == ref_regex_lines(block, pattern)
    assert matcher.count(block) == ref_count(block, pattern)


@SETTINGS
@given(line_list=st.lists(lines, min_size=1, max_size=30))
def test_timestamps_split_off_all_lines_at_once(line_list: list[bytes]) -> None:
    # Some "lines" hold a newline: what a regex matching across lines gives.
    keys, texts, rest = split_timestamps(line_list)
    stamps = [leading_timestamp(line) for line in line_list]
    assert [k.decode() for k in keys] == [s[0] if s else "" for s in stamps]
    assert [t.decode() for t in texts] == [s[1] if s else "" for s in stamps]
    assert rest == [
        line[len(s[1]) :] if s else line for line, s in zip(line_list, stamps, strict=True)
    ]


@SETTINGS
@given(
    block=blocks, host=st.sampled_from(["web01", "a"]), pattern=st.sampled_from([None, *REGEXES])
)
def test_logscan_map_agrees_with_the_line_at_a_time_reference(
    block: bytes, host: str, pattern: str | None
) -> None:
    config = LogscanConfig(top=10, pattern=pattern)
    doc = Document(host, "log", data=block)
    assert BUILTINS["logscan"].map(config, doc) == ref_logscan_map(config, doc)


@SETTINGS
@given(block=blocks, pattern=st.sampled_from(REGEXES))
def test_grep_and_count_maps_agree_with_the_reference(block: bytes, pattern: str) -> None:
    doc = Document("h", "log", data=block)
    grep_config = BUILTINS["grep"].configure(_spec("grep", pattern))
    count, shown = BUILTINS["grep"].map(grep_config, doc)
    spans = ref_regex_lines(block, pattern)
    assert count == len(spans)
    assert shown == [block[s:e].decode("utf-8", "replace") for s, e in spans[:20]]
    count_config = BUILTINS["count"].configure(_spec("count", pattern))
    expected = sum(ref_count(b, pattern) for b in iter_line_blocks(doc))
    assert BUILTINS["count"].map(count_config, doc) == expected


def _spec(name: str, args: str) -> Any:
    from remoteops.analysis.model import AnalyzerSpec

    return AnalyzerSpec(name, args)


# --------------------------------------------------------------------------- files and ranges


def _tricky_log() -> bytes:
    long_line = b"2024-05-01T10:00:00Z web01 ERROR " + b"x1 " * 30_000 + b"end 0xdeadbeef"
    parts = [
        b"2024-05-01T10:00:02Z web01 app[12]: ERROR disk 95% full\r",
        b"2024-05-01T10:00:01Z web01 app[13]: ERROR disk 96% full\r",
        b"May  1 10:00:00 web01 kernel: CRITICAL: temp 91C",
        b"May 10 10:00:00 web01 kernel: crit: temp 92C",
        b"2024-05-01 10:00:03,250+02:00 web01 Fatal \xff\xfe invalid utf-8 id=deadbeef42",
        b"no time here: panic at 0x1f3a",
        b"terror and mirror: no keyword at a word start",
        b"2024-05-01T10:00:01Z web01 app[14]: ERROR disk 97% full",
        b"\t2024-05-01T10:00:00Z indented ERROR \t padded   columns",
        b"2024-05-01T09:00:00Z web01 app[12]: ERROR disk 95% full",
    ]
    lines = parts * 12
    lines[len(lines) // 2 : len(lines) // 2] = [long_line]
    return b"\n".join(lines) + b"\nlast ERROR line without newline 42"


@pytest.mark.parametrize("pattern", [None, "ERROR", "x1 x"])
@pytest.mark.parametrize("step", [61, 997, 65_536, 1 << 30])
def test_logscan_over_byte_ranges_agrees_with_the_reference(
    tmp_path: Path, step: int, pattern: str | None
) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(_tricky_log())
    size = path.stat().st_size
    config = LogscanConfig(pattern=pattern)
    for start in range(0, size, step):  # ranges cut lines anywhere, the long one too
        doc = Document("web01", "app.log", path=str(path), start=start, end=start + step)
        assert BUILTINS["logscan"].map(config, doc) == ref_logscan_map(config, doc)
    whole = BUILTINS["logscan"].map(config, Document("web01", "app.log", path=str(path)))
    assert whole == ref_logscan_map(config, Document("web01", "app.log", path=str(path)))
    if pattern is None:
        assert whole[0] == 12 * 9 + 2


def test_logscan_keeps_first_and_last_exact_when_lines_are_out_of_order() -> None:
    block = b"\n".join(
        [
            b"2024-05-01T10:00:05 ERROR a 1",
            b"ERROR a 2",
            b"2024-05-01 10:00:01 ERROR a 3",
            b"2024-05-01T10:00:01 ERROR a 4",
            b"2024-05-01T10:00:09 ERROR a 5",
            b"2024-05-01 10:00:09 ERROR a 6",
            b"May  1 10:00:00 ERROR b 7",
        ]
    )
    config = LogscanConfig()
    doc = Document("h", "log", data=block)
    total, messages = BUILTINS["logscan"].map(config, doc)
    assert (total, messages) == ref_logscan_map(config, doc)
    assert messages[b"ERROR a <n>"][:3] == [
        6,
        ("2024-05-01T10:00:01", "2024-05-01 10:00:01"),
        ("2024-05-01T10:00:09", "2024-05-01 10:00:09"),
    ]
    assert messages[b"ERROR b <n>"][1] == ("05-01T10:00:00", "May  1 10:00:00")


def test_regex_lines_by_example() -> None:
    block = b"a1\nb2 x\nc3\r\nx\nend"
    assert LineMatcher(pattern=r"\d").lines(block) == [(0, 2), (3, 7), (8, 11)]
    assert LineMatcher(pattern=r"x$").lines(block) == [(3, 7), (12, 13)]
    # A match across lines makes one "line" of the lines it spans.
    assert LineMatcher(pattern=r"2 x\nc").lines(block) == [(3, 11)]
    assert LineMatcher(pattern="").lines(block) == []  # no pattern: no keywords, no lines
    assert LineMatcher(pattern="^").lines(block + b"\n") == [
        (0, 2),
        (3, 7),
        (8, 11),
        (12, 13),
        (14, 17),
    ]


def _python_calls(func: Any, *args: Any) -> int:
    """How many Python-level function calls running ``func(*args)`` makes."""
    import gc
    import sys

    calls = 0

    def profile(_frame: Any, event: str, _arg: Any) -> None:
        nonlocal calls
        if event == "call":
            calls += 1

    # Without the collector: its callbacks (hypothesis installs one) are Python
    # calls that come with allocations, not with the work measured.
    gc.disable()
    sys.setprofile(profile)
    try:
        func(*args)
    finally:
        sys.setprofile(None)
        gc.enable()
    return calls


@pytest.mark.parametrize(
    ("analyzer", "args"),
    [
        ("logscan", ""),
        ("logscan", r"ERROR \w+"),
        ("grep", "ERROR"),
        ("count", "ERROR"),
        ("count", r"\d+ ms"),
        ("group", "normalize"),
    ],
)
def test_python_work_is_per_block_not_per_line(analyzer: str, args: str) -> None:
    """20,000 error lines cost no more Python function calls than a few dozen."""
    block = b"".join(
        b"2024-05-01T10:%02d:%02dZ web01 app[%d]: ERROR request %d took %d ms\n"
        % (n // 60 % 60, n % 60, n % 30000, n, n % 997)
        for n in range(20_000)
    )
    few = block[: block.index(b"\n", 2000) + 1]
    impl = BUILTINS[analyzer]
    config = impl.configure(_spec(analyzer, args))
    doc = Document("web01", "log", data=block)
    small = _python_calls(impl.map, config, Document("web01", "log", data=few))
    assert _python_calls(impl.map, config, doc) <= small + 50


@SETTINGS
@given(
    data=st.lists(st.sampled_from([b"a", b"bc", b"\n", b"\n\n", b"x" * 40]), max_size=60).map(
        b"".join
    ),
    cuts=st.lists(st.integers(0, 400), min_size=2, max_size=2),
    block_size=st.sampled_from([1, 2, 3, 7, 16, 64, 1 << 20]),
    whole=st.booleans(),
)
def test_line_blocks_are_cut_where_they_were(
    tmp_path_factory: pytest.TempPathFactory,
    data: bytes,
    cuts: list[int],
    block_size: int,
    whole: bool,
) -> None:
    path = tmp_path_factory.mktemp("blocks") / "log"
    path.write_bytes(data)
    start, end = sorted(cuts)
    doc = Document(
        "h", "log", path=str(path), start=0 if whole else start, end=None if whole else end
    )
    expected = ref_iter_line_blocks(doc, block_size)
    assert list(iter_line_blocks(doc, block_size)) == expected
    # Read into one buffer again and again: the same blocks.
    assert [bytes(buf[:size]) for buf, size in iter_line_buffers(doc, block_size)] == expected


def test_logscan_of_a_literal_reads_into_one_buffer_for_every_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A literal's lines are found in one buffer read into again for every block and
    every file: after the first file, scanning allocates no block at all (a new
    block object each time cost fresh pages, and held the last block and the
    next at once), only the lines that match. (Python's own reading: no grep.)"""
    import tracemalloc

    monkeypatch.setenv("REMOTEOPS_NO_FAST_PATHS", "1")

    from remoteops.analysis.model import BLOCK_SIZE

    line = b"2024-05-01T10:00:00Z web01 app[12]: INFO some message 42\n"
    error = b"2024-05-01T10:00:00Z web01 app[12]: ERROR disk full\n"
    chunk = line * 999 + error
    path = tmp_path / "app.log"
    path.write_bytes(chunk * (3 * BLOCK_SIZE // len(chunk)))
    config = LogscanConfig(pattern="ERROR")
    doc = Document("web01", "app.log", path=str(path))
    first = BUILTINS["logscan"].map(config, doc)
    tracemalloc.start()
    try:
        total, messages = BUILTINS["logscan"].map(config, doc)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (total, messages) == first
    assert total == 3 * BLOCK_SIZE // len(chunk)
    assert list(messages) == [b"<host> app[<n>]: ERROR disk full"]
    assert peak < BLOCK_SIZE / 4


def test_line_blocks_are_read_without_copies(tmp_path: Path) -> None:
    """Each block is read into one bytes object of its size: no joined or sliced copies
    (which cost as much as the reading), so memory in use stays near one block."""
    import tracemalloc

    block_size = 1 << 20
    line = b"2024-05-01T10:00:00Z web01 app[12]: INFO some message 42\n"
    path = tmp_path / "app.log"
    path.write_bytes(line * (6 * block_size // len(line)) + b"last line without newline")
    doc = Document("h", "log", path=str(path))
    tracemalloc.start()
    try:
        blocks = 0
        for block in iter_line_blocks(doc, block_size):
            blocks += 1
            del block
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert blocks == 7
    assert peak < 1.2 * block_size
