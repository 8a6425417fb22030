"""Playbooks read from YAML into plays and steps, checked before any host is contacted.

A playbook is a list of plays; a play has ``hosts`` (a pattern), ``vars`` and
``steps``, and may roll out in ``serial`` batches. Every problem found here is a
``PlaybookError`` whose message starts with ``FILE:LINE:`` and says what to do.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from remoteops.errors import PlaybookError, UsageError
from remoteops.playbook.template import (
    Template,
    TemplateKind,
    TemplateSyntaxProblem,
    compile_template,
)

__all__ = [
    "ACTIONS",
    "BUILTINS",
    "RESULT_FIELDS",
    "Play",
    "Playbook",
    "Step",
    "load_playbook",
    "parse_playbook",
]

ACTIONS: Final = ("run", "script", "put", "get", "analyze", "ping", "fail", "assert")

_COMMON: Final = frozenset({"status", "failed", "changed", "skipped", "error", "duration_s"})
_COMMAND: Final = frozenset({"rc", "stdout", "stderr", "stdout_lines", "stderr_lines"})
_TRANSFER: Final = frozenset({"files", "unchanged", "failed_files", "bytes"})
RESULT_FIELDS: Final[Mapping[str, frozenset[str]]] = {
    "run": _COMMON | _COMMAND,
    "script": _COMMON | _COMMAND,
    "put": _COMMON | _TRANSFER,
    "get": _COMMON | _TRANSFER | {"dest"},
    "analyze": _COMMON | {"findings", "report", "count"},
    "ping": _COMMON | {"rtt_ms", "server_version"},
    "fail": _COMMON | {"msg"},
    "assert": _COMMON | {"msg"},
}
"""What a registered result holds, per action (``ver.stdout``, ``up.rc``, ...)."""

_PLAY_KEYS: Final = frozenset(
    {
        "name",
        "hosts",
        "vars",
        "steps",
        "serial",
        "max_fail_percentage",
        "any_errors_fatal",
        "become",
        "become_user",
        "timeout",
    }
)
_STEP_KEYS: Final = frozenset(
    {
        "name",
        "register",
        "when",
        "become",
        "become_user",
        "timeout",
        "pty",
        "env",
        "check_safe",
        "ignore_errors",
        "changed_when",
        "failed_when",
        *ACTIONS,
    }
)
_ACTION_KEYS: Final[Mapping[str, frozenset[str]]] = {
    "put": frozenset({"src", "dest", "mode", "preserve", "checksum", "verify"}),
    "get": frozenset({"src", "dest", "preserve", "checksum", "verify"}),
    "fail": frozenset({"msg"}),
    "assert": frozenset({"that", "msg"}),
    "analyze": frozenset({"analyzer", "src", "rules", "fail_on_findings"}),
}
# Keys that only make sense for steps that run a remote command.
_COMMAND_ONLY: Final = ("become", "become_user", "pty", "env")
_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PERCENT: Final = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*%\s*$")
BUILTINS: Final = frozenset(
    {
        "inventory_hostname",
        "inventory_hostname_short",
        "groups",
        "group_names",
        "hostvars",
        "play_hosts",
        "play_batch",
        "check_mode",
        "playbook_dir",
    }
)
"""Variables every template can read (Ansible's names for the same things)."""
_RESERVED: Final = BUILTINS | {"result"}


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a play: an action, its arguments (compiled templates) and its options."""

    number: int  # 1-based across the whole playbook (``--start-at`` and the output use it)
    index: int  # 1-based within its play
    line: int
    name: str
    action: str
    args: Mapping[str, Any]
    register: str | None = None
    when: tuple[Template, ...] = ()
    become: bool | None = None
    become_user: Template | None = None
    timeout: float | None = None
    pty: bool = False
    env: Mapping[str, Template] = field(default_factory=dict)
    check_safe: bool = False
    ignore_errors: bool = False
    changed_when: Template | None = None
    failed_when: Template | None = None
    lines: Mapping[str, int] = field(default_factory=dict)

    def templates(self) -> list[tuple[str, Template]]:
        """Every template of the step with the key it came from (for validation)."""
        found: list[tuple[str, Template]] = [("when", t) for t in self.when]
        for key, value in self.args.items():
            for item in value if isinstance(value, tuple) else (value,):
                if isinstance(item, Template):
                    found.append((self.action if key == "command" else key, item))
        if self.become_user is not None:
            found.append(("become_user", self.become_user))
        found += [("env", t) for t in self.env.values()]
        found += [(k, t) for k, t in (("changed_when", self.changed_when),) if t is not None]
        found += [(k, t) for k, t in (("failed_when", self.failed_when),) if t is not None]
        return found


@dataclass(frozen=True, slots=True)
class Play:
    """One play: which hosts, which variables, which steps, how to roll out."""

    index: int
    line: int
    name: str
    hosts: str
    steps: tuple[Step, ...]
    vars: Mapping[str, Any] = field(default_factory=dict)
    var_templates: Mapping[str, tuple[Template, ...]] = field(default_factory=dict)
    serial: tuple[int | float, ...] = ()  # ints: hosts; floats: fractions of the play's hosts
    max_fail_percentage: float | None = None
    any_errors_fatal: bool = False
    become: bool = False
    become_user: str | None = None
    timeout: float | None = None
    lines: Mapping[str, int] = field(default_factory=dict)

    def batches(self, hosts: Sequence[str]) -> list[list[str]]:
        """Split ``hosts`` into rolling batches (Ansible's ``serial``: the last size repeats)."""
        if not self.serial:
            return [list(hosts)] if hosts else []
        sizes = [
            max(1, int(s * len(hosts))) if isinstance(s, float) else max(1, s) for s in self.serial
        ]
        batches: list[list[str]] = []
        start = 0
        while start < len(hosts):
            size = sizes[min(len(batches), len(sizes) - 1)]
            batches.append(list(hosts[start : start + size]))
            start += size
        return batches


@dataclass(frozen=True, slots=True)
class Playbook:
    """A parsed playbook: its plays, and where it came from (for messages)."""

    path: Path
    shown: str
    plays: tuple[Play, ...]

    @property
    def steps(self) -> list[Step]:
        """Every step of every play, in order."""
        return [step for play in self.plays for step in play.steps]

    def error(self, line: int, message: str) -> PlaybookError:
        """A ``FILE:LINE: message`` error about this playbook."""
        return PlaybookError(f"{self.shown}:{line}: {message}")


def load_playbook(path: Path) -> Playbook:
    """Read and check a playbook file; raises ``PlaybookError`` (exit 2) naming FILE:LINE."""
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlaybookError(f"{shown}: {exc.strerror}; check the path") from None
    except UnicodeDecodeError:
        raise PlaybookError(f"{shown}:1: not UTF-8 text; save the playbook as UTF-8") from None
    return parse_playbook(text, path=path)


def parse_playbook(text: str, *, path: Path) -> Playbook:
    """Parse playbook YAML; raises ``PlaybookError`` for the first problem, naming its line."""
    from remoteops.yamlsafe import load_yaml

    shown = str(path)
    data = load_yaml(text, shown, error=PlaybookError)
    return _Parser(path, shown).playbook(data)


def _lines(mapping: Any) -> dict[Any, int]:
    return dict(getattr(mapping, "lines", {}) or {})


def _first_line(mapping: Any, default: int) -> int:
    lines = _lines(mapping)
    return min(lines.values()) if lines else default


def _suggest(key: str, known: frozenset[str] | Sequence[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


class _Parser:
    def __init__(self, path: Path, shown: str) -> None:
        self.path = path
        self.shown = shown
        self.number = 0
        self.names: dict[str, int] = {}

    def fail(self, line: int, message: str) -> PlaybookError:
        return PlaybookError(f"{self.shown}:{line}: {message}")

    def playbook(self, data: Any) -> Playbook:
        if data is None:
            raise self.fail(1, "the playbook is empty; write a list of plays")
        if not isinstance(data, list):
            raise self.fail(
                _first_line(data, 1),
                "a playbook is a list of plays: start each play with '- hosts: PATTERN'",
            )
        if not data:
            raise self.fail(1, "the playbook has no play; write '- hosts: PATTERN' and steps")
        previous = 1
        plays = []
        for index, play in enumerate(data, start=1):
            line = _first_line(play, previous)
            plays.append(self.play(index, play, line))
            previous = line
        return Playbook(self.path, self.shown, tuple(plays))

    def play(self, index: int, data: Any, line: int) -> Play:
        if not isinstance(data, Mapping):
            raise self.fail(line, f"play {index} must be a mapping with hosts: and steps:")
        lines = _lines(data)
        self.unknown_keys(data, _PLAY_KEYS, lines, "play", line)
        for key in ("hosts", "steps"):
            if key not in data:
                raise self.fail(line, f"play {index} has no {key}: key; add one")
        hosts = data["hosts"]
        if isinstance(hosts, list) and all(isinstance(h, str) for h in hosts):
            hosts = ",".join(hosts)
        if not isinstance(hosts, str) or not hosts.strip():
            raise self.fail(lines.get("hosts", line), "hosts: must be a host pattern, e.g. web:&eu")
        variables = data.get("vars") or {}
        if not isinstance(variables, Mapping):
            raise self.fail(lines.get("vars", line), "vars: must be a mapping of name: value")
        var_lines = _lines(variables)
        var_templates: dict[str, tuple[Template, ...]] = {}
        for name, value in variables.items():
            at = var_lines.get(name, lines.get("vars", line))
            self.check_var_name(name, at)
            var_templates[name] = tuple(
                self.template(s, "text", at) for s in _strings(value) if _has_template(s)
            )
        steps_data = data["steps"]
        if not isinstance(steps_data, list) or not steps_data:
            raise self.fail(lines.get("steps", line), "steps: must be a non-empty list of steps")
        name = self.text(data.get("name", f"play {index}"), "name", lines, line)
        become_user = data.get("become_user")
        if become_user is not None:
            become_user = self.text(become_user, "become_user", lines, line)
        steps = []
        previous = lines.get("steps", line)
        for step_index, step in enumerate(steps_data, start=1):
            step_line = _first_line(step, previous)
            steps.append(self.step(step_index, step, step_line))
            previous = step_line
        return Play(
            index=index,
            line=line,
            name=name,
            hosts=hosts.strip(),
            steps=tuple(steps),
            vars=dict(variables),
            var_templates=var_templates,
            serial=self.serial(data.get("serial"), lines.get("serial", line)),
            max_fail_percentage=self.percentage(data, lines, line),
            any_errors_fatal=self.flag(data, "any_errors_fatal", lines, line),
            become=self.flag(data, "become", lines, line),
            become_user=become_user,
            timeout=self.seconds(data, lines, line),
            lines=lines,
        )

    def step(self, index: int, data: Any, line: int) -> Step:
        if not isinstance(data, Mapping):
            raise self.fail(line, f"step {index} must be a mapping, e.g. '- run: uptime'")
        lines = _lines(data)
        self.unknown_keys(data, _STEP_KEYS, lines, "step", line)
        actions = [k for k in ACTIONS if k in data]
        if not actions:
            raise self.fail(line, f"step {index} has no action; give one of {', '.join(ACTIONS)}")
        if len(actions) > 1:
            raise self.fail(
                lines.get(actions[1], line),
                f"step {index} has two actions ({actions[0]}, {actions[1]}); split it in two",
            )
        action = actions[0]
        at = lines.get(action, line)
        self.number += 1
        name = self.text(data.get("name", ""), "name", lines, line) or _default_name(action, data)
        register = data.get("register")
        if register is not None:
            register = self.text(register, "register", lines, line)
            self.check_var_name(register, lines.get("register", line))
        if action in ("fail", "assert", "ping", "analyze"):
            for key in _COMMAND_ONLY:
                if key in data:
                    raise self.fail(
                        lines.get(key, line), f"{key}: does not apply to a {action} step; remove it"
                    )
        env: dict[str, Template] = {}
        env_data = data.get("env") or {}
        if not isinstance(env_data, Mapping):
            raise self.fail(lines.get("env", line), "env: must be a mapping of NAME: value")
        for key, value in env_data.items():
            if not isinstance(key, str) or not _NAME.match(key):
                raise self.fail(lines.get("env", line), f"env: {key!r} is not a variable name")
            env[key] = self.template(_scalar_text(value), "text", lines.get("env", line))
        become_user = data.get("become_user")
        return Step(
            number=self.number,
            index=index,
            line=line,
            name=name,
            action=action,
            args=self.action_args(action, data[action], at),
            register=register,
            when=self.conditions(data.get("when"), lines.get("when", line)),
            become=self.flag(data, "become", lines, line) if "become" in data else None,
            become_user=(
                self.template(self.text(become_user, "become_user", lines, line), "text", line)
                if become_user is not None
                else None
            ),
            timeout=self.seconds(data, lines, line),
            pty=self.flag(data, "pty", lines, line),
            env=env,
            check_safe=self.flag(data, "check_safe", lines, line),
            ignore_errors=self.flag(data, "ignore_errors", lines, line),
            changed_when=self.expression(data, "changed_when", lines, line),
            failed_when=self.expression(data, "failed_when", lines, line),
            lines=lines,
        )

    def action_args(self, action: str, value: Any, line: int) -> dict[str, Any]:
        if action == "run":
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                value = " ".join(value)
            if not isinstance(value, str) or not value.strip():
                raise self.fail(line, "run: must be a command line, e.g. 'run: uptime'")
            return {"command": self.template(value, "shell", line)}
        if action == "script":
            if not isinstance(value, str) or not value.strip():
                raise self.fail(line, "script: must be a local path and arguments")
            path, _, args = value.strip().partition(" ")
            if not _has_template(path):
                local = self.path.parent / path
                if not local.is_file():
                    raise self.fail(
                        line,
                        f"script {path}: no such local file (paths are "
                        f"relative to {self.path.parent or '.'})",
                    )
            return {
                "path": self.template(path, "text", line),
                "args": self.template(args.strip(), "shell", line),
            }
        if action == "ping":
            if value not in (None, True, {}):
                raise self.fail(line, "ping: takes no arguments; write 'ping:' or 'ping: true'")
            return {}
        if action == "fail" and isinstance(value, str):
            value = {"msg": value}
        if action == "assert" and isinstance(value, str | list):
            value = {"that": value}
        if action == "analyze" and isinstance(value, str):
            value = {"analyzer": value}
        if not isinstance(value, Mapping):
            raise self.fail(line, f"{action}: must be a mapping; see playbooks/ for examples")
        lines = _lines(value)
        self.unknown_keys(value, _ACTION_KEYS[action], lines, action, line)
        return getattr(self, f"args_{action}")(value, lines, line)  # type: ignore[no-any-return]

    def args_put(
        self, value: Mapping[str, Any], lines: dict[Any, int], line: int
    ) -> dict[str, Any]:
        args = self.transfer_args(value, lines, line, "put")
        mode = value.get("mode")
        if mode is not None:
            text = f"{mode:o}" if isinstance(mode, int) else str(mode)
            try:
                args["mode"] = int(text, 8)
            except ValueError:
                args["mode"] = -1
            if not 0 <= args["mode"] <= 0o7777:
                raise self.fail(
                    lines.get("mode", line), f"mode: {mode!r} is not octal, e.g. '0644'"
                )
        return args

    def args_get(
        self, value: Mapping[str, Any], lines: dict[Any, int], line: int
    ) -> dict[str, Any]:
        return self.transfer_args(value, lines, line, "get")

    def transfer_args(
        self, value: Mapping[str, Any], lines: dict[Any, int], line: int, action: str
    ) -> dict[str, Any]:
        for key in ("src", "dest"):
            if key not in value:
                raise self.fail(line, f"{action} needs {key}:; see playbooks/ for examples")
        src = value["src"]
        sources = [src] if isinstance(src, str) else src
        if (
            not isinstance(sources, list)
            or not sources
            or not all(isinstance(s, str) and s for s in sources)
        ):
            raise self.fail(lines.get("src", line), "src: must be a path or a list of paths")
        dest = value["dest"]
        if not isinstance(dest, str) or not dest:
            raise self.fail(lines.get("dest", line), "dest: must be a path")
        args: dict[str, Any] = {
            "src": tuple(self.template(s, "text", lines.get("src", line)) for s in sources),
            "dest": self.template(dest, "text", lines.get("dest", line)),
        }
        for key in ("preserve", "checksum", "verify"):
            args[key] = self.flag(value, key, lines, line)
        return args

    def args_fail(
        self, value: Mapping[str, Any], lines: dict[Any, int], line: int
    ) -> dict[str, Any]:
        msg = _scalar_text(value.get("msg", "failed as requested"))
        return {"msg": self.template(msg, "text", lines.get("msg", line))}

    def args_assert(
        self, value: Mapping[str, Any], lines: dict[Any, int], line: int
    ) -> dict[str, Any]:
        if "that" not in value:
            raise self.fail(line, "assert needs that: (one expression or a list)")
        that = self.conditions(value["that"], lines.get("that", line))
        if not that:
            raise self.fail(lines.get("that", line), "that: is empty; give an expression")
        msg = value.get("msg")
        return {
            "that": that,
            "msg": (
                self.template(_scalar_text(msg), "text", lines.get("msg", line))
                if msg is not None
                else None
            ),
        }

    def args_analyze(
        self, value: Mapping[str, Any], lines: dict[Any, int], line: int
    ) -> dict[str, Any]:
        analyzer = value.get("analyzer")
        rules = value.get("rules")
        if analyzer is None and rules is None:
            raise self.fail(line, "analyze needs analyzer: NAME[:ARGS] or rules: FILE.yml")
        if analyzer is not None and (not isinstance(analyzer, str) or not analyzer.strip()):
            raise self.fail(lines.get("analyzer", line), "analyzer: must be NAME[:ARGS]")
        if rules is not None and not isinstance(rules, str):
            raise self.fail(lines.get("rules", line), "rules: must be a local path")
        src = value.get("src")
        if not (isinstance(src, str) and _NAME.match(src)):
            raise self.fail(
                lines.get("src", line),
                "analyze needs src: the name a run, script or get step registered",
            )
        try:
            from remoteops.analysis import load_rules, parse_spec
        except ImportError:
            raise self.fail(line, "analyze: analysis is not available in this version") from None
        specs = []
        if analyzer is not None:
            where = f"{self.shown}:{lines.get('analyzer', line)}"
            try:
                specs.append(parse_spec(analyzer.strip(), where=where))
            except UsageError as exc:  # its message starts with `where`
                raise PlaybookError(str(exc)) from None
        if rules is not None:
            try:
                specs.extend(load_rules(self.path.parent / rules))
            except UsageError as exc:
                raise self.fail(lines.get("rules", line), f"analyze rules: {exc}") from None
        return {
            "specs": tuple(specs),
            "src": src,
            "fail_on_findings": self.flag(value, "fail_on_findings", lines, line)
            if "fail_on_findings" in value
            else True,
        }

    # ------------------------------------------------------------------ values

    def template(self, source: str, kind: TemplateKind, line: int) -> Template:
        try:
            return compile_template(source, kind, line=line)
        except TemplateSyntaxProblem as exc:
            raise self.fail(line, str(exc)) from None

    def conditions(self, value: Any, line: int) -> tuple[Template, ...]:
        if value is None:
            return ()
        items = value if isinstance(value, list) else [value]
        out = []
        for item in items:
            if isinstance(item, bool):
                item = "true" if item else "false"
            if not isinstance(item, str) or not item.strip():
                raise self.fail(line, f"{item!r} is not an expression, e.g. 'ver.rc == 0'")
            out.append(self.template(item, "expr", line))
        return tuple(out)

    def expression(
        self, data: Mapping[str, Any], key: str, lines: dict[Any, int], line: int
    ) -> Template | None:
        found = self.conditions(data.get(key), lines.get(key, line))
        if len(found) > 1:
            raise self.fail(lines.get(key, line), f"{key}: takes one expression")
        return found[0] if found else None

    def text(self, value: Any, key: str, lines: dict[Any, int], line: int) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self.fail(lines.get(key, line), f"{key}: must be text, not {_kind(value)}")
        return str(value)

    def flag(self, data: Mapping[str, Any], key: str, lines: dict[Any, int], line: int) -> bool:
        value = data.get(key, False)
        if not isinstance(value, bool):
            raise self.fail(lines.get(key, line), f"{key}: must be true or false, not {value!r}")
        return value

    def seconds(self, data: Mapping[str, Any], lines: dict[Any, int], line: int) -> float | None:
        value = data.get("timeout")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise self.fail(
                lines.get("timeout", line), f"timeout: must be seconds above 0, not {value!r}"
            )
        return float(value)

    def percentage(self, data: Mapping[str, Any], lines: dict[Any, int], line: int) -> float | None:
        value = data.get("max_fail_percentage")
        if value is None:
            return None
        if isinstance(value, str) and _PERCENT.match(value):
            value = float(_PERCENT.match(value).group(1))  # type: ignore[union-attr]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
            raise self.fail(
                lines.get("max_fail_percentage", line),
                f"max_fail_percentage: must be a number from 0 to 100, not {value!r}",
            )
        return float(value)

    def serial(self, value: Any, line: int) -> tuple[int | float, ...]:
        if value is None:
            return ()
        items = value if isinstance(value, list) else [value]
        if not items:
            raise self.fail(line, "serial: is empty; give a number, a percentage or a list")
        out: list[int | float] = []
        for item in items:
            match = _PERCENT.match(item) if isinstance(item, str) else None
            if match:
                percent = float(match.group(1))
                if not 0 < percent <= 100:
                    raise self.fail(line, f"serial: {item!r} must be above 0% and at most 100%")
                out.append(percent / 100)
            elif isinstance(item, int) and not isinstance(item, bool) and item > 0:
                out.append(item)
            elif isinstance(item, str) and item.isdigit() and int(item) > 0:
                out.append(int(item))
            else:
                raise self.fail(
                    line, f"serial: {item!r} is not a host count or a percentage like '25%'"
                )
        return tuple(out)

    def unknown_keys(
        self,
        data: Mapping[Any, Any],
        known: frozenset[str],
        lines: dict[Any, int],
        what: str,
        line: int,
    ) -> None:
        for key in data:
            if key not in known:
                shown = key if isinstance(key, str) else repr(key)
                raise self.fail(
                    lines.get(key, line),
                    f"unknown key {shown!r} in a {what}{_suggest(str(key), known)} "
                    f"(known: {', '.join(sorted(known))})",
                )

    def check_var_name(self, name: Any, line: int) -> None:
        if not isinstance(name, str) or not _NAME.match(name):
            raise self.fail(line, f"{name!r} is not a valid variable name (letters, digits, _)")
        if name in _RESERVED:
            raise self.fail(line, f"{name!r} is a built-in variable; choose another name")


def _default_name(action: str, data: Mapping[str, Any]) -> str:
    value = data[action]
    if isinstance(value, str):
        first = value.strip().splitlines()[0] if value.strip() else ""
        return f"{action} {first}"[:60]
    if isinstance(value, Mapping) and "src" in value:
        return f"{action} {value['src']}"[:60]
    return action


def _kind(value: Any) -> str:
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "true/false"
    return "empty" if value is None else type(value).__name__


def _scalar_text(value: Any) -> str:
    return "" if value is None else str(value)


def _has_template(text: str) -> bool:
    return "{{" in text or "{%" in text


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []
