"""Safe YAML for every YAML file remoteops reads: inventories (and their ``group_vars``
and ``host_vars``), playbooks, ``--extra-vars`` and analysis rules files.

:func:`load_yaml` parses one document with PyYAML's safe constructor and refuses,
naming ``FILE:LINE`` and what to do:

* duplicate keys in a mapping (PyYAML would keep the last one silently);
* Python tags (``!!python/object``) and any other unknown tag;
* Ansible Vault values (``!vault``) and vault-encrypted files;
* more than ``MAX_ALIASES`` aliases, or aliases that expand past ``MAX_NODES``
  nodes (the "billion laughs"), checked on the composed graph before anything
  is constructed, without expanding it.

Every mapping it returns is a :class:`LineDict`: ``.lines`` gives the line of each
key, for error messages about the values. The caller chooses the error class
(``InventoryError``, ``PlaybookError``, ``UsageError``); the message is the same
whichever file the document came from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from remoteops.errors import RemoteOpsError

__all__ = ["MAX_ALIASES", "MAX_NODES", "LineDict", "event_parser", "load_yaml"]

MAX_ALIASES = 100
MAX_NODES = 100_000


class _Refused(Exception):
    """A document the loader will not construct; the message names ``FILE:LINE``."""


if TYPE_CHECKING:
    _LoaderBase = yaml.SafeLoader
elif yaml.__with_libyaml__:
    # libyaml's parser and composer (C) with PyYAML's safe constructor: the
    # same documents and marks as yaml.SafeLoader, ~10x faster on big files.
    from yaml.constructor import SafeConstructor
    from yaml.cyaml import CParser
    from yaml.resolver import Resolver

    class _LoaderBase(CParser, SafeConstructor, Resolver):
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
else:
    _LoaderBase = yaml.SafeLoader


class _SafeLoader(_LoaderBase):
    """Safe loader that refuses duplicate keys, ``!vault`` and alias bombs."""

    source_name = "<string>"
    vault_advice = ""

    def __init__(self, stream: str, name: str, vault_advice: str) -> None:
        super().__init__(stream)
        self.source_name = name
        self.vault_advice = vault_advice

    def where(self, node: yaml.Node | None) -> str:
        line = node.start_mark.line + 1 if node is not None and node.start_mark else 0
        return f"{self.source_name}:{line}"

    def get_single_node(self) -> yaml.Node | None:
        node = super().get_single_node()
        # Without aliases the document is its own size: no expansion to bound.
        if node is not None and _check_aliases(node, self):
            _check_node_budget(node, self)
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue  # unhashable keys fail later with PyYAML's own message
                if first is not None:
                    raise _Refused(
                        f"{self.where(key_node)}: duplicate key {key!r} (first at line {first}); "
                        "remove one of them"
                    )
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


class LineDict(dict[Any, Any]):
    """A dict that remembers the line of each key (for error messages)."""

    lines: dict[Any, int]


def _construct_map(loader: _SafeLoader, node: yaml.MappingNode) -> Iterator[LineDict]:
    data = LineDict()
    data.lines = {}
    yield data
    data.update(loader.construct_mapping(node))
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        try:
            data.lines.setdefault(key, key_node.start_mark.line + 1)
        except TypeError:
            continue


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_aliases(root: yaml.Node, loader: _SafeLoader) -> int:
    """Refuse documents with more than ``MAX_ALIASES`` aliases; return how many there are.

    An alias is the composed graph's second (third, ...) reference to a node,
    so counting references beyond the first over the distinct nodes finds them
    without expanding anything.
    """
    seen = {id(root)}
    stack = [root]
    aliases = 0
    while stack:
        for child in _children(stack.pop()):
            if id(child) in seen:
                aliases += 1
                if aliases > MAX_ALIASES:
                    raise _Refused(
                        f"{loader.where(child)}: more than {MAX_ALIASES} YAML aliases; "
                        "write the values out instead of using anchors"
                    )
            else:
                seen.add(id(child))
                stack.append(child)
    return aliases


def _check_node_budget(root: yaml.Node, loader: _SafeLoader) -> None:
    """Refuse documents whose aliases expand past ``MAX_NODES`` (billion laughs)."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if done or not children:
            sizes[id(node)] = 1 + sum(sizes.get(id(c), 0) for c in children)
            if sizes[id(node)] > MAX_NODES:
                raise _Refused(
                    f"{loader.where(node)}: YAML aliases expand to more than {MAX_NODES} "
                    "nodes; write the values out instead of using anchors"
                )
            continue
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)


def _construct_vault(loader: _SafeLoader, node: yaml.Node) -> Any:
    raise _Refused(
        f"{loader.where(node)}: Ansible Vault (!vault) values are not supported; "
        + (f"decrypt them, or {loader.vault_advice}" if loader.vault_advice else "decrypt them")
    )


def _construct_unsafe(loader: _SafeLoader, node: yaml.Node) -> Any:
    # Ansible's !unsafe only stops templating; the value is the plain value.
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    assert isinstance(node, yaml.MappingNode)
    return loader.construct_mapping(node, deep=True)


def _construct_undefined(loader: _SafeLoader, node: yaml.Node) -> Any:
    tag = node.tag
    what = "Python tags are refused" if "python" in tag else "unknown tag"
    raise _Refused(f"{loader.where(node)}: {what}: {tag!r}; use plain YAML values")


def _readable(kind: str, construct: Callable[..., Any]) -> Callable[[_SafeLoader, yaml.Node], Any]:
    """``construct`` (PyYAML's), with a value it cannot build refused naming FILE:LINE
    (``2024-13-45`` looks like a date and is none; an integer past Python's digit limit)."""

    def build(loader: _SafeLoader, node: yaml.Node) -> Any:
        try:
            return construct(loader, node)
        except (ValueError, OverflowError) as exc:
            value = str(node.value)
            shown = value if len(value) <= 40 else value[:40] + "..."
            why = str(exc).split(":")[0]  # not Python's advice on sys.set_int_max_str_digits
            raise _Refused(
                f"{loader.where(node)}: {shown!r} is not a valid {kind} ({why}); "
                "quote it to keep it as text"
            ) from None

    return build


_SafeLoader.add_constructor(
    "tag:yaml.org,2002:timestamp", _readable("date", yaml.SafeLoader.construct_yaml_timestamp)
)
_SafeLoader.add_constructor(
    "tag:yaml.org,2002:int", _readable("integer", yaml.SafeLoader.construct_yaml_int)
)
_SafeLoader.add_constructor("!vault", _construct_vault)
_SafeLoader.add_constructor("!unsafe", _construct_unsafe)
_SafeLoader.add_constructor(None, _construct_undefined)
_SafeLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)


def event_parser(text: str) -> yaml.SafeLoader:
    """The parser :func:`load_yaml` reads ``text`` with (libyaml's when PyYAML has it),
    for its events alone: ``get_event()`` until ``StreamEndEvent``, then ``dispose()``.

    Nothing is composed or constructed, so none of :func:`load_yaml`'s refusals
    apply: a reader of the events must refuse aliases, tags and duplicate keys
    itself, or leave the document to :func:`load_yaml` (remoteops.inventory_names).
    """
    return _LoaderBase(text)


def load_yaml(
    text: str,
    name: str,
    *,
    error: Callable[[str], RemoteOpsError],
    vault_advice: str = "",
) -> Any:
    """Parse one YAML (or JSON) document safely; raise ``error(message)`` naming ``FILE:LINE``.

    Refused: syntax errors, duplicate keys, ``!!python`` and unknown tags,
    ``!vault`` values and vault-encrypted files, documents with more than
    ``MAX_ALIASES`` aliases or an expansion past ``MAX_NODES`` nodes.
    ``vault_advice`` is what to do about a vault (default: decrypt it).
    """
    if text.lstrip().startswith("$ANSIBLE_VAULT;"):
        raise error(
            f"{name}:1: Ansible Vault encrypted files are not supported; "
            + (vault_advice or "decrypt the file")
        )
    loader = _SafeLoader(text, name, vault_advice)
    try:
        return loader.get_single_data()
    except _Refused as exc:
        raise error(str(exc)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise error(f"{name}:{line}: invalid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise error(f"{name}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()
