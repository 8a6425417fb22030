"""Plain values of the analysis stage: specs, documents, findings, sections, the report.

Everything here pickles: documents and partial results travel between the
parent and the worker processes, never sessions, locks or loggers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from remoteops.nodeset import hosts_label

__all__ = [
    "AnalysisReport",
    "AnalyzerSpec",
    "Document",
    "Finding",
    "Section",
    "show_number",
]

JSON_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class AnalyzerSpec:
    """One analyzer to run: ``name`` (built-in, entry point or ``module:function``) and ``args``.

    ``label`` names a rule in reports (from a rules file's ``name:``); ``where``
    says where the spec came from (``--analyze`` or ``FILE:LINE``) for errors.
    """

    name: str
    args: str = ""
    label: str | None = None
    where: str = "--analyze"

    def __str__(self) -> str:
        return f"{self.name}:{self.args}" if self.args else self.name


@dataclass(frozen=True, slots=True)
class Document:
    """One piece of a host's output handed to an analyzer: inline bytes or a file.

    ``name`` is ``stdout`` for command output, else a downloaded file's remote
    path. ``start``/``end`` select a byte range of ``path``: lines that *start*
    inside it (so ranges split a big file at line boundaries).
    """

    host: str
    name: str
    status: str = "ok"
    exit_code: int | None = None
    data: bytes | None = None
    path: str | None = None
    start: int = 0
    end: int | None = None

    def read(self, limit: int | None = None) -> bytes:
        """The document's bytes (at most ``limit``), whole or its byte range."""
        if self.data is not None:
            return self.data if limit is None else self.data[:limit]
        if self.path is None:
            return b""
        if self.start == 0 and self.end is None:
            with open(self.path, "rb") as fh:
                return fh.read() if limit is None else fh.read(limit)
        return b"".join(iter_line_blocks(self))[:limit]

    def text(self, limit: int | None = None) -> str:
        """``read()`` decoded as UTF-8 with ``errors="replace"``."""
        return self.read(limit).decode("utf-8", errors="replace")

    def size(self) -> int:
        """Bytes in the document (whole file for a path)."""
        if self.data is not None:
            return len(self.data)
        if self.path is None:
            return 0
        return os.stat(self.path).st_size


BLOCK_SIZE: Final = 8 * 1024 * 1024


def iter_line_blocks(doc: Document, block_size: int = BLOCK_SIZE) -> Iterator[bytes]:
    """Yield blocks of whole lines of ``doc``: the lines that start in ``[start, end)``.

    A line that starts before ``start`` belongs to the range before; one that
    starts before ``end`` is read to its end even past ``end``. Each block ends
    at the last newline within the next ``block_size`` bytes read (a block
    without one grows by ``block_size`` until it has one); a last line without
    a newline is a block of its own.

    Each block is read with one ``pread`` of exactly its bytes, found first by
    looking at the few bytes before where it must end: no block is copied or
    joined again after it is read (that cost as much as the reading).
    """
    if doc.data is not None:
        if doc.data:
            yield doc.data
        return
    if doc.path is None:
        return
    with open(doc.path, "rb", buffering=0) as fh:
        fd = fh.fileno()
        size = os.fstat(fd).st_size
        end = doc.end
        pos = doc.start
        if 0 < pos < size and os.pread(fd, 1, pos - 1) != b"\n":
            pos = _after_newline(fd, pos, size)
        read_end = pos  # how far reading block_size at a time has got
        while pos < size and (end is None or pos < end):
            if read_end >= size:  # the last line, without a newline
                yield os.pread(fd, size - pos, pos)
                return
            read_end = min(read_end + block_size, size)
            if end is not None and read_end >= end:  # the line holding byte end - 1 is the last
                cut = _after_newline(fd, end - 1, size)
            else:
                cut = _after_last_newline(fd, pos, read_end)
                if cut == 0:
                    continue
            block = os.pread(fd, cut - pos, pos)
            if not block:  # the file shrank
                return
            yield block
            pos += len(block)
            del block  # not held while the next one is read


def iter_line_buffers(
    doc: Document, block_size: int = BLOCK_SIZE
) -> Iterator[tuple[bytes | bytearray, int]]:
    """The blocks of :func:`iter_line_blocks`, read into one buffer used again and again.

    Yields ``(buffer, length)``: the block is ``buffer[:length]``, valid until the
    next one is read. No new bytes object per block: a new 8 MiB object costs
    fresh pages of memory (faulted in and zeroed) as much as the read itself,
    and for a search that keeps only a few lines of each block that is most of
    the cost. The blocks are cut where :func:`iter_line_blocks` cuts them; the
    buffer grows when a block is longer than it.
    """
    if doc.data is not None:
        if doc.data:
            yield doc.data, len(doc.data)
        return
    if doc.path is None:
        return
    with open(doc.path, "rb", buffering=0) as fh, _BufferReader(fh.fileno(), block_size) as reader:
        size = reader.size
        end = doc.end
        pos = doc.start
        if 0 < pos < size and os.pread(reader.fd, 1, pos - 1) != b"\n":
            pos = _after_newline(reader.fd, pos, size)
        read_end = pos  # how far reading block_size at a time has got
        while pos < size and (end is None or pos < end):
            if read_end >= size:  # the last line, without a newline
                yield reader.buffer, reader.fill(pos, size)
                return
            read_end = min(read_end + block_size, size)
            if end is not None and read_end >= end:  # the line holding byte end - 1 is the last
                yield reader.buffer, reader.through_newline(pos, end - 1)
                return
            filled = reader.fill(pos, read_end)
            cut = reader.buffer.rfind(b"\n", 0, filled) + 1
            if cut == 0:
                continue
            yield reader.buffer, cut
            pos += cut
            reader.filled = 0  # the rest is read again with the next block


# The buffer of the last iter_line_buffers that ended, for the next one: a new
# one's pages are faulted in and zeroed as its first block is read into it, a
# cost as large as the search of a block for a literal (one per file before).
_SPARE_BUFFERS: list[bytearray] = []


class _BufferReader:
    """``buffer[:filled]`` holds the file from one offset on (see ``iter_line_buffers``).

    A context manager: the buffer is kept for the next reader when it ends.
    """

    def __init__(self, fd: int, block_size: int) -> None:
        self.fd = fd
        self.size = os.fstat(fd).st_size
        # A block is read from the end of the last one's lines to block_size past the
        # end of the last one's read: up to a partial line more than block_size.
        self._usual_size = block_size + _PEEK
        spare = _SPARE_BUFFERS.pop() if _SPARE_BUFFERS else bytearray()  # atomic under the GIL
        self.buffer = spare if len(spare) == self._usual_size else bytearray(self._usual_size)
        self.filled = 0

    def __enter__(self) -> _BufferReader:
        return self

    def __exit__(self, *exc: object) -> None:
        if len(self.buffer) == self._usual_size and not _SPARE_BUFFERS:
            _SPARE_BUFFERS.append(self.buffer)

    def fill(self, pos: int, stop: int) -> int:
        """Read up to file offset ``stop`` (or the end of the file); the bytes held."""
        want = stop - pos
        if want > len(self.buffer):
            self.buffer.extend(bytes(want - len(self.buffer)))
        for _ in range(want):  # each read returns at least one byte, or the file shrank
            if self.filled >= want:
                break
            with memoryview(self.buffer) as view:
                got = os.preadv(self.fd, [view[self.filled : want]], pos + self.filled)
            if not got:
                break
            self.filled += got
        return self.filled

    def through_newline(self, pos: int, offset: int) -> int:
        """Read through the first newline at or after ``offset`` (or to the end); the length
        of the block from ``pos`` up to it."""
        stop = min(offset + 1 + _PEEK, self.size)
        for _ in range(self.size):
            filled = self.fill(pos, stop)
            cut = self.buffer.find(b"\n", offset - pos, filled) + 1
            if cut or stop >= self.size or filled < stop - pos:
                return cut or filled
            stop = min(pos + 2 * filled, self.size)
        return self.filled


_PEEK: Final = 64 * 1024


def _after_newline(fd: int, offset: int, size: int) -> int:
    """The offset just after the first newline at or after ``offset`` (``size`` if none)."""
    for start in range(offset, size, _PEEK):
        newline = os.pread(fd, _PEEK, start).find(b"\n")
        if newline != -1:
            return start + newline + 1
    return size


def _after_last_newline(fd: int, start: int, stop: int) -> int:
    """The offset just after the last newline in ``[start, stop)`` (0 if none)."""
    for window_end in range(stop, start, -_PEEK):
        window_start = max(start, window_end - _PEEK)
        newline = os.pread(fd, window_end - window_start, window_start).rfind(b"\n")
        if newline != -1:
            return window_start + newline + 1
    return 0


@dataclass(frozen=True, slots=True)
class Finding:
    """Something an analyzer flags: a host over a threshold, an outlier, a match."""

    analyzer: str
    host: str
    message: str
    document: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON object for the ``findings`` list of an analysis line."""
        return {"host": self.host, "document": self.document, "message": self.message}


@dataclass(slots=True)
class Section:
    """One analyzer's reduced result: a table, findings, errors and extra JSON fields."""

    spec: AnalyzerSpec
    title: str
    columns: Sequence[str] = ()
    rows: list[dict[str, Any]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def render_text(self) -> str:
        """A title, an aligned text table, notes, findings and errors.

        Rows of several documents (files of ``get``, steps of ``play``) get a
        ``document`` column, after ``host``, saying which each row is about.

        Hosts with the same finding (or error) share one line, their names
        folded: ``! web[01-05] (5): 1 line matches 'x'``.
        """
        label = f" [{self.spec.label}]" if self.spec.label else ""
        lines = [f"== {self.spec}{label}: {self.title}"]
        columns = tuple(self.columns)
        documents = {row["document"] for row in self.rows if "document" in row}
        if len(documents) > 1 and "document" not in columns:
            at = columns.index("host") + 1 if "host" in columns else 0
            columns = (*columns[:at], "document", *columns[at:])
        if self.rows and columns:
            lines.extend(render_table(columns, self.rows))
        lines.extend(f"  {note}" for note in self.notes)
        findings = [(f.host, f.document, f.message) for f in self.findings]
        lines.extend(f"  ! {line}" for line in _folded(findings))
        errors = [(e["host"], e.get("document"), e["error"]) for e in self.errors]
        lines.extend(f"  error: {line}" for line in _folded(errors))
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        """The ``analysis`` JSON Lines object of this section."""
        obj: dict[str, Any] = {
            "v": JSON_VERSION,
            "type": "analysis",
            "analyzer": self.spec.name,
            "args": self.spec.args,
            "label": self.spec.label,
            "title": self.title,
            "columns": list(self.columns),
            "rows": self.rows,
            "findings": [f.to_json() for f in self.findings],
            "errors": self.errors,
        }
        for key, value in self.data.items():
            obj.setdefault(key, value)
        return obj


def _folded(items: Sequence[tuple[str, str | None, str]]) -> list[str]:
    """``HOSTS[ DOCUMENT]: MESSAGE`` lines for (host, document, message) items, one line per
    document and message, hosts folded when several share it; in order of first appearance."""
    hosts: dict[tuple[str | None, str], list[str]] = {}
    for host, document, message in items:
        hosts.setdefault((document, message), []).append(host)
    lines = []
    for (document, message), names in hosts.items():
        where = f" {document}" if document not in (None, "stdout") else ""
        lines.append(f"{hosts_label(names)}{where}: {message}")
    return lines


def show_number(value: float) -> str:
    """A number as a person writes it, every digit kept: ``270553436160``, ``0.25``, never
    ``2.70553e+11``."""
    if not math.isfinite(value):
        return str(value)
    if value.is_integer():
        return str(int(value))
    text = repr(value)  # the shortest text that reads back as the same number
    return format(Decimal(text), "f") if "e" in text else text


def render_table(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Rows as aligned text lines under a header, two spaces between columns."""
    cells = [[_cell(row.get(col)) for col in columns] for row in rows]
    widths = [max([len(col)] + [len(r[i]) for r in cells]) for i, col in enumerate(columns)]
    out = ["  " + "  ".join(col.ljust(w) for col, w in zip(columns, widths, strict=True)).rstrip()]
    for r in cells:
        out.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return out


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return show_number(value)
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value).replace("\n", "\\n")


@dataclass(slots=True)
class AnalysisReport:
    """Every analyzer's section, in the order the specs were given."""

    sections: list[Section] = field(default_factory=list)
    interrupted: bool = False

    @property
    def findings(self) -> list[Finding]:
        """Every finding of every section."""
        return [f for s in self.sections for f in s.findings]

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Inputs an analyzer could not analyse (an exception, or a crashed worker)."""
        return [dict(e, analyzer=s.spec.name) for s in self.sections for e in s.errors]

    def render_text(self) -> str:
        """Every section as text, for stdout."""
        text = "".join(s.render_text() for s in self.sections)
        if self.interrupted:
            text += "(analysis interrupted: results above are partial)\n"
        return text

    def to_json(self) -> list[dict[str, Any]]:
        """One ``{"v": 1, "type": "analysis", ...}`` object per section."""
        out = [s.to_json() for s in self.sections]
        if self.interrupted:
            for obj in out:
                obj["interrupted"] = True
        return out
