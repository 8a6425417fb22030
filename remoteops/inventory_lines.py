"""The group and host names of a block-style YAML inventory, read line by line.

The first Tab after an inventory changed needs its names (:mod:`remoteops.namecache`).
Most YAML inventories are written in one plain style: ``all:``, ``children:``,
``hosts:`` and ``vars:`` nested by indentation, one key a line, a host's variables
on its line (``web01: {ansible_host: 10.0.0.1}``) or below it. :func:`scan_names`
reads such a file with one regular expression a line, without importing PyYAML or
parsing (~30 ms of a 10,000-host first Tab): the names, in ``load_inventory``'s
order, or None the moment anything is not certain. Then the parser's events are
read (:mod:`remoteops.inventory_names`), then the inventory is loaded.

Certain means: every source a ``.yml``/``.yaml`` file of printable ASCII (no tab,
no carriage return) whose every line is blank, a comment, or ``KEY:`` with an
optional value and comment, where

* a key is a name of letters, digits, ``_``, ``.`` and ``-`` that YAML reads as a
  string: it starts with a letter or ``_`` and is not a boolean or null word
  (``yes``, ``off``, ``null``), or it is digits with two dots or more
  (``10.0.0.1``). No quotes, ranges (``web[01:10]``), ports (``db:2222``);
* a value is a quoted string on one line (``"..."`` without backslashes), a plain
  word list that resolves to a string, a boolean or null (its first character a
  letter, ``_`` or ``/``), digits and dots (an int, a float or a string: each
  constructs), ``~``, or a flow mapping or sequence of those on one line, not
  nested. So no anchor, alias, tag, merge key, block scalar, block sequence, no
  multi-line scalar or collection;
* the only document marker is a ``---`` first line; keys nest by indentation
  alone, each mapping's keys once.

What the file means is then as plain as its lines. Groups and hosts are read as
``load_inventory`` reads them; whatever it would warn about or refuse that the
lines do not settle (a group or a section with a value on its line, a host whose
variables are not a mapping, ``ansible_group_priority``, ``plugin``, ``_meta``)
gives None, as do the refusals of :class:`Names` (cycles, ``all`` as a child,
``ungrouped`` with children, host names it rejects).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from remoteops.namecache import InventoryNames

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["Names", "Unsure", "read_sources", "scan_names", "yaml_text"]

_EXTENSIONS = (".yml", ".yaml")
#: Longer chains of child groups are left to load_inventory (it recurses on them).
_MAX_CHAIN = 100
#: Deeper nesting is left to the other readers.
_MAX_DEPTH = 50


class Unsure(Exception):
    """Something a names reader does not handle with certainty: load_inventory decides."""


class Names:
    """Groups (and their links, for the checks) and hosts in the order the inventory
    builder of remoteops.inventory adds them, with its refusals."""

    def __init__(self) -> None:
        self.children: dict[str, list[str]] = {}
        self.parents: dict[str, list[str]] = {}
        self.hosts: dict[str, None] = {}
        self.add_group("all")
        self.add_group("ungrouped")
        self.add_child("all", "ungrouped")

    def add_group(self, name: str) -> str:
        if name not in self.children:
            self.children[name] = []
            self.parents[name] = []
        return name

    def _ancestors(self, name: str) -> set[str]:
        seen: set[str] = set()
        todo = list(self.parents[name])
        while todo:
            parent = todo.pop()
            if parent not in seen:
                seen.add(parent)
                todo.extend(self.parents[parent])
        return seen

    def add_child(self, parent: str, child: str) -> None:
        """Link ``child`` under ``parent``. Whether the links form a cycle does not
        depend on their order: a reader may link a child before reading its subtree."""
        if parent == child:
            raise Unsure  # a group that lists itself
        if child in self.children[parent]:
            return
        if child in self._ancestors(parent):
            raise Unsure  # a cycle in children
        self.children[parent].append(child)
        if parent not in self.parents[child]:
            self.parents[child].append(parent)

    def _longest_chain(self) -> int:
        """Groups on the longest path down the children links (they form no cycle)."""
        length: dict[str, int] = {}
        for top in self.children:
            stack = [(top, False)]
            while stack:
                name, done = stack.pop()
                if name in length:
                    continue
                if done:
                    length[name] = 1 + max((length[c] for c in self.children[name]), default=0)
                else:
                    stack.append((name, True))
                    stack.extend((c, False) for c in self.children[name] if c not in length)
        return max(length.values(), default=0)

    def result(self, *, names_checked: bool = False) -> InventoryNames:
        """The names, once every source is read; Unsure where load_inventory would
        still refuse the inventory. ``names_checked``: the reader let no host name
        through that load_inventory could refuse (their check is then skipped)."""
        if self.parents["all"]:
            raise Unsure  # 'all' as a child: a cycle once every top group joins 'all'
        if self.children["ungrouped"]:
            raise Unsure  # load_inventory fails on the hosts of its children (ValueError)
        if self._longest_chain() > _MAX_CHAIN:
            raise Unsure
        for name in () if names_checked else self.hosts:
            # A superset of the names load_inventory refuses: those it decides.
            if (
                name in ("", ".", "..")
                or name.startswith("-")
                or "/" in name
                or not name.isprintable()
            ):
                raise Unsure
        return InventoryNames(groups=tuple(self.children), hosts=tuple(self.hosts))


def yaml_text(source: str) -> str | None:
    """The text of ``source`` if it is a YAML inventory file, read as load_inventory
    reads it; None for any other kind of source."""
    path = Path(source).expanduser()
    if path.suffix.lower() not in _EXTENSIONS or not path.is_file():
        return None  # is_file: never opens a FIFO
    text = path.read_text(encoding="utf-8")
    if text.startswith("#!") or text.lstrip().startswith("$ANSIBLE_VAULT;"):
        return None
    return text


# --- the lines -----------------------------------------------------------------------

#: A key YAML resolves to a string (see the module); bool and null words excluded.
_KEY = (
    r"(?!(?=[nNyYtTfFoO])(?i:yes|no|true|false|on|off|null):)[A-Za-z_][A-Za-z0-9_.-]{0,199}"
    r"|[0-9]{1,20}(?:\.[0-9]{1,20}){2,20}"
)
#: One line's quoted string: no escapes to read, no line breaks to fold.
_QUOTED = r"'[ -&(-~]*'|\"[ !#-\[\]-~]*\""
#: A plain scalar that constructs whatever it resolves to: letters first (a string, a
#: boolean, a null; never a number, a date, a merge key), or digits and dots (not so
#: many digits that int() refuses them: sys.get_int_max_str_digits()).
_PLAIN = r"[A-Za-z_/][A-Za-z0-9_./=+@-]*(?: [A-Za-z0-9_./=+@-]+)*|[0-9]{1,20}(?:\.[0-9]{1,20})*"
_SCALAR = f"{_QUOTED}|{_PLAIN}"
_FLOW_MAP = rf"\{{ *(?:(?:{_KEY}): +(?:{_SCALAR})(?: *, *(?:{_KEY}): +(?:{_SCALAR}))*)? *\}}"
_FLOW_SEQ = rf"\[ *(?:(?:{_SCALAR})(?: *, *(?:{_SCALAR}))*)? *\]"
_VALUE = f"{_FLOW_MAP}|{_FLOW_SEQ}|{_SCALAR}|~"
#: Every line, one match each: its indentation, and a key with its value ("" when
#: there is none), or neither (a blank line, a comment); else the line, as bad.
_LINES = re.compile(
    rf"^( *)(?:({_KEY}):(?: +({_VALUE}))?(?: +#[ -~]*)?|#[ -~]*)? *$|^(.+)$", re.MULTILINE
)
#: Every key of a flow mapping (and any ``, word:`` inside its quoted strings: more
#: keys seen than there are is only more caution about duplicates).
_FLOW_KEYS = re.compile(r"[{,] *([A-Za-z0-9_.-]+):")
_NULLS = frozenset({"~", "null", "Null", "NULL"})

# What the keys of a mapping are.
_GROUPS, _SECTIONS, _HOSTS, _CHILDREN, _VARS, _OTHER = range(6)
#: What the block below a key of a mapping of variables (or of hosts) holds.
_VARIABLES = (_OTHER, "")


def _no_duplicate_keys(flow_map: str) -> None:
    keys = _FLOW_KEYS.findall(flow_map)
    if len(set(keys)) != len(keys):
        raise Unsure  # a duplicate key: yamlsafe refuses it


def _group(name: str, value: str, names: Names) -> tuple[int, str] | None:
    """A group's key: added; what its block holds, if one may follow."""
    if value and value not in _NULLS:
        raise Unsure  # load_inventory skips it or reads a mapping: the events decide
    names.add_group(name)
    return None if value else (_SECTIONS, name)


def _entry(kind: int, owner: str, key: str, value: str, names: Names) -> tuple[int, str] | None:
    """Read one key of a mapping of ``kind`` (in group ``owner``) with its value on the
    line ("": none); what the keys of its block are, when a block may follow."""
    if kind == _HOSTS:
        if value[0] == "{":
            _no_duplicate_keys(value)
        elif value not in _NULLS:
            raise Unsure  # variables that are not a mapping: load_inventory refuses them
        names.hosts.setdefault(key)
        return None
    if kind == _GROUPS:
        if key in ("plugin", "_meta"):
            raise Unsure  # a dynamic inventory plugin, ansible-inventory's JSON
        return _group(key, value, names)
    if kind == _CHILDREN:
        found = _group(key, value, names)
        names.add_child(owner, key)
        return found
    if kind == _SECTIONS and key in ("hosts", "children", "vars"):
        if not value:
            return (_HOSTS if key == "hosts" else _CHILDREN if key == "children" else _VARS, owner)
        if value in _NULLS:
            return None
        if key != "vars" or value[0] != "{" or "ansible_group_priority" in value:
            raise Unsure  # not a mapping (a string is one entry), or a priority to read
        _no_duplicate_keys(value)
        return None
    if kind == _VARS and key == "ansible_group_priority":
        raise Unsure  # load_inventory decides whether it is a number
    # A variable, or a key load_inventory skips with a warning: its value constructs.
    if not value:
        return _VARIABLES
    if value[0] == "{":
        _no_duplicate_keys(value)
    return None


def _scan(text: str, names: Names) -> None:
    """Read one file's lines into ``names``; Unsure where they are not certain."""
    if text.startswith("---\n"):
        text = text[4:]
    # The open mappings: indentation, what their keys are, their group, keys seen.
    stack: list[tuple[int, int, str, set[str]]] = [(0, _GROUPS, "", set())]
    indent, kind, owner, seen = "", _GROUPS, "", stack[0][3]
    block: tuple[int, str] | None = None  # what a deeper line after the last key holds
    hosts = names.hosts
    for spaces, key, value, bad in _LINES.findall(text):
        if not key:
            if bad:
                raise Unsure
            continue  # a blank line, a comment
        if spaces != indent:  # only spaces: their number differs
            if len(spaces) > len(indent):
                if block is None or len(stack) > _MAX_DEPTH:
                    raise Unsure  # a continued value, a stray indentation, or too deep
                stack.append((len(spaces), *block, set()))
            else:
                while len(spaces) < stack[-1][0]:
                    stack.pop()
                if len(spaces) != stack[-1][0]:
                    raise Unsure  # an indentation no open mapping has
            indent = spaces
            kind, owner, seen = stack[-1][1:]
        if key in seen:
            raise Unsure  # a duplicate key: yamlsafe refuses it
        seen.add(key)
        if kind == _HOSTS and not value:  # most lines of a big inventory
            hosts.setdefault(key)
            block = _VARIABLES
        else:
            block = _entry(kind, owner, key, value, names)
    if not stack[0][3]:
        raise Unsure  # no group: load_inventory refuses an empty inventory


def read_sources(
    sources: Sequence[str], read: Callable[[str, Names], None], *, names_checked: bool = False
) -> InventoryNames | None:
    """The names of ``sources`` (YAML files), each file's text read into them by
    ``read``; None for any other kind of source, or where ``read`` raises Unsure.
    ``names_checked``: as for :meth:`Names.result`."""
    names = Names()
    try:
        for source in sources:
            text = yaml_text(source)
            if text is None:
                return None
            read(text, names)
        return names.result(names_checked=names_checked)
    except TimeoutError:
        raise  # the completion's deadline
    except (Unsure, OSError, ValueError, RecursionError):
        return None


def scan_names(sources: Sequence[str]) -> InventoryNames | None:
    """The group and host names ``load_inventory(sources)`` would give, read from the
    lines of block-style YAML files; None wherever that is not certain (see the module)."""
    # A host name is a _KEY: a letter, '_' or a digit first, no '/', printable ASCII.
    return read_sources(sources, _scan, names_checked=True)
