"""The group and host names of YAML inventories, read from the parser's events alone.

Shell completion needs the names of the inventory in effect, also on the first Tab
after the file changed. :func:`remoteops.inventory.load_inventory` builds and checks
every host and variable for that: ~225 ms for 10,000 hosts. Where the lines of a
block-style file do not settle them (:mod:`remoteops.inventory_lines`, tried
first), :func:`read_names` walks
the event stream of the parser :mod:`remoteops.yamlsafe` loads with instead
(libyaml's when PyYAML has it; no object is constructed but a few plain scalars, to
check them) and collects the names in ``load_inventory``'s order: ``all``,
``ungrouped``, then every group as it is first met; every host as it is first met,
ranges (``web[01:10]``) expanded by the inventory module's own function.

It answers only where it is certain to agree with ``load_inventory``: every source a
``.yml``/``.yaml`` file in Ansible's YAML inventory layout, with no anchors, aliases,
tags or merge keys (so no alias expansion for ``yamlsafe``'s limits to bound), only
string keys, no duplicate key, and nothing ``load_inventory`` refuses (a malformed
range, a cycle in children, a host name it rejects, a scalar PyYAML cannot
construct). Anything else (INI, JSON, host lists, inline lists, directories, an
error) gives None: the caller then loads the inventory, which says what is wrong.
``group_vars``/``host_vars`` beside a file hold no names and are not read (the names
cache does not watch them either).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import yaml
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from remoteops.inventory_lines import Names, Unsure, read_sources
from remoteops.yamlsafe import event_parser

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence

    from remoteops.namecache import InventoryNames

__all__ = ["read_names"]

_STR = Resolver.DEFAULT_SCALAR_TAG
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_MAP = Resolver.DEFAULT_MAPPING_TAG
_SEQ = Resolver.DEFAULT_SEQUENCE_TAG
#: Scalars whose construction can fail (``0x_``, ``2024-13-45``): constructed to check.
_CONSTRUCTED = frozenset({_INT, "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp"})
#: Deeper nesting is left to load_inventory (PyYAML's composer recurses on it).
_MAX_DEPTH = 50


#: Plain scalars starting with any other character resolve to strings.
_RESOLVER = Resolver()
_MAYBE_NOT_STR = frozenset(k for k in Resolver.yaml_implicit_resolvers if k)
_ALWAYS_RESOLVE = None in Resolver.yaml_implicit_resolvers
_EMPTY: str = _RESOLVER.resolve(yaml.ScalarNode, "", (True, False))  # type: ignore[no-untyped-call]
_CONSTRUCTOR = SafeConstructor()
_constructs: dict[tuple[str, str], bool] = {}


def _constructs_safely(tag: str, value: str) -> bool:
    """Whether PyYAML's safe constructor accepts this plain scalar (remembered)."""
    known = _constructs.get((tag, value))
    if known is None:
        try:
            _CONSTRUCTOR.construct_object(yaml.ScalarNode(tag, value), deep=True)
            known = True
        except (ArithmeticError, ValueError, TypeError, yaml.YAMLError):
            known = False
        _constructs[(tag, value)] = known
    return known


def _plain_string(value: str) -> bool:
    """Whether a plain scalar ``value`` resolves to a string whatever it holds next."""
    return bool(value) and value[0] not in _MAYBE_NOT_STR and not _ALWAYS_RESOLVE


def _scalar_tag(event: yaml.ScalarEvent) -> str:
    """The tag a safe load resolves ``event`` to, once checked that it constructs."""
    if event.anchor is not None or event.tag is not None:
        raise Unsure
    value = event.value
    if not event.implicit[0]:
        return _STR  # quoted or a block scalar
    if not value:
        tag = _EMPTY  # a key without a value: null
    elif _plain_string(value):
        return _STR
    else:
        tag = _RESOLVER.resolve(yaml.ScalarNode, value, event.implicit)  # type: ignore[no-untyped-call]
    if tag in (_STR, _NULL, _BOOL):
        return tag
    if tag in _CONSTRUCTED and _constructs_safely(tag, value):
        return tag
    raise Unsure  # merge keys, '=' and what does not construct


def _host_names(key: str) -> list[str]:
    """The hosts a host key with ``:``, ``[`` or ``]`` names (a key without is one
    host): its range expanded (``web[01:10]``) and port (``db:2222``) split off as
    load_inventory does."""
    from remoteops.inventory import split_host_key

    try:
        return split_host_key(key)[0]
    except ValueError:
        raise Unsure from None


class _Walk:
    """One file's events, read as remoteops.inventory reads the loaded document."""

    def __init__(self, text: str, names: Names) -> None:
        self.names = names
        self.loader = event_parser(text)
        self.next: Callable[[], yaml.Event] = self.loader.get_event

    def read(self) -> None:
        try:
            self._document()
        finally:
            self.loader.dispose()

    def _document(self) -> None:
        if not isinstance(self.next(), yaml.StreamStartEvent):
            raise Unsure
        if not isinstance(self.next(), yaml.DocumentStartEvent):
            raise Unsure  # empty: load_inventory refuses it
        root = self.next()
        if not isinstance(root, yaml.MappingStartEvent):
            raise Unsure  # empty, or not a mapping of groups: INI is tried next
        self._check_collection(root, 0)
        for group, definition in self._pairs():
            if group in ("plugin", "_meta"):
                raise Unsure  # a dynamic inventory plugin, ansible-inventory's JSON
            self._group(group, definition, 1)
        if not isinstance(self.next(), yaml.DocumentEndEvent):
            raise Unsure
        if not isinstance(self.next(), yaml.StreamEndEvent):
            raise Unsure  # several documents: yamlsafe refuses them

    @staticmethod
    def _check_collection(event: yaml.Event, depth: int) -> None:
        if (
            not isinstance(event, yaml.CollectionStartEvent)
            or event.anchor is not None
            or event.tag is not None
            or depth > _MAX_DEPTH
        ):
            raise Unsure

    def _pairs(self) -> Iterator[tuple[str, yaml.Event]]:
        """The keys of the mapping just started, each checked (a string, not seen
        before in it), with the first event of its value; the caller reads the rest
        of each value before it asks for the next pair."""
        seen: set[str] = set()
        next_event = self.next
        while True:
            event = next_event()
            if type(event) is not yaml.ScalarEvent:
                if type(event) is yaml.MappingEndEvent:
                    return
                raise Unsure  # a key that is a mapping or a sequence, an alias
            key = event.value
            if event.anchor is not None or event.tag is not None:
                raise Unsure
            # The common key (plain, cannot resolve to another type) decided inline.
            if not (event.implicit[0] and _plain_string(key)) and _scalar_tag(event) != _STR:
                raise Unsure  # a key that is not a string
            if key in seen:
                raise Unsure  # a duplicate key: yamlsafe refuses it
            seen.add(key)
            yield key, next_event()

    def _value(self, event: yaml.Event, depth: int) -> str:
        """Check a value that holds no names as a safe load would construct it; its tag."""
        if isinstance(event, yaml.ScalarEvent):
            return _scalar_tag(event)
        self._check_collection(event, depth)
        if isinstance(event, yaml.SequenceStartEvent):
            # Bounded by the document: the parser ends every sequence it starts.
            while not isinstance(item := self.next(), yaml.SequenceEndEvent):
                self._value(item, depth + 1)
            return _SEQ
        for _key, value in self._pairs():
            self._value(value, depth + 1)
        return _MAP

    def _entries(self, event: yaml.Event, depth: int) -> Iterable[tuple[str, yaml.Event | None]]:
        """The entries of a group's ``hosts``, ``children`` or ``vars``: a mapping's
        keys with their value's first event; a string is one key without a value."""
        if isinstance(event, yaml.ScalarEvent):
            tag = _scalar_tag(event)
            if tag == _STR:
                return [(event.value, None)]
            if tag != _NULL:
                raise Unsure  # not a mapping: load_inventory refuses it
            return []
        self._check_collection(event, depth)
        if not isinstance(event, yaml.MappingStartEvent):
            raise Unsure
        return self._pairs()

    def _group(self, name: str, event: yaml.Event | None, depth: int) -> str | None:
        """Read group ``name`` defined by ``event``; its name, or None when
        load_inventory skips the definition (neither a mapping nor empty)."""
        if not name:
            raise Unsure  # an empty group name
        if event is None or not isinstance(event, yaml.MappingStartEvent):
            if event is None or self._value(event, depth) == _NULL:
                return self.names.add_group(name)
            return None
        self._check_collection(event, depth)
        self.names.add_group(name)
        hosts = self.names.hosts
        for section, value in self._pairs():
            if section == "hosts":
                for key, host_vars in self._entries(value, depth + 1):
                    if host_vars is not None and (
                        self._value(host_vars, depth + 2) not in (_MAP, _NULL)
                    ):
                        raise Unsure  # host variables that are not a mapping
                    if ":" in key or "[" in key or "]" in key:
                        for host in _host_names(key):
                            hosts.setdefault(host)
                    else:
                        hosts.setdefault(key)
            elif section == "children":
                for key, child_def in self._entries(value, depth + 1):
                    child = self._group(key, child_def, depth + 2)
                    if child is not None:
                        self.names.add_child(name, child)
            elif section == "vars":
                for key, var in self._entries(value, depth + 1):
                    tag = None if var is None else self._value(var, depth + 2)
                    if key == "ansible_group_priority" and tag != _INT:
                        raise Unsure  # load_inventory decides whether it is a number
            else:
                self._value(value, depth + 1)  # skipped by load_inventory, with a warning
        return name


def _walk(text: str, names: Names) -> None:
    try:
        _Walk(text, names).read()
    except yaml.YAMLError:
        raise Unsure from None


def read_names(sources: Sequence[str]) -> InventoryNames | None:
    """The group and host names ``load_inventory(sources)`` would give, read from
    the YAML parser's events; None wherever that is not certain (see the module)."""
    return read_sources(sources, _walk)
