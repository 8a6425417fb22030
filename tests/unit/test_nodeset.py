"""ClusterShell-style node sets."""

from __future__ import annotations

import random

import pytest

from remoteops.errors import InventoryError
from remoteops.nodeset import expand, fold, natural_key


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ("web01", ["web01"]),
        ("web[01-03]", ["web01", "web02", "web03"]),
        ("web[8-10]", ["web8", "web9", "web10"]),
        ("web[08-10]", ["web08", "web09", "web10"]),
        ("web[01-02,25],db1", ["web01", "web02", "web25", "db1"]),
        ("r[1-2]n[1-2]", ["r1n1", "r1n2", "r2n1", "r2n2"]),
        ("n[1-10/4]", ["n1", "n5", "n9"]),
        ("[1-2]x.example.com", ["1x.example.com", "2x.example.com"]),
        ("a, b ,a", ["a", "b"]),
    ],
)
def test_expand(spec: str, names: list[str]) -> None:
    assert expand(spec) == names


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty node set"),
        ("web[1-3", "'\\[' without '\\]'"),
        ("web1-3]", "'\\]' without '\\['"),
        ("web[[1-3]]", "nested"),
        ("web[3-1]", "ends before it starts"),
        ("web[a-c]", "bad range"),
        ("web[]", "bad range"),
        ("web[1-3/0]", "step"),
        ("a,,b", "empty element"),
        ("n[0-9999999]", "too large"),
        ("n[0-999]m[0-999]x[0-999]", "too many"),
    ],
)
def test_expand_rejects_malformed(spec: str, message: str) -> None:
    with pytest.raises(InventoryError, match=message):
        expand(spec)


def test_fold_examples() -> None:
    names = [f"web{i:02d}" for i in range(1, 21)] + ["web25", "db03", "db01", "db02"]
    assert fold(names) == "db[01-03],web[01-20,25]"
    assert fold(["r1n1", "r1n2", "r1n3", "r2n1", "r2n2", "r2n3"]) == "r[1-2]n[1-3]"
    assert fold(["web9", "web10", "web2"]) == "web[2,9-10]"
    assert fold(["b", "a", "a"]) == "a,b"
    assert fold(["x1.example.com", "x2.example.com"]) == "x[1-2].example.com"
    assert fold([]) == ""


def test_fold_keeps_padding_apart() -> None:
    folded = fold(["n1", "n01", "n2", "n02"])
    assert sorted(expand(folded)) == ["n01", "n02", "n1", "n2"]


def test_fold_partial_grid_does_not_invent_names() -> None:
    names = ["r1n1", "r1n2", "r2n1"]
    assert sorted(expand(fold(names))) == sorted(names)


def test_fold_expand_round_trip_random() -> None:
    rng = random.Random(7)
    for _ in range(200):
        names = {
            rng.choice(["web", "db", "r1n", "x-"])
            + f"{rng.randint(0, 30):0{rng.choice([1, 2, 3])}d}"
            + rng.choice(["", ".dc1", "-b"])
            for _ in range(rng.randint(1, 25))
        }
        folded = fold(names)
        assert set(expand(folded)) == names, folded
        assert len(expand(folded)) == len(names)


def test_fold_rejects_unfoldable_names() -> None:
    with pytest.raises(InventoryError):
        fold(["a,b"])
    with pytest.raises(InventoryError):
        fold(["web[1]"])


def test_natural_key() -> None:
    assert sorted(["web10", "web9", "db1", "web09"], key=natural_key) == [
        "db1",
        "web09",
        "web9",
        "web10",
    ]


def test_fold_keeps_host_port_names_whole() -> None:
    """A host list's same address on two ports gives names such as 10.0.0.1:2205;
    folded into 10.0.0.1:[2205-2206] they would no longer paste back as a pattern."""
    names = ["10.0.0.1", "10.0.0.1:2205", "10.0.0.1:2206", "[2001:db8::1]:2200", "10.0.0.2"]
    assert fold(names) == "10.0.0.[1-2],10.0.0.1:2205,10.0.0.1:2206,[2001:db8::1]:2200"
