"""What `put` and `get` leave alone as unchanged: rsync's quick check, against the lab's sshd.

A copy is unchanged only when its size and modification time are exactly the
source's (whole seconds, what SFTP version 3 carries); every copy is stamped
with its source's mtime, so a second run sends nothing, while a rollback (an
older time) or an edit (a newer one) is sent. ``--checksum`` and ``--verify``
decide by sha256, never by times. Covered on every path: single files over
SFTP, the tar stream of small files, the ``cat`` stream of large ones, and
playbook steps.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from remoteops.lab import Lab
from tests.helpers import run_cli as cli
from tests.integration.test_transfer import chown_lab, get, json_lines, leftovers, put

pytestmark = pytest.mark.integration

OLD = 1_600_000_000  # the backup's time: older than the deployed file's
NEW = 1_700_000_000
V1 = b"listen 80\nworkers 4\n"  # the backup
V2 = b"listen 81\nworkers 8\n"  # the release being rolled back: same size, other bytes
V3 = b"listen 99\nworkers 9\n"  # an edit made on the far side
BIG = 64 * 1024 * 1024 + 4099  # over the `cat` stream threshold
SMALL_FILES = 20  # over the tar threshold (16)

# Verified by content: the flags that must never trust times.
BY_CONTENT = [("--verify",), ("--checksum",)]
ALL_FLAGS = [(), ("-p",), *BY_CONTENT]


def flag_id(value: object) -> str:
    """A test id: flags joined with +, "plain" for none."""
    if isinstance(value, tuple):
        return "+".join(value) or "plain"
    return str(value)


def counts(result: subprocess.CompletedProcess[str], host: str) -> tuple[int, int]:
    """(files moved, files unchanged) of HOST; the run must have succeeded."""
    assert result.returncode == 0, result.stdout + result.stderr
    obj = json_lines(result.stdout)[0][host]
    return obj["files"], obj["unchanged"]


def stamp(path: Path, mtime: float, atime: float | None = None) -> None:
    """Set PATH's times to the nanosecond (fractions test the whole-second comparison)."""
    mtime_ns = int(mtime * 1e9)
    atime_ns = mtime_ns if atime is None else int(atime * 1e9)
    os.utime(path, ns=(atime_ns, mtime_ns))


def commands(lab: Lab, host: str) -> int:
    """Command sessions sshd started on HOST so far (tar, cat, sha256sum)."""
    time.sleep(0.2)  # sshd writes its log line after the session starts
    return lab.sshd_log(host).read_text(errors="replace").count("Starting session: command")


def release_and_backup(tmp_path: Path) -> tuple[Path, Path]:
    """app.conf (V2, NEW) and backup.conf (V1, OLD): same size, other bytes, older."""
    app, backup = tmp_path / "app.conf", tmp_path / "backup.conf"
    backup.write_bytes(V1)
    stamp(backup, OLD)
    app.write_bytes(V2)
    stamp(app, NEW)
    return app, backup


# --------------------------------------------------------------------------- put


@pytest.mark.parametrize("flags", ALL_FLAGS, ids=flag_id)
def test_put_sends_a_rollback_to_an_older_file(
    lab: Lab, remote_dir: str, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    host = lab.hosts[0].name
    app, backup = release_and_backup(tmp_path)
    dest = f"{remote_dir}/app.conf"
    assert counts(put(lab, *flags, str(app), dest, pattern=host), host) == (1, 0)
    shutil.copy2(backup, app)  # cp -p backup.conf app.conf: same size, older time
    assert counts(put(lab, *flags, str(app), dest, pattern=host), host) == (1, 0)
    remote = lab.host_path(host, dest)
    assert remote.read_bytes() == V1
    assert remote.stat().st_mtime == OLD
    assert counts(put(lab, *flags, str(app), dest, pattern=host), host) == (0, 1)


def _deployed(lab: Lab, remote_dir: str, tmp_path: Path, mtime: int) -> tuple[str, Path, str, Path]:
    """V2 put (plain) as app.conf with MTIME: (host, source, remote path, the host's file)."""
    host = lab.hosts[0].name
    src = tmp_path / "app.conf"
    src.write_bytes(V2)
    stamp(src, mtime)
    dest = f"{remote_dir}/app.conf"
    assert counts(put(lab, str(src), dest, pattern=host), host) == (1, 0)
    return host, src, dest, lab.host_path(host, dest)


def test_put_replaces_a_copy_edited_on_the_host(lab: Lab, remote_dir: str, tmp_path: Path) -> None:
    host, src, dest, remote = _deployed(lab, remote_dir, tmp_path, OLD)
    remote.write_bytes(V3)  # an edit by hand on the host: newer than the source
    assert counts(put(lab, str(src), dest, pattern=host), host) == (1, 0)
    assert remote.read_bytes() == V2


@pytest.mark.parametrize("flags", BY_CONTENT, ids=flag_id)
def test_an_edit_keeping_size_and_mtime_is_caught_by_content(
    lab: Lab, remote_dir: str, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    host, src, dest, remote = _deployed(lab, remote_dir, tmp_path, NEW)
    remote.write_bytes(V3)
    stamp(remote, NEW)  # the edit put the old time back: invisible to the quick check
    assert counts(put(lab, str(src), dest, pattern=host), host) == (0, 1)
    assert counts(put(lab, *flags, str(src), dest, pattern=host), host) == (1, 0)
    assert remote.read_bytes() == V2
    assert counts(put(lab, *flags, str(src), dest, pattern=host), host) == (0, 1)


@pytest.mark.parametrize("flags", BY_CONTENT, ids=flag_id)
def test_a_copy_matching_by_content_gets_the_source_time(
    lab: Lab, remote_dir: str, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    """Same bytes, another time (touched on the host): by content it stays; its time is fixed."""
    host, src, dest, remote = _deployed(lab, remote_dir, tmp_path, NEW)
    stamp(remote, OLD)
    checked = put(lab, *flags, str(src), dest, pattern=host)
    assert counts(checked, host) == (0, 1)
    assert json_lines(checked.stdout)[0][host]["changed"] is True  # its time was set
    assert remote.stat().st_mtime == NEW
    assert counts(put(lab, str(src), dest, pattern=host), host) == (0, 1)


def _sources(tmp_path: Path, kind: str) -> tuple[Path, dict[Path, tuple[int, int]]]:
    """The SRC argument and its files: one small file, a tree of small ones, or BIG.

    Each file maps to the (mtime, atime) a copy must get, in whole seconds: the
    files' own atimes move as soon as they are read.
    """
    if kind == "single":
        src = tmp_path / "one.txt"
        src.write_bytes(os.urandom(1000))
        files = [src]
    elif kind == "tar":
        src = tmp_path / "tree"
        files = []
        for index in range(SMALL_FILES):
            path = src / f"d{index % 3}" / f"f{index:02d}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(50 + index))
            files.append(path)
    else:
        src = tmp_path / "big.bin"
        src.write_bytes(os.urandom(BIG))
        files = [src]
    times: dict[Path, tuple[int, int]] = {}
    for index, path in enumerate(files):
        # Fractions of a second: compared in whole seconds, on both sides.
        mtime, atime = OLD + index + 0.7, int(time.time()) - 3600 - index + 0.3
        stamp(path, mtime, atime=atime)
        times[path] = (int(mtime), int(atime))
    return src, times


# Command sessions the first run opens: the listing and the tar stream for the tree
# (which checks --verify's sums itself before moving anything), cat for the big file
# (and sha256sum with --verify).
_PATH_COMMANDS = {"single": 0, "tar": 2, "big": 1}
# With and without -p on every path; -p --verify once, as reading the file back for
# --verify (and tar -x) must not cost it the source's access time.
SECOND_RUN_FLAGS = [(), ("-p",)]


def second_runs(kinds: list[str]) -> list[tuple[str, tuple[str, ...]]]:
    return [(kind, flags) for kind in kinds for flags in SECOND_RUN_FLAGS] + [
        (kinds[1], ("-p", "--verify"))
    ]


@pytest.mark.parametrize(("kind", "flags"), second_runs(["single", "tar", "big"]), ids=flag_id)
def test_a_second_put_sends_nothing(
    lab: Lab, remote_dir: str, tmp_path: Path, kind: str, flags: tuple[str, ...], fast_paths: bool
) -> None:
    host = lab.hosts[1].name
    src, files = _sources(tmp_path, kind)
    before = commands(lab, host)
    first = put(lab, *flags, str(src), f"{remote_dir}/", pattern=host)
    assert counts(first, host) == (len(files), 0)
    verify = "--verify" in flags
    streams = _PATH_COMMANDS[kind] if fast_paths else 0
    # --verify's sha256sum is a command of its own, but part of the tree's tar stream.
    sums = verify and not (fast_paths and kind == "tar")
    assert commands(lab, host) - before == streams + sums  # the path under test
    remote_of = {
        path: lab.host_path(host, f"{remote_dir}/{path.relative_to(src.parent)}") for path in files
    }
    for path, remote in remote_of.items():
        got = remote.stat()  # before reading it, which may move its access time
        assert got.st_mtime == files[path][0], path  # the source's, in whole seconds
        if "-p" in flags:
            assert got.st_atime == files[path][1], path
    again = put(lab, *flags, str(src), f"{remote_dir}/", pattern=host)
    assert counts(again, host) == (0, len(files))
    obj = json_lines(again.stdout)[0][host]
    assert (obj["bytes"], obj["changed"]) == (0, False)
    for path, remote in remote_of.items():
        assert hashlib.sha256(remote.read_bytes()).digest() == (
            hashlib.sha256(path.read_bytes()).digest()
        )
    assert not leftovers(lab.host_path(host, remote_dir))


def test_a_rolled_back_tree_goes_in_one_tar_stream_and_is_then_unchanged(
    lab: Lab, remote_dir: str, tmp_path: Path, fast_paths: bool
) -> None:
    """`cp -a backup/ tree/`: every file older, same sizes, other bytes; all sent, via tar."""
    host = lab.hosts[1].name
    src, times = _sources(tmp_path, "tar")
    files = list(times)
    backup = tmp_path / "backup"
    shutil.copytree(src, backup)
    for path in backup.rglob("*.txt"):
        info = path.stat()
        path.write_bytes(os.urandom(info.st_size))
        stamp(path, OLD - 1000)
    assert counts(put(lab, str(src), f"{remote_dir}/", pattern=host), host) == (len(files), 0)
    shutil.rmtree(src)
    shutil.copytree(backup, src)  # keeps the older times
    before = commands(lab, host)
    rolled = put(lab, str(src), f"{remote_dir}/", pattern=host)
    assert counts(rolled, host) == (len(files), 0)
    assert commands(lab, host) - before == 2 * fast_paths  # the listing, the tar stream
    for path in files:
        remote = lab.host_path(host, f"{remote_dir}/{path.relative_to(src.parent)}")
        assert remote.read_bytes() == path.read_bytes()
        assert remote.stat().st_mtime == OLD - 1000
    assert counts(put(lab, str(src), f"{remote_dir}/", pattern=host), host) == (0, len(files))


def test_times_sftp_cannot_carry_are_clamped_the_same_way_every_run(
    lab: Lab, remote_dir: str, tmp_path: Path
) -> None:
    """SFTP v3 times are unsigned 32-bit seconds: 1969 and 2242 become 1970 and 2106."""
    host = lab.hosts[0].name
    src = tmp_path / "odd"
    src.mkdir()
    (src / "before-1970").write_bytes(b"a")
    stamp(src / "before-1970", -86_400.5)
    (src / "after-2106").write_bytes(b"b")
    stamp(src / "after-2106", 2**33)
    for flags in [(), ("-p",)]:
        first = put(lab, *flags, f"{src}/", f"{remote_dir}/{flag_id(flags)}/", pattern=host)
        assert counts(first, host) == (2, 0)
        root = lab.host_path(host, f"{remote_dir}/{flag_id(flags)}")
        assert (root / "before-1970").stat().st_mtime == 0
        assert (root / "after-2106").stat().st_mtime == 2**32 - 1
        again = put(lab, *flags, f"{src}/", f"{remote_dir}/{flag_id(flags)}/", pattern=host)
        assert counts(again, host) == (0, 2)


# --------------------------------------------------------------------------- get


def _seed(lab: Lab, host: str, remote: str, data: bytes, mtime: float) -> Path:
    path = lab.host_path(host, remote)
    path.write_bytes(data)
    chown_lab(lab, path)
    stamp(path, mtime)
    return path


def _fetched(
    lab: Lab, remote_dir: str, tmp_path: Path, mtime: int, *flags: str
) -> tuple[str, str, Path, Path]:
    """V2 seeded as app.conf with MTIME and fetched: (host, remote path, LOCAL_DIR, the copy)."""
    host = lab.hosts[2].name
    remote = f"{remote_dir}/app.conf"
    _seed(lab, host, remote, V2, mtime)
    out = tmp_path / "out"
    assert counts(get(lab, *flags, remote, str(out), pattern=host), host) == (1, 0)
    return host, remote, out, out / host / remote.lstrip("/")


@pytest.mark.parametrize("flags", ALL_FLAGS, ids=flag_id)
def test_get_fetches_a_remote_rollback_to_an_older_file(
    lab: Lab, remote_dir: str, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    host, remote, out, local = _fetched(lab, remote_dir, tmp_path, NEW, *flags)
    _seed(lab, host, remote, V1, OLD)  # rolled back on the host with cp -p
    assert counts(get(lab, *flags, remote, str(out), pattern=host), host) == (1, 0)
    assert local.read_bytes() == V1
    assert local.stat().st_mtime == OLD
    assert counts(get(lab, *flags, remote, str(out), pattern=host), host) == (0, 1)


def test_get_replaces_a_local_copy_edited_since(lab: Lab, remote_dir: str, tmp_path: Path) -> None:
    host, remote, out, local = _fetched(lab, remote_dir, tmp_path, OLD)
    local.write_bytes(V3)  # newer than the remote file
    assert counts(get(lab, remote, str(out), pattern=host), host) == (1, 0)
    assert local.read_bytes() == V2


@pytest.mark.parametrize("flags", BY_CONTENT, ids=flag_id)
def test_get_catches_a_local_edit_keeping_size_and_mtime_by_content(
    lab: Lab, remote_dir: str, tmp_path: Path, flags: tuple[str, ...]
) -> None:
    host, remote, out, local = _fetched(lab, remote_dir, tmp_path, NEW)
    local.write_bytes(V3)
    stamp(local, NEW)
    assert counts(get(lab, remote, str(out), pattern=host), host) == (0, 1)
    assert counts(get(lab, *flags, remote, str(out), pattern=host), host) == (1, 0)
    assert local.read_bytes() == V2
    stamp(local, OLD)  # same bytes, another time: kept, and given the remote time
    assert counts(get(lab, *flags, remote, str(out), pattern=host), host) == (0, 1)
    assert local.stat().st_mtime == NEW
    assert counts(get(lab, remote, str(out), pattern=host), host) == (0, 1)


@pytest.mark.parametrize(("kind", "flags"), second_runs(["single", "batch", "big"]), ids=flag_id)
def test_a_second_get_fetches_nothing(
    lab: Lab, remote_dir: str, tmp_path: Path, kind: str, flags: tuple[str, ...], fast_paths: bool
) -> None:
    host = lab.hosts[3].name
    seeded, seeded_times = _sources(tmp_path, "tar" if kind == "batch" else kind)
    root = lab.host_path(host, remote_dir)
    shutil.move(seeded, root / seeded.name)  # a rename: keeps the times
    times = {root / p.relative_to(seeded.parent): t for p, t in seeded_times.items()}
    for path in [root / seeded.name, *(root / seeded.name).rglob("*")]:
        chown_lab(lab, path)
    remotes = sorted(times)
    remote_arg = f"{remote_dir}/{seeded.name}"
    out = tmp_path / "out"
    before = commands(lab, host)
    first = get(lab, *flags, remote_arg, str(out), pattern=host)
    assert counts(first, host) == (len(remotes), 0)
    if kind == "big":  # the `cat` stream, plus sha256sum with --verify
        assert commands(lab, host) - before == fast_paths + ("--verify" in flags)
    local_of = {p: out / host / remote_dir.lstrip("/") / p.relative_to(root) for p in remotes}
    for remote, local in local_of.items():
        got = local.stat()
        assert got.st_mtime == times[remote][0], remote  # the remote's, in whole seconds
        if "-p" in flags:
            assert got.st_atime == times[remote][1], remote
    again = get(lab, *flags, remote_arg, str(out), pattern=host)
    assert counts(again, host) == (0, len(remotes))
    assert json_lines(again.stdout)[0][host]["bytes"] == 0
    for remote, local in local_of.items():
        assert hashlib.sha256(local.read_bytes()).digest() == (
            hashlib.sha256(remote.read_bytes()).digest()
        )
    assert not leftovers(out)


# --------------------------------------------------------------------------- playbooks


def test_playbook_put_and_get_steps_follow_the_same_rule(
    lab: Lab, remote_dir: str, tmp_path: Path
) -> None:
    host = lab.hosts[4].name
    app, backup = release_and_backup(tmp_path)
    dest = f"{remote_dir}/app.conf"
    got = tmp_path / "got"
    book = tmp_path / "book.yml"
    book.write_text(
        f"- hosts: {host}\n  steps:\n"
        f"    - put: {{src: app.conf, dest: {dest}}}\n"
        f"    - get: {{src: {dest}, dest: {got}}}\n"
    )

    def steps() -> list[tuple[int, int]]:
        result = cli("play", str(book), "-i", str(lab.inventory), "--json")
        assert result.returncode == 0, result.stdout + result.stderr
        objs = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
        return [(o["files"], o["unchanged"]) for o in objs if o["type"] == "host"]

    assert steps() == [(1, 0), (1, 0)]
    assert steps() == [(0, 1), (0, 1)]
    shutil.copy2(backup, app)  # the rollback: same size, older time
    assert steps() == [(1, 0), (1, 0)]
    assert lab.host_path(host, dest).read_bytes() == V1
    assert (got / host / dest.lstrip("/")).read_bytes() == V1
    assert steps() == [(0, 1), (0, 1)]
