"""Inventories in Ansible's formats, loaded as ansible-core 2.19 loads them.

Sources (``-i``, repeatable, merged in order):

* a YAML inventory (``all``/``children``/``hosts``/``vars``, host ranges ``web[01:20]``,
  ``[a:f]``, ``[1:10:2]``, ``host:port`` keys);
* an INI inventory (``[web]``, ``[web:vars]``, ``[web:children]``, ``host key=value``
  lines), read as ansible-core's ini plugin reads it, see ``remoteops.inventory_ini``;
* the JSON printed by ``ansible-inventory --list`` (``_meta.hostvars`` plus groups);
* a plain host list, one ``[user@]host[:port]`` per line, ``#`` comments; one address on
  several ports is several hosts (``10.0.0.1``, ``10.0.0.1:2205``), see
  ``_name_host_entries``;
* an inline list ``'a,b,c'`` (any text with a comma that is not an existing path);
* a directory: every file in it (sorted, recursively), except the names Ansible ignores
  (hidden, ``group_vars``, ``host_vars``, ``vars_plugins``, ``INVENTORY_IGNORE_EXTS``);
  a file that is not an inventory is skipped and named, never quoted.

A file is tried as Ansible's plugins try it: ``.yml``/``.yaml``/``.json`` and files with
no extension as YAML first; what is not a YAML inventory then as INI.  Without any
``[section]`` line, a file whose every line is ``[user@]host[:port]`` is a plain host list,
and INI is read only if every host word is a host name or address (Ansible would read a
one-line password file as a host named by the password).

``group_vars/`` and ``host_vars/`` beside each source are read too.  Variables merge
with Ansible's precedence: the ``all`` group, then the host's groups sorted by
(depth, ``ansible_group_priority``, name), then ``group_vars/all``, then the other
``group_vars`` files in the same order, then the host's own variables, then
``host_vars`` files; the last value wins (a shallow, top-level replace).

YAML is read with ``remoteops.yamlsafe``, which refuses duplicate keys, Python tags,
Ansible ``!vault`` values and alias bombs.  Dynamic inventory plugins and vaulted files are
not supported (nor TOML inventories): run ``ansible-inventory -i FILE --list > inv.json``
and pass ``inv.json``.
"""

from __future__ import annotations

import base64
import datetime
import functools
import json
import logging
import os
import re
import shlex
import stat
import string
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from remoteops.errors import InventoryError, UnknownHostError
from remoteops.inventory_ini import (
    AddGroup,
    AddHosts,
    IniParseError,
    SetGroupVar,
    has_section,
    parse_ini,
)
from remoteops.inventory_sources import default_inventory_sources
from remoteops.logconfig import NOTICE
from remoteops.patterns import (
    Unmatched,
    close_names,
    did_you_mean,
    parse_address,
    select_hosts,
)
from remoteops.wording import plural
from remoteops.yamlsafe import load_yaml

__all__ = [
    "ConnectionVars",
    "Group",
    "Host",
    "Inventory",
    "connection_vars",
    "default_inventory_sources",
    "load_inventory",
    "split_host_key",
    "to_json_value",
]

logger = logging.getLogger(__name__)

ADVICE = "run `ansible-inventory -i FILE --list > inv.json` and pass inv.json with -i"

_YAML_EXTS = ("", ".yml", ".yaml", ".json")
# Ansible's INVENTORY_IGNORE_EXTS (REJECT_EXTS + .orig, .cfg, .retry) and IGNORED_ALWAYS.
_IGNORED_EXTS = (
    ".pyc",
    ".pyo",
    ".swp",
    ".bak",
    "~",
    ".rpm",
    ".md",
    ".txt",
    ".rst",
    ".orig",
    ".cfg",
)
_IGNORED_EXTS_MORE = (".retry",)
_IGNORED_NAMES = ("host_vars", "group_vars", "vars_plugins")
_SECTIONS = ("vars", "children", "hosts")
# A file of an inventory directory larger than this is not read (-i FILE still reads it).
_MAX_DIR_MEMBER = 64 << 20
_SHOWN_SKIPS = 5
_JINJA = re.compile(r"\{\{|\{%")


# --- YAML -----------------------------------------------------------------------------


def _load_yaml(text: str, name: str) -> Any:
    """One YAML (or JSON) document of an inventory, read by ``remoteops.yamlsafe``."""
    return load_yaml(text, name, error=InventoryError, vault_advice=ADVICE)


# --- models ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Host:
    """One inventory host: its merged variables and the names of its groups (no ``all``)."""

    name: str
    vars: Mapping[str, Any] = field(default_factory=dict, compare=False)
    groups: tuple[str, ...] = ()

    def __hash__(self) -> int:
        return hash(self.name)

    def __reduce__(self) -> tuple[Any, ...]:
        # the read-only vars view does not pickle; rebuild it from a plain dict
        return (_make_host, (self.name, dict(self.vars), self.groups))


@dataclass(frozen=True, slots=True)
class Group:
    """One group: direct hosts and child groups in inventory order, its own variables."""

    name: str
    hosts: tuple[str, ...] = ()
    children: tuple[str, ...] = ()
    vars: Mapping[str, Any] = field(default_factory=dict, compare=False)
    priority: int = 1
    depth: int = 0

    def __hash__(self) -> int:
        return hash(self.name)


def _freeze(value: dict[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(value)


def _make_host(name: str, values: dict[str, Any], groups: tuple[str, ...]) -> Host:
    return Host(name=name, vars=_freeze(values), groups=groups)


class Inventory:
    """Hosts and groups of one or more merged sources, in Ansible's order."""

    def __init__(
        self,
        hosts: Mapping[str, Host],
        groups: Mapping[str, Group],
        *,
        sources: Sequence[str] = (),
    ) -> None:
        self.hosts: Mapping[str, Host] = MappingProxyType(dict(hosts))
        self.groups: Mapping[str, Group] = MappingProxyType(dict(groups))
        self.sources: tuple[str, ...] = tuple(sources)
        self._group_hosts: dict[str, list[str]] = {}

    def __len__(self) -> int:
        return len(self.hosts)

    def __iter__(self) -> Iterator[Host]:
        return iter(self.hosts.values())

    def __contains__(self, name: object) -> bool:
        return name in self.hosts

    def get_host(self, name: str) -> Host:
        """The host called *name*; raises ``UnknownHostError`` naming the inventory."""
        try:
            return self.hosts[name]
        except KeyError:
            where = ", ".join(self.sources) or "the inventory"
            hint = did_you_mean(close_names(name, list(self.hosts)))
            raise UnknownHostError(
                f"host {name!r} is not in {where}; "
                + (hint or "check the name with `remoteops inventory list`")
            ) from None

    def host_vars(self, name: str) -> dict[str, Any]:
        """The merged variables of host *name* (a copy)."""
        return dict(self.get_host(name).vars)

    def groups_of(self, name: str) -> list[str]:
        """Sorted names of the groups host *name* belongs to, directly or via children."""
        return list(self.get_host(name).groups)

    def connection_vars(self, name: str) -> ConnectionVars:
        """Connection settings of host *name* from its merged variables."""
        return connection_vars(self.get_host(name).vars, host=name)

    def descendants(self, group: str) -> list[str]:
        """*group* and every group below it, breadth first in child order."""
        order = [group]
        seen = {group}
        level = [group]
        while level:
            nxt: list[str] = []
            for name in level:
                for child in self.groups[name].children:
                    if child not in seen:
                        seen.add(child)
                        order.append(child)
                        nxt.append(child)
            level = nxt
        return order

    def hosts_of_group(self, group: str) -> list[str]:
        """Every host of *group* and its descendants, in Ansible's order."""
        if group not in self._group_hosts:
            seen: set[str] = set()
            out: list[str] = []
            for name in self.descendants(group):
                for host in self.groups[name].hosts:
                    if host not in seen:
                        seen.add(host)
                        out.append(host)
            self._group_hosts[group] = out
        return self._group_hosts[group]

    def select(
        self,
        pattern: str | Sequence[str] = "all",
        limit: str | None = None,
        *,
        unmatched: list[Unmatched] | None = None,
    ) -> list[Host]:
        """Hosts matching an Ansible pattern (and ``--limit``), in inventory order.

        Returns an empty list when nothing matches. Each term that matches
        nothing is logged, or put in ``unmatched`` (with the names it may have
        meant) when that is given. Raises ``InventoryError`` for a malformed pattern.
        """
        names = select_hosts(
            pattern,
            host_names=list(self.hosts),
            group_names=list(self.groups),
            hosts_of_group=self.hosts_of_group,
            limit=limit,
            unmatched=unmatched,
        )
        return [self.hosts[n] for n in names]

    def to_ansible_list(self) -> dict[str, Any]:
        """The dict ``ansible-inventory --list`` prints for this inventory."""
        result: dict[str, Any] = {}
        seen: set[str] = set()

        def visit(name: str) -> None:
            group = self.groups[name]
            entry: dict[str, Any] = {}
            if name != "all" and group.hosts:
                entry["hosts"] = list(group.hosts)
            if group.children:
                entry["children"] = list(group.children)
            if entry:
                result[name] = entry
            for child in group.children:
                if child not in seen:
                    seen.add(child)
                    visit(child)

        if "all" in self.groups:
            visit("all")
        hostvars = {
            name: to_json_value(host.vars) for name, host in sorted(self.hosts.items()) if host.vars
        }
        result["_meta"] = {"hostvars": hostvars, "profile": "inventory_legacy"}
        return result

    def graph(self, group: str = "all", *, show_vars: bool = False) -> str:
        """The tree ``ansible-inventory --graph [GROUP]`` prints."""
        if group not in self.groups:
            raise InventoryError(f"--graph needs a group name; {group!r} is not a group")
        lines: list[str] = []

        def name_at(text: str, depth: int) -> str:
            return "  |" * depth + "--" + text if depth else text

        def show(values: Mapping[str, Any], depth: int) -> None:
            for key, value in sorted(values.items()):
                lines.append(name_at(f"{{{key} = {value}}}", depth))

        def walk(name: str, depth: int) -> None:
            lines.append(name_at(f"@{name}:", depth))
            grp = self.groups[name]
            for child in grp.children:
                walk(child, depth + 1)
            if name != "all":
                for host in grp.hosts:
                    lines.append(name_at(host, depth + 1))
                    if show_vars:
                        show(self.hosts[host].vars, depth + 2)
            if show_vars:
                own = dict(grp.vars)
                if grp.priority != 1:
                    own["ansible_group_priority"] = grp.priority
                show(own, depth + 1)

        walk(group, 0)
        return "\n".join(lines)


def to_json_value(value: Any) -> Any:
    """*value* (variables as a YAML safe load gives them) as ``ansible-inventory`` prints it.

    Dates and times become ISO 8601 text, sets and the pairs of ``!!omap``/``!!pairs``
    lists, mapping keys text (``true``, ``null``, ``12``, as JSON writes them).  Where
    ``ansible-inventory`` itself fails, a choice: ``!!binary`` gives its base64 text, a
    date key its ISO text, a set's members are sorted.  The result is a deep copy that
    ``json.dumps`` always accepts.
    """
    if isinstance(value, Mapping):
        return {_json_key(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_value(v) for v in value]
    if isinstance(value, set | frozenset):
        return [to_json_value(v) for v in sorted(value, key=lambda v: (type(v).__name__, str(v)))]
    if isinstance(value, datetime.date):  # datetime.datetime too
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool | int | float):
        return json.dumps(key)
    text = to_json_value(key)
    return text if isinstance(text, str) else json.dumps(text)


# --- connection variables -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectionVars:
    """What a host's variables say about how to reach it (``None`` = not set)."""

    address: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    private_key_files: tuple[str, ...] = ()
    ssh_args: tuple[str, ...] = ()
    ssh_options: Mapping[str, str] = field(default_factory=dict)
    proxy_jump: str | None = None
    proxy_command: str | None = None
    connection: str | None = None
    become: bool = False
    become_user: str | None = None
    become_method: str | None = None
    become_password: str | None = field(default=None, repr=False)

    @property
    def host(self) -> str | None:
        """Alias of ``address`` (Ansible's ``ansible_host``)."""
        return self.address


# Later names win, as in ansible-core's connection options (ansible_ssh_host beats ansible_host).
_CONN_NAMES: dict[str, tuple[str, ...]] = {
    "address": ("ansible_host", "ansible_ssh_host"),
    "port": ("ansible_port", "ansible_ssh_port"),
    "user": ("ansible_user", "ansible_ssh_user"),
    "password": ("ansible_password", "ansible_ssh_pass", "ansible_ssh_password"),
    "key": ("ansible_private_key_file", "ansible_ssh_private_key_file"),
    "connection": ("ansible_connection",),
    "become": ("ansible_become", "ansible_sudo"),
    "become_user": ("ansible_become_user", "ansible_sudo_user"),
    "become_method": ("ansible_become_method",),
    "become_password": ("ansible_become_password", "ansible_become_pass", "ansible_sudo_pass"),
    "ssh_args": ("ansible_ssh_common_args", "ansible_ssh_extra_args"),
}
_SECRET = {"password", "become_password"}


@functools.lru_cache(maxsize=4096)
def _split_args(text: str) -> tuple[str, ...]:
    """``shlex.split``, once per distinct string: thousands of hosts share a few values."""
    return tuple(shlex.split(text))


def _truthy(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "yes", "y", "true", "on")
    return bool(value)


def _parse_ssh_args(args: list[str], where: str) -> tuple[dict[str, str], str | None, str | None]:
    """Pull ``-o Key=Value`` options, ``-J`` and proxy settings out of ssh arguments."""
    options: dict[str, str] = {}
    jump: str | None = None
    index = 0
    while index < len(args):
        arg = args[index]
        value: str | None = None
        if arg in ("-o", "-J"):
            if index + 1 >= len(args):
                raise InventoryError(f"{where}: {arg} needs a value in ansible_ssh_common_args")
            value = args[index + 1]
            index += 1
        elif arg.startswith(("-o", "-J")) and len(arg) > 2:
            value = arg[2:]
        if value is not None and arg.startswith("-J"):
            jump = value
        elif value is not None:
            key, sep, val = value.partition("=")
            if not sep:
                key, _, val = value.partition(" ")
            options[key.strip().lower()] = val.strip()
        index += 1
    jump = options.get("proxyjump", jump)
    command = options.get("proxycommand")
    return options, jump, command


def connection_vars(host_vars: Mapping[str, object], *, host: str | None = None) -> ConnectionVars:
    """Resolve connection settings from merged host variables.

    Honours the legacy names (``ansible_ssh_host``, ``ansible_ssh_port``,
    ``ansible_ssh_user``, ``ansible_ssh_pass``, ``ansible_sudo*``).  ``ssh_common_args``
    and ``ssh_extra_args`` are split with ``shlex``; ``-o ProxyJump=``, ``-o ProxyCommand=``
    and ``-J`` are extracted.  Raises ``InventoryError`` when a value it uses is a Jinja2
    template (remoteops does not template) or has the wrong type.
    """
    where = f"host {host!r}" if host else "host variables"
    found: dict[str, object] = {}
    for field_name, names in _CONN_NAMES.items():
        for name in names:
            value = host_vars.get(name)
            if value is None:
                continue
            if isinstance(value, str) and _JINJA.search(value):
                shown = "(hidden)" if field_name in _SECRET else repr(value)
                raise InventoryError(
                    f"{where}: {name} = {shown} is a Jinja2 template, which remoteops does "
                    f"not evaluate; {ADVICE}"
                )
            if field_name == "ssh_args":
                found[name] = value
            else:
                found[field_name] = value

    def text(key: str) -> str | None:
        value = found.get(key)
        return None if value is None else str(value)

    port: int | None = None
    if "port" in found:
        try:
            port = int(str(found["port"]))
        except ValueError:
            raise InventoryError(f"{where}: port {found['port']!r} is not a number") from None
        if not 0 < port < 65536:
            raise InventoryError(f"{where}: port {port} is out of range 1-65535")
    keys: tuple[str, ...] = ()
    if "key" in found:
        raw = found["key"]
        keys = tuple(str(k) for k in raw) if isinstance(raw, list) else (str(raw),)
    ssh_args: list[str] = []
    for name in _CONN_NAMES["ssh_args"]:
        if name in found:
            try:
                ssh_args.extend(_split_args(str(found[name])))
            except ValueError as exc:
                raise InventoryError(f"{where}: {name} cannot be split: {exc}") from None
    options, jump, command = _parse_ssh_args(ssh_args, where)
    become = _truthy(found.get("become", False))
    method = text("become_method")
    if "ansible_sudo" in host_vars and _truthy(host_vars["ansible_sudo"]) and method is None:
        method = "sudo"
    return ConnectionVars(
        address=text("address"),
        port=port,
        user=text("user"),
        password=text("password"),
        private_key_files=keys,
        ssh_args=tuple(ssh_args),
        ssh_options=MappingProxyType(options),
        proxy_jump=jump,
        proxy_command=command,
        connection=text("connection"),
        become=become,
        become_user=text("become_user"),
        become_method=method,
        become_password=text("become_password"),
    )


# --- building -------------------------------------------------------------------------


class _MGroup:
    __slots__ = ("children", "depth", "host_set", "hosts", "name", "parents", "priority", "vars")

    def __init__(self, name: str) -> None:
        self.name = name
        self.hosts: list[str] = []
        self.host_set: set[str] = set()
        self.children: list[str] = []
        self.parents: list[str] = []
        self.vars: dict[str, Any] = {}
        self.priority = 1
        self.depth = 0


class _MHost:
    __slots__ = ("groups", "name", "source", "vars")

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.vars: dict[str, Any] = {}
        self.groups: list[str] = []


class _Builder:
    """Mutable inventory under construction (InventoryData's rules)."""

    def __init__(self) -> None:
        self.groups: dict[str, _MGroup] = {}
        self.hosts: dict[str, _MHost] = {}
        self.add_group("all")
        self.add_group("ungrouped")
        self.add_child("all", "ungrouped", "<builtin>")

    def add_group(self, name: str) -> str:
        if name not in self.groups:
            self.groups[name] = _MGroup(name)
        return name

    def add_host(self, name: str, group: str | None, port: int | None, source: str) -> None:
        if name not in self.hosts:
            self.hosts[name] = _MHost(name, source)
            if port:
                self.hosts[name].vars["ansible_port"] = port
        if group is not None:
            grp = self.groups[group]
            if name not in grp.host_set:
                grp.host_set.add(name)
                grp.hosts.append(name)
                self.hosts[name].groups.append(group)

    def ancestors(self, name: str) -> set[str]:
        seen: set[str] = set()
        todo = list(self.groups[name].parents)
        while todo:
            parent = todo.pop()
            if parent not in seen:
                seen.add(parent)
                todo.extend(self.groups[parent].parents)
        return seen

    def add_child(self, parent: str, child: str, source: str) -> None:
        if parent == child:
            raise InventoryError(
                f"{source}: group {parent!r} lists itself in its children; remove that entry"
            )
        pgroup, cgroup = self.groups[parent], self.groups[child]
        if child in pgroup.children:
            return
        if child in self.ancestors(parent):
            raise InventoryError(
                f"{source}: adding group {child!r} as a child of {parent!r} makes a cycle in "
                "children; remove one of the links"
            )
        pgroup.children.append(child)
        if parent not in cgroup.parents:
            cgroup.parents.append(parent)

    def set_group_var(self, group: str, key: Any, value: Any) -> None:
        if key == "ansible_group_priority":
            try:
                self.groups[group].priority = int(value)
            except (TypeError, ValueError):
                raise InventoryError(
                    f"group {group!r}: ansible_group_priority {value!r} is not a number"
                ) from None
        else:
            self.groups[group].vars[key] = value

    def reconcile(self) -> None:
        for name, group in list(self.groups.items()):
            if name != "all" and not group.parents:
                self.add_child("all", name, "<builtin>")
        ungrouped = self.groups["ungrouped"]
        for host in self.hosts.values():
            own = set(self._host_groups(host.name))
            if "ungrouped" in own:
                # Only a host put in 'ungrouped' itself leaves it (Group.remove_host does
                # nothing for a host that is there through a child group of 'ungrouped').
                if own - {"all", "ungrouped"} and host.name in ungrouped.host_set:
                    ungrouped.hosts.remove(host.name)
                    ungrouped.host_set.discard(host.name)
                    host.groups.remove("ungrouped")
            elif not own - {"all"}:
                self.add_host(host.name, "ungrouped", None, host.source)
        self._compute_depths()

    def _compute_depths(self) -> None:
        # depth = longest path from "all", as Group.add_child_group propagates it
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(name: str) -> None:
            state[name] = 1
            for child in self.groups[name].children:
                if state.get(child, 0) == 0:
                    visit(child)
            state[name] = 2
            order.append(name)

        for name in self.groups:
            if state.get(name, 0) == 0:
                visit(name)
        for name in reversed(order):
            group = self.groups[name]
            for child in group.children:
                cgroup = self.groups[child]
                cgroup.depth = max(cgroup.depth, group.depth + 1)

    def _host_groups(self, host: str) -> list[str]:
        direct = self.hosts[host].groups
        out: list[str] = []
        for name in direct:
            for g in [name, *sorted(self.ancestors(name))]:
                if g not in out:
                    out.append(g)
        return out


# --- parsing sources ------------------------------------------------------------------

_ANSIBLE_RANGE = re.compile(r"\[([^\]]*)\]")


def expand_host_range(pattern: str) -> list[str]:
    """Expand Ansible host ranges: ``web[01:03]``, ``[a:c]``, ``[1:10:2]``, several per name.

    Raises ``ValueError`` for malformed or reversed ranges.
    """
    match = _ANSIBLE_RANGE.search(pattern)
    if not match:
        if "[" in pattern or "]" in pattern:
            raise ValueError(f"unbalanced brackets in host pattern {pattern!r}")
        return [pattern]
    head, body, tail = pattern[: match.start()], match.group(1), pattern[match.end() :]
    bounds = body.split(":")
    if len(bounds) not in (2, 3):
        raise ValueError(f"host range [{body}] must be [begin:end] or [begin:end:step]")
    begin, end = bounds[0] or "0", bounds[1]
    step_text = bounds[2] if len(bounds) == 3 else "1"
    if not end:
        raise ValueError(f"host range [{body}] must give an end value")
    try:
        step = int(step_text)
    except ValueError:
        raise ValueError(f"host range [{body}]: step {step_text!r} is not a number") from None
    if step < 1:
        raise ValueError(f"host range [{body}]: step must be at least 1")
    letters = string.ascii_letters
    values: list[str]
    if begin in letters and end in letters and len(begin) == len(end) == 1:
        i_begin, i_end = letters.index(begin), letters.index(end)
        if i_begin > i_end:
            raise ValueError(f"host range [{body}] ends before it starts")
        values = list(letters[i_begin : i_end + 1 : step])
    elif begin.isdigit() and end.isdigit():
        width = len(begin) if begin.startswith("0") and len(begin) > 1 else 0
        if width and len(end) != width:
            raise ValueError(f"host range [{body}]: begin and end must have the same length")
        if int(begin) > int(end):
            raise ValueError(f"host range [{body}] ends before it starts")
        if (int(end) - int(begin)) // step > 100_000:
            raise ValueError(f"host range [{body}] is too large")
        values = [str(n).zfill(width) for n in range(int(begin), int(end) + 1, step)]
    else:
        raise ValueError(f"host range [{body}] mixes letters and numbers or is not a range")
    out: list[str] = []
    for value in values:
        out.extend(expand_host_range(head + value + tail))
    return out


def split_host_key(key: str) -> tuple[list[str], int | None]:
    """Host names and port of a YAML host key or INI host word, as Ansible's plugins
    split them (``_expand_hostpattern``); raises ``ValueError`` for a malformed range."""
    try:
        pattern, port = parse_address(key, allow_ranges=True)
    except ValueError:
        pattern, port = key, None
    names = expand_host_range(pattern) if "[" in pattern or "]" in pattern else [pattern]
    return names, port


def _host_key(key: object, where: str) -> tuple[list[str], int | None]:
    if not isinstance(key, str):
        raise InventoryError(f"{where}: host {key!r} must be a string; enclose numbers in quotes")
    try:
        return split_host_key(key)
    except ValueError as exc:
        raise InventoryError(f"{where}: {exc}; fix the range in {key!r}") from None


def _line_of(mapping: Mapping[Any, Any], key: object) -> str:
    lines = getattr(mapping, "lines", None)
    return f":{lines[key]}" if lines and key in lines else ""


def _warn_templates(values: Mapping[str, Any], where: str) -> None:
    for key, value in values.items():
        if _contains_template(value):
            logger.warning(
                "%s: variable %r holds a Jinja2 template; remoteops keeps it as literal text "
                "(to have it evaluated, %s)",
                where,
                key,
                ADVICE,
                extra=NOTICE,
            )


def _contains_template(value: Any) -> bool:
    if isinstance(value, str):
        return bool(_JINJA.search(value))
    if isinstance(value, Mapping):
        return any(_contains_template(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_template(v) for v in value)
    return False


@dataclass(frozen=True, slots=True)
class _HostEntry:
    """One ``[user@]host[:port]`` of a plain host list (``line`` 0 for an inline list)."""

    user: str | None
    address: str
    port: int | None
    line: int


def _line_problem(line: str) -> str:
    """Why *line* is not ``[user@]host[:port]``, described without quoting it."""
    if "=" in line:
        return "it holds '='"
    if any(c.isspace() for c in line):
        return "it holds spaces"
    if line.rpartition("@")[0] == "" and "@" in line:
        return "nothing before '@'"
    return "no host name or IP address"


def _parse_host_list(text: str) -> tuple[list[_HostEntry], tuple[int, str] | None]:
    """The entries of a plain host list and, if a line is bad, (its number, what is wrong).

    With a bad line the entries are those before it (they tell a host list with a typo
    from a file of another kind).
    """
    entries: list[_HostEntry] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        user, sep, rest = line.rpartition("@")
        try:
            if (sep and not user) or any(c.isspace() for c in line):
                raise ValueError(line)
            host, port = parse_address(rest)
        except ValueError:
            return entries, (number, _line_problem(line))
        entries.append(_HostEntry(user or None, host, port, number))
    return entries, None


def _name_host_entries(
    entries: list[_HostEntry],
) -> tuple[list[tuple[str, _HostEntry]], list[tuple[_HostEntry, _HostEntry, str]]]:
    """Host names for host-list entries, and the entries that repeat an earlier one.

    A host is named by its address.  When one address is listed with several ports,
    each entry that gives a port is named ``address:port`` (``[v6]:port``); when one
    address and port are listed with several users, each entry that gives a user is
    named ``user@...``.  So ``root@10.0.0.1`` and ``root@10.0.0.1:2205`` are the hosts
    ``10.0.0.1`` and ``10.0.0.1:2205``, two hosts with two output directories.
    """
    first: dict[tuple[str | None, str, int | None], _HostEntry] = {}
    unique: list[_HostEntry] = []
    repeated: list[tuple[_HostEntry, _HostEntry]] = []
    for entry in entries:
        key = (entry.user, entry.address, entry.port)
        if key in first:
            repeated.append((entry, first[key]))
        else:
            first[key] = entry
            unique.append(entry)
    ports: dict[str, set[int | None]] = {}
    users: dict[tuple[str, int | None], set[str | None]] = {}
    for entry in unique:
        ports.setdefault(entry.address, set()).add(entry.port)
        users.setdefault((entry.address, entry.port), set()).add(entry.user)
    names: dict[tuple[str | None, str, int | None], str] = {}
    for entry in unique:
        name = entry.address
        if entry.port is not None and len(ports[entry.address]) > 1:
            name = f"[{name}]:{entry.port}" if ":" in name else f"{name}:{entry.port}"
        if entry.user and len(users[(entry.address, entry.port)]) > 1:
            name = f"{entry.user}@{name}"
        names[(entry.user, entry.address, entry.port)] = name
    named = [(names[(e.user, e.address, e.port)], e) for e in unique]
    repeats = [(e, f, names[(e.user, e.address, e.port)]) for e, f in repeated]
    return named, repeats


def _report_skipped(directory: Path, skipped: list[tuple[str, str]]) -> None:
    """One line for the files of an inventory directory that are not inventories."""
    if not skipped:
        return
    shown = ", ".join(f"{rel} ({why})" for rel, why in skipped[:_SHOWN_SKIPS])
    more = len(skipped) - _SHOWN_SKIPS
    logger.warning(
        "inventory directory %s: skipped %d %s that %s not inventories remoteops reads: %s%s",
        directory,
        len(skipped),
        "file" if len(skipped) == 1 else "files",
        "is" if len(skipped) == 1 else "are",
        shown,
        f" and {more} more (each is named in the log)" if more > 0 else "",
        extra=NOTICE,
    )
    if more > 0:
        for rel, why in skipped:
            logger.info("inventory directory %s: skipped %s (%s)", directory, rel, why)


class _Loader:
    """Reads sources into a ``_Builder`` and vars dirs for group_vars/host_vars."""

    def __init__(self) -> None:
        self.builder = _Builder()
        self.var_dirs: list[Path] = []
        self.sources: list[str] = []

    # sources

    def load_source(self, source: str | Path) -> None:
        text = str(source)
        if isinstance(source, str) and "," in source and not os.path.exists(source):
            self.sources.append(text)
            self._load_inline(source)
            return
        path = Path(text).expanduser()
        if not path.exists():
            raise InventoryError(
                f"inventory {text!r} not found; pass an existing file or directory with -i"
            )
        path = Path(os.path.abspath(path))
        self.sources.append(str(path))
        self.var_dirs.append(path if path.is_dir() else path.parent)
        if path.is_dir():
            skipped: list[tuple[str, str]] = []
            self._load_dir(path, path, skipped, set())
            _report_skipped(path, skipped)
        else:
            self._load_file(path, explicit=True)

    def _load_inline(self, source: str) -> None:
        entries: list[_HostEntry] = []
        for item in source.split(","):
            item = item.strip()
            if not item:
                continue
            try:
                name, port = parse_address(item)
            except ValueError:
                name, port = item, None
            entries.append(_HostEntry(None, name, port, 0))
        self._add_host_entries(entries, "<inline list>")

    def _load_dir(
        self, path: Path, top: Path, skipped: list[tuple[str, str]], seen: set[str]
    ) -> None:
        """Load every file under *path* as Ansible's directory inventories do.

        Names Ansible ignores (hidden, ``group_vars``, ``host_vars``, ``vars_plugins``,
        ``INVENTORY_IGNORE_EXTS``) are passed over; a file that is not an inventory is
        added to *skipped* with the reason, never its content.
        """
        real = os.path.realpath(path)
        if real in seen:
            return  # a symlink back up the tree
        seen.add(real)
        try:
            entries = sorted(os.listdir(path))
        except OSError as exc:
            if path == top:
                raise InventoryError(f"{path}: cannot read inventory directory: {exc}") from None
            skipped.append((os.path.relpath(path, top), f"cannot be read: {exc.strerror}"))
            return
        for entry in entries:
            if (
                entry.startswith(".")
                or entry in _IGNORED_NAMES
                or entry.endswith(_IGNORED_EXTS + _IGNORED_EXTS_MORE)
            ):
                continue
            full = path / entry
            if full.is_dir():
                self._load_dir(full, top, skipped, seen)
                continue
            why = self._load_file(full, explicit=False)
            if why is not None:
                skipped.append((os.path.relpath(full, top), why))

    def _load_file(self, path: Path, *, explicit: bool) -> str | None:
        """Load one inventory file.

        A file given with ``-i`` that is not an inventory is an error; a file found in an
        inventory directory is skipped instead, and the reason returned.  Neither ever
        quotes the file's content: it may be a password file or a private key.
        """
        name = str(path)
        if not explicit:
            try:
                info = path.stat()
            except OSError as exc:
                return f"cannot be read: {exc.strerror}"
            if not stat.S_ISREG(info.st_mode):
                return "not a regular file"
            if info.st_size > _MAX_DIR_MEMBER:
                return f"larger than {_MAX_DIR_MEMBER >> 20} MiB"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            if explicit:
                raise InventoryError(f"{name}: cannot read inventory: {exc.strerror}") from None
            return f"cannot be read: {exc.strerror}"
        except UnicodeDecodeError:
            if explicit:
                raise InventoryError(f"{name}: not an inventory: not UTF-8 text") from None
            return "not UTF-8 text"
        ext = path.suffix.lower()
        # Ansible runs an executable file as an inventory script; one that cannot run
        # (no #! line: an INI file on a mount that marks every file executable) is then
        # read by the other plugins.
        if text.startswith("#!") and os.access(path, os.X_OK):
            raise InventoryError(
                f"{name}: executable inventory scripts are not supported; {ADVICE}"
            )
        if ext == ".toml":
            if not explicit:
                return "a TOML inventory, which remoteops does not read"
            raise InventoryError(f"{name}: TOML inventories are not supported; {ADVICE}")
        data: Any = None
        yaml_error: InventoryError | None = None
        if ext in _YAML_EXTS:
            try:
                data = _load_yaml(text, name)
            except InventoryError as exc:
                yaml_error = exc  # Ansible's ini plugin gets the file next
            if isinstance(data, dict) and data.get("plugin"):
                raise InventoryError(
                    f"{name}{_line_of(data, 'plugin')}: dynamic inventory plugin "
                    f"{data['plugin']!r} is not supported; {ADVICE}"
                )
            if isinstance(data, dict) and _is_ansible_list(data, ext):
                self._load_list_json(data, name)
                return None
            if isinstance(data, dict) and (ext or _looks_like_groups(data)):
                self._load_yaml_inventory(data, name)
                return None
            if ext and not data and yaml_error is None:
                if not explicit:
                    return "empty"
                raise InventoryError(f"{name}: empty YAML inventory; add groups and hosts")
        if ext in _YAML_EXTS and ext:
            # .yml/.yaml/.json: the yaml plugin failed; Ansible tries the ini plugin next
            sectioned = has_section(text)
            error = self._load_ini(text, name, strict=not sectioned)
            if error is None:
                return None
            if sectioned and yaml_error is not None:
                raise InventoryError(f"{name}:{error.line}: {error.what}")
            if yaml_error is not None:
                raise yaml_error
            what = f"a YAML {type(data).__name__}, not a mapping of groups"
            if not explicit:
                return what
            raise InventoryError(f"{name}: {what}; see Ansible's YAML inventory format")
        return self._load_ini_or_host_list(text, name, explicit, yaml_error)

    def _load_ini_or_host_list(
        self, text: str, name: str, explicit: bool, yaml_error: InventoryError | None
    ) -> str | None:
        """A file that is not YAML: a plain host list, else INI (see ``_load_file``).

        A file with a ``[section]`` is INI and its errors stop the load.  A file without
        one is a plain host list when every line is ``[user@]host[:port]``, else INI whose
        host words must all be host names or addresses (so that a password file is never
        read as a host named by the password); otherwise it is refused (``-i``) or skipped
        (in a directory) with the error of whichever reading got further.
        """
        sectioned = has_section(text)
        entries: list[_HostEntry] = []
        problem: tuple[int, str] | None = None
        if not sectioned:
            entries, problem = _parse_host_list(text)
            if problem is None:
                self._add_host_entries(entries, name)
                return None
        error = self._load_ini(text, name, strict=not sectioned)
        if error is None:
            return None
        if sectioned:
            raise InventoryError(f"{name}:{error.line}: {error.what}")
        assert problem is not None
        if problem[0] > error.line:
            number, what = problem[0], f"not [user@]host[:port] ({problem[1]})"
        else:
            number, what = error.line, error.what
        if not explicit:
            return f"line {number}: {what}"
        if yaml_error is not None and not entries:
            raise yaml_error
        raise InventoryError(
            f"{name}:{number}: {what}; expected an INI or YAML inventory, or one "
            "[user@]host[:port] per line"
        )

    def _load_ini(self, text: str, name: str, *, strict: bool) -> IniParseError | None:
        """Read INI *text* into the inventory, or return the parse error and add nothing.

        Raises ``InventoryError`` (the load stops) for what only shows when the file is
        applied: a cycle in children, a non-numeric ``ansible_group_priority``.
        """
        try:
            ops = parse_ini(
                text,
                known_groups=self.builder.groups,
                host_pattern=split_host_key,
                strict_names=strict,
            )
        except IniParseError as exc:
            return exc
        b = self.builder
        users: list[int] = []
        for op in ops:
            where = f"{name}:{op.line}"
            if isinstance(op, AddGroup):
                b.add_group(op.name)
            elif isinstance(op, AddHosts):
                if op.vars:
                    _warn_templates(op.vars, f"{where}: host {op.names[0]!r}")
                for host in op.names:
                    b.add_host(host, op.group, op.port, name)
                    b.hosts[host].vars.update(op.vars)
                if "@" in op.names[0]:
                    users.append(op.line)
            elif isinstance(op, SetGroupVar):
                _warn_templates({op.key: op.value}, f"{where}: group {op.group!r}")
                try:
                    b.set_group_var(op.group, op.key, op.value)
                except InventoryError as exc:
                    raise InventoryError(f"{where}: {exc}") from None
            else:
                b.add_child(op.parent, op.child, where)
        if users:
            more = len(users) - _SHOWN_SKIPS
            logger.warning(
                "%s: %s %s%s: a host name holds '@'; an INI host line takes no user (the name "
                "is used as the address): write HOST ansible_user=USER",
                name,
                "line" if len(users) == 1 else "lines",
                ", ".join(map(str, users[:_SHOWN_SKIPS])),
                f" and {more} more" if more > 0 else "",
                extra=NOTICE,
            )
        return None

    def _add_host_entries(self, entries: list[_HostEntry], source: str) -> None:
        named, repeats = _name_host_entries(entries)
        if repeats:
            logger.warning(
                "%s: %s; each host is used once",
                source,
                ", ".join(
                    f"line {e.line} repeats line {first.line} ({name})"
                    if e.line
                    else f"{name} is listed again"
                    for e, first, name in repeats
                ),
                extra=NOTICE,
            )
        for name, entry in named:
            self.builder.add_host(name, "ungrouped", entry.port, source)
            values = self.builder.hosts[name].vars
            if name != entry.address:
                values["ansible_host"] = entry.address
            if entry.user:
                values["ansible_user"] = entry.user

    def _load_list_json(self, data: dict[str, Any], name: str) -> None:
        b = self.builder
        seen_hosts: list[str] = []
        for group, gdata in data.items():
            if group == "_meta":
                continue
            b.add_group(group)
            if not isinstance(gdata, dict):
                gdata = {"hosts": gdata}
            elif not any(k in gdata for k in _SECTIONS):
                gdata = {"hosts": [group], "vars": gdata}
            hosts = gdata.get("hosts", [])
            if not isinstance(hosts, list):
                raise InventoryError(f"{name}: '{group}.hosts' must be a list")
            for host in hosts:
                if not isinstance(host, str):
                    raise InventoryError(f"{name}: host {host!r} in '{group}' must be a string")
                b.add_host(host, group, None, name)
                seen_hosts.append(host)
            gvars = gdata.get("vars", {})
            if not isinstance(gvars, dict):
                raise InventoryError(f"{name}: '{group}.vars' must be a mapping")
            _warn_templates(gvars, f"{name}: group {group!r}")
            for key, value in gvars.items():
                b.set_group_var(group, key, value)
            for child in gdata.get("children", []) or []:
                b.add_group(child)
                b.add_child(group, child, name)
        hostvars = data.get("_meta", {}).get("hostvars", {})
        if not isinstance(hostvars, dict):
            raise InventoryError(f"{name}: '_meta.hostvars' must be a mapping")
        for host in dict.fromkeys(seen_hosts):
            hvars = hostvars.get(host) or {}
            if not isinstance(hvars, dict):
                raise InventoryError(f"{name}: '_meta.hostvars.{host}' must be a mapping")
            _warn_templates(hvars, f"{name}: host {host!r}")
            b.hosts[host].vars.update(hvars)

    def _load_yaml_inventory(self, data: dict[Any, Any], name: str) -> None:
        for group, gdata in data.items():
            self._parse_group(group, gdata, f"{name}{_line_of(data, group)}", name)

    def _parse_group(self, group: Any, gdata: Any, where: str, name: str) -> str | None:
        b = self.builder
        if not isinstance(group, str) or not group:
            raise InventoryError(f"{where}: group name {group!r} must be a non-empty string")
        if gdata is not None and not isinstance(gdata, dict):
            logger.warning(
                "%s: skipping %r, not a valid group definition", where, group, extra=NOTICE
            )
            return None
        b.add_group(group)
        if gdata is None:
            return group
        for section in _SECTIONS:
            value = gdata.get(section)
            if isinstance(value, str):
                gdata[section] = value = {value: None}
            if value is not None and not isinstance(value, dict):
                raise InventoryError(
                    f"{name}{_line_of(gdata, section)}: {section!r} of group {group!r} must be "
                    f"a mapping, found {type(value).__name__}"
                )
        for key, value in gdata.items():
            at = f"{name}{_line_of(gdata, key)}"
            if value is None:
                continue
            if key not in _SECTIONS:
                logger.warning(
                    "%s: skipping unexpected key %r in group %r; only vars, children and "
                    "hosts are valid",
                    at,
                    key,
                    group,
                    extra=NOTICE,
                )
                continue
            if key == "vars":
                _warn_templates(value, f"{at}: group {group!r}")
                for var, val in value.items():
                    try:
                        b.set_group_var(group, var, val)
                    except InventoryError as exc:
                        raise InventoryError(f"{name}{_line_of(value, var)}: {exc}") from None
            elif key == "children":
                for child, cdata in value.items():
                    sub = self._parse_group(child, cdata, f"{name}{_line_of(value, child)}", name)
                    if sub is not None:
                        b.add_child(group, sub, f"{name}{_line_of(value, child)}")
            else:
                for host_key, hvars in value.items():
                    hat = f"{name}{_line_of(value, host_key)}"
                    names, port = _host_key(host_key, hat)
                    if hvars is not None and not isinstance(hvars, dict):
                        raise InventoryError(
                            f"{hat}: variables of host {host_key!r} must be a mapping, found "
                            f"{type(hvars).__name__}"
                        )
                    if hvars:
                        _warn_templates(hvars, f"{hat}: host {host_key!r}")
                    for host in names:
                        b.add_host(host, group, port, name)
                        b.hosts[host].vars.update(hvars or {})
        return group

    # group_vars / host_vars

    def vars_files(self, base: Path, kind: str, entity: str) -> list[Path]:
        """Files Ansible's host_group_vars plugin reads for *entity* under *base*/*kind*."""
        root = base / kind
        if entity.startswith("/"):
            return []
        # One listing per directory, not four stat() calls per host: a 10,000-host
        # inventory would otherwise spend most of its load time looking for files.
        names = _listing(str(root))
        if not names:
            return []
        for ext in _YAML_EXTS:
            if entity + ext in names:
                candidate = root / (entity + ext)
                return _dir_vars_files(candidate) if candidate.is_dir() else [candidate]
        return []

    def read_vars(self, base: Path, kind: str, entity: str) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for path in self.vars_files(base, kind, entity):
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise InventoryError(f"{path}: cannot read variables: {exc}") from None
            loaded = _load_yaml(text, str(path))
            if not loaded:
                continue
            if not isinstance(loaded, dict):
                raise InventoryError(
                    f"{path}: variables file must be a mapping, found {type(loaded).__name__}"
                )
            _warn_templates(loaded, str(path))
            data.update(loaded)
        return data


@functools.lru_cache(maxsize=256)
def _listing(directory: str) -> frozenset[str]:
    """The names in ``directory`` (empty if it is not one), cached for one load."""
    try:
        return frozenset(os.listdir(directory))
    except OSError:
        return frozenset()


def _dir_vars_files(path: Path) -> list[Path]:
    found: list[Path] = []
    for entry in sorted(os.listdir(path)):
        if entry.startswith(".") or entry.endswith("~"):
            continue
        full = path / entry
        ext = os.path.splitext(entry)[1]
        if full.is_dir() and not ext:
            found.extend(_dir_vars_files(full))
        elif full.is_file() and (not ext or ext in _YAML_EXTS):
            found.append(full)
    return found


def _is_ansible_list(data: dict[Any, Any], ext: str) -> bool:
    """True for the JSON of ``ansible-inventory --list`` (script inventory format)."""
    if "_meta" in data:
        return True
    return ext == ".json" and any(
        isinstance(v, list) or (isinstance(v, dict) and isinstance(v.get("hosts"), list))
        for v in data.values()
    )


def _looks_like_groups(data: dict[Any, Any]) -> bool:
    return all(v is None or isinstance(v, dict) for v in data.values())


_BAD_NAME = re.compile(r"[\x00-\x1f\x7f/]")


def _check_host_names(builder: _Builder) -> None:
    bad: list[str] = []
    for host in builder.hosts.values():
        name = host.name
        if name in ("", ".", "..") or name.startswith("-") or _BAD_NAME.search(name):
            bad.append(f"{name!r} ({host.source})")
    if bad:
        raise InventoryError(
            f"{plural(len(bad), 'host name')} cannot be used (they name per-host directories): "
            + ", ".join(bad)
            + "; rename them and set ansible_host to the address"
        )


def load_inventory(sources: Sequence[str | Path]) -> Inventory:
    """Load and merge inventory sources (in order) into an ``Inventory``.

    Each source is a YAML or JSON inventory file, a directory, a plain host list or
    an inline ``'a,b,c'`` list.  Raises ``InventoryError`` naming the file (and line)
    at fault.
    """
    if isinstance(sources, str | Path):
        sources = [sources]
    _listing.cache_clear()  # a new load sees the files as they are now
    loader = _Loader()
    for source in sources:
        loader.load_source(source)
    b = loader.builder
    b.reconcile()
    _check_host_names(b)
    for conflict in set(b.groups) & set(b.hosts):
        logger.warning("Found both group and host with same name: %s", conflict, extra=NOTICE)

    group_files: dict[tuple[int, str], dict[str, Any]] = {}
    for index, base in enumerate(loader.var_dirs):
        for gname in b.groups:
            group_files[(index, gname)] = loader.read_vars(base, "group_vars", gname)

    groups: dict[str, Group] = {}
    for gname, mg in b.groups.items():
        gvars = dict(mg.vars)
        for index in range(len(loader.var_dirs)):
            gvars.update(group_files[(index, gname)])
        groups[gname] = Group(
            name=gname,
            hosts=tuple(mg.hosts),
            children=tuple(mg.children),
            vars=_freeze(gvars),
            priority=mg.priority,
            depth=mg.depth,
        )

    hosts: dict[str, Host] = {}
    for hname, mh in b.hosts.items():
        member = [g for g in b._host_groups(hname) if g != "all"]
        ordered = sorted(member, key=lambda g: (b.groups[g].depth, b.groups[g].priority, g))
        merged: dict[str, Any] = dict(b.groups["all"].vars)
        for g in ordered:
            merged.update(b.groups[g].vars)
        for index in range(len(loader.var_dirs)):
            merged.update(group_files[(index, "all")])
        for index in range(len(loader.var_dirs)):
            for g in ordered:
                merged.update(group_files[(index, g)])
        merged.update(mh.vars)
        for base in loader.var_dirs:
            merged.update(loader.read_vars(base, "host_vars", hname))
        hosts[hname] = Host(name=hname, vars=_freeze(merged), groups=tuple(sorted(member)))
    logger.debug("Loaded %d hosts in %d groups from %s", len(hosts), len(groups), loader.sources)
    return Inventory(hosts, groups, sources=loader.sources)
