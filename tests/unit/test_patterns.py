"""Host patterns (Ansible syntax plus node sets); whole-inventory answers recorded
from ansible-core are checked in test_inventory.py."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from remoteops.errors import InventoryError
from remoteops.inventory import Inventory, load_inventory
from remoteops.patterns import (
    is_address,
    parse_address,
    select_hosts,
    split_pattern,
    split_subscript,
)

YAML = """\
all:
  children:
    web:
      hosts:
        web[01:05]:
    db:
      hosts:
        db[1:3]:
    prod:
      hosts:
        web01:
        web02:
        db1:
    web-old:
      hosts:
        old1:
"""


@pytest.fixture
def inv(tmp_path: Path) -> Inventory:
    path = tmp_path / "hosts.yml"
    path.write_text(YAML)
    return load_inventory([path])


def names(inv: Inventory, pattern: str, limit: str | None = None) -> list[str]:
    return [h.name for h in inv.select(pattern, limit=limit)]


@pytest.mark.parametrize(
    ("pattern", "terms"),
    [
        ("a,b[1], c[2:3] , d", ["a", "b[1]", "c[2:3]", "d"]),
        ("web:&prod:!db", ["web", "&prod", "!db"]),
        ("host:22", ["host:22"]),
        ("web[0:2]", ["web[0:2]"]),
        ("web[01-03,05],db", ["web[01-03,05]", "db"]),
        ("web[01,03]:&db[1,2]:!x", ["web[01,03]", "&db[1,2]", "!x"]),
        (["a:b", "c"], ["a", "b", "c"]),
        ("  ", []),
    ],
)
def test_split_pattern(pattern: str | list[str], terms: list[str]) -> None:
    assert split_pattern(pattern) == terms


def test_split_subscript(caplog: pytest.LogCaptureFixture) -> None:
    assert split_subscript("web[0:2]") == ("web", (0, 2))
    assert split_subscript("web[-1]") == ("web", (-1, None))
    assert split_subscript("web[1:]") == ("web", (1, -1))
    assert split_subscript("~web[0:2]") == ("~web[0:2]", None)
    assert split_subscript("web") == ("web", None)
    with caplog.at_level(logging.WARNING):
        # Ansible's deprecated [x-y] subscript is not read: web[1-2] is a node set
        assert split_subscript("web[1-2]") == ("web[1-2]", None)
    assert caplog.text == ""


def test_parse_address() -> None:
    assert parse_address("h.example.com:2222") == ("h.example.com", 2222)
    assert parse_address("[2001:db8::1]:22") == ("2001:db8::1", 22)
    assert parse_address("2001:db8::1") == ("2001:db8::1", None)
    assert parse_address("10.0.0.[1:3]:22", allow_ranges=True) == ("10.0.0.[1:3]", 22)
    with pytest.raises(ValueError, match="range"):
        parse_address("web[1:3]")
    with pytest.raises(ValueError, match="not a valid"):
        parse_address("a b")
    assert is_address("web[01:03]")
    assert not is_address("web:&db")


def test_basic_operators(inv: Inventory) -> None:
    assert names(inv, "all") == [
        "web01",
        "web02",
        "web03",
        "web04",
        "web05",
        "db1",
        "db2",
        "db3",
        "old1",
    ]
    assert names(inv, "*") == names(inv, "all")
    assert names(inv, "web:&prod") == ["web01", "web02"]
    assert names(inv, "web:db:!prod") == ["web03", "web04", "web05", "db2", "db3"]
    # with a comma, Ansible splits on commas only: "db:!prod" is one (unmatched) term
    assert names(inv, "web,db:!prod") == names(inv, "web")
    # exclusions and intersections apply after every plain term, whatever the order
    assert names(inv, "!prod:web:&db") == []
    assert names(inv, "!prod") == ["web03", "web04", "web05", "db2", "db3", "old1"]
    assert names(inv, "&prod") == ["web01", "web02", "db1"]


def test_globs_regex_and_exact_names(inv: Inventory) -> None:
    assert names(inv, "web0[13]") == []  # Ansible reads [13] as a subscript of "web0"
    assert names(inv, "web0?") == ["web01", "web02", "web03", "web04", "web05"]
    assert names(inv, "web*") == [*names(inv, "web"), "old1"]  # group web-old matches too
    assert names(inv, "~db[12]") == ["db1", "db2"]
    assert names(inv, "~eb") == []  # regexes are anchored at the start (re.match)
    assert names(inv, "db2:web01") == ["db2", "web01"]


def test_subscripts(inv: Inventory) -> None:
    assert names(inv, "web[0]") == ["web01"]
    assert names(inv, "web[-1]") == ["web05"]
    assert names(inv, "web[1:2]") == ["web02", "web03"]
    assert names(inv, "web[3:]") == ["web04", "web05"]
    assert names(inv, "web[1:2]:db[0]") == ["web02", "web03", "db1"]
    with pytest.raises(InventoryError, match="subscripted pattern"):
        inv.select("web[9]")


def test_nodeset_terms(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "hosts.yml"
    path.write_text("compute:\n  hosts:\n    node[01:10]:\nweb:\n  hosts:\n    w[1:4]:\n")
    inv = load_inventory([path])
    assert names(inv, "node[01-03,05]") == ["node01", "node02", "node03", "node05"]
    assert names(inv, "compute:!node[02-09]") == ["node01", "node10"]
    assert names(inv, "node[01-04]:&node[03-06]") == ["node03", "node04"]
    assert names(inv, "node[08-10],w1") == ["node08", "node09", "node10", "w1"]
    # "web" is a group, yet web[1-2] is the node set web1,web2 (none here), never
    # Ansible's legacy subscript (its hosts 1 and 2: w2, w3)
    assert names(inv, "web[1-2]") == []
    assert names(inv, "web[1-2,4]") == []
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="remoteops.patterns"):
        assert names(inv, "node[09-12]") == ["node09", "node10"]
    assert "node[11-12]" in caplog.text
    with pytest.raises(InventoryError, match="ends before"):
        inv.select("node[05-01]")
    with pytest.raises(InventoryError, match=r"GROUP\[x:y\]"):
        inv.select("web[1-]")  # Ansible's legacy "from 1 on"; here a malformed node set


def test_nodesets_after_a_group_name_are_the_names_they_spell(
    inv: Inventory, caplog: pytest.LogCaptureFixture
) -> None:
    """web and db are groups whose hosts are web01.., db1..: a node set with the
    group's name as prefix names hosts, it is not a subscript of the group."""
    with caplog.at_level(logging.WARNING, logger="remoteops.patterns"):
        assert names(inv, "web[01-03]") == ["web01", "web02", "web03"]
        assert names(inv, "db[1-2]") == ["db1", "db2"]
        # [x] and [x:y] stay Ansible's subscripts: db[2] is the third host of group db
        assert names(inv, "web[02,05]:db[2]") == ["web02", "web05", "db3"]
        assert names(inv, "web:!web[01-03]") == ["web04", "web05"]
        assert names(inv, "all:&web[04-05]") == ["web04", "web05"]
    assert caplog.text == ""  # every name exists: nothing to warn about


@pytest.mark.parametrize("pattern", ["web[0:1]:db:!db2", "web:!web02", "prod", "all:!old1"])
def test_a_folded_selection_pasted_back_selects_the_same_hosts(
    inv: Inventory, pattern: str
) -> None:
    """`inventory list` prints the fold of what it selected; pasting it must select
    exactly those hosts (web[01-02] once selected web02-web03)."""
    from remoteops.nodeset import fold

    selected = names(inv, pattern)
    assert sorted(names(inv, fold(selected))) == sorted(selected)


def test_unmatched_terms_warn(inv: Inventory, caplog: pytest.LogCaptureFixture) -> None:
    from remoteops.logconfig import NOTICE

    with caplog.at_level(logging.WARNING, logger="remoteops.patterns"):
        assert names(inv, "nothere:web01") == ["web01"]
        assert names(inv, "nothere") == []
        assert names(inv, "web:!nosuch") == names(inv, "web")
        assert names(inv, "web:&nosuch") == []
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "no host or group matches 'nothere' (in 'nothere:web01'); ignoring it",
        "no host or group matches 'nothere'; ignoring it",
        "no host or group matches 'nosuch' (in 'web:!nosuch'); it excludes nothing",
        "no host or group matches 'nosuch' (in 'web:&nosuch'); the intersection leaves no host",
    ]
    # notices: one plain line on stderr (see test_logconfig), not a logger-prefixed one
    assert all(getattr(r, k) == v for r in caplog.records for k, v in NOTICE.items())


def test_limit_and_files(inv: Inventory, tmp_path: Path) -> None:
    assert names(inv, "all", limit="prod") == ["web01", "web02", "db1"]
    assert names(inv, "web", limit="!prod") == ["web03", "web04", "web05"]
    retry = tmp_path / "site.retry"
    retry.write_text("db3\nweb04\n\nunknown\n")
    assert names(inv, "all", limit=f"@{retry}") == ["web04", "db3"]
    assert names(inv, f"@{retry}") == ["db3", "web04"]
    with pytest.raises(InventoryError, match="not found"):
        inv.select("all", limit=f"@{tmp_path / 'missing'}")
    with pytest.raises(InventoryError, match="not a directory"):
        inv.select("all", limit=f"@{tmp_path}")
    commented = tmp_path / "commented.txt"
    commented.write_text("# failed hosts\nweb02  # timed out\n\n  # end\ndb1\n")
    assert names(inv, f"@{commented}") == ["web02", "db1"]


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing failed\n", "  # a\n\n#b"])
def test_a_file_naming_no_host_selects_no_host(
    inv: Inventory, tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str
) -> None:
    """An empty retry file (a clean run) must never widen a run to the whole fleet."""
    empty = tmp_path / "failed.txt"
    empty.write_text(text)
    with caplog.at_level(logging.WARNING, logger="remoteops.patterns"):
        assert names(inv, "all", limit=f"@{empty}") == []
        assert names(inv, f"@{empty}") == []
        assert names(inv, f"@{empty}:!web") == []
        assert names(inv, f"@{empty}:&web") == []
    assert caplog.text.count(str(empty)) == 4
    assert "names no host" in caplog.text
    # a pattern of only exclusions still starts from all, as in Ansible, also from a file
    assert names(inv, "!web:!db") == ["old1"]
    exclusions = tmp_path / "exclusions.txt"
    exclusions.write_text("!web\n!db\n")
    assert names(inv, f"@{exclusions}") == ["old1"]


def test_bad_regex(inv: Inventory) -> None:
    with pytest.raises(InventoryError, match="invalid host pattern"):
        inv.select("~web(")


def test_select_hosts_without_inventory() -> None:
    groups = {"all": ["a", "b", "c"], "g": ["c", "a"]}
    got = select_hosts(
        "g:b",
        host_names=["a", "b", "c"],
        group_names=list(groups),
        hosts_of_group=lambda g: groups[g],
    )
    assert got == ["c", "a", "b"]
