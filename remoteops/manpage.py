"""``remoteops.1``: the manual page, generated from the command line and docs/.

``python -m remoteops.manpage > docs/remoteops.1`` writes it; a test checks
that the page in the repository is the one this prints. Commands, arguments,
options and their help come from the click command tree typer builds (so the
page cannot drift from ``--help``); EXIT STATUS, ENVIRONMENT and FILES come from
the tables of docs/exit-codes.md, docs/environment.md and docs/files.md.

Written here rather than with click-man: typer vendors its own click
(``typer._click``), which click-man's ``isinstance`` checks against the
``click`` package do not recognise, and click-man writes one page per
subcommand from help text alone, with no place for exit codes, environment
variables or files.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from remoteops import __version__

__all__ = ["main", "render"]

_SEE_ALSO = "ssh(1), ssh_config(5), sshd(8), ansible-inventory(1), cron(8), flock(1)"


def _escape(text: str) -> str:
    """Plain text as roff: backslashes, hyphens, and a leading dot or quote made literal."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(
        "\\&" + line if line.startswith((".", "'")) else line for line in text.split("\n")
    )


def _inline(markdown: str) -> str:
    """A line of docs/ markdown as roff: `code` bold, [text](link) as text, \\| as |."""
    text = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", markdown).replace("\\|", "|")
    parts = re.split(r"`([^`]*)`", text)
    out = []
    for i, part in enumerate(parts):
        escaped = _escape(part)
        out.append(f"\\fB{escaped}\\fR" if i % 2 else escaped)
    return "".join(out)


def _table(document: str, heading: str | None = None) -> list[tuple[str, str]]:
    """The two first columns of the first markdown table (under ``heading``, if given)."""
    from remoteops.helptopics import docs_dir

    text = (docs_dir() / document).read_text(encoding="utf-8")
    if heading is not None:
        text = text[text.index(f"\n## {heading}\n") :]
    rows: list[tuple[str, str]] = []
    for line in text.splitlines():
        if not line.startswith("|"):
            if rows:
                break
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if set(cells[0]) <= {"-"} or (not rows and cells[0] in ("code", "variable", "file")):
            continue
        rows.append((cells[0], cells[1]))
    return rows


def _paragraphs(help_text: str) -> list[str]:
    """A command's help text (its docstring) as paragraphs, blank-line separated."""
    return [" ".join(p.split()) for p in re.split(r"\n\s*\n", help_text.strip()) if p.strip()]


def _option_names(param: Any) -> str:
    names = sorted([*param.opts, *param.secondary_opts], key=lambda n: (n.startswith("--"), n))
    shown = ", ".join(f"\\fB{_escape(n)}\\fR" for n in names)
    if param.is_flag or param.count:
        return shown
    metavar = param.metavar or param.name.upper()
    return f"{shown} \\fI{_escape(metavar)}\\fR"


def _option_help(param: Any) -> str:
    text = " ".join((param.help or "").split())
    if param.envvar:
        text += f" (environment: {param.envvar})"
    return _escape(text)


def _synopsis(path: str, command: Any) -> str:
    pieces = [f"\\fB{_escape(path)}\\fR"]
    for param in command.params:
        if param.param_type_name != "argument":
            continue
        name = param.name.upper() + ("..." if param.nargs == -1 else "")
        pieces.append(f"\\fI{name}\\fR" if param.required else f"[\\fI{name}\\fR]")
    options = [p for p in command.params if p.param_type_name == "option"]
    if options:
        pieces.insert(1, "[\\fIOPTIONS\\fR]")
    return " ".join(pieces)


def _describe(help_text: str) -> list[str]:
    lines: list[str] = []
    for paragraph in _paragraphs(help_text):
        if paragraph.startswith("Example: "):
            example = paragraph.removeprefix("Example: ")
            lines += [".PP", "Example:", ".RS", ".nf", _escape(example), ".fi", ".RE"]
        else:
            lines += [".PP", _escape(paragraph)]
    return lines


def _options(command: Any) -> list[str]:
    lines: list[str] = []
    for param in command.params:
        if param.param_type_name == "option" and not param.hidden:
            lines += [".TP", _option_names(param), _option_help(param)]
    return lines


def _commands(group: Any, prefix: str) -> list[tuple[str, Any]]:
    """Every leaf command under ``group``, depth first, in the order ``--help`` lists them."""
    found: list[tuple[str, Any]] = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        if getattr(command, "commands", None):
            found += _commands(command, path)
        else:
            found.append((path, command))
    return found


def render() -> str:
    """The manual page, as roff text."""
    import typer.main

    from remoteops.cli import app

    root = typer.main.get_command(app)
    summary = _paragraphs(root.help or "")[0].rstrip(".")
    name_line = summary[0].lower() + summary[1:]
    lines = [
        f'.TH REMOTEOPS 1 "" "remoteops {__version__}" "User Commands"',
        '.\\" Generated by `python -m remoteops.manpage > docs/remoteops.1`; do not edit.',
        ".SH NAME",
        f"remoteops \\- {_escape(name_line)}",
        ".SH SYNOPSIS",
        "\\fBremoteops\\fR [\\fIGLOBAL OPTIONS\\fR] \\fICOMMAND\\fR "
        "[\\fIARGS\\fR] [\\fIOPTIONS\\fR]",
        ".SH DESCRIPTION",
        *_describe(root.help or ""),
        ".PP",
        _escape(
            "Global options go before the command; the command's own options go after it. "
            "Arguments of the remote command that start with - go after --. Every command "
            "takes -h (--help). The reference, with the JSON Lines of --json, is in docs/ "
            "of the source repository and on the terminal: remoteops help TOPIC."
        ),
        ".SH GLOBAL OPTIONS",
        *_options(root),
        ".SH COMMANDS",
    ]
    for path, command in _commands(root, "remoteops"):
        lines += [".SS " + _synopsis(path, command), *_describe(command.help or "")]
        lines += _options(command)
    lines.append(".SH EXIT STATUS")
    for code, meaning in _table("exit-codes.md"):
        lines += [".TP", _inline(code), _inline(meaning)]
    lines.append(".SH ENVIRONMENT")
    for variable, meaning in _table("environment.md"):
        lines += [".TP", _inline(variable), _inline(meaning)]
    lines.append(".SH FILES")
    for heading in ("Read", "Written"):
        for path, meaning in _table("files.md", heading):
            lines += [".TP", _inline(path), _inline(meaning)]
    lines += [
        ".SH SEE ALSO",
        _escape(_SEE_ALSO),
        ".PP",
        _escape(
            "remoteops help TOPIC; docs/README.md in the source repository: cli.md, "
            "json.md, exit-codes.md, environment.md, files.md, inventories.md, patterns.md, "
            "connections.md, running.md, transfers.md, analysis.md, playbooks.md, lab.md."
        ),
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    """Print the manual page on stdout."""
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
