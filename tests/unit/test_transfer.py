"""Pure parts of remoteops.transfer: name checks and the local source scan."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from remoteops.errors import TransferError, UsageError
from remoteops.transfer import SourceSet, safe_local_path


@pytest.mark.parametrize(
    "name",
    [
        "a.txt",
        "var/log/syslog",
        "dir/.hidden",
        "spaces in name",
        "ünïcödé/名前",
        "..hidden-but-fine",
        "a..b",
    ],
)
def test_safe_local_path_accepts_plain_relative_paths(tmp_path: Path, name: str) -> None:
    path = safe_local_path(tmp_path, name)
    assert path == tmp_path.joinpath(*name.split("/"))
    assert path.is_relative_to(tmp_path)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "/etc/passwd",
        "..",
        "../x",
        "a/../../x",
        "a/./b",
        "./a",
        "a//b",
        "a/",
        "a\\..\\b",
        "..\\x",
        "a\nb",
        "a\rb",
        "a\x00b",
        "a\x1bb",
        "a\x7fb",
        "tab\there",
    ],
)
def test_safe_local_path_refuses_escapes_and_control_characters(tmp_path: Path, name: str) -> None:
    with pytest.raises(TransferError, match="refused"):
        safe_local_path(tmp_path, name)


def test_transfer_error_pickles() -> None:
    error = TransferError("web01", "remote /x: Permission denied")
    again = pickle.loads(pickle.dumps(error))
    assert (again.host, str(again)) == ("web01", "remote /x: Permission denied")


def _tree(root: Path) -> Path:
    src = root / "site"
    (src / "sub").mkdir(parents=True)
    (src / "index.html").write_text("<h1>hi</h1>")
    (src / "sub" / "app.js").write_text("x" * 5000)
    os.chmod(src / "sub" / "app.js", 0o751)
    (src / "inside").symlink_to("index.html")
    outside = root / "secret"
    outside.write_text("secret")
    (src / "outside").symlink_to(outside)
    (src / "dirlink").symlink_to(src / "sub")
    os.mkfifo(src / "fifo")
    (src / "empty").mkdir()
    return src


def test_scan_places_a_directory_under_its_name_and_applies_the_symlink_policy(
    tmp_path: Path,
) -> None:
    src = _tree(tmp_path)
    sources = SourceSet.scan([str(src)])
    by_rel = {f.relative: f for f in sources.files}
    assert sorted(by_rel) == ["site/index.html", "site/inside", "site/sub/app.js"]
    assert by_rel["site/inside"].data == b"<h1>hi</h1>"
    assert by_rel["site/sub/app.js"].mode == 0o751
    assert by_rel["site/sub/app.js"].size == 5000
    assert dict(sources.dirs).keys() == {"site", "site/sub", "site/empty"}
    assert not sources.is_single_file
    text = "\n".join(sources.warnings)
    assert "outside" in text
    assert "dirlink" in text
    assert "fifo" in text
    assert all(f.data is None or len(f.data) == f.size for f in sources.files)


def test_scan_with_trailing_slash_sends_the_contents(tmp_path: Path) -> None:
    src = _tree(tmp_path)
    sources = SourceSet.scan([f"{src}/"])
    assert sorted(f.relative for f in sources.files) == ["index.html", "inside", "sub/app.js"]


def test_scan_globs_single_files_mode_and_memory_budget(tmp_path: Path) -> None:
    for name in ("a.log", "b.log", "c.txt"):
        (tmp_path / name).write_bytes(name.encode() * 100)
    sources = SourceSet.scan([str(tmp_path / "*.log")], mode=0o600, memory_budget=500)
    assert [f.relative for f in sources.files] == ["a.log", "b.log"]
    assert all(f.mode == 0o600 for f in sources.files)
    # 500 bytes of budget: the first 500-byte file fits, the second is streamed from disk.
    assert sources.files[0].data is not None
    assert sources.files[1].data is None
    assert b"".join(sources.files[1].chunks()) == b"b.log" * 100
    single = SourceSet.scan([str(tmp_path / "c.txt")])
    assert single.is_single_file
    assert single.files[0].sha256 is not None


def test_scan_refuses_missing_sources_and_collisions(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"local .*nope"):
        SourceSet.scan([str(tmp_path / "nope")])
    with pytest.raises(UsageError, match="no file matches"):
        SourceSet.scan([str(tmp_path / "*.none")])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x").write_text("1")
    (tmp_path / "b" / "x").write_text("2")
    with pytest.raises(UsageError, match="both land on 'x'"):
        SourceSet.scan([f"{tmp_path / 'a'}/", f"{tmp_path / 'b'}/"])


def test_prefix_hash_matches_hashlib(tmp_path: Path) -> None:
    import hashlib

    data = os.urandom(3 * 1024 * 1024 + 7)
    (tmp_path / "big").write_bytes(data)
    streamed = SourceSet.scan([str(tmp_path / "big")], memory_budget=0).files[0]
    in_memory = SourceSet.scan([str(tmp_path / "big")]).files[0]
    for n in (0, 1, 65536, len(data) // 2, len(data) - 1, len(data)):
        expected = hashlib.sha256(data[:n]).hexdigest()
        assert streamed.prefix_sha256(n) == expected
        assert in_memory.prefix_sha256(n) == expected
