"""Ansible's INI inventory format, read as ansible-core 2.19's ``ini`` plugin reads it.

The rules, from ``lib/ansible/plugins/inventory/ini.py`` and checked against
``ansible-inventory --list`` (``tests/data/inventories/ini_*``):

* Lines are stripped; empty lines and lines starting with ``#`` or ``;`` are skipped.
  Lines before the first section are hosts of ``ungrouped``.
* ``[group]`` holds hosts, ``[group:vars]`` variables, ``[group:children]`` group names;
  any other ``:type`` is an error.  A section line may end with a ``#`` comment.
* A host line is split with ``shlex`` (quotes, backslashes, ``#`` comments): a host
  name or range (``web[01:20]``, ``db-[a:f]``, ``[1:9:2]``), with ``:port``, then
  ``key=value`` words.  A ``:vars`` line is one ``key=value``, split at the first
  ``=``, both sides stripped, with no quoting or comments of its own.
* Every value -- of host lines *and* of ``:vars`` lines, whatever Ansible's documentation
  says about the latter -- goes through Python's ``ast.literal_eval``: ``1`` is an int,
  ``True`` a bool, ``'a b'`` the text ``a b``, ``[1, 2]`` a list, ``8080 # comment`` the
  int 8080; anything it cannot read (``yes``, ``true``, ``bar # comment``, ``017``) stays
  text as written.  Tuples and sets become lists, ``...``, complex numbers and bytes text.
* ``[g:vars]`` before ``g`` is defined and ``[p:children]`` naming a group defined
  later are fine; a group never defined by a ``[g]`` or ``[g:children]`` section (in this
  file or an earlier source) is an error at the line that named it.

Parsing builds a list of operations without touching the inventory, so a file that
turns out not to be INI leaves nothing behind.  Errors are ``IniParseError(line, what)``;
``what`` never quotes a value or a whole line (the file may be a password file).
"""

from __future__ import annotations

import ast
import functools
import re
import shlex
import warnings
from collections.abc import Callable, Collection, Iterator
from copy import deepcopy
from dataclasses import dataclass
from typing import Any

from remoteops.patterns import is_address

__all__ = [
    "AddChild",
    "AddGroup",
    "AddHosts",
    "IniOp",
    "IniParseError",
    "SetGroupVar",
    "has_section",
    "ini_value",
    "parse_ini",
]

# The ini plugin's own expressions (group names: no whitespace, ':' or ']').
_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:\#.*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:\#.*)?$")
_SECTION_TYPES = ("hosts", "children", "vars")
_COMMENTS = ("#", ";")
# shlex.split(posix, comments=True) only treats these specially; a line without them
# splits on runs of shlex's whitespace, ~30x faster.
_SHLEX_SPECIAL = re.compile(r"[\"'\\#]")
_SHLEX_SPACE = re.compile(r"[ \t\r\n]+")
# A word Python can only read as names, attributes and operators (never True, False or
# None, no brackets, quotes or spaces): ast.literal_eval fails on it, so it is text.
# Short only: a long chain of operators could make Python's compiler fail differently.
_NAME_WORD = re.compile(r"[^\W\d][\w.\-/:@%+]{0,100}")
_CONSTANTS = frozenset(("True", "False", "None"))


class IniParseError(Exception):
    """Line *line* of an INI inventory cannot be read; *what* says why and what to do."""

    def __init__(self, line: int, what: str) -> None:
        super().__init__(line, what)
        self.line = line
        self.what = what

    def __str__(self) -> str:
        return f"line {self.line}: {self.what}"


@dataclass(frozen=True, slots=True)
class AddGroup:
    name: str
    line: int


@dataclass(frozen=True, slots=True)
class AddHosts:
    """Hosts of one host line, added to *group* with the line's variables."""

    names: tuple[str, ...]
    port: int | None
    group: str
    vars: dict[str, Any]
    line: int


@dataclass(frozen=True, slots=True)
class SetGroupVar:
    group: str
    key: str
    value: Any
    line: int


@dataclass(frozen=True, slots=True)
class AddChild:
    parent: str
    child: str
    line: int


IniOp = AddGroup | AddHosts | SetGroupVar | AddChild

# (host names, port) of a host pattern; raises ValueError for a malformed range.
HostPattern = Callable[[str], tuple[list[str], int | None]]


def _content_lines(text: str) -> Iterator[tuple[int, str]]:
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line and line[0] not in _COMMENTS:
            yield number, line


def has_section(text: str) -> bool:
    """True when a line of *text* is, or looks like, an INI section header (``[web]``,
    ``[web:vars]``, ``[web servers]``): then the file is meant as INI."""
    return any(
        _SECTION.match(line) or (line[0] == "[" and line[-1] == "]")
        for _, line in _content_lines(text)
    )


def _coerce(value: Any) -> Any:
    """The ini plugin's ``_parse_recursive_coerce_types_and_tag`` (without the tags)."""
    if isinstance(value, str):
        return value
    if isinstance(value, set | frozenset):
        # Ansible lists a set in its process's iteration order; sorted is stable.
        return [_coerce(v) for v in sorted(value, key=lambda v: (type(v).__name__, str(v)))]
    if isinstance(value, list | tuple):
        return [_coerce(v) for v in value]
    if isinstance(value, dict):
        return {k: _coerce(v) for k, v in value.items()}
    if value is ...:
        return "..."
    if isinstance(value, complex):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


@functools.lru_cache(maxsize=4096)
def _literal(text: str) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return _coerce(value)


def ini_value(text: str) -> Any:
    """*text* typed as the ini plugin types a value (``ast.literal_eval``, else the text).

    Raises ``TypeError``, ``MemoryError`` or ``RecursionError`` where Ansible fails too
    (``{[1]: 2}``: an unhashable key).
    """
    if _NAME_WORD.fullmatch(text) and text not in _CONSTANTS:
        return text
    value = _literal(text)
    # thousands of hosts share a few values; each gets its own copy of a container
    return deepcopy(value) if isinstance(value, list | dict) else value


def _value(text: str, key: str, line: int) -> Any:
    try:
        return ini_value(text)
    except (TypeError, MemoryError, RecursionError) as exc:
        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise IniParseError(
            line,
            f"the value of {key!r} is not a valid Python literal ({why}); "
            "put it in quotes to keep it as text",
        ) from None


class _Parser:
    def __init__(self, known: Collection[str], host_pattern: HostPattern, strict: bool) -> None:
        self.known = known
        self.added: set[str] = set()
        self.host_pattern = host_pattern
        self.strict = strict
        self.ops: list[IniOp] = []
        # group -> (state, line of the first mention, parents waiting for it)
        self.pending: dict[str, tuple[str, int, list[str]]] = {}

    def is_group(self, name: str) -> bool:
        return name in self.added or name in self.known

    def add_group(self, name: str, line: int) -> None:
        if not self.is_group(name):
            self.added.add(name)
            self.ops.append(AddGroup(name, line))

    def parse(self, text: str) -> list[IniOp]:
        group, state = "ungrouped", "hosts"
        for number, line in _content_lines(text):
            match = _SECTION.match(line)
            if match:
                group, state = match.group(1), match.group(2) or "hosts"
                self.section(group, state, number)
            elif line.startswith("[") and line.endswith("]"):
                raise IniParseError(
                    number,
                    "not a valid section header: a group name cannot hold spaces, ':' or "
                    "']'; write [group], [group:vars] or [group:children]",
                )
            elif state == "hosts":
                self.host_line(line, group, number)
            elif state == "vars":
                self.vars_line(line, group, number)
            else:
                self.child_line(line, group, number)
        for name, (kind, number, parents) in self.pending.items():
            if kind == "vars":
                raise IniParseError(
                    number,
                    f"[{name}:vars] sets variables of group {name!r}, which no [{name}] or "
                    f"[{name}:children] section defines; add one or fix the name",
                )
            raise IniParseError(
                number,
                f"[{parents[-1]}:children] lists group {name!r}, which no [{name}] or "
                f"[{name}:children] section defines; add one or fix the name",
            )
        return self.ops

    def section(self, group: str, state: str, number: int) -> None:
        if state not in _SECTION_TYPES:
            raise IniParseError(
                number,
                f"section [{group}:{state}] has unknown type {state!r}; use [{group}], "
                f"[{group}:vars] or [{group}:children]",
            )
        if not self.is_group(group):
            if state == "vars" and group not in self.pending:
                self.pending[group] = ("vars", number, [])
            self.add_group(group, number)
        if group in self.pending and state != "vars":
            if self.pending[group][0] == "children":
                self.resolve_children(group, number)
            else:
                del self.pending[group]

    def resolve_children(self, group: str, number: int) -> None:
        entry = self.pending.pop(group, None)
        if entry is None:
            return
        for parent in entry[2]:
            self.ops.append(AddChild(parent, group, number))
            if parent in self.pending and self.pending[parent][0] == "children":
                self.resolve_children(parent, number)

    def host_line(self, line: str, group: str, number: int) -> None:
        if _SHLEX_SPECIAL.search(line):
            try:
                tokens = shlex.split(line, comments=True)
            except ValueError as exc:  # shlex's messages hold no text of the line
                raise IniParseError(number, f"cannot split the host line: {exc}") from None
        else:
            tokens = _SHLEX_SPACE.split(line)
        if not tokens or not tokens[0]:
            raise IniParseError(number, "empty host name")
        names, port = self.host_names(tokens[0], number)
        variables: dict[str, Any] = {}
        for index, token in enumerate(tokens[1:], start=2):
            key, sep, text = token.partition("=")
            if not sep:
                raise IniParseError(
                    number,
                    f"word {index} of the host line is not key=value; host variables are "
                    'written key=value after the host name (quote values with spaces: key="a b")',
                )
            variables[key] = _value(text, key, number)
        self.ops.append(AddHosts(tuple(names), port, group, variables, number))

    def host_names(self, pattern: str, number: int) -> tuple[list[str], int | None]:
        if pattern.strip() == "---":
            raise IniParseError(
                number, "'---' is not a host name; a YAML inventory needs a .yml extension"
            )
        if self.strict and not is_address(pattern):
            what = (
                "key=value where a host name should be"
                if "=" in pattern
                else "no host name or IP address at the start of the line"
            )
            raise IniParseError(number, what)
        try:
            names, port = self.host_pattern(pattern)
        except ValueError as exc:
            raise IniParseError(number, f"{exc}; fix the host range") from None
        if pattern.strip().endswith(":") and port is None:
            raise IniParseError(
                number, "a host name ends with ':' but no port follows; write host:PORT"
            )
        return names, port

    def vars_line(self, line: str, group: str, number: int) -> None:
        key, sep, text = line.partition("=")
        if not sep:
            raise IniParseError(
                number, f"a line of [{group}:vars] must be key=value (one variable per line)"
            )
        key = key.strip()
        self.ops.append(SetGroupVar(group, key, _value(text.strip(), key, number), number))

    def child_line(self, line: str, group: str, number: int) -> None:
        match = _GROUP_NAME.match(line)
        if not match:
            raise IniParseError(
                number,
                f"a line of [{group}:children] must be one group name (no spaces or ':')",
            )
        child = match.group(1)
        if self.is_group(child):
            self.ops.append(AddChild(group, child, number))
        elif child in self.pending:
            self.pending[child][2].append(group)
        else:
            self.pending[child] = ("children", number, [group])


def parse_ini(
    text: str,
    *,
    known_groups: Collection[str],
    host_pattern: HostPattern,
    strict_names: bool = False,
) -> list[IniOp]:
    """The operations that build the inventory of INI *text*, in Ansible's order.

    *known_groups* are the groups earlier sources defined (``all``, ``ungrouped``, ...):
    ``[g:vars]`` and ``[p:children]`` may name them.  *host_pattern* splits a host word
    into names and port.  With *strict_names* every host word must be a host name, IP
    address or range (for files without any section, which might be anything).
    Raises ``IniParseError`` for the first line Ansible refuses.
    """
    return _Parser(known_groups, host_pattern, strict_names).parse(text)
