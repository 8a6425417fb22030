"""Fast line scanning over big inputs: keyword and regex matchers, message normalisation.

Work is done a block (8 MiB of whole lines) at a time with C-speed searches
(``bytes.find`` on a lowered block, or one compiled regex), so Python code
runs only for the lines that match, never for every line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final

__all__ = ["LineMatcher", "leading_timestamp", "normalise"]

DEFAULT_KEYWORDS: Final = ("error", "fatal", "crit", "panic", "emerg")

_MASKS: Final = (
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

_TIMESTAMP: Final = re.compile(
    rb"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)"
    rb"|((?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d{2}:\d{2}:\d{2})"
)
_MONTHS: Final = {
    m.encode(): i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}


def normalise(data: bytes, *, host: str | None = None) -> bytes:
    """Mask what varies between hosts and runs: times, UUIDs, hex ids, numbers, the host name,
    and the width of the spaces that align columns.

    Works on any number of lines at once (one ``re.sub`` per mask over the whole
    input is much faster than one per line).
    """
    if host:
        data = data.replace(host.encode(), b"<host>")
    for pattern, mask in _MASKS:
        data = pattern.sub(mask, data)
    return data


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


class LineMatcher:
    """Finds the lines of a block that match: case-insensitive keywords, or a regex.

    Keywords are searched with ``bytes.find`` on the lowered block (memchr
    speed) and must start a word; a regex runs once over the block.
    """

    def __init__(self, *, keywords: tuple[str, ...] = (), pattern: str | None = None) -> None:
        self.keywords = tuple(k.lower().encode() for k in keywords)
        self.pattern = re.compile(pattern.encode(), re.MULTILINE) if pattern else None

    def lines(self, block: bytes) -> Iterator[tuple[int, int]]:
        """(start, end) of each matching line of ``block``, in order; ``end`` excludes ``\\n``."""
        if self.pattern is not None:
            yield from self._regex_lines(block)
            return
        starts: set[int] = set()
        lowered = block.lower()
        find, rfind = lowered.find, lowered.rfind
        for word in self.keywords:
            pos = find(word)
            while pos != -1:
                if pos == 0 or not lowered[pos - 1 : pos].isalnum():
                    starts.add(rfind(b"\n", 0, pos) + 1)
                    line_end = find(b"\n", pos)
                    if line_end == -1:
                        break
                    pos = find(word, line_end)
                else:
                    pos = find(word, pos + 1)
        for start in sorted(starts):
            end = block.find(b"\n", start)
            yield start, (len(block) if end == -1 else end)

    def _regex_lines(self, block: bytes) -> Iterator[tuple[int, int]]:
        assert self.pattern is not None
        search = self.pattern.search
        pos = 0
        size = len(block)
        while pos <= size:
            match = search(block, pos)
            if match is None:
                return
            start = block.rfind(b"\n", 0, match.start()) + 1
            end = block.find(b"\n", match.end() if match.end() > match.start() else match.start())
            if end == -1:
                end = size
            if start < size:
                yield start, end
            pos = end + 1

    def count(self, block: bytes) -> int:
        """How many matches (not lines) in ``block``."""
        if self.pattern is not None:
            return sum(1 for _ in self.pattern.finditer(block))
        lowered = block.lower()
        return sum(lowered.count(word) for word in self.keywords)
