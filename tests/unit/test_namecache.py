"""remoteops.namecache: inventory names for shell completion, cached while files are unchanged.

tests/unit/test_completion.py drives it through a real bash.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import remoteops.inventory
from remoteops.errors import InventoryError
from remoteops.namecache import complete_pattern, inventory_names

INVENTORY = """\
all:
  children:
    web:
      hosts:
        web01:
        web02:
    db:
      hosts:
        db01:
"""


def _no_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(sources: object) -> None:
        raise AssertionError("the inventory was loaded, not taken from the cache")

    monkeypatch.setattr(remoteops.inventory, "load_inventory", refuse)


def test_names_are_cached_privately_and_reused_while_the_file_is_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(INVENTORY)
    cache = tmp_path / "cache" / "remoteops"
    names = inventory_names([str(inventory)], cache_dir=cache)
    assert names.hosts == ("web01", "web02", "db01")
    assert {"all", "web", "db"} <= set(names.groups)
    (written,) = cache.iterdir()  # no temporary file left beside it
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    with monkeypatch.context() as patch:
        _no_loading(patch)
        assert inventory_names([str(inventory)], cache_dir=cache) == names
    # The same size and a new modification time: read again, not from the cache.
    inventory.write_text(INVENTORY.replace("db01", "db02"))
    os.utime(inventory, ns=(1, 1))
    assert inventory_names([str(inventory)], cache_dir=cache).hosts[-1] == "db02"
    assert len(list(cache.iterdir())) == 1  # one file per list of sources, replaced


def test_a_directory_inventory_is_reread_when_a_file_is_added(tmp_path: Path) -> None:
    top = tmp_path / "inv"
    top.mkdir()
    (top / "a.yml").write_text(INVENTORY)
    cache = tmp_path / "cache"
    assert "db03" not in inventory_names([str(top)], cache_dir=cache).hosts
    (top / "b.yml").write_text("all:\n  hosts:\n    db03:\n")
    assert "db03" in inventory_names([str(top)], cache_dir=cache).hosts


def test_a_fifo_is_refused_without_being_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InventoryError, match="not a regular file or directory"):
        inventory_names([str(fifo)], cache_dir=tmp_path / "cache")


def test_a_cache_that_cannot_be_written_is_passed_over(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(INVENTORY)
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    assert inventory_names([str(inventory)], cache_dir=not_a_dir / "remoteops").hosts


def test_a_pattern_completes_term_by_term() -> None:
    names = ["web", "db", "web01", "web02", "db01", "10.0.0.1:2205"]
    assert complete_pattern("w", names) == ["web", "web01", "web02"]
    assert complete_pattern("web:&d", names) == ["web:&db", "web:&db01"]
    assert complete_pattern("web,!db0", names) == ["web,!db01"]
    assert complete_pattern("10.0.0.1:2", names) == ["10.0.0.1:2205"]  # a name with ':'
    assert complete_pattern("db,@lis", names) == []
    assert complete_pattern("web:", names, terms=False) == []
