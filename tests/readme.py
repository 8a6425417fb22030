"""The README's code blocks, as the tests that run them see them.

A fenced block is preceded by a marker: ``<!-- runnable -->`` (a test runs it,
in order with the other runnable blocks, on a fresh lab) or ``<!-- not
runnable: WHY -->``. In a runnable shell block each line is one command,
expected to exit 0 unless its comment says ``exit N``; a ``\\`` at the end of a
line continues it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

_FENCE = re.compile(
    r"(?:^<!--\s*(?P<marker>.*?)\s*-->\n)?^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```\n",
    re.M | re.S,
)
_COMMENT = re.compile(r"\s+#\s.*$")
_EXIT = re.compile(r"#.*\bexit (\d+)\b")


@dataclass(frozen=True)
class Command:
    """One line of a shell block: the command without its comment, and its exit code."""

    line: str
    exit_code: int


@dataclass(frozen=True)
class Block:
    """A fenced code block of the README."""

    section: str  # the heading above it, '## A short tour'
    lang: str
    marker: str | None  # 'runnable', 'not runnable: ...', or None
    body: str
    line: int  # where its fence opens, 1-based

    @property
    def runnable(self) -> bool:
        return self.marker == "runnable"

    def commands(self) -> list[Command]:
        """The shell commands of the block, one per logical line."""
        joined = re.sub(r"\\\n\s*", "", self.body)
        commands = []
        for raw in joined.splitlines():
            if not raw.strip() or raw.lstrip().startswith("#"):
                continue
            wanted = _EXIT.search(raw)
            line = _COMMENT.sub("", raw).strip()
            commands.append(Command(line, int(wanted.group(1)) if wanted else 0))
        return commands


def blocks(path: Path = README) -> list[Block]:
    """Every fenced block of ``path``, in order, with its section and marker."""
    text = path.read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        start = match.start("lang") if match.group("marker") is None else match.start()
        headings = re.findall(r"^(#{1,6} .*)$", text[:start], flags=re.M)
        found.append(
            Block(
                section=headings[-1] if headings else "",
                lang=match.group("lang"),
                marker=match.group("marker"),
                body=match.group("body"),
                line=text.count("\n", 0, match.start("lang")) + 1,
            )
        )
    return found


def section_commands(*sections: str) -> list[str]:
    """Every ``remoteops`` command of the shell blocks under the given headings (prefixes)."""
    commands = []
    for block in blocks():
        if block.lang == "sh" and block.section.startswith(sections):
            commands += [c.line for c in block.commands() if c.line.startswith("remoteops ")]
    return commands
