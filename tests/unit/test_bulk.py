"""Pure parts of remoteops.bulk: listings, the put plan run by a local ``sh``, archives."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from remoteops import bulk

HOSTILE_NAMES = ["a b", "it's", "$(touch pwned)", "-rf", "new\nline", "back\\slash", "ü"]


def _put_listing(tree: bytes) -> bytes:
    return bulk.LIST_MARK + b"1000\n1000\nA d 64 /\0A d 64 /srv\0" + tree


def test_put_listing_is_parsed_with_every_field() -> None:
    tree = b"T d 64 755 1000 1000 4096 1700000000.5 1700000001.0 .\0"
    tree += b"T f 64 640 0 0 12 1600000000.9 -5.25 ./a\nb\0"
    listing = bulk.parse_put_listing(_put_listing(tree))
    assert listing is not None
    assert (listing.uid, listing.gid) == (1000, 1000)
    assert listing.ancestors == {"/": ("d", 64), "/srv": ("d", 64)}
    entry = bulk.put_entry(listing.tree[b"a\nb"])
    assert entry == bulk.Entry("f", 0o640, 12, 1600000000, -5, 0, 0)  # whole seconds


@pytest.mark.parametrize(
    "stdout",
    [
        b"",  # no find at all
        b"remoteops-list 1\n1000\n",  # cut short
        _put_listing(b"T f 64 640 0 0 12 1 1 ./a"),  # a record without its NUL
        _put_listing(b"T f 64 640 0 0 12 1 1 ./a\0garbage\0"),  # not in the form asked for
        bulk.LIST_MARK + b"1000\n1000\nT f 64 640 0 0 12 1 1 ./a\0",  # no ancestors: no GNU find
        b"sh: find: not found\n",
    ],
)
def test_a_put_listing_not_in_the_form_asked_for_is_none(stdout: bytes) -> None:
    assert bulk.parse_put_listing(stdout) is None


def test_get_listing_is_parsed_and_refuses_malformed_output() -> None:
    body = b"0 d 755 4096 1 1 /srv\x001 f 4755 3 1700000000.1 2 /srv/x\0"
    parsed = bulk.parse_get_listing(bulk.LIST_MARK + b"/home/u\0" + body)
    assert parsed == (
        b"/home/u",
        [
            (b"0", b"d", b"755", b"4096", b"1", b"1", b"/srv"),
            (b"1", b"f", b"4755", b"3", b"1700000000", b"2", b"/srv/x"),
        ],
    )
    assert bulk.parse_get_listing(bulk.LIST_MARK + b"/home/u") is None
    assert bulk.parse_get_listing(bulk.LIST_MARK + b"/home/u\0" + body[:-1]) is None
    assert bulk.parse_get_listing(b"/home/u\0" + body) is None


def _run_plan(tmp_path: Path, plan: bulk.PutPlan, staged: dict[str, bytes]) -> tuple[int, bytes]:
    """Lay ``staged`` out under STAGE/t/ and run the plan as the far side would."""
    stage, top = tmp_path / "stage", tmp_path / "top"
    top.mkdir()
    for rel, data in staged.items():
        path = stage / "t" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (stage / "plan").write_bytes(plan.script())
    if plan.sums:
        (stage / "sums").write_bytes(plan.checklist())
    done = subprocess.run(
        ["sh", str(stage / "plan"), str(stage), str(top)],
        capture_output=True,
        check=False,
        cwd=tmp_path,
        timeout=30,
    )
    return done.returncode, done.stdout


def test_the_plan_moves_files_with_any_name_and_runs_nothing_they_hold(tmp_path: Path) -> None:
    plan = bulk.PutPlan()
    staged = {name: name.encode() for name in HOSTILE_NAMES}
    staged["sub/inner"] = b"inner"
    plan.moves[""] = [*HOSTILE_NAMES, "sub"]
    plan.chmod[0o600] = ["-rf"]
    plan.sums = [(hashlib.sha256(data).hexdigest(), rel) for rel, data in staged.items()]
    status, stdout = _run_plan(tmp_path, plan, staged)
    assert (status, stdout) == (0, b"")  # nothing left behind in the stage
    for name in HOSTILE_NAMES:
        assert (tmp_path / "top" / name).read_bytes() == name.encode()
    assert (tmp_path / "top" / "sub" / "inner").read_bytes() == b"inner"
    assert (tmp_path / "top" / "-rf").stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "pwned").exists()
    assert not (tmp_path / "top" / "pwned").exists()


def test_a_wrong_sum_moves_nothing(tmp_path: Path) -> None:
    plan = bulk.PutPlan()
    plan.moves[""] = ["a", "b"]
    plan.sums = [(hashlib.sha256(b"a").hexdigest(), "a"), ("0" * 64, "b")]
    status, _ = _run_plan(tmp_path, plan, {"a": b"a", "b": b"b"})
    assert status == bulk.VERIFY_FAILED
    assert list((tmp_path / "top").iterdir()) == []


def test_what_the_plan_cannot_move_is_reported(tmp_path: Path) -> None:
    plan = bulk.PutPlan()
    plan.moves["missing-dir"] = ["x"]
    plan.moves[""] = ["y"]
    status, stdout = _run_plan(tmp_path, plan, {"x": b"x", "y": b"y"})
    assert status == 0
    assert bulk.parse_leftovers(stdout) == {"x"}
    assert (tmp_path / "top" / "y").read_bytes() == b"y"
    assert bulk.parse_leftovers(b"x\0") is None  # not in the form the plan prints
    assert bulk.parse_leftovers(b"./x") is None


def test_long_argument_lists_are_split() -> None:
    plan = bulk.PutPlan()
    plan.moves[""] = [f"{'n' * 200}{i}" for i in range(2000)]
    lines = plan.script().split(b"\n")
    moves = [line for line in lines if line.startswith(b"mv ")]
    assert len(moves) > 1
    assert all(len(line) < 70 * 1024 for line in moves)
    assert sum(line.count(b" t/") for line in moves) == 2000


def test_tar_blocks_is_an_archive_tar_reads_back() -> None:
    data = os.urandom(5000)
    members: list[bulk.Member] = [
        ("t/d", 0, 0o750, 1_600_000_000, None),
        ("t/d/f", len(data), 0o4640, 1_600_000_001, lambda: iter((data[:100], data[100:]))),
    ]
    archive = b"".join(bulk.tar_blocks(members))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        got = tar.getmembers()
        assert [(m.name, m.isdir(), m.mode, m.mtime) for m in got] == [
            ("t/d", True, 0o750, 1_600_000_000),
            ("t/d/f", False, 0o4640, 1_600_000_001),
        ]
        extracted = tar.extractfile("t/d/f")
        assert extracted is not None
        assert extracted.read() == data


def test_tar_blocks_refuses_a_file_that_changed_size() -> None:
    members: list[bulk.Member] = [("t/f", 10, 0o644, 1, lambda: iter((b"12345",)))]
    with pytest.raises(OSError, match="size changed"):
        b"".join(bulk.tar_blocks(members))
