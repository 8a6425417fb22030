"""remoteops.inventory_names: the names of a YAML inventory from the parser's events,
always those load_inventory gives, or None (then the caller loads the inventory)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import remoteops.inventory
from remoteops.errors import InventoryError
from remoteops.inventory import load_inventory
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
    assert read_names([str(_write(tmp_path, text))]) is None


def test_other_kinds_of_sources_are_left_to_the_loader(tmp_path: Path) -> None:
    good = "all:\n  hosts:\n    a:\n"
    assert read_names([str(_write(tmp_path, good))]) is not None
    assert read_names([str(_write(tmp_path, good, "hosts.json"))]) is None
    assert read_names([str(_write(tmp_path, good, "hosts"))]) is None
    assert read_names([str(_write(tmp_path, "a\nb\n", "hosts.list"))]) is None
    assert read_names(["a,b"]) is None
    assert read_names([str(tmp_path)]) is None  # a directory
    assert read_names([str(tmp_path / "missing.yml")]) is None
    (tmp_path / "latin1.yml").write_bytes(b"all:\n  hosts:\n    caf\xe9:\n")
    assert read_names([str(tmp_path / "latin1.yml")]) is None
    # One source it is unsure of: the whole list goes to the loader.
    assert read_names([str(tmp_path / "hosts.yml"), "a,b"]) is None


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
    if names is not None:
        assert names == _loaded([str(path)])
