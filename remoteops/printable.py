"""Text from hosts made safe to print: control characters shown as escapes.

Whatever a host sends (command output, file names, its SSH banner) reaches
the operator's terminal through remoteops. Printed as it is, ``\\x1b]0;...\\x07``
retitles the terminal, ``\\x1b[2J`` clears it, and a ``\\r`` lets one host
overwrite the start of a line, so that its text looks like another host's.
Everything remoteops prints about hosts goes through :func:`printable` first:
control characters other than tab (C0, DEL and C1) are written as escapes
(``\\r``, ``\\n``, ``\\x1b``), bytes that are not UTF-8 as ``\\xNN``. The exact
bytes stay available through ``--out-dir`` and ``--json``.
"""

from __future__ import annotations

import re

__all__ = ["json_safe", "printable", "printable_bytes"]

# C0 controls except tab, DEL, and the C1 controls (U+0080-U+009F; some
# terminals obey U+009B as CSI even when it arrives as UTF-8).
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_CONTROL_BUT_NEWLINE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_NAMED = {"\n": "\\n", "\r": "\\r"}
# JSON escapes C0 itself; DEL and C1 are valid raw in JSON, so escape them too.
_JSON_TABLE = {c: f"\\u{c:04x}" for c in range(0x7F, 0xA0)}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or f"\\x{ord(char):02x}"


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with control characters other than tab (and newline, if kept) escaped."""
    pattern = _CONTROL_BUT_NEWLINE if keep_newlines else _CONTROL
    if pattern.search(text) is None:
        return text
    return pattern.sub(_escape, text)


def printable_bytes(data: bytes, *, keep_newlines: bool = False) -> str:
    """Bytes as :func:`printable` text; bytes that are not valid UTF-8 show as ``\\xNN``."""
    return printable(data.decode("utf-8", errors="backslashreplace"), keep_newlines=keep_newlines)


def json_safe(line: str) -> str:
    """A JSON text with DEL and C1 characters written as ``\\u`` escapes (same JSON value)."""
    return line.translate(_JSON_TABLE)
