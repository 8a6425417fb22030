"""Checks that need the inventory: every name a template reads is defined for every host.

Run after ``load_playbook`` and before any host is contacted. A name is
defined if it is a built-in, an ``--extra-vars`` name, a play variable, a result
registered by an earlier step, or an inventory variable of every host the play
targets. ``x | default(...)`` and ``x is defined`` may read undefined names.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from remoteops.errors import PlaybookError
from remoteops.playbook.model import BUILTINS, RESULT_FIELDS, Play, Playbook, Step
from remoteops.playbook.template import Template

__all__ = ["BUILTINS", "check_playbook", "resolve_start_at"]

# Jinja2's own globals (range, dict, lipsum, cycler, joiner, namespace) are defined too.
_JINJA_GLOBALS: Final = frozenset({"range", "dict", "lipsum", "cycler", "joiner", "namespace"})


def resolve_start_at(playbook: Playbook, value: str) -> int:
    """The number of the step ``--start-at`` names (a step number or an exact step name)."""
    steps = playbook.steps
    if value.isdigit():
        number = int(value)
        if 1 <= number <= len(steps):
            return number
        raise PlaybookError(
            f"--start-at {value}: the playbook has steps 1 to {len(steps)}; see them with --check"
        )
    for step in steps:
        if step.name == value:
            return step.number
    close = difflib.get_close_matches(value, [s.name for s in steps], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else "; see the step names with --check"
    raise PlaybookError(f"--start-at {value!r}: no step has that name{hint}")


def check_playbook(
    playbook: Playbook,
    *,
    play_hosts: Mapping[int, Sequence[str]],
    host_vars: Callable[[str], Mapping[str, Any]],
    extra_vars: Mapping[str, Any],
    start_at: int | None = None,
) -> None:
    """Raise ``PlaybookError`` (``FILE:LINE: ...``) for the first name no host could read."""
    registered: dict[str, Step] = {}
    registered_on: dict[str, set[str]] = {}  # results are per host: which hosts have each
    not_run: dict[str, Step] = {}
    for play in playbook.plays:
        hosts = play_hosts.get(play.index, ())
        if not hosts:
            continue
        checker = _Checker(playbook, play, hosts, host_vars, extra_vars, registered, not_run)
        checker.registered_on = registered_on
        checker.run(start_at)


class _Checker:
    def __init__(
        self,
        playbook: Playbook,
        play: Play,
        hosts: Sequence[str],
        host_vars: Callable[[str], Mapping[str, Any]],
        extra_vars: Mapping[str, Any],
        registered: dict[str, Step],
        not_run: dict[str, Step],
    ) -> None:
        self.playbook = playbook
        self.play = play
        self.hosts = hosts
        self.host_vars = host_vars
        self.extra = extra_vars
        self.registered = registered
        self.not_run = not_run
        keys = [set(host_vars(h)) for h in hosts]
        self.common: set[str] = set.intersection(*keys) if keys else set()
        self.anywhere: set[str] = set.union(*keys) if keys else set()
        self.later = {s.register: s for s in play.steps if s.register}
        self.registered_on: dict[str, set[str]] = {}

    def run(self, start_at: int | None) -> None:
        play_vars: set[str] = set()
        for name, templates in self.play.var_templates.items():
            line = self.play.lines.get("vars", self.play.line)
            for template in templates:
                self.check(template, line, defined=play_vars, step=None)
            play_vars.add(name)
        play_vars = set(self.play.vars)
        for step in self.play.steps:
            own = {"result"} | ({step.register} if step.register else set())
            # `when: x is defined` guards the whole step.
            guarded = {name for t in step.when for name in t.tested}
            for key, template in step.templates():
                extra = own if key in ("changed_when", "failed_when") else set()
                line = template.line or step.line
                self.check(template, line, defined=play_vars | guarded | extra, step=step, key=key)
            if step.action == "analyze":
                self.check_source(step)
            if step.register:
                if start_at is not None and step.number < start_at:
                    self.not_run[step.register] = step
                else:
                    self.not_run.pop(step.register, None)
                    self.registered[step.register] = step
                    self.registered_on.setdefault(step.register, set()).update(self.hosts)

    def check(
        self,
        template: Template,
        line: int,
        *,
        defined: set[str],
        step: Step | None,
        key: str = "",
    ) -> None:
        for name in sorted(template.names):
            if name in BUILTINS or name in _JINJA_GLOBALS or name in self.extra:
                continue
            if name in defined or name in self.common:
                continue
            if name in self.not_run:
                skipped = self.not_run[name]
                raise self.error(
                    line,
                    f"{name!r} is registered by step {skipped.number} {skipped.name!r}, which "
                    "--start-at skips; start at that step or earlier",
                )
            if name in self.registered:
                self.check_hosts_have(name, line)
                continue
            if name in self.later and step is not None:
                after = self.later[name]
                raise self.error(
                    line,
                    f"{name!r} is registered by step {after.number} {after.name!r} (line "
                    f"{after.line}), which runs after this one; move this step after it",
                )
            if name in self.anywhere:
                missing = [h for h in self.hosts if name not in self.host_vars(h)]
                more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
                raise self.error(
                    line,
                    f"{name!r} is not defined for host {missing[0]}{more}; define it for every "
                    f"host of {self.play.hosts!r}, or write {{{{ {name} | default(...) }}}}",
                )
            known = (BUILTINS | set(self.extra) | defined | self.common | set(self.registered)) - {
                "result"
            }
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise self.error(
                line,
                f"{name!r} is not defined: no variable and no registered result has that name"
                f"{hint} (define it under vars:, in the inventory or with -e {name}=...)",
            )
        for name, attr in sorted(template.fields):
            source = self.registered.get(name) or self.later.get(name)
            if step is not None and name == "result" and key in ("changed_when", "failed_when"):
                source = step
            if source is None or name in self.extra or name in self.play.vars:
                continue
            fields = RESULT_FIELDS[source.action]
            if attr not in fields:
                raise self.error(
                    line,
                    f"{name}.{attr}: a {source.action} result has no {attr!r} (it has "
                    f"{', '.join(sorted(fields))})",
                )

    def check_source(self, step: Step) -> None:
        name = step.args["src"]
        line = step.lines.get("analyze", step.line)
        if name in self.not_run:
            raise self.error(
                line,
                f"analyze src {name!r}: --start-at skips the step that "
                "registers it; start at that step or earlier",
            )
        source = self.registered.get(name)
        if source is None:
            raise self.error(
                line,
                f"analyze src {name!r}: no earlier step registers it; add register: {name} "
                "to the run, script or get step whose output to analyse",
            )
        self.check_hosts_have(name, line)
        if source.action not in ("run", "script", "get"):
            raise self.error(
                line, f"analyze src {name!r}: a {source.action} result has no output to analyse"
            )

    def check_hosts_have(self, name: str, line: int) -> None:
        """A result registered by an earlier play exists only on that play's hosts."""
        have = self.registered_on.get(name, set())
        missing = [h for h in self.hosts if h not in have]
        if missing:
            source = self.registered[name]
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise self.error(
                line,
                f"{name!r} is registered by step {source.number} {source.name!r} (line "
                f"{source.line}) of a play that does not run on {missing[0]}{more}; register "
                f"it in this play, or guard the step with `when: {name} is defined`",
            )

    def error(self, line: int, message: str) -> PlaybookError:
        return self.playbook.error(line, message)
