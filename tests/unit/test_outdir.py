"""A reused --out-dir: the previous run's files go, and nothing remoteops did not write."""

from __future__ import annotations

import json
import os
from pathlib import Path

from remoteops.outdir import MANIFEST, OutDirSink, last_run_hosts, start_run, write_exit


def _write_run(out: Path, hosts: list[str]) -> None:
    start_run(out)
    for host in hosts:
        sink = OutDirSink(out, host)
        sink.write("stdout", f"{host}\n".encode())
        sink.close()
        write_exit(out, host, 0, "ok")


def test_a_run_removes_what_the_previous_run_wrote_and_nothing_else(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    _write_run(out, ["a", "b", "c"])
    assert last_run_hosts(out) == {"a", "b", "c"}
    (out / "mine.out").write_text("mine\n")
    (out / "notes.txt").write_text("mine\n")
    _write_run(out, ["a"])
    assert sorted(os.listdir(out)) == sorted(
        [MANIFEST, "a.out", "a.err", "a.exit", "mine.out", "notes.txt"]
    )
    assert (out / "a.out").read_text() == "a\n"
    assert last_run_hosts(out) == {"a"}


def test_only_regular_files_named_as_a_run_names_them_are_removed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    outside = tmp_path / "outside.out"
    outside.write_text("keep\n")
    (out / "link.out").symlink_to(outside)
    (out / "dir.out").mkdir()
    (out / "b.exit").write_text("0\n")
    (out / ".b.out.part").write_text("half\n")  # left by a run that was killed
    (out / "x.txt").write_text("keep\n")
    listed = [
        "link.out",
        "dir.out",
        "../outside.out",
        "x.txt",
        "b.exit",
        ".b.out.part",
        "/etc/x.out",
    ]
    (out / MANIFEST).write_text(
        "# header\n" + "".join(json.dumps(n) + "\n" for n in listed) + "{\n"
    )
    start_run(out)
    assert sorted(os.listdir(out)) == sorted([MANIFEST, "link.out", "dir.out", "x.txt"])
    assert outside.read_text() == "keep\n"
    assert last_run_hosts(out) == set()


def test_a_directory_without_a_list_is_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.out").write_text("from an older remoteops\n")
    assert last_run_hosts(out) is None
    start_run(out)
    assert (out / "old.out").exists()
    assert last_run_hosts(out) == set()
    (out / MANIFEST).unlink()
    (out / MANIFEST).symlink_to(tmp_path / "elsewhere")  # never followed
    assert last_run_hosts(out) is None
