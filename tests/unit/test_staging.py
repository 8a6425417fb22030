"""Staging for a cluster (``transfer.staging``): pack/unpack and the get stream, on local files.

No SSH here: what travels is plain values, checked through pickle as a cluster
would carry them; the lab tests (tests/integration/test_staging.py) put and get
through them.
"""

from __future__ import annotations

import os
import pickle
import stat
from pathlib import Path

import pytest

from remoteops.errors import TransferError, UsageError
from remoteops.transfer.sources import SourceSet
from remoteops.transfer.staging import (
    DirPart,
    FileData,
    FileEnd,
    FileStart,
    Message,
    Receiver,
    outgoing,
    pack,
    unpack,
)

HOST = "web1"


def _tree(root: Path) -> Path:
    (root / "a" / "b").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "a" / "b" / "deep.txt").write_bytes(b"deep\n")
    (root / "big.bin").write_bytes(os.urandom(300_000))
    (root / "secret").write_bytes(b"s3cret\n")
    os.chmod(root / "secret", 0o600)
    (root / "zero").write_bytes(b"")
    os.symlink("a/b/deep.txt", root / "link.txt")
    os.symlink("/etc/hostname", root / "outside")
    os.utime(root / "secret", (1_600_000_000, 1_500_000_000))
    return root


def _fields(sources: SourceSet) -> list[tuple[object, ...]]:
    return [
        (f.relative, f.size, f.mode, f.mtime, f.atime, f.sha256, b"".join(f.chunks()))
        for f in sources.files
    ]


@pytest.mark.parametrize("budget", [0, 256 * 1024 * 1024], ids=["from-disk", "in-memory"])
@pytest.mark.parametrize("slash", ["", "/"], ids=["dir", "dir-slash"])
def test_unpacked_sources_are_the_scanned_ones(tmp_path: Path, budget: int, slash: str) -> None:
    src = _tree(tmp_path / "src")
    scanned = SourceSet.scan([str(src) + slash], memory_budget=budget, need_hash=True)
    staged = pickle.loads(pickle.dumps(pack(scanned, chunk=64 * 1024)))
    assert max(len(b) for f in staged.files for b in f.blocks) == 64 * 1024
    unpacked = unpack(staged, tmp_path / "worker", memory_budget=budget)
    assert _fields(unpacked) == _fields(scanned)
    assert (unpacked.dirs, unpacked.is_single_file) == (scanned.dirs, scanned.is_single_file)
    assert unpacked.warnings == scanned.warnings
    assert len(scanned.warnings) == 1
    for f in unpacked.files:
        assert f.path.is_relative_to(tmp_path / "worker")
        assert f.path.read_bytes() == b"".join(f.chunks())
    assert stat.S_IMODE((tmp_path / "worker").stat().st_mode) == 0o700


def test_a_single_file_stays_a_single_file(tmp_path: Path) -> None:
    (tmp_path / "motd").write_bytes(b"hi\n")
    scanned = SourceSet.scan([str(tmp_path / "motd")])
    unpacked = unpack(pickle.loads(pickle.dumps(pack(scanned))), tmp_path / "w")
    assert unpacked.is_single_file
    assert _fields(unpacked) == _fields(scanned)


def test_pack_refuses_sources_over_its_limit_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 2048)
    with pytest.raises(UsageError) as caught:
        pack(SourceSet.scan([str(tmp_path / "f")]), limit=1024)
    assert "more than the" in caught.value.message
    assert "\n" not in caught.value.message


def test_pack_refuses_a_file_that_changed_since_the_scan(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 2048)
    scanned = SourceSet.scan([str(tmp_path / "f")], memory_budget=0)
    (tmp_path / "f").write_bytes(b"x" * 10)
    with pytest.raises(UsageError, match=str(tmp_path / "f")):
        pack(scanned)


def test_unpack_wants_a_directory_of_its_own(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "other").write_bytes(b"")
    with pytest.raises(TransferError, match="not empty"):
        unpack(pack(SourceSet.scan([str(tmp_path / "f")])), tmp_path / "w")


# --------------------------------------------------------------------------- get


def _snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        rel = path.relative_to(root).as_posix()
        if stat.S_ISDIR(info.st_mode):
            out[rel] = ("dir",)
        else:
            out[rel] = (
                stat.filemode(info.st_mode),
                info.st_mtime_ns,
                path.read_bytes() if stat.S_ISREG(info.st_mode) else None,
            )
    return out


def _relay(source: Path, dest: Path, chunk: int) -> list[TransferError]:
    receiver = Receiver(dest)
    errors: list[TransferError] = []
    for message in outgoing(source, HOST, chunk=chunk):
        assert message.data_bytes <= chunk
        errors += receiver.receive(pickle.loads(pickle.dumps(message)))
    return errors + receiver.finish(HOST)


def test_a_tree_comes_back_identical_and_without_symlinks(tmp_path: Path) -> None:
    worker = tmp_path / "worker"
    _tree(worker / HOST)
    (worker / HOST / "suid").write_bytes(b"x")
    os.chmod(worker / HOST / "suid", 0o4755)
    (worker / HOST / ".x.remoteops-0123abcd.part").write_bytes(b"half")
    assert _relay(worker, tmp_path / "client", chunk=4096) == []
    got = _snapshot(tmp_path / "client" / HOST)
    want = _snapshot(worker / HOST)
    del want["link.txt"], want["outside"], want[".x.remoteops-0123abcd.part"]
    want["suid"] = ("-rwxr-xr-x", *want["suid"][1:])  # setuid dropped, as a local get does
    assert got == want
    assert "empty" in got
    assert got["secret"][0] == "-rw-------"


def test_nothing_to_send_still_makes_the_host_directory(tmp_path: Path) -> None:
    (tmp_path / "worker" / HOST).mkdir(parents=True)
    assert _relay(tmp_path / "worker", tmp_path / "client", chunk=4096) == []
    assert (tmp_path / "client" / HOST).is_dir()


def _start(path: str, size: int = 3) -> FileStart:
    return FileStart(path, size, 0o644, 1_500_000_000 * 10**9, 0)


def _whole(path: str) -> tuple[FileStart, FileData, FileEnd]:
    return (_start(path), FileData(path, 0, b"abc"), FileEnd(path))


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if ".remoteops" in p.name)


@pytest.mark.parametrize(
    "path", ["../x", "/etc/x", "a/../../x", "a\\b", "a\nb", "", "a//b"], ids=repr
)
def test_a_name_that_could_leave_the_host_directory_is_refused(tmp_path: Path, path: str) -> None:
    receiver = Receiver(tmp_path / "client")
    errors = receiver.receive(Message(HOST, (*_whole(path), *_whole("ok"))))
    assert [(e.host, "refused" in e.message and repr(path) in e.message) for e in errors] == [
        (HOST, True)
    ]
    assert receiver.finish(HOST) == []
    assert [p.name for p in (tmp_path / "client").rglob("*")] == [HOST, "ok"]


def test_a_path_through_a_planted_symlink_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "client" / HOST).mkdir(parents=True)
    os.symlink(outside, tmp_path / "client" / HOST / "etc")
    receiver = Receiver(tmp_path / "client")
    errors = receiver.receive(Message(HOST, (DirPart("etc"), *_whole("etc/passwd"))))
    assert [e.host for e in errors] == [HOST, HOST]
    assert all(str(tmp_path / "client" / HOST / "etc") in e.message for e in errors)
    assert all("symlink" in e.message for e in errors)
    assert list(outside.iterdir()) == []


def test_data_for_a_file_never_started_is_refused(tmp_path: Path) -> None:
    receiver = Receiver(tmp_path / "client")
    errors = receiver.receive(
        Message(HOST, (FileData("x", 0, b"abc"), FileData("x", 3, b"d"), FileEnd("x")))
    )
    assert len(errors) == 1  # one error per file, not one per part
    assert errors[0].host == HOST
    assert "x: data for a file that was never started" in str(errors[0])
    assert receiver.finish(HOST) == []
    assert not (tmp_path / "client" / HOST / "x").exists()


@pytest.mark.parametrize(
    "parts",
    [
        (_start("f", 6), FileData("f", 0, b"abc")),  # cut before the last chunk
        (_start("f", 6), FileData("f", 0, b"abc"), FileEnd("f")),  # end too early
        (_start("f", 2), FileData("f", 0, b"abc"), FileEnd("f")),  # more than announced
        (_start("f", 6), FileData("f", 3, b"abc"), FileEnd("f")),  # a chunk missing
    ],
    ids=["cut", "short", "long", "gap"],
)
def test_an_incomplete_file_never_lands_under_its_name(
    tmp_path: Path, parts: tuple[FileStart | FileData | FileEnd, ...]
) -> None:
    receiver = Receiver(tmp_path / "client")
    errors = receiver.receive(Message(HOST, parts)) + receiver.finish(HOST)
    assert len(errors) == 1
    assert errors[0].host == HOST
    assert str(tmp_path / "client" / HOST / "f") in errors[0].message
    assert list((tmp_path / "client" / HOST).iterdir()) == []


def test_abort_removes_temporary_files_and_keeps_finished_ones(tmp_path: Path) -> None:
    receiver = Receiver(tmp_path / "client")
    assert receiver.receive(Message(HOST, (*_whole("done"), _start("half", 6)))) == []
    assert _leftovers(tmp_path / "client") != []
    receiver.abort(HOST)
    assert _leftovers(tmp_path / "client") == []
    assert [p.name for p in (tmp_path / "client" / HOST).iterdir()] == ["done"]
    assert (tmp_path / "client" / HOST / "done").stat().st_mtime == 1_500_000_000


def test_a_bad_host_name_is_refused(tmp_path: Path) -> None:
    errors = Receiver(tmp_path / "client").receive(Message("../up", _whole("f")))
    assert [e.host for e in errors] == ["../up"]
    assert "refused" in errors[0].message
    assert not (tmp_path / "up").exists()
    with pytest.raises(TransferError):
        list(outgoing(tmp_path, "../up"))


def test_files_of_a_host_not_asked_for_are_refused(tmp_path: Path) -> None:
    receiver = Receiver(tmp_path / "client", hosts=[HOST])
    errors = receiver.receive(Message("db1", _whole("f")))
    assert [e.host for e in errors] == ["db1"]
    assert "did not ask for" in errors[0].message
    assert receiver.receive(Message(HOST, _whole("f"))) == []
    assert [p.name for p in (tmp_path / "client").iterdir()] == [HOST]
