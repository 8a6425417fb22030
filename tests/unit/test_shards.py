"""The pure logic of process shards: parsing --procs, choosing a count, splitting hosts."""

from __future__ import annotations

import pytest

from remoteops import shards
from remoteops.errors import UsageError
from remoteops.shards import BREAK_EVEN_HOSTS, choose_procs, parse_procs, split
from remoteops.target import Target


def test_parse_procs() -> None:
    assert parse_procs(None) is None
    assert parse_procs("auto") is None
    assert parse_procs(" AUTO ") is None
    assert parse_procs("3") == 3
    for bad in ("0", "-1", "two", "", "1.5"):
        with pytest.raises(UsageError, match=r"^--procs .*: give a number of processes"):
            parse_procs(bad)


def test_auto_is_one_process_below_the_break_even_then_one_per_core(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shards, "cores", lambda: 8)
    assert choose_procs(None, BREAK_EVEN_HOSTS - 1, 256) == 1
    assert choose_procs(None, BREAK_EVEN_HOSTS, 256) == 2  # at least half of it each
    assert choose_procs(None, 10_000, 256) == 8
    # Never more processes than hosts, or hosts in flight.
    assert choose_procs(5, 3, 256) == 3
    assert choose_procs(5, 100, 2) == 2
    assert choose_procs(1, 10_000, 256) == 1


def test_split_interleaves_so_a_slow_group_is_spread() -> None:
    targets = [Target(name=f"h{i}", address="127.0.0.1", port=22, user="u") for i in range(7)]
    shares = split(targets, 3)
    assert [[t.name for t in share] for share in shares] == [
        ["h0", "h3", "h6"],
        ["h1", "h4"],
        ["h2", "h5"],
    ]
