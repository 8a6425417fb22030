"""Fast line scanning over big inputs: keyword and regex matchers, message normalisation.

Work is done a block (8 MiB of whole lines) at a time with C-speed searches
(``bytes.find`` on a lowered block, or one compiled regex), and what follows
works on all the matching lines of a block at once: line boundaries come from
``map`` over ``bytes.rfind``/``find``, leading timestamps from one regex pass
over the joined lines, and the masks of :func:`normalise` run once per block
over the distinct lines only. Python code runs a few times per block, not once
per line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from itertools import repeat
from operator import add
from typing import Final

__all__ = [
    "LineMatcher",
    "leading_timestamp",
    "normalise",
    "normalise_lines",
    "split_timestamps",
]

DEFAULT_KEYWORDS: Final = ("error", "fatal", "crit", "panic", "emerg")

_HEX: Final = rb"[0-9a-fA-F]"

# The masks, in the order they apply; each runs over the output of the one before.
# These are the rules as documented (docs/analysis.md); _FAST_MASKS below are the
# same rules written so that the regex engine can skip ahead to a first character.
MASKS: Final = (
    (
        re.compile(rb"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"),
        b"<time>",
    ),
    (
        re.compile(
            rb"\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d{2}:\d{2}:\d{2}\b"
        ),
        b"<time>",
    ),
    (re.compile(rb"\b\d{1,2}:\d{2}:\d{2}(?:\.\d+)?\b"), b"<time>"),
    (
        re.compile(
            rb"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
        ),
        b"<uuid>",
    ),
    (
        re.compile(
            rb"\b0x[0-9a-fA-F]+\b|\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{6,}\b"
        ),
        b"<hex>",
    ),
    (re.compile(rb"\d+(?:\.\d+)*"), b"<n>"),
    # Last: columns padded to their numbers' widths (df, free, ps) differ in spaces only.
    (re.compile(rb"[ \t]{2,}|\t"), b" "),  # a lone space is left as it is: fewer substitutions
)

# A leading ``\b`` (or lookahead) stops the regex engine from jumping to the
# places a match can start: it then tries every position. Each pattern below
# starts with what the match's first character must be, and checks the word
# boundary before it with a lookbehind once that character is consumed
# (``X(?<!\wX)``: the character before X is no word character). A pass whose
# *hint* (a necessary part of any match, found fast) is absent is skipped.
# tests/unit/test_textscan.py checks these against MASKS.
_HMS_HINT: Final = re.compile(rb":\d\d:\d\d").search
_FAST_MASKS: Final[tuple[tuple[re.Pattern[bytes], bytes, Callable[[bytes], object]], ...]] = (
    (MASKS[0][0], b"<time>", re.compile(rb"-\d\d-\d\d[T ]\d\d:\d\d:\d\d").search),
    (
        re.compile(
            rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)(?<!\w\w\w\w)"
            rb" [ \d]\d \d{2}:\d{2}:\d{2}\b"
        ),
        b"<time>",
        _HMS_HINT,
    ),
    (re.compile(rb"\d(?<!\w\d)\d?:\d{2}:\d{2}(?:\.\d+)?\b"), b"<time>", _HMS_HINT),
    (
        re.compile(
            rb"[0-9a-fA-F](?<!\w[0-9a-fA-F])[0-9a-fA-F]{7}"
            rb"-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
        ),
        b"<uuid>",
        re.compile(rb"-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-").search,
    ),
    (
        re.compile(
            rb"[0-9a-fA-F](?<!\w[0-9a-fA-F])"
            rb"(?:(?<=0)x[0-9a-fA-F]+\b"
            rb"|(?:(?<=\d)|(?=[0-9a-fA-F]*\d))(?:(?<=[a-fA-F])|(?=[0-9a-fA-F]*[a-fA-F]))"
            rb"[0-9a-fA-F]{5,}\b)"
        ),
        b"<hex>",
        re.compile(rb"\d").search,
    ),
    (MASKS[5][0], b"<n>", re.compile(rb"\d").search),
    (
        re.compile(rb"\t[ \t]*| [ \t]+"),
        b" ",
        lambda data: b"\t" in data or b"  " in data,
    ),
)
# Every digit is masked in the end (by one of the masks above), and no mask
# cares which digit it is, only that it is one; except the 0 of ``0x``. So lines
# that differ only in their digits' values normalise alike, and are normalised once.
_DIGITS_AS_ONE: Final = bytes.maketrans(b"0123456789", b"1111111111")
_DIGITS_AS_ONE_BUT_ZERO: Final = bytes.maketrans(b"123456789", b"111111111")

_ISO: Final = rb"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"
_SYSLOG: Final = rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d{2}:\d{2}:\d{2}"
_TIMESTAMP: Final = re.compile(rb"(" + _ISO + rb")|(" + _SYSLOG + rb")")
# After each newline: the line's leading timestamp (ISO, syslog or none).
_LINE_STAMP: Final = re.compile(rb"\n(" + _ISO + rb"|" + _SYSLOG + rb")?")
_ISO_BYTES: Final = b"0123456789-:TZ.,+ \n"  # all an ISO time is written with (no month name)
_MONTH_NAMES: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun")
_MONTH_NAMES_2: Final = ("Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS: Final = {m.encode(): i for i, m in enumerate((*_MONTH_NAMES, *_MONTH_NAMES_2), 1)}


def _mask(data: bytes) -> bytes:
    for pattern, mask, needed in _FAST_MASKS:
        if needed(data):
            data = pattern.sub(mask, data)
    return data


def normalise_lines(data: bytes, *, host: str | None = None) -> list[bytes]:
    """The lines of ``data`` (split at ``\\n``), each normalised as :func:`normalise` does.

    The masks run once over the distinct lines, after the digits' values are
    set aside (lines that differ only in them normalise alike).
    """
    if host:
        data = data.replace(host.encode(), b"<host>")
    table = _DIGITS_AS_ONE_BUT_ZERO if b"0x" in data else _DIGITS_AS_ONE
    lines = data.translate(table).split(b"\n")
    distinct = list(dict.fromkeys(lines))
    masked = _mask(b"\n".join(distinct)).split(b"\n")
    if len(masked) != len(distinct):  # a mask cannot add or remove a newline; be safe anyway
        masked = [_mask(line) for line in distinct]
    if len(distinct) == len(lines):
        return masked
    by_line = dict(zip(distinct, masked, strict=True))
    return list(map(by_line.__getitem__, lines))


def normalise(data: bytes, *, host: str | None = None) -> bytes:
    """Mask what varies between hosts and runs: times, UUIDs, hex ids, numbers, the host name,
    and the width of the spaces that align columns.

    Works on any number of lines at once, each line on its own (one ``re.sub``
    per mask over all the distinct lines is much faster than one per line).
    """
    return b"\n".join(normalise_lines(data, host=host))


def leading_timestamp(line: bytes) -> tuple[str, str] | None:
    """A timestamp at the start of ``line``: (sort key, text as written), or None.

    ISO 8601 times sort as written; syslog's ``May  1 12:00:00`` (no year) sorts
    as ``05-01T12:00:00``.
    """
    match = _TIMESTAMP.match(line)
    if match is None:
        return None
    if match.group(1):
        text = match.group(1).decode()
        return text.replace(" ", "T"), text
    raw = match.group(2)
    month = _MONTHS[raw[:3]]
    day = int(raw[4:6])
    text = raw.decode()
    return f"{month:02d}-{day:02d}T{raw[7:].decode()}", text


def split_timestamps(lines: list[bytes]) -> tuple[list[bytes], list[bytes], list[bytes]]:
    """Each line's leading timestamp apart from the rest, for all ``lines`` at once.

    Returns (sort keys, timestamps as written, the rest of each line); a line
    without a timestamp has ``b""`` for both. The sort keys and texts are those
    of :func:`leading_timestamp`, as bytes.
    """
    joined = b"\n".join(lines)
    if joined.count(b"\n") == len(lines) - 1:
        texts = _LINE_STAMP.findall(b"\n" + joined)
        return _sort_keys(texts), texts, list(map(bytes.removeprefix, lines, texts))
    # A "line" of several (a regex match across lines): one at a time.
    stamps = [leading_timestamp(line) or ("", "") for line in lines]
    return (
        [key.encode() for key, _ in stamps],
        [text.encode() for _, text in stamps],
        [line[len(text) :] for line, (_, text) in zip(lines, stamps, strict=True)],
    )


def _sort_keys(texts: list[bytes]) -> list[bytes]:
    """The sort key of each timestamp (as written), all at once."""
    stamps = b"\n".join(texts)
    if stamps.translate(None, _ISO_BYTES):  # a syslog time: month names become numbers
        for name, number in _MONTHS.items():
            stamps = stamps.replace(name + b" ", b"%02d-" % number)
        stamps = stamps.replace(b"- ", b"-0")  # May  1 -> 05- 1 -> 05-01
    return stamps.replace(b" ", b"T").split(b"\n")


# How rare a byte must be for _rare_byte_spans: a place checked in Python costs
# about what searching this many bytes for the literal in C does (measured:
# ~0.4 us a place, ~0.35 ms a MB).
_BYTES_PER_PLACE: Final = 2048
_SAMPLE: Final = 64 * 1024
_TRIED_BYTES: Final = 8  # of a literal, the first bytes whose rarity is sampled


def _dedupe_sorted(starts: Iterable[int]) -> list[int]:
    return list(dict.fromkeys(starts))


class LineMatcher:
    """Finds the lines of a block that match: case-insensitive keywords, or a regex.

    Keywords are searched on the lowered block with one literal-prefixed regex
    each (``bytes.find`` speed) and must start a word; a regex runs once over
    the block.
    """

    def __init__(self, *, keywords: tuple[str, ...] = (), pattern: str | None = None) -> None:
        self.keywords = tuple(k.lower().encode() for k in keywords if k)
        self.pattern = re.compile(pattern.encode(), re.MULTILINE) if pattern else None
        # "word" where the character before it is no ASCII letter or digit.
        self._finders = tuple(
            re.compile(re.escape(word) + rb"(?<![a-z0-9]" + re.escape(word) + rb")")
            for word in self.keywords
        )
        literal = pattern is not None and not any(c in ".^$*+?{}[]\\|()" for c in pattern)
        self._literal = pattern.encode() if literal and pattern else None

    def grep_needles(self) -> tuple[bytes, ...] | None:
        """Literals such that every matching line holds one (case-insensitively for
        keywords), for a prefilter (``remoteops.analysis.prefilter``); None when no
        such set is known (a regex: it may span lines or match without a literal).

        A line matches a keyword when the lowered line (ASCII letters only, as
        ``LC_ALL=C grep -i``) holds it at a word start; a literal of one line when
        the line holds it.
        """
        if self.pattern is None:
            return self.keywords or None
        return (self._literal,) if self.reads_buffers and self._literal else None

    @property
    def reads_buffers(self) -> bool:
        """Whether :meth:`buffer_lines` applies: the pattern is a literal of one line."""
        return self._literal is not None and b"\n" not in self._literal

    def buffer_lines(self, buffer: bytes | bytearray, size: int) -> list[bytes]:
        """The lines of ``buffer[:size]`` (whole lines) holding the literal, as
        :meth:`matching_lines` gives them; only when :attr:`reads_buffers`.

        Works on a buffer read into again for every block (no new block object):
        the searches run up to ``size``, and only the matching lines are copied
        out. Line boundaries are looked for around each match only.
        """
        assert self.pattern is not None
        assert self.reads_buffers
        spans = self._rare_byte_spans(buffer, size)
        if spans is not None:
            starts, ends = spans
        else:
            found = list(map(re.Match.start, self.pattern.finditer(buffer, 0, size)))
            if not found:
                return []
            starts = _dedupe_sorted(
                map(add, map(buffer.rfind, repeat(b"\n"), repeat(0), found), repeat(1))
            )
            ends = list(map(buffer.find, repeat(b"\n"), starts, repeat(size)))
            if ends[-1] == -1:
                ends[-1] = size
        if isinstance(buffer, bytes):
            return list(map(buffer.__getitem__, map(slice, starts, ends)))
        with memoryview(buffer) as view:
            return list(map(bytes, map(view.__getitem__, map(slice, starts, ends))))

    def _rare_byte_spans(
        self, buffer: bytes | bytearray, size: int
    ) -> tuple[list[int], list[int]] | None:
        """Starts and ends of the lines of ``buffer[:size]`` holding the literal, found
        from the places of its rarest byte; None when that byte is not rare there.

        A one-byte search runs at ``memchr`` speed (several times a literal
        search in CPython, which is about grep's); each place found costs a few
        Python steps, so this is worth it only while they are few: the byte is
        the literal's rarest in the first ``_SAMPLE`` bytes, and more than the
        budget of places gives up (None) for the full search.
        """
        literal = self._literal
        assert literal is not None
        budget = max(16, size // _BYTES_PER_PLACE)
        sample = min(size, _SAMPLE)
        seen, offset = min(
            (buffer.count(literal[i : i + 1], 0, sample), i)
            for i in range(min(len(literal), _TRIED_BYTES))
            if literal.index(literal[i]) == i  # a byte's first place in the literal
        )
        if seen * size > budget * sample:
            return None
        byte = literal[offset : offset + 1]
        find = buffer.find
        starts: list[int] = []
        ends: list[int] = []
        pos = 0
        for _ in range(budget + 1):
            place = find(byte, pos, size)
            if place == -1:
                return starts, ends
            start = place - offset
            if start < 0 or not buffer.startswith(literal, start, size):
                pos = place + 1
                continue
            end = find(b"\n", place, size)
            end = size if end == -1 else end
            starts.append(buffer.rfind(b"\n", 0, start) + 1)
            ends.append(end)
            pos = end + 1
        return None

    def lines(self, block: bytes) -> list[tuple[int, int]]:
        """(start, end) of each matching line of ``block``, in order; ``end`` excludes ``\\n``.

        A regex match that spans lines makes one "line" of all the lines it spans.
        """
        return list(zip(*self.spans(block), strict=True))

    def spans(self, block: bytes) -> tuple[list[int], list[int]]:
        """The starts and the ends of the matching lines of ``block``, as :meth:`lines`."""
        starts = self._starts(block)
        if isinstance(starts, tuple):
            spans = starts[0]
            return [start for start, _ in spans], [end for _, end in spans]
        ends = list(map(block.find, repeat(b"\n"), starts))
        if ends and ends[-1] == -1:
            ends[-1] = len(block)
        return starts, ends

    def matching_lines(self, block: bytes) -> list[bytes]:
        """The matching lines of ``block``, in order, without their ``\\n``."""
        return list(map(block.__getitem__, map(slice, *self.spans(block))))

    def _starts(self, block: bytes) -> list[int] | tuple[list[tuple[int, int]]]:
        if self.pattern is not None:
            return self._regex_starts(block)
        lowered = block.lower()
        found: list[list[int]] = []
        for finder in self._finders:
            positions = list(map(re.Match.start, finder.finditer(lowered)))
            if positions:
                found.append(positions)
        if not found:
            return []
        rfind = lowered.rfind
        starts = [
            map(add, map(rfind, repeat(b"\n"), repeat(0), positions), repeat(1))
            for positions in found
        ]
        if len(starts) == 1:
            return _dedupe_sorted(starts[0])
        return sorted(set().union(*starts))

    def _regex_starts(self, block: bytes) -> list[int] | tuple[list[tuple[int, int]]]:
        """Line starts of the lines a match starts in.

        When no match spans a newline, that is exactly what searching again from
        the start of the next line after each match finds; a match that does span
        one falls back to doing that (``_regex_spans``), and returns the spans.
        """
        assert self.pattern is not None
        matches = list(self.pattern.finditer(block))
        if not matches:
            return []
        if b"\n" in b"".join(map(re.Match.group, matches)):
            return (self._regex_spans(block),)
        size = len(block)
        rfind = block.rfind
        starts = _dedupe_sorted(
            map(add, map(rfind, repeat(b"\n"), repeat(0), map(re.Match.start, matches)), repeat(1))
        )
        if starts[-1] >= size:
            starts.pop()
        return starts

    def _regex_spans(self, block: bytes) -> list[tuple[int, int]]:
        assert self.pattern is not None
        search = self.pattern.search
        pos = 0
        size = len(block)
        spans = []
        for _ in range(size + 1):
            match = search(block, pos)
            if match is None:
                break
            start = block.rfind(b"\n", 0, match.start()) + 1
            end = block.find(b"\n", match.end() if match.end() > match.start() else match.start())
            if end == -1:
                end = size
            if start < size:
                spans.append((start, end))
            pos = end + 1
            if pos > size:
                break
        return spans

    def count(self, block: bytes) -> int:
        """How many matches (not lines) in ``block``."""
        if self._literal is not None:
            return block.count(self._literal)
        if self.pattern is not None:
            return sum(map(bool, self.pattern.finditer(block)))
        lowered = block.lower()
        return sum(lowered.count(word) for word in self.keywords)
