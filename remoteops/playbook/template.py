"""Templates of playbooks: Jinja2's immutable sandbox, strict about undefined names.

Three kinds of template:

* ``shell`` (a ``run`` command, ``script`` arguments): every ``{{ }}`` value is
  shell-quoted with ``shlex.quote``, so a host variable ``x; rm -rf /`` arrives
  as one literal word. ``{{ x | raw }}`` inserts a value unquoted, on purpose.
  A ``{{ }}`` inside quotes or after a heredoc (``<<``), where quoting cannot
  protect it, is refused when the playbook is read.
* ``text`` (paths, messages, environment values): values inserted as they are.
* ``expr`` (``when``, ``assert``'s ``that``, ``changed_when``, ``failed_when``):
  one Jinja2 expression, written without ``{{ }}``.

Values are never templated twice: a variable holding ``{{ ... }}`` (from the
inventory, a registered output or ``--extra-vars``) stays literal text.
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from jinja2 import StrictUndefined, TemplateError, UndefinedError, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = [
    "Raw",
    "Template",
    "TemplateKind",
    "compile_template",
    "plain",
]

TemplateKind = Literal["shell", "text", "expr"]

# Filters and tests whose argument may be undefined on purpose.
_GUARD_FILTERS = frozenset({"default", "d"})
_GUARD_TESTS = frozenset({"defined", "undefined"})


class Raw(str):
    """A value the playbook's author marked (``| raw``) to go into a command unquoted."""

    __slots__ = ()


def plain(value: Any) -> str:
    """The text of a value: ``None`` is empty, booleans are ``true``/``false``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _shell_finalize(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    return shlex.quote(plain(value))


def _text_finalize(value: Any) -> str:
    return plain(value)


def _raw(value: Any) -> Raw:
    return Raw(plain(value))


def _quote(value: Any) -> Raw:
    # Quoted once here; the shell finalizer must not quote it again.
    return Raw(shlex.quote(plain(value)))


def _majority(values: Iterable[Any]) -> Any:
    """The most common value (the first seen among equals); None for no values."""
    items = [plain(v) if not isinstance(v, int | float) else v for v in values]
    if not items:
        return None
    counts = Counter(items)
    best = max(counts.values())
    return next(v for v in items if counts[v] == best)


def _extract(key: Any, container: Any, morekeys: Any = None) -> Any:
    """Ansible's ``extract``: ``container[key]``, then ``[k]`` for each of ``morekeys``."""
    path = [key, *(morekeys if isinstance(morekeys, list | tuple) else [morekeys])]
    if morekeys is None:
        path.pop()
    value = container
    for depth, step in enumerate(path):
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            # Ansible's extract leaves an undefined value; here, as for any name,
            # that is an error naming what is missing (never an internal error).
            where = "".join(f"[{k!r}]" for k in path[:depth])
            raise UndefinedError(f"extract: {where or 'the container'} has no {step!r}") from None
    return value


def _environment(finalize: Callable[[Any], str]) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined,
        finalize=finalize,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters.update(raw=_raw, quote=_quote, majority=_majority, extract=_extract)
    return env


_ENVS: dict[str, ImmutableSandboxedEnvironment] = {
    "shell": _environment(_shell_finalize),
    "text": _environment(_text_finalize),
    "expr": _environment(_text_finalize),
}


class TemplateSyntaxProblem(ValueError):
    """A template that cannot be used; the message says why and what to write."""


@dataclass(frozen=True, slots=True)
class Template:
    """One compiled template and the names it reads.

    ``names``: variables read without a ``default``/``is defined`` guard;
    ``fields``: ``(variable, attribute)`` pairs read as ``var.attr`` or ``var['attr']``;
    ``tested``: names under ``is defined``; ``line``: where the template is in its file.
    """

    source: str
    kind: TemplateKind
    names: frozenset[str]
    fields: frozenset[tuple[str, str]]
    tested: frozenset[str]
    line: int
    _compiled: Any

    @property
    def is_static(self) -> bool:
        """True when the template reads no variable and has no tags."""
        return self._compiled is None

    def render(self, context: Mapping[str, Any]) -> str:
        """The text for ``context``; raises ``TemplateError`` (e.g. an undefined name)."""
        if self._compiled is None:
            return self.source
        return str(self._compiled.render(context))

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        """The value of an ``expr`` template for ``context``; raises ``TemplateError``."""
        return self._compiled(context)


def compile_template(source: str, kind: TemplateKind, *, line: int = 0) -> Template:
    """Compile ``source`` (found at ``line``); raises ``TemplateSyntaxProblem`` with a reason."""
    env = _ENVS[kind]
    if kind == "expr":
        if "{{" in source or "{%" in source:
            raise TemplateSyntaxProblem(
                f"{source!r} is an expression already; write it without {{{{ }}}}"
            )
        wrapped = "{{ (" + source + ") }}"
    else:
        wrapped = source
    try:
        tree = env.parse(wrapped)
    except TemplateError as exc:
        raise TemplateSyntaxProblem(f"template {source!r}: {exc}") from None
    names, fields, tested = _names(tree)
    if kind == "shell":
        _check_shell_context(env, source)
    try:
        if kind == "expr":
            compiled: Any = env.compile_expression(source, undefined_to_none=False)
        elif "{{" in source or "{%" in source or "{#" in source:
            compiled = env.from_string(source)
        else:
            compiled = None
    except TemplateError as exc:
        raise TemplateSyntaxProblem(f"template {source!r}: {exc}") from None
    return Template(source, kind, names, fields, tested, line, compiled)


def _root_name(node: nodes.Node) -> str | None:
    while isinstance(node, nodes.Getattr | nodes.Getitem):
        node = node.node
    return node.name if isinstance(node, nodes.Name) else None


def _names(
    tree: nodes.Template,
) -> tuple[frozenset[str], frozenset[tuple[str, str]], frozenset[str]]:
    undeclared = meta.find_undeclared_variables(tree)
    guarded: set[int] = set()
    tested: set[str] = set()  # names under `is defined` anywhere: their uses are guarded
    for guard in tree.find_all((nodes.Filter, nodes.Test)):
        wanted = _GUARD_FILTERS if isinstance(guard, nodes.Filter) else _GUARD_TESTS
        if guard.name in wanted and guard.node is not None:
            inner: nodes.Node = guard.node
            while isinstance(inner, nodes.Getattr | nodes.Getitem):
                guarded.add(id(inner))
                inner = inner.node
            guarded.add(id(inner))
            if isinstance(guard, nodes.Test) and isinstance(inner, nodes.Name):
                tested.add(inner.name)
    used = {
        n.name
        for n in tree.find_all(nodes.Name)
        if n.ctx == "load" and id(n) not in guarded and n.name in undeclared
    } - tested
    fields: set[tuple[str, str]] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        owner = getattr(node, "node", None)
        if id(node) in guarded or not isinstance(owner, nodes.Name):
            continue
        if isinstance(node, nodes.Getattr):
            fields.add((owner.name, node.attr))
        elif (
            isinstance(node, nodes.Getitem)
            and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str)
        ):
            fields.add((owner.name, node.arg.value))
    found = frozenset(f for f in fields if f[0] in undeclared)
    return frozenset(used), found, frozenset(tested)


def _check_shell_context(env: ImmutableSandboxedEnvironment, source: str) -> None:
    """Refuse ``{{ }}`` where shell quoting cannot protect the value.

    Inside '...' or "..." a quoted value would close the author's quotes; in a
    heredoc the shell expands ``$(...)`` whatever the quotes. ``{{ x | raw }}``
    is the author's explicit choice and is let through.
    """
    state = ""  # "", "'" or '"'
    heredoc = False
    tokens = list(env.lex(source))
    index = 0
    while index < len(tokens):
        _, kind, value = tokens[index]
        if kind == "data":
            state, heredoc = _scan_shell(value, state, heredoc)
        elif kind == "variable_begin":
            end = index
            while end < len(tokens) and tokens[end][1] != "variable_end":
                end += 1
            inner = [t for t in tokens[index + 1 : end] if t[1] != "whitespace"]
            is_raw = len(inner) >= 2 and inner[-2][2] == "|" and inner[-1][2] == "raw"
            if not is_raw:
                expression = "".join(t[2] for t in tokens[index : end + 1])
                if state:
                    where = "single" if state == "'" else "double"
                    raise TemplateSyntaxProblem(
                        f"{expression} is inside {where} quotes in the command; remove the "
                        "quotes around it: remoteops shell-quotes every value itself "
                        "(write {{ x | raw }} to insert a value unquoted)"
                    )
                if heredoc:
                    raise TemplateSyntaxProblem(
                        f"{expression} is inside a heredoc, where the shell expands $(...) "
                        "whatever the quoting; send files with a put step instead"
                    )
            index = end
        index += 1


def _scan_shell(text: str, state: str, heredoc: bool) -> tuple[str, bool]:
    """Follow the shell's quoting through ``text`` (a rough lexer: quotes, escapes, #)."""
    i = 0
    at_word_start = True
    while i < len(text):
        ch = text[i]
        if state == "'":
            if ch == "'":
                state = ""
        elif state == '"':
            if ch == "\\":
                i += 1
            elif ch == '"':
                state = ""
        elif ch == "\\":
            i += 1
        elif ch in "'\"":
            state = ch
        elif ch == "#" and at_word_start:
            newline = text.find("\n", i)
            if newline < 0:
                return state, heredoc
            i = newline
        elif ch == "<" and text.startswith("<<<", i):
            i += 2  # a here-string: one word, quoted as usual
        elif ch == "<" and text.startswith("<<", i):
            heredoc = True
            i += 1
        at_word_start = ch in " \t\n;|&()"
        i += 1
    return state, heredoc
