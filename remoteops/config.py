"""Settings from config files, with profiles: docs/config.md.

Two TOML files give defaults to the command line's options, read with the
standard library's :mod:`tomllib`: the system's (``/etc/remoteops/config.toml``,
or ``$REMOTEOPS_SYSTEM_CONFIG``) and the user's
(``$XDG_CONFIG_HOME/remoteops/config.toml``, default ``~/.config``, or
``$REMOTEOPS_CONFIG``). Keys are the long option names of the commands
(``forks = 50``, ``ssh-config = "~/.ssh/fleet"``); top-level keys apply to every
command that has the option, a ``[run]`` table to ``remoteops run``, a ``[lab]``
table to every ``lab`` command and ``[lab.up]`` to ``lab up``;
``[profiles.NAME]`` tables, with the same structure, are chosen with
``--profile NAME`` or ``$REMOTEOPS_PROFILE``. ``[history]`` holds the run
history's own keys (:data:`SECTIONS`).

Precedence is click's own: a context's ``default_map`` sits below the
command line and the options' environment variables, so this module only
builds the map (profile > user file > system file) and never re-implements
the rest; ``ctx.get_parameter_source(name)`` says where each value came from,
and :func:`effective_settings` turns that into the lines of
``remoteops config show``.

Every key and value is checked against the click parameters of the real
commands (their names and types, walked from the command tree), so the
config keys follow the command line by themselves. A bad file is one
:class:`~remoteops.errors.UsageError` line, ``FILE:LINE: ...`` with a
suggestion, exit 2. The files are data: never executed, and refused when
someone other than their owner (or root) could have changed them, as ssh
refuses such an ssh_config.

Wiring (the command line does this): declare the root option ``--profile`` with
``is_eager=True``, ``envvar=PROFILE_ENV`` and ``callback=profile_callback``;
``remoteops config show [COMMAND [ARGS]]`` prints
``render_settings(config_from_context(ctx), effective_settings(ctx, words))``.
"""

from __future__ import annotations

import bisect
import dataclasses
import difflib
import functools
import json
import math
import os
import re
import stat
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path, PurePath
from typing import Any, get_args, get_origin

from remoteops.argcheck import shown
from remoteops.configpaths import (
    BUILT_ONLY,
    CONFIG_ENV,
    PROFILE_ENV,
    SYSTEM_CONFIG,
    SYSTEM_CONFIG_ENV,
    system_config_path,
    user_config_path,
)
from remoteops.errors import UsageError

__all__ = [
    "CONFIG_ENV",
    "PROFILE_ENV",
    "SECTIONS",
    "SYSTEM_CONFIG",
    "SYSTEM_CONFIG_ENV",
    "Config",
    "ConfigFile",
    "Origin",
    "SectionKey",
    "Setting",
    "Source",
    "config_from_context",
    "effective_settings",
    "load_config",
    "parse_age",
    "parse_duration",
    "parse_size",
    "profile_callback",
    "render_settings",
    "settings_json",
    "source_of",
    "system_config_path",
    "toml_key_lines",
    "user_config_path",
]


PROFILE_OPTION = "profile"
"""The root option that chooses a profile: never a key of a config file."""

MAX_SIZE = 1024 * 1024
"""A config file larger than this is refused (it is a few lines of settings)."""

_META_KEY = "remoteops.config"

# Options whose environment variable the library reads itself when the option is
# not given (not click's ``envvar``): long name -> (variable, the command path it
# applies under). Such a variable must still beat the config files, so a config
# value for the option is left out of the default map while it is set. An option
# that gets ``envvar=`` on its declaration no longer needs its entry here.
LIBRARY_ENV: dict[str, tuple[str, tuple[str, ...]]] = {
    "inventory": ("REMOTEOPS_INVENTORY", ()),
    "debug": ("REMOTEOPS_DEBUG", ()),
    "dir": ("REMOTEOPS_LAB_DIR", ("lab",)),
}

# Options whose value names files although typed ``str`` (``-i`` also takes 'a,b,c').
_PATH_LIKE = frozenset({"inventory"})
# String options whose value is a whole number or one of some words:
# ``procs = 4`` or ``procs = "auto"``.
_NUMBER_OR_WORD: dict[str, tuple[str, ...]] = {"procs": ("auto",)}


# --------------------------------------------------------------------------- values


_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_UNITS_B = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_duration(value: Any, *, bare: str = "s") -> float:
    """A duration in seconds from ``"<number><s|m|h|d|w>"`` (``"90d"``, ``"12h"``,
    ``"1.5w"``) or a bare number, counted in ``bare`` units (seconds by default; days
    for a retention age); ValueError saying what is expected."""
    unit = {"s": "seconds", "d": "days"}[bare]
    expected = f'a duration such as "90d" (units s, m, h, d, w) or a number of {unit}'
    if isinstance(value, bool):
        raise ValueError(f"expected {expected}")
    if isinstance(value, int | float):
        seconds = float(value) * _UNITS_S[bare]
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", value.lower())
        if match is None:
            raise ValueError(f"expected {expected}")
        seconds = float(match.group(1)) * _UNITS_S[match.group(2) or bare]
    else:
        raise ValueError(f"expected {expected}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"expected {expected}, 0 or more")
    return seconds


def parse_age(value: Any) -> float:
    """A retention age in seconds: :func:`parse_duration` with a bare number in days, as
    ``history prune --max-age`` takes it."""
    return parse_duration(value, bare="d")


def parse_size(value: Any) -> int:
    """A size in bytes from a number of bytes or ``"<number>[K|M|G|T][i][B]"``
    (``"500M"``, ``"1GiB"``; powers of 1024); ValueError saying what is expected."""
    expected = 'a size such as "500M" (units K, M, G, T) or a number of bytes'
    if isinstance(value, bool):
        raise ValueError(f"expected {expected}")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", value.lower())
        if match is None:
            raise ValueError(f"expected {expected}")
        size = int(float(match.group(1)) * _UNITS_B[match.group(2)])
    else:
        raise ValueError(f"expected {expected}")
    if size < 0:
        raise ValueError(f"expected {expected}, 0 or more")
    return size


def _parse_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


@dataclass(frozen=True, slots=True)
class SectionKey:
    """A key of a config table that is not a command-line option (``[history] enabled``)."""

    parse: Callable[[Any], Any]
    """The value as the program uses it, from the TOML value; ValueError if bad."""
    default: Any
    """The default, as it would be written in the file."""
    help: str


SECTIONS: dict[str, dict[str, SectionKey]] = {
    "history": {
        "enabled": SectionKey(_parse_bool, True, "record every run in the history"),
        "max-age": SectionKey(parse_age, "90d", "prune runs older than this"),
        "max-size": SectionKey(parse_size, "256M", "prune the oldest runs beyond this size"),
    },
}
"""Tables of keys that are not options, by table name, then key."""


def _toml(value: Any) -> str:
    """A value as TOML would write it (for messages and ``config show``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    return str(value)


def _key(name: str) -> str:
    """A TOML key as written: bare when it can be, quoted otherwise."""
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name, ensure_ascii=False)


def _plain(value: Any) -> Any:
    """A parameter's value as JSON/TOML data: paths and enums as strings, tuples as lists."""
    if isinstance(value, Enum):
        return _plain(value.value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------- line numbers

_BARE = re.compile(r"[A-Za-z0-9_-]+")


class _Scan:
    """Where each key of a TOML document is: tomllib parses, but keeps no positions.

    Walks text tomllib has already accepted: comments, the four kinds of
    strings (multi-line ones may hold anything that looks like a table or a
    key), arrays over several lines, inline tables and dotted or quoted keys.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.newlines = [i for i, c in enumerate(text) if c == "\n"]
        self.lines: dict[tuple[str | int, ...], int] = {}
        self.arrays: dict[tuple[str | int, ...], int] = {}

    def line(self) -> int:
        return bisect.bisect_left(self.newlines, self.pos) + 1

    def peek(self, n: int = 1) -> str:
        return self.text[self.pos : self.pos + n]

    def expect(self, token: str) -> None:
        if not self.text.startswith(token, self.pos):
            raise ValueError(f"expected {token!r} at {self.pos}")
        self.pos += len(token)

    def blank(self, *, newlines: bool) -> None:
        """Skip spaces, tabs and comments (and newlines, if asked)."""
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c in " \t\r" or (newlines and c == "\n"):
                self.pos += 1
            elif c == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            else:
                return

    def record(self, path: tuple[str | int, ...], line: int) -> None:
        for i in range(1, len(path)):
            self.lines.setdefault(path[:i], line)  # tables a dotted key creates
        self.lines[path] = line

    def run(self) -> dict[tuple[str | int, ...], int]:
        table: tuple[str | int, ...] = ()
        while True:
            self.blank(newlines=True)
            if self.pos >= len(self.text):
                return self.lines
            line = self.line()
            if self.peek(2) == "[[":
                self.pos += 2
                path = self.dotted_key()
                self.expect("]]")
                index = self.arrays.get(path, -1) + 1
                self.arrays[path] = index
                self.lines.setdefault(path, line)
                table = (*path, index)
                self.record(table, line)
            elif self.peek() == "[":
                self.pos += 1
                table = self.dotted_key()
                self.expect("]")
                self.record(table, line)
            else:
                self.key_value(table)

    def key_value(self, table: tuple[str | int, ...]) -> None:
        line = self.line()
        path = (*table, *self.dotted_key())
        self.expect("=")
        self.blank(newlines=False)
        self.record(path, line)
        self.value(path)

    def dotted_key(self) -> tuple[str, ...]:
        parts: list[str] = []
        while True:
            self.blank(newlines=False)
            c = self.peek()
            start = self.pos
            if c == '"':
                self.basic_string()
                parts.append(tomllib.loads(f"k = {self.text[start : self.pos]}")["k"])
            elif c == "'":
                self.pos = self.text.index("'", self.pos + 1) + 1
                parts.append(self.text[start + 1 : self.pos - 1])
            else:
                match = _BARE.match(self.text, self.pos)
                if match is None:
                    raise ValueError(f"no key at {self.pos}")
                parts.append(match.group())
                self.pos = match.end()
            self.blank(newlines=False)
            if self.peek() != ".":
                return tuple(parts)
            self.pos += 1

    def basic_string(self) -> None:
        self.pos += 1
        while self.pos < len(self.text):
            c = self.text[self.pos]
            self.pos += 2 if c == "\\" else 1
            if c == '"':
                return
        raise ValueError("unterminated string")

    def multiline(self, quote: str) -> None:
        self.pos += 3
        while self.pos < len(self.text):
            if quote == '"' and self.text[self.pos] == "\\":
                self.pos += 2
            elif self.text.startswith(quote * 3, self.pos):
                self.pos += 3
                for _ in range(2):  # up to two quotes of the content may end it
                    if self.peek() == quote:
                        self.pos += 1
                return
            else:
                self.pos += 1
        raise ValueError("unterminated multi-line string")

    def value(self, path: tuple[str | int, ...]) -> None:
        c = self.peek()
        if self.peek(3) in ('"""', "'''"):
            self.multiline(c)
        elif c == '"':
            self.basic_string()
        elif c == "'":
            self.pos = self.text.index("'", self.pos + 1) + 1
        elif c == "[":
            self.pos += 1
            for index in range(len(self.text)):
                self.blank(newlines=True)
                if self.peek() == "]":
                    break
                self.lines.setdefault((*path, index), self.line())
                self.value((*path, index))
                self.blank(newlines=True)
                if self.peek() == ",":
                    self.pos += 1
            self.expect("]")
        elif c == "{":
            self.pos += 1
            while self.pos < len(self.text):
                self.blank(newlines=True)
                if self.peek() == "}":
                    break
                self.key_value(path)
                self.blank(newlines=True)
                if self.peek() == ",":
                    self.pos += 1
            self.expect("}")
        else:  # a number, boolean or date-time: up to what ends a value
            match = re.compile(r"[^,\]}\n#]*").match(self.text, self.pos)
            assert match is not None  # the pattern matches the empty string
            self.pos = match.end()


def toml_key_lines(text: str) -> dict[tuple[str | int, ...], int]:
    """The line (from 1) of every key and table of a TOML document tomllib accepts, by
    path (``("profiles", "prod", "forks")``; array elements by index); ``{}`` for the
    parts it cannot place."""
    scan = _Scan(text)
    try:
        return scan.run()
    except (ValueError, IndexError, tomllib.TOMLDecodeError):
        return scan.lines  # what was placed before; the rest is named without a line


# --------------------------------------------------------------------------- the command tree


@dataclass(slots=True)
class _Node:
    """A command or group of the click tree, with the options a config file may set."""

    path: tuple[str, ...]
    command: Any
    options: dict[str, Any]
    """Long option name (no dashes) -> click parameter."""
    children: dict[str, _Node]

    def walk(self) -> Iterator[_Node]:
        yield self
        for child in self.children.values():
            yield from child.walk()

    @property
    def shown(self) -> str:
        return " ".join(("remoteops", *self.path))


def _long_name(param: Any) -> str | None:
    for opt in param.opts:
        if opt.startswith("--"):
            return str(opt[2:])
    return None


def _configurable(param: Any) -> bool:
    return (
        param.param_type_name == "option"
        and param.expose_value
        and not param.is_eager  # --version, --help, --profile
        and not getattr(param, "hidden", False)
        and param.name != PROFILE_OPTION
        and _long_name(param) is not None
    )


def _build(command: Any, path: tuple[str, ...]) -> _Node:
    options = {_long_name(p) or "": p for p in command.params if _configurable(p)}
    children = {
        name: _build(sub, (*path, name)) for name, sub in getattr(command, "commands", {}).items()
    }
    return _Node(path, command, options, children)


@functools.lru_cache(maxsize=8)
def _tree(command: Any) -> _Node:
    return _build(command, ())


def _whole(command: Any) -> Any:
    """``command``, or every command of remoteops when ``command`` was built with only
    the one on the line (remoteops.cli.app): keys are checked and settings shown for
    every command, as --help lists them."""
    return _root_command() if getattr(command, BUILT_ONLY, None) is not None else command


def _root_command() -> Any:
    from remoteops.cli.app import every_command

    return every_command()


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a config file sets a value."""

    file: Path
    line: int | None
    profile: str | None = None

    @property
    def where(self) -> str:
        """``FILE:LINE`` (``FILE`` if the line is not known)."""
        return f"{shown(self.file)}:{self.line}" if self.line else shown(self.file)

    def __str__(self) -> str:
        return f"profile {self.profile} in {self.where}" if self.profile else self.where


@dataclass(frozen=True, slots=True)
class Source:
    """Where an effective setting came from."""

    kind: str
    """``command line``, ``environment``, ``profile``, ``file``, ``prompt`` or ``default``."""
    envvar: str | None = None
    origin: Origin | None = None

    def __str__(self) -> str:
        if self.kind == "environment":
            return f"environment {self.envvar}"
        if self.origin is not None:
            return str(self.origin)
        return self.kind

    def to_json(self) -> dict[str, Any]:
        """``{"source": KIND, "env": ..., "file": ..., "line": ..., "profile": ...}``."""
        origin = self.origin
        return {
            "source": self.kind,
            "env": self.envvar,
            "file": shown(origin.file) if origin else None,
            "line": origin.line if origin else None,
            "profile": origin.profile if origin else None,
        }


@dataclass(frozen=True, slots=True)
class Setting:
    """One effective setting: its key as a config file writes it (``forks`` for a global
    option, ``run.forks``, ``lab.up.port``, ``history.enabled``), value and source."""

    key: str
    value: Any
    source: Source

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "value": self.value, **self.source.to_json()}


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """A config file looked for: system-wide (read first) or the user's."""

    path: Path
    scope: str
    """``system`` or ``user``."""
    found: bool


@dataclass(slots=True)
class Config:
    """What the config files say, merged: profile > user file > system file."""

    files: list[ConfigFile]
    profile: str | None = None
    profile_source: str | None = None
    """``--profile`` or ``REMOTEOPS_PROFILE``: what chose the profile."""
    default_map: dict[str, Any] = field(default_factory=dict)
    """click's ``default_map``: root options at the top, ``{"run": {...}, "lab": {"up": ...}}``."""
    origins: dict[tuple[tuple[str, ...], str], Origin] = field(default_factory=dict)
    """(command path, parameter name) -> where the value in :attr:`default_map` is set."""
    sections: dict[tuple[str, str], tuple[Any, Any, Origin]] = field(default_factory=dict)
    """(table, key) -> (value as written, value parsed, where) for :data:`SECTIONS` keys set."""

    def origin(self, path: Sequence[str], name: str) -> Origin | None:
        """Where the default for parameter ``name`` of the command at ``path`` is set."""
        return self.origins.get((tuple(path), name))

    def section(self, table: str) -> dict[str, Any]:
        """Every key of a :data:`SECTIONS` table, parsed: from the files, else the default."""
        return {key: self.section_value(table, key) for key in SECTIONS[table]}

    def section_value(self, table: str, key: str) -> Any:
        """One key of a :data:`SECTIONS` table, parsed (``section_value("history", "max-age")``
        is seconds, ``"max-size"`` bytes)."""
        found = self.sections.get((table, key))
        if found is not None:
            return found[1]
        spec = SECTIONS[table][key]
        return spec.parse(spec.default)

    def section_source(self, table: str, key: str) -> Source:
        found = self.sections.get((table, key))
        if found is None:
            return Source("default")
        origin = found[2]
        return Source("profile" if origin.profile else "file", origin=origin)


# --------------------------------------------------------------------------- reading


def _read(path: Path, *, named_by: str | None) -> str | None:
    """The text of a config file; None if it does not exist (an error if ``named_by``,
    what named it, says it should). Refused, as ssh refuses such an
    ssh_config, when someone other than its owner or root could have changed it."""
    where = shown(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except FileNotFoundError:
        if named_by is None:
            return None
        raise UsageError(f"{named_by}: no such file; name a config file") from None
    except OSError as exc:
        raise UsageError(f"{where}: cannot read it: {exc.strerror}") from None
    try:
        st = os.fstat(fd)  # of what was opened: no race with a rename
        _check_file(path, st)
        if not stat.S_ISREG(st.st_mode):
            return ""  # /dev/null: no settings
        with os.fdopen(fd, "rb", closefd=False) as file:
            data = file.read(MAX_SIZE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_SIZE:
        raise UsageError(f"{where}: larger than {MAX_SIZE // 1024} KiB; is it a config file?")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UsageError(f"{where}:{line}: not UTF-8 text") from None


def _check_file(path: Path, st: os.stat_result) -> None:
    """A regular file (or /dev/null) that only its owner, you or root, can change."""
    where = shown(path)
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{where}: is a directory; the config is a TOML file")
    if not stat.S_ISREG(st.st_mode):
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == os.stat(os.devnull).st_rdev:
            return
        raise UsageError(f"{where}: not a regular file; the config is a TOML file")
    if st.st_uid not in (0, os.geteuid()):
        raise UsageError(
            f"{where}: owned by uid {st.st_uid}, neither you nor root; remoteops does not "
            "use a config file someone else can change (as ssh); chown it"
        )
    if st.st_mode & 0o022:
        raise UsageError(
            f"{where}: writable by others than its owner (mode {st.st_mode & 0o7777:04o}); "
            f"remoteops does not use a config file someone else can change (as ssh): "
            f"chmod go-w {where}"
        )


def _parse(text: str, path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = re.fullmatch(r"(.*) \(at line (\d+), column (\d+)\)", message, flags=re.S)
        if match is not None:
            line, what = match.group(2), f"{match.group(1)} (column {match.group(3)})"
        else:  # "... (at end of document)"
            line, what = str(max(1, len(text.splitlines()))), message
        raise UsageError(f"{shown(path)}:{line}: not valid TOML: {what}") from None


def _suggest(word: str, candidates: Sequence[str], quote: Callable[[str], str]) -> str:
    close = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"; did you mean {quote(close[0])}?" if close else ""


_Path = tuple[str | int, ...]
_Settings = dict[tuple[tuple[str, ...], str], tuple[Any, Origin]]
_Sections = dict[tuple[str, str], tuple[Any, Any, Origin]]


@dataclass(slots=True)
class _Layer:
    """The settings of one file's top level, or of one of its profiles."""

    settings: _Settings = field(default_factory=dict)
    """(command path, parameter name) -> (value, where)."""
    sections: _Sections = field(default_factory=dict)


class _File:
    """One config file's settings, checked against the command tree."""

    def __init__(self, path: Path, text: str, tree: _Node, *, lenient: bool = False) -> None:
        self.path = path
        self.tree = tree
        self.lenient = lenient  # keys and tables the tree lacks are passed over
        self._text = text
        self._lines: dict[_Path, int] | None = None
        self.every_option = {name for node in tree.walk() for name in node.options}
        self.base = _Layer()
        self.profiles: dict[str, _Layer] = {}

    def line(self, path: _Path) -> int | None:
        """The line of ``path``, else of the nearest table holding it."""
        if self._lines is None:
            self._lines = toml_key_lines(self._text)
        for end in range(len(path), 0, -1):
            if path[:end] in self._lines:
                return self._lines[path[:end]]
        return None

    def fail(self, path: _Path, message: str) -> UsageError:
        line = self.line(path)
        return UsageError(f"{shown(self.path)}{f':{line}' if line else ''}: {message}")

    def load(self, doc: dict[str, Any]) -> None:
        doc = dict(doc)
        profiles = doc.pop("profiles", {})
        self.table(doc, (), self.tree, None, self.base)
        if not isinstance(profiles, dict):
            raise self.fail(("profiles",), "profiles is a table of tables: write [profiles.NAME]")
        for name, table in profiles.items():
            here: _Path = ("profiles", name)
            if not isinstance(table, dict):
                raise self.fail(
                    here, f"profile {name}: write it as a table [profiles.{_key(name)}]"
                )
            if "profiles" in table:
                raise self.fail((*here, "profiles"), "profiles cannot be nested in a profile")
            self.profiles[name] = _Layer()
            self.table(table, here, self.tree, name, self.profiles[name])

    def table(
        self, table: dict[str, Any], where: _Path, node: _Node, profile: str | None, into: _Layer
    ) -> None:
        """The keys of one table: options first, then the tables of subcommands, so the
        more specific table wins within a file."""
        subtables: list[tuple[str, dict[str, Any], _Node]] = []
        for key, value in table.items():
            here = (*where, key)
            if node.path == () and key in SECTIONS and isinstance(value, dict):
                value = self.section(key, value, here, profile, into)
                if not value:
                    continue
            if isinstance(value, dict):
                child = node.children.get(key)
                if child is None and self.lenient:
                    continue
                if child is None:
                    raise self.fail(here, self.unknown_table(key, node, where))
                subtables.append((key, value, child))
                continue
            targets = [n for n in node.walk() if key in n.options]
            if not targets and self.lenient:
                continue
            if not targets and key in node.children:
                table_name = ".".join(_key(str(p)) for p in here)
                raise self.fail(
                    here,
                    f"{_key(key)} = {_toml(value)}: [{table_name}] is a table of the options "
                    f"of {node.children[key].shown}",
                )
            if not targets:
                raise self.fail(here, self.unknown_key(key, node, where))
            for target in targets:
                param = target.options[key]
                checked = self.value(key, value, param, target, here)
                origin = Origin(self.path, self.line(here), profile)
                into.settings[(target.path, param.name)] = (checked, origin)
        for key, value, child in subtables:
            self.table(value, (*where, key), child, profile, into)

    def section(
        self, name: str, table: dict[str, Any], where: _Path, profile: str | None, into: _Layer
    ) -> dict[str, Any]:
        """The :data:`SECTIONS` keys of table ``name``; returns the other keys (for the
        command of that name, if there is one)."""
        rest: dict[str, Any] = {}
        known = SECTIONS[name]
        for key, value in table.items():
            here = (*where, key)
            spec = known.get(key)
            if spec is None and name in self.tree.children:
                rest[key] = value
            elif spec is None and self.lenient:
                continue
            elif spec is None:
                suggestion = _suggest(key.replace("_", "-"), list(known), repr)
                raise self.fail(
                    here,
                    f"unknown key {key!r} in [{name}]"
                    + (suggestion or f"; the keys of [{name}] are {', '.join(known)}"),
                )
            else:
                try:
                    parsed = spec.parse(value)
                except ValueError as exc:
                    raise self.fail(here, f"{_key(key)} = {_toml(value)}: {exc}") from None
                origin = Origin(self.path, self.line(here), profile)
                into.sections[(name, key)] = (value, parsed, origin)
        return rest

    def unknown_table(self, key: str, node: _Node, where: _Path) -> str:
        title = ".".join(_key(str(p)) for p in (*where, key))
        if key in self.every_option:
            return f"{_key(key)} = {{...}}: --{key} takes a value, not a table"
        names = list(node.children) + (list(SECTIONS) if node.path == () else [])
        prefix = ".".join(_key(str(p)) for p in where)
        suggestion = _suggest(key, names, lambda n: f"[{prefix}.{n}]" if prefix else f"[{n}]")
        return f"unknown table [{title}]" + (suggestion or f": {node.shown} has no command {key!r}")

    def unknown_key(self, key: str, node: _Node, where: _Path) -> str:
        title = ".".join(_key(str(p)) for p in where)
        unknown = f"unknown key {key!r}" + (f" in [{title}]" if title else "")
        here = [name for n in node.walk() for name in n.options]
        if key == PROFILE_OPTION:
            return (
                f"{unknown}: a config file does not choose the profile; "
                f"use --profile NAME or {PROFILE_ENV}=NAME"
            )
        if key.replace("_", "-") in here:
            return f"{unknown}; write it as the option is spelled: {key.replace('_', '-')!r}"
        for n in node.walk():
            for name, param in n.options.items():
                if f"-{key}" in param.opts or f"--{key}" in param.secondary_opts:
                    return f"{unknown}; keys are long option names: {name!r}"
        if key in self.every_option:
            return f"{unknown}: no command of {node.shown} has --{key}"
        section = list(SECTIONS.get(node.path[0], {})) if len(node.path) == 1 else []
        suggestion = _suggest(key, [*here, *node.children, *section], repr)
        if suggestion:
            return unknown + suggestion
        if section:  # [history]: its own keys, and the options of the history commands
            return (
                f"{unknown}; the keys of [{node.path[0]}] are {', '.join(section)}, and the "
                f"long options of {node.shown} --help"
            )
        return f"{unknown}; keys are the long options of {node.shown} --help"

    def value(self, key: str, value: Any, param: Any, node: _Node, where: _Path) -> Any:
        """The value checked against the parameter's type, as the default map gets it."""
        descriptor = getattr(param, "type_descriptor", None)
        annotation = getattr(descriptor, "annotation", None)
        choices = getattr(descriptor, "choices", None)
        checked: Any
        words = _NUMBER_OR_WORD.get(key)
        if words is not None:
            number = isinstance(value, int) and not isinstance(value, bool)
            text = str(value) if number or isinstance(value, str) else ""
            if text not in words and not (text.isdigit() and int(text) >= 1):
                expected = f"expected a whole number from 1, or {' or '.join(map(repr, words))}"
                raise self.fail(where, f"{_key(key)} = {_toml(value)}: {expected}")
            return text
        if param.multiple:
            items = value if isinstance(value, list) else [value]
            element = get_args(annotation)[0] if get_origin(annotation) is list else annotation
            problem = next((p for i in items if (p := _kind(i, element, choices))), None)
            checked = [_expand(key, i, element) for i in items]
        else:
            problem = "expected one value, not an array" if isinstance(value, list) else None
            problem = problem or _kind(value, annotation, choices)
            checked = _expand(key, value, annotation)
        # typer's own coercion for what the TOML type does not settle: choices, ranges,
        # other types. Skipped for the rest: building its validators costs ~3 ms a
        # parameter, and a top-level key reaches a parameter of every command.
        plain = annotation in (bool, int, float, str, Path) or (
            get_origin(annotation) is list and get_args(annotation)[0] in (str, Path)
        )
        settled = plain and not choices and not getattr(descriptor, "is_ranged", True)
        if problem is None and descriptor is not None and not settled:
            context = node.command.context_class(node.command, info_name=node.shown)
            try:
                param.get_runtime_param().coerce(checked, param=param, ctx=context)
            except Exception as exc:  # typer's BadParameter (pydantic's message inside)
                problem = str(getattr(exc, "message", exc)).removeprefix("Value error, ")
        if problem is not None:
            raise self.fail(where, f"{_key(key)} = {_toml(value)}: {problem}")
        return checked


def _kind(value: Any, annotation: Any, choices: Sequence[Any] | None) -> str | None:
    """What is wrong with the TOML type of ``value`` for a parameter of ``annotation``."""
    if choices:
        names = [str(c.value if isinstance(c, Enum) else c) for c in choices]
        if isinstance(value, str) and value in names:
            return None
        close = _suggest(str(value), names, lambda n: json.dumps(n))
        return f"expected one of {', '.join(names)}{close}"
    if annotation is bool:
        return None if isinstance(value, bool) else "expected true or false"
    if annotation is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return None if ok else "expected a whole number"
    if annotation is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else "expected a number"
    if isinstance(annotation, type) and issubclass(annotation, str | PurePath):
        return None if isinstance(value, str) else "expected a string"
    return None


def _expand(key: str, value: Any, annotation: Any) -> Any:
    """``~`` in a path, as a shell expands it on the command line."""
    is_path = isinstance(annotation, type) and issubclass(annotation, PurePath)
    if isinstance(value, str) and value.startswith("~") and (is_path or key in _PATH_LIKE):
        return os.path.expanduser(value)
    return value


def _missing_profile(
    profile: str, source: str | None, files: list[ConfigFile], known: Sequence[str]
) -> UsageError:
    chosen = f"{PROFILE_ENV}={profile}" if source == PROFILE_ENV else f"--profile {profile}"
    looked = " or ".join(shown(f.path) for f in files)
    if not known:
        return UsageError(f"{chosen}: no profile is defined (looked in {looked})")
    suggestion = _suggest(profile, known, repr)
    return UsageError(
        f"{chosen}: no such profile in {looked}"
        + (suggestion or f"; the profiles are {', '.join(sorted(set(known)))}")
    )


def load_config(
    command: Any = None,
    *,
    profile: str | None = None,
    profile_source: str | None = None,
    user_path: Path | None = None,
    system_path: Path | None = None,
    env: Mapping[str, str] | None = None,
    lenient: bool = False,
) -> Config:
    """Read and check both config files and build click's default map.

    ``command`` is the root click command (default: the remoteops command line's);
    the paths default to :func:`system_config_path` and :func:`user_config_path`
    (a file named there, or by ``REMOTEOPS_[SYSTEM_]CONFIG``, must exist; the
    default paths may be absent). ``profile`` must be defined in one of the files;
    ``profile_source`` (``--profile`` or ``REMOTEOPS_PROFILE``) names what chose it
    in the error if it is not. ``lenient``: keys and tables of options and commands
    ``command`` does not have are passed over (a shell completing a line builds only
    the command on it); the rest is checked as always. Raises
    :class:`~remoteops.errors.UsageError`.
    """
    env = os.environ if env is None else env
    tree = _tree(_root_command() if command is None else command)
    wanted = [
        ("system", system_path, system_config_path(env), SYSTEM_CONFIG_ENV),
        ("user", user_path, user_config_path(env), CONFIG_ENV),
    ]
    files: list[ConfigFile] = []
    loaded: list[_File] = []
    for scope, given, default, variable in wanted:
        file = given or default
        named_by = (
            shown(file) if given else f"{variable}={shown(file)}" if env.get(variable) else None
        )
        text = _read(file, named_by=named_by)
        files.append(ConfigFile(file, scope, text is not None))
        if text is not None:
            parsed = _File(file, text, tree, lenient=lenient)
            parsed.load(_parse(text, file))
            loaded.append(parsed)
    layers = [f.base for f in loaded]
    if profile is not None:
        known = [name for f in loaded for name in f.profiles]
        if profile not in known:
            raise _missing_profile(profile, profile_source, files, known)
        layers += [f.profiles[profile] for f in loaded if profile in f.profiles]
    config = Config(files, profile, profile_source if profile else None)
    merged: _Settings = {}
    for layer in layers:
        merged.update(layer.settings)
        config.sections.update(layer.sections)
    for (path, name), (value, origin) in merged.items():
        node = _find(tree, path)
        long = next(k for k, p in node.options.items() if p.name == name)
        if _library_env(long, path, env) is not None:
            continue  # the variable beats the files; the library reads it
        target = config.default_map
        for part in path:
            target = target.setdefault(part, {})
        target[name] = value
        config.origins[(path, name)] = origin
    return config


def _find(tree: _Node, path: Sequence[str]) -> _Node:
    node = tree
    for part in path:
        node = node.children[part]
    return node


def _library_env(long: str, path: Sequence[str], env: Mapping[str, str]) -> str | None:
    """The variable of :data:`LIBRARY_ENV` set for option ``long`` of the command at
    ``path``, if any."""
    found = LIBRARY_ENV.get(long)
    if found is None or tuple(path[: len(found[1])]) != found[1] or not env.get(found[0]):
        return None
    return found[0]


# --------------------------------------------------------------------------- the command line


def profile_callback(ctx: Any, param: Any, value: str | None) -> str | None:
    """The callback of the root option ``--profile`` (declared ``is_eager=True``,
    ``envvar=PROFILE_ENV``): reads the config files and gives the root context
    their default map before click resolves any other option; the config is kept
    in ``ctx.meta`` for :func:`config_from_context`. While a shell completes a line
    (``ctx.resilient_parsing``) the files are read leniently, and click drops any
    error: a completion never prints one."""
    source = None
    if value is not None:
        how = ctx.get_parameter_source(param.name)
        source = PROFILE_ENV if getattr(how, "name", "") == "ENVIRONMENT" else "--profile"
    config = load_config(
        ctx.command if ctx.resilient_parsing else _whole(ctx.command),
        profile=value or None,
        profile_source=source,
        lenient=ctx.resilient_parsing,  # a shell completing: only the command on the line
    )
    ctx.default_map = config.default_map
    ctx.meta[_META_KEY] = config
    return value


def config_from_context(ctx: Any) -> Config:
    """The config :func:`profile_callback` read for this command line (read now, with
    no profile, if no callback did)."""
    config = ctx.meta.get(_META_KEY)
    if config is None:
        config = load_config(_whole(ctx.find_root().command))
        ctx.meta[_META_KEY] = config
    return config  # type: ignore[no-any-return]


def _source(ctx: Any, param: Any, long: str, node: _Node, config: Config) -> tuple[Source, Any]:
    """Where the value of ``param`` in ``ctx`` came from, and the value to show."""
    value = _plain(ctx.params.get(param.name))
    how = getattr(ctx.get_parameter_source(param.name), "name", "DEFAULT")
    if how == "COMMANDLINE":
        return Source("command line"), value
    if how == "ENVIRONMENT":
        names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
        return Source(
            "environment", envvar=next((n for n in names if os.environ.get(n)), None)
        ), value
    if how == "DEFAULT_MAP":
        origin = config.origin(node.path, param.name)
        if origin is not None:
            return Source("profile" if origin.profile else "file", origin=origin), value
    if how == "PROMPT":
        return Source("prompt"), value
    variable = _library_env(long, node.path, os.environ)
    if variable is not None:
        return Source("environment", envvar=variable), os.environ[variable]
    return Source("default"), value


def source_of(ctx: Any, name: str) -> Source:
    """Where parameter ``name`` of the command of ``ctx`` got its value (for a command
    that logs or shows it)."""
    config = config_from_context(ctx)
    path: list[str] = []
    root = ctx
    while root.parent is not None:
        path.insert(0, root.info_name)
        root = root.parent
    node = _find(_tree(root.command), path)
    param = next(p for p in ctx.command.params if p.name == name)
    return _source(ctx, param, _long_name(param) or name, node, config)[0]


def _settings_of(
    ctx: Any, node: _Node, config: Config, *, changed_only: bool
) -> list[tuple[str, Setting]]:
    """Each option of ``node`` as (long name, setting); only those not at their default
    if ``changed_only``."""
    found = []
    for long, param in node.options.items():
        source, value = _source(ctx, param, long, node, config)
        if not (changed_only and source.kind == "default"):
            found.append((long, Setting(".".join((*node.path, long)), value, source)))
    return found


def _folded(tree: _Node, found: list[tuple[tuple[str, ...], str, Setting]]) -> list[Setting]:
    """One line ``forks`` for ``run.forks``, ``ping.forks``, ... (``lab.dir`` for
    ``lab.up.dir``, ``lab.down.dir``, ...) when every command under the group that has
    the option has it with the same value from the same place."""
    by_name: dict[str, list[tuple[tuple[str, ...], Setting]]] = {}
    for path, long, setting in found:
        by_name.setdefault(long, []).append((path, setting))
    result: list[Setting] = []
    for long, settings in by_name.items():
        paths = [path for path, _ in settings]
        prefix = paths[0]
        while any(path[: len(prefix)] != prefix for path in paths):
            prefix = prefix[:-1]
        group = _find(tree, prefix)
        having = [n for n in group.walk() if long in n.options]
        same = {(json.dumps(s.value), str(s.source)) for _, s in settings}
        if len(settings) == len(having) > 1 and len(same) == 1 and long not in group.options:
            first = settings[0][1]
            result.append(Setting(".".join((*prefix, long)), first.value, first.source))
        else:
            result += [s for _, s in settings]
    return result


def _context(parent: Any, node: _Node, name: str, args: Sequence[str]) -> Any:
    return node.command.make_context(name, list(args), parent=parent, resilient_parsing=True)


def effective_settings(ctx: Any, words: Sequence[str] = ()) -> list[Setting]:
    """Every effective setting and where it came from, for ``remoteops config show``.

    ``ctx`` is the context of the command asking (``config show``), below the
    root context that parsed the global options. ``words`` name a command and, after
    it, arguments as that command would get them (``["run", "-f", "5"]``, ``["lab"]``):
    every option of that command (of each command of a group) is listed. Without
    ``words``: every global option, every option a config file or the environment
    sets for some command, and the :data:`SECTIONS` keys.
    """
    config = config_from_context(ctx)
    root = ctx.find_root()
    tree = _tree(_whole(root.command))
    found = [s for _, s in _settings_of(root, tree, config, changed_only=False)]
    node, parent, rest = tree, root, list(words)
    while rest and node.children:
        name = rest.pop(0)
        child = node.children.get(name)
        if child is None:
            suggestion = _suggest(name, list(node.children), repr)
            raise UsageError(
                f"config show: {node.shown} has no command {name!r}"
                + (suggestion or f"; its commands are {', '.join(node.children)}")
            )
        parent = _context(parent, child, name, rest if not child.children else [])
        node = child
    if words:
        for each in node.walk():
            here = parent if each is node else _context_of(root, tree, each.path)
            found += [s for _, s in _settings_of(here, each, config, changed_only=False)]
        return found
    changed = []
    for each in tree.walk():
        if each.path:
            here = _context_of(root, tree, each.path)
            changed += [
                (each.path, long, setting)
                for long, setting in _settings_of(here, each, config, changed_only=True)
            ]
    found += _folded(tree, changed)
    for table, keys in SECTIONS.items():
        for key, spec in keys.items():
            raw = config.sections.get((table, key), (spec.default,))[0]
            found.append(Setting(f"{table}.{key}", raw, config.section_source(table, key)))
    return found


def _context_of(root: Any, tree: _Node, path: Sequence[str]) -> Any:
    """A context of the command at ``path``, given no arguments, below ``root``."""
    here = root
    for depth in range(1, len(path) + 1):
        here = _context(here, _find(tree, path[:depth]), path[depth - 1], [])
    return here


def render_settings(config: Config, settings: Sequence[Setting]) -> str:
    """``config show``'s text: the profile and files, then one line per setting,
    ``KEY  VALUE  SOURCE`` (values as a config file would write them)."""
    chosen = config.profile or "none"
    if config.profile and config.profile_source:
        chosen += f" (from {config.profile_source})"
    files = ", ".join(shown(f.path) + ("" if f.found else " (absent)") for f in config.files)
    lines = [f"# profile: {chosen}", f"# files: {files}"]
    values = ["(none)" if s.value is None else _toml(s.value) for s in settings]
    width = max((len(s.key) for s in settings), default=0)
    value_width = min(max((len(v) for v in values), default=0), 40)
    for setting, value in zip(settings, values, strict=True):
        lines.append(f"{setting.key:<{width}}  {value:<{value_width}}  {setting.source}")
    return "\n".join(lines) + "\n"


def settings_json(config: Config, settings: Sequence[Setting]) -> dict[str, Any]:
    """``config show --json``: ``{"profile", "files": [{"path", "scope", "found"}],
    "settings": [Setting.to_json(), ...]}``."""
    return {
        "profile": config.profile,
        "profile_source": config.profile_source,
        "files": [{**dataclasses.asdict(f), "path": shown(f.path)} for f in config.files],
        "settings": [s.to_json() for s in settings],
    }
