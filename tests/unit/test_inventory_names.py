"""remoteops.inventory_lines and remoteops.inventory_names: the names of a YAML
inventory from its lines, or from the parser's events, always those load_inventory
gives, or None (then the next reader, at last the loader, decides)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import remoteops.inventory
from remoteops.errors import InventoryError
from remoteops.inventory import load_inventory
from remoteops.inventory_lines import scan_names
from remoteops.inventory_names import read_names
from remoteops.namecache import InventoryNames, inventory_names

ROOT = Path(__file__).resolve().parent.parent.parent
DATA = ROOT / "tests" / "data" / "inventories"


def _loaded(sources: list[str]) -> InventoryNames | None:
    """The names as namecache took them from load_inventory; None if it refuses."""
    try:
        inventory = load_inventory(sources)
    except (InventoryError, ValueError):
        return None
    return InventoryNames(groups=tuple(inventory.groups), hosts=tuple(inventory.hosts))


def _yaml_files() -> list[Path]:
    found = [ROOT / "inventories" / "hosts.yml"]
    for path in sorted(DATA.rglob("*")):
        parts = set(path.relative_to(DATA).parts)
        if path.suffix in (".yml", ".yaml") and not parts & {"group_vars", "host_vars"}:
            found.append(path)
    return found


#: YAML inventories here that the reader leaves to load_inventory, and why.
LEFT_TO_THE_LOADER = {
    "yaml_types/hosts.yml": "keys that are not strings, tags",
    "ini_dir/inv/05-legacy.yaml": "INI in a .yaml file",
}


@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_yaml_inventory_here_gives_the_loaders_names(path: Path) -> None:
    names = read_names([str(path)])
    relative = str(path.relative_to(DATA)) if path.is_relative_to(DATA) else ""
    if relative in LEFT_TO_THE_LOADER:
        assert names is None
    else:
        assert names is not None
        assert names == _loaded([str(path)])
    lines = scan_names([str(path)])
    assert lines is None or lines == names


def test_several_sources_merge_as_the_loader_merges_them() -> None:
    spec = json.loads((DATA / "multi_source" / "case.json").read_text())
    files = [str(DATA / "multi_source" / s) for s in spec["sources"] if s.endswith(".yml")]
    assert len(files) == 2
    assert read_names(files) == _loaded(files)
    assert read_names([*files, *files[:1]]) == _loaded([*files, *files[:1]])


def _write(tmp_path: Path, text: str, name: str = "hosts.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_order_ranges_shared_hosts_and_skipped_definitions(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """\
zeta:
  hosts:
    z1:
all:
  vars: {deep: {list: [1, {x: null}], when: 2024-01-01}, port: 22}
  hosts:
    top[1:2]:
  children:
    web:
      hosts:
        web[01:03]: {ansible_host: 10.0.0.1, tags: [a, b]}
        "db:2222":
      children:
        inner: ~
        skipped: 3
        listed: [a]
    db:
      hosts: db
      children: web
    eu:
      hosts: {web02: , z1: }
      other_key: {kept: out}
    empty:
plain_string: text
""",
    )
    names = read_names([str(path)])
    assert names == _loaded([str(path)])
    assert names is not None
    assert names.groups == ("all", "ungrouped", "zeta", "web", "inner", "db", "eu", "empty")
    assert names.hosts == ("z1", "top1", "top2", "web01", "web02", "web03", "db")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("all:\n  hosts:\n    a: &x {v: 1}\n    b: *x\n", id="alias"),
        pytest.param("all:\n  hosts:\n    a: &x {v: 1}\n", id="anchor"),
        pytest.param("all:\n  vars:\n    k: !vault |\n      $ANSIBLE\n", id="vault tag"),
        pytest.param("all:\n  vars:\n    k: !!str 1\n", id="explicit tag"),
        pytest.param("all:\n  vars:\n    k: !unsafe x\n", id="unsafe tag"),
        pytest.param("all:\n  hosts:\n    a:\n      <<: {v: 1}\n", id="merge key"),
        pytest.param("all:\n  vars:\n    x: {a: 1, a: 2}\n", id="duplicate nested key"),
        pytest.param("all:\n  hosts:\n    a:\n  hosts:\n    b:\n", id="duplicate key"),
        pytest.param("all:\n  hosts:\n    12:\n", id="number as host"),
        pytest.param("all:\n  vars:\n    1: a\n", id="key not a string"),
        pytest.param("all:\n  hosts:\n    ? [a]\n    : 1\n", id="complex key"),
        pytest.param("all:\n  hosts: [a, b]\n", id="hosts as a list"),
        pytest.param("all:\n  hosts: 3\n", id="hosts as a number"),
        pytest.param("all:\n  hosts:\n    a: text\n", id="host vars not a mapping"),
        pytest.param("all:\n  hosts:\n    a: [1]\n", id="host vars a list"),
        pytest.param("all:\n  hosts: [unclosed\n", id="bad YAML"),
        pytest.param("all:\n  hosts:\n    a:\n---\nb:\n", id="two documents"),
        pytest.param("", id="empty"),
        pytest.param("# nothing\n", id="only a comment"),
        pytest.param("- a\n- b\n", id="a list"),
        pytest.param("[web]\nweb01\n", id="INI"),
        pytest.param("plugin: constructed\n", id="plugin"),
        pytest.param("_meta: {hostvars: {}}\nall: {hosts: [a]}\n", id="ansible-inventory list"),
        pytest.param("all:\n  hosts:\n    web[3:1]:\n", id="reversed range"),
        pytest.param("all:\n  hosts:\n    web[1:x]:\n", id="bad range"),
        pytest.param("a:\n  children:\n    b:\n      children:\n        a:\n", id="cycle"),
        pytest.param("a:\n  children:\n    a:\n", id="own child"),
        pytest.param("a:\n  children:\n    all:\n", id="all as a child"),
        pytest.param(
            "ungrouped:\n  children:\n    web:\n      hosts: web01\n", id="ungrouped's children"
        ),
        pytest.param("all:\n  hosts:\n    -bad:\n", id="host name refused"),
        pytest.param("all:\n  vars:\n    ansible_group_priority: high\n", id="bad priority"),
        pytest.param("all:\n  vars:\n    ansible_group_priority: '2'\n", id="priority text"),
        pytest.param("all:\n  vars:\n    when: 2024-13-45\n", id="bad date"),
        pytest.param("all:\n  vars:\n    n: 0x_\n", id="bad number"),
        pytest.param('"":\n  hosts:\n    a:\n', id="empty group name"),
        pytest.param("$ANSIBLE_VAULT;1.1;AES256\n3132\n", id="vault file"),
        pytest.param("#!/bin/sh\nall:\n  hosts:\n    a:\n", id="script"),
        pytest.param("all:\n  hosts:\n    a:\n      x: \x07\n", id="bad character"),
    ],
)
def test_what_it_is_not_sure_of_is_left_to_the_loader(tmp_path: Path, text: str) -> None:
    path = str(_write(tmp_path, text))
    assert read_names([path]) is None
    assert scan_names([path]) is None


@pytest.mark.parametrize("reader", [read_names, scan_names], ids=["events", "lines"])
def test_other_kinds_of_sources_are_left_to_the_loader(
    tmp_path: Path, reader: Callable[[list[str]], InventoryNames | None]
) -> None:
    good = "all:\n  hosts:\n    a:\n"
    assert reader([str(_write(tmp_path, good))]) is not None
    assert reader([str(_write(tmp_path, good, "hosts.json"))]) is None
    assert reader([str(_write(tmp_path, good, "hosts"))]) is None
    assert reader([str(_write(tmp_path, "a\nb\n", "hosts.list"))]) is None
    assert reader(["a,b"]) is None
    assert reader([str(tmp_path)]) is None  # a directory
    assert reader([str(tmp_path / "missing.yml")]) is None
    (tmp_path / "latin1.yml").write_bytes(b"all:\n  hosts:\n    caf\xe9:\n")
    assert reader([str(tmp_path / "latin1.yml")]) is None
    # One source it is unsure of: the whole list goes to the loader.
    assert reader([str(tmp_path / "hosts.yml"), "a,b"]) is None


def test_a_cache_miss_reads_the_names_without_the_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, "all:\n  children:\n    web:\n      hosts:\n        web[1:3]:\n")

    def refuse(sources: object) -> None:
        raise AssertionError("load_inventory was called")

    monkeypatch.setattr(remoteops.inventory, "load_inventory", refuse)
    cache = tmp_path / "cache"
    names = inventory_names([str(path)], cache_dir=cache)
    assert names.hosts == ("web1", "web2", "web3")
    assert names.groups == ("all", "ungrouped", "web")
    assert len(list(cache.iterdir())) == 1  # cached as before
    path.write_text("all:\n  hosts:\n    db1:\n")
    assert inventory_names([str(path)], cache_dir=cache).hosts == ("db1",)


# --- generated inventories ------------------------------------------------------------

_GROUP = st.sampled_from(["all", "ungrouped", "web", "db", "eu", "us", "g1"])
_HOST = st.sampled_from(
    ["web01", "web02", "db01", "h1", "web[01:03]", "db[a:c]", "h:2222", "10.0.0.1", "-bad"]
)
_SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70000),
    st.sampled_from(["text", "2024-01-01", "0777", "1:30", "", "{{ x }}", "yes", "1.5"]),
)
_VALUES = st.recursive(
    _SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3),
    ),
    max_leaves=6,
)
_VARS = st.dictionaries(
    st.sampled_from(["ansible_host", "ansible_port", "x", "nested", "ansible_group_priority"]),
    _VALUES,
    max_size=3,
)


def _group_def(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.fixed_dictionaries(
            {},
            optional={
                "hosts": st.one_of(
                    st.none(),
                    _HOST,
                    st.dictionaries(_HOST, st.one_of(st.none(), _VARS), max_size=4),
                ),
                "children": st.one_of(
                    st.none(), _GROUP, st.dictionaries(_GROUP, children, max_size=3)
                ),
                "vars": st.one_of(st.none(), _VARS),
                "other": _VALUES,
            },
        ),
    )


_GROUP_DEF = st.recursive(st.none(), _group_def, max_leaves=8)
_INVENTORY = st.dictionaries(_GROUP, _GROUP_DEF, min_size=1, max_size=4)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    inventory=_INVENTORY,
    more=st.one_of(st.none(), _INVENTORY),
    flow=st.sampled_from([False, True, None]),
)
def test_generated_inventories_give_the_loaders_names_or_none(
    tmp_path_factory: pytest.TempPathFactory,
    inventory: dict[str, Any],
    more: dict[str, Any] | None,
    flow: bool | None,
) -> None:
    where = tmp_path_factory.mktemp("gen")
    sources = []
    for index, data in enumerate([inventory] if more is None else [inventory, more]):
        path = where / f"inv{index}.yml"
        path.write_text(yaml.safe_dump(data, default_flow_style=flow, sort_keys=False))
        sources.append(str(path))
    names = read_names(sources)
    expected = _loaded(sources)
    lines = scan_names(sources)
    assert lines is None or lines == expected
    if names is not None:
        assert names == expected
    elif expected is not None:
        # Unsure only of what it is documented to leave to the loader: a priority
        # that is not a plain number, children of 'ungrouped'.
        text = "".join(Path(s).read_text() for s in sources)
        ungrouped = load_inventory(sources).groups["ungrouped"]
        assert "ansible_group_priority" in text or ungrouped.children


# Raw YAML text, tokens unquoted: keys and values that resolve to other types (yes,
# 1, ~, dates, merge keys), anchors, aliases, tags and flow collections.
_TOKEN = st.sampled_from(
    [
        "web",
        "db",
        "h1",
        "yes",
        "1",
        "~",
        "null",
        "''",
        '"q"',
        "2024-01-01",
        "2024-13-45",
        "0x_",
        "<<",
        "-bad",
        "web[1:2]",
        "h:22",
        "a b",
        "&a x",
        "*a",
        "!t x",
        "[a, b]",
        "{a: 1}",
        "",
    ]
)
_KEY = st.sampled_from(["hosts", "children", "vars", "other", "web", "db", "all", "ungrouped"])


def _raw_tree(depth: int) -> st.SearchStrategy[list[tuple[str, Any]]]:
    value: st.SearchStrategy[Any] = (
        _TOKEN if depth == 0 else st.one_of(_TOKEN, st.deferred(lambda: _raw_tree(depth - 1)))
    )
    return st.lists(st.tuples(st.one_of(_KEY, _TOKEN), value), min_size=1, max_size=3)


def _render(tree: list[tuple[str, Any]], indent: int = 0) -> list[str]:
    lines = []
    for key, value in tree:
        if isinstance(value, list):
            lines.append(" " * indent + f"{key}:")
            lines += _render(value, indent + 2)
        else:
            lines.append(" " * indent + f"{key}: {value}".rstrip())
    return lines


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=_raw_tree(4))
def test_raw_yaml_gives_the_loaders_names_or_none(
    tmp_path_factory: pytest.TempPathFactory, tree: list[tuple[str, Any]]
) -> None:
    path = tmp_path_factory.mktemp("raw") / "hosts.yml"
    path.write_text("\n".join(_render(tree)) + "\n")
    names = read_names([str(path)])
    lines = scan_names([str(path)])
    if names is not None or lines is not None:
        expected = _loaded([str(path)])
        assert names is None or names == expected
        assert lines is None or lines == expected


# --- the lines of block-style files (remoteops.inventory_lines) ------------------------

BLOCK_STYLE = """\
---
# the fleet
all:
  vars:
    ansible_user: deploy   # everyone
    ntp: [ntp1.example.com, '10.0.0.9']
    motd: "no # comment here"
    nested:
      level: 2
      ratio: 1.5
  children:
    web:
      hosts:
        web01: {ansible_host: 10.0.0.1, ansible_port: 2222}
        web-02.example.com:
          ansible_host: 10.0.0.2
          enabled: true

        10.0.0.3: ~
      vars: {http_port: 80}
    db:
      children:
        db_eu:
          hosts:
            db01: null
        empty:
      hosts:
        web01:
    _private:
  hosts:
    solo:
other_top:
  note: skipped by the loader
"""


def test_a_block_style_inventory_is_read_from_its_lines(tmp_path: Path) -> None:
    path = str(_write(tmp_path, BLOCK_STYLE))
    names = scan_names([path])
    assert names is not None
    assert names == _loaded([path])
    assert names.groups == (
        "all",
        "ungrouped",
        "web",
        "db",
        "db_eu",
        "empty",
        "_private",
        "other_top",
    )
    assert names.hosts == ("web01", "web-02.example.com", "10.0.0.3", "db01", "solo")


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param("    web:\n", "    'web':\n", id="quoted key"),
        pytest.param("        db01: null", "        db[01:02]:", id="range"),
        pytest.param("        db01: null", "        db01:2222:", id="port"),
        pytest.param("        db01: null", "        yes:", id="bool key"),
        pytest.param("        db01: null", "        1:", id="int key"),
        pytest.param("        db01: null", "        1.5:", id="float key"),
        pytest.param("        db01: null", "        ~:", id="null key"),
        pytest.param("        db01: null", "        2024-01-01:", id="date key"),
        pytest.param("        db01: null", "        db01: text", id="host vars a string"),
        pytest.param("        db01: null", "        db01: [1]", id="host vars a list"),
        pytest.param("        db01: null", "        db01: {a: 1, a: 2}", id="duplicate in flow"),
        pytest.param("        db01: null", "        db01: &x {a: 1}", id="anchor"),
        pytest.param("      level: 2", "      level: *x", id="alias"),
        pytest.param("      level: 2", "      level: !!str 2", id="tag"),
        pytest.param("      level: 2", "      <<: {a: 1}", id="merge key"),
        pytest.param("      level: 2", "      level: |\n        2", id="block scalar"),
        pytest.param("      level: 2", "      level:\n        - 2", id="block sequence"),
        pytest.param("      level: 2", "      level: 2\n      level: 3", id="duplicate key"),
        pytest.param("      level: 2", "      level: 2024-13-45", id="bad date"),
        pytest.param("      level: 2", "      level: 0x_", id="bad number"),
        pytest.param("      level: 2", "      level: -1", id="sign"),
        pytest.param("      level: 2", "      level: " + "1" * 5000, id="too many digits"),
        pytest.param("      level: 2", "      level: two\n        words", id="continued"),
        pytest.param("      level: 2", "      level: {a: 1,\n        b: 2}", id="flow on lines"),
        pytest.param("      level: 2", "      level: {a: {b: 1}}", id="nested flow"),
        pytest.param("      level: 2", '      level: "\\t"', id="escape"),
        pytest.param("      level: 2", "      level: 'a\n        b'", id="quoted on lines"),
        pytest.param("      level: 2", "      level: 2 #\u00e9", id="non-ASCII comment"),
        pytest.param("      level: 2", "      level:\t2", id="tab"),
        pytest.param("      level: 2", "      level: 2#x", id="hash in a word"),
        pytest.param("      level: 2", "      level:2", id="no space"),
        pytest.param("    ansible_user:", "    ansible_group_priority:", id="priority"),
        pytest.param("    vars: {http_port: 80}", "    vars: text", id="vars a string"),
        pytest.param("      hosts:\n        web01:\n", "      hosts: web01\n", id="hosts a string"),
        pytest.param("        empty:", "        empty: {}", id="group on its line"),
        pytest.param("        empty:", "        all:", id="all as a child"),
        pytest.param("        empty:", "        db:", id="cycle"),
        pytest.param("other_top:", "ungrouped:\n  children:\n    g9:\nother_top:", id="ungrouped"),
        pytest.param("other_top:", "plugin:", id="plugin"),
        pytest.param("other_top:", "_meta:", id="meta"),
        pytest.param("other_top:", "...\nother_top:", id="document end"),
        pytest.param("other_top:", "---\nother_top:", id="second document"),
        pytest.param("other_top:", "%YAML 1.1\nother_top:", id="directive"),
        pytest.param("\nall:\n", "\n all:\n", id="indented root"),
        pytest.param("    web:", "   web:", id="indentation of no mapping"),
        pytest.param("    web:", "    web: ", id="trailing space"),  # read: still certain
    ],
)
def test_lines_not_certain_are_left_to_the_next_reader(tmp_path: Path, old: str, new: str) -> None:
    assert old in BLOCK_STYLE
    path = str(_write(tmp_path, BLOCK_STYLE.replace(old, new, 1)))
    names = scan_names([path])
    if new.endswith(": "):
        assert names == _loaded([path]) != None  # noqa: E711
    else:
        assert names is None


# Generated block-style inventories of the kind the lines settle: every one the
# loader accepts must be read from its lines, with the loader's names.
_LINE_GROUP = st.sampled_from(["all", "ungrouped", "web", "db", "eu", "g_1", "x.y"])
_LINE_HOST = st.sampled_from(["web01", "db01", "h1", "web-02", "10.0.0.1", "a.example.com"])
_LINE_VALUE = st.sampled_from(
    [
        "text",
        "two words",
        "/usr/bin/python3",
        "22",
        "0777",
        "1.5",
        "10.0.0.1",
        "true",
        "No",
        "null",
        "~",
        "'quoted: # x'",
        '"{{ x }}"',
        "''",
        "[a, 1, 'b, c']",
        "{}",
        "[]",
        "{a: 1, b: text}",
        "user@host",
    ]
)
_LINE_VALUES: st.SearchStrategy[Any] = st.recursive(
    _LINE_VALUE,
    lambda inner: st.dictionaries(st.sampled_from(["a", "b", "c"]), inner, max_size=3),
    max_leaves=8,
)
_LINE_VARS = st.dictionaries(
    st.sampled_from(["ansible_host", "ansible_port", "x", "nested"]), _LINE_VALUES, max_size=3
)
_LINE_HOST_VARS = st.one_of(
    st.none(),
    st.sampled_from(["~", "null", "{}", "{ansible_host: 10.0.0.1, ansible_port: 22}"]),
    _LINE_VARS,
)


def _line_group(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.just("~"),
        st.fixed_dictionaries(
            {},
            optional={
                "hosts": st.one_of(
                    st.none(), st.just("~"), st.dictionaries(_LINE_HOST, _LINE_HOST_VARS)
                ),
                "children": st.dictionaries(_LINE_GROUP, children, max_size=3),
                "vars": st.one_of(st.none(), st.just("{x: 1}"), _LINE_VARS),
                "other": _LINE_VALUES,
            },
        ),
    )


_LINE_INVENTORY = st.dictionaries(
    _LINE_GROUP, st.recursive(st.none(), _line_group, max_leaves=8), min_size=1, max_size=4
)


def _render_block(data: dict[str, Any], indent: int, step: int, comments: bool) -> list[str]:
    lines = []
    for key, value in data.items():
        note = "  # note" if comments else ""
        if isinstance(value, dict):
            lines.append(" " * indent + f"{key}:{note}")
            if comments:
                lines += ["", " " * (indent + 1) + "# inside"]
            lines += _render_block(value, indent + step, step, comments)
        else:
            lines.append(" " * indent + f"{key}:{'' if value is None else ' ' + value}{note}")
    return lines


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    inventory=_LINE_INVENTORY,
    more=st.one_of(st.none(), _LINE_INVENTORY),
    step=st.sampled_from([1, 2, 4]),
    comments=st.booleans(),
    marker=st.booleans(),
)
def test_generated_block_style_inventories_are_read_from_their_lines(
    tmp_path_factory: pytest.TempPathFactory,
    inventory: dict[str, Any],
    more: dict[str, Any] | None,
    step: int,
    comments: bool,
    marker: bool,
) -> None:
    where = tmp_path_factory.mktemp("lines")
    sources = []
    for index, data in enumerate([inventory] if more is None else [inventory, more]):
        path = where / f"inv{index}.yaml"
        text = "\n".join(_render_block(data, 0, step, comments)) + "\n"
        path.write_text("---\n" + text if marker else text)
        sources.append(str(path))
    names = scan_names(sources)
    expected = _loaded(sources)
    if expected is not None and not load_inventory(sources).groups["ungrouped"].children:
        assert names == expected  # read from the lines, not left to the next reader
    else:
        assert names is None  # refused by the loader, or 'ungrouped' with children
