"""`put` and `get` against the lab's real sshd servers, including faults mid-transfer."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from remoteops.lab import Lab, descendants
from tests.helpers import run_cli as cli

pytestmark = pytest.mark.integration


def json_lines(output: str) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    hosts = {obj["host"]: obj for obj in lines if obj["type"] == "host"}
    (summary,) = [obj for obj in lines if obj["type"] == "summary"]
    return hosts, summary


def put(
    lab: Lab, *args: str, pattern: str = "all", **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return cli("put", pattern, "-i", str(lab.inventory), "--json", *args, **kwargs)


def get(
    lab: Lab, *args: str, pattern: str = "all", **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return cli("get", pattern, "-i", str(lab.inventory), "--json", *args, **kwargs)


def chown_lab(lab: Lab, path: Path) -> None:
    entry = pwd.getpwnam(lab.user)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".remoteops" in p.name]


@pytest.fixture
def site(tmp_path: Path) -> Path:
    src = tmp_path / "site"
    (src / "css").mkdir(parents=True)
    (src / "index.html").write_bytes(b"<h1>hello</h1>\n")
    (src / "css" / "main.css").write_bytes(os.urandom(70_000))
    (src / "run.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    os.chmod(src / "run.sh", 0o750)
    os.chmod(src / "css" / "main.css", 0o604)
    return src


# --------------------------------------------------------------------------- put


def test_put_file_tree_and_glob_to_every_host(
    lab: Lab, remote_dir: str, site: Path, tmp_path: Path
) -> None:
    (tmp_path / "a.conf").write_bytes(b"a=1\n")
    (tmp_path / "b.conf").write_bytes(b"b=2\n")
    result = put(lab, str(site), str(tmp_path / "*.conf"), remote_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    hosts, summary = json_lines(result.stdout)
    assert summary["ok"] == len(lab.hosts)
    for host in lab.hosts:
        obj = hosts[host.name]
        assert (obj["files"], obj["unchanged"], obj["failed_files"]) == (5, 0, 0)
        assert obj["changed"] is True
        assert obj["bytes"] == sum(p.stat().st_size for p in site.rglob("*") if p.is_file()) + 8
        root = lab.host_path(host.name, remote_dir)
        for local in [p for p in site.rglob("*") if p.is_file()]:
            remote = root / "site" / local.relative_to(site)
            assert remote.read_bytes() == local.read_bytes()
            assert remote.stat().st_mode & 0o7777 == local.stat().st_mode & 0o7777
        assert (root / "a.conf").read_bytes() == b"a=1\n"
        assert leftovers(root) == []
    # A single file onto a new name; parent directories are created.
    one = put(lab, str(site / "index.html"), f"{remote_dir}/x/y/page.html")
    assert one.returncode == 0, one.stderr
    for host in lab.hosts:
        page = lab.host_path(host.name, f"{remote_dir}/x/y/page.html")
        assert page.read_bytes() == b"<h1>hello</h1>\n"


def test_second_put_sends_nothing_and_preserve_keeps_mtimes(
    lab: Lab, remote_dir: str, site: Path
) -> None:
    old = 1_500_000_000
    for p in site.rglob("*"):
        os.utime(p, (old, old))
    first = put(lab, "-p", f"{site}/", remote_dir)
    assert first.returncode == 0, first.stderr
    for host in lab.hosts:
        remote = lab.host_path(host.name, f"{remote_dir}/css/main.css")
        assert int(remote.stat().st_mtime) == old
    again = put(lab, "-p", f"{site}/", remote_dir)
    assert again.returncode == 0
    hosts, _ = json_lines(again.stdout)
    for obj in hosts.values():
        assert (obj["files"], obj["unchanged"], obj["bytes"], obj["changed"]) == (0, 3, 0, False)
    # Without -p the copy gets the source's mtime too, so a second run sends nothing.
    plain = put(lab, str(site / "index.html"), f"{remote_dir}/plain.html")
    assert plain.returncode == 0
    for host in lab.hosts:
        assert lab.host_path(host.name, f"{remote_dir}/plain.html").stat().st_mtime == old
    plain2 = put(lab, str(site / "index.html"), f"{remote_dir}/plain.html")
    hosts, _ = json_lines(plain2.stdout)
    assert all((o["files"], o["unchanged"]) == (0, 1) for o in hosts.values())


def test_mode_option_and_mode_drift_is_repaired(lab: Lab, remote_dir: str, site: Path) -> None:
    result = put(lab, "--mode", "0640", str(site / "run.sh"), f"{remote_dir}/")
    assert result.returncode == 0, result.stderr
    host = lab.hosts[0].name
    remote = lab.host_path(host, f"{remote_dir}/run.sh")
    assert remote.stat().st_mode & 0o7777 == 0o640
    os.chmod(remote, 0o666)
    again = put(lab, "--mode", "0640", str(site / "run.sh"), f"{remote_dir}/", pattern=host)
    hosts, _ = json_lines(again.stdout)
    assert (hosts[host]["files"], hosts[host]["unchanged"], hosts[host]["changed"]) == (
        0,
        1,
        True,
    )
    assert remote.stat().st_mode & 0o7777 == 0o640
    bad = put(lab, "--mode", "rwx", str(site / "run.sh"), remote_dir)
    assert bad.returncode == 2
    assert "--mode" in bad.stderr


def test_checksum_detects_a_same_size_same_mtime_change(
    lab: Lab, remote_dir: str, tmp_path: Path
) -> None:
    src = tmp_path / "data.txt"
    src.write_bytes(b"AAAA" * 1000)
    host = lab.hosts[0].name
    assert put(lab, "-p", str(src), f"{remote_dir}/", pattern=host).returncode == 0
    remote = lab.host_path(host, f"{remote_dir}/data.txt")
    mtime = remote.stat().st_mtime
    remote.write_bytes(b"AAAB" * 1000)
    os.utime(remote, (mtime, mtime))
    plain = put(lab, "-p", str(src), f"{remote_dir}/", pattern=host)
    assert json_lines(plain.stdout)[0][host]["unchanged"] == 1  # size+mtime cannot see it
    checked = put(lab, "-p", "--checksum", str(src), f"{remote_dir}/", pattern=host)
    assert checked.returncode == 0
    assert json_lines(checked.stdout)[0][host]["files"] == 1
    assert remote.read_bytes() == b"AAAA" * 1000
    same = put(lab, "-p", "--checksum", "--verify", str(src), f"{remote_dir}/", pattern=host)
    assert json_lines(same.stdout)[0][host]["unchanged"] == 1


def test_put_into_a_root_owned_directory_is_permission_denied(
    lab: Lab, remote_dir: str, site: Path
) -> None:
    first, *others = lab.hosts
    locked = lab.host_path(first.name, f"{remote_dir}/locked")
    locked.mkdir(mode=0o755)  # owned by root: the lab user cannot write here
    for host in others:
        lab.host_path(host.name, f"{remote_dir}/locked").mkdir()
        chown_lab(lab, lab.host_path(host.name, f"{remote_dir}/locked"))
    result = put(lab, str(site / "index.html"), f"{remote_dir}/locked/")
    assert result.returncode == 5
    hosts, summary = json_lines(result.stdout)
    error = hosts[first.name]["error"]
    assert hosts[first.name]["status"] == "failed"
    assert "Permission denied" in error
    assert f"remote {remote_dir}/locked/" in error
    assert hosts[first.name]["failed_files"] == 1
    assert summary["ok"] == len(others)
    assert list(locked.iterdir()) == []


@pytest.fixture
def tiny_tmpfs(lab: Lab, remote_dir: str) -> Iterator[str]:
    """A 1 MiB tmpfs at REMOTE_DIR/small inside the first host's mount namespace."""
    host = lab.hosts[0]
    path = f"{remote_dir}/small"
    lab.host_path(host.name, path).mkdir()
    entry = pwd.getpwnam(lab.user)
    subprocess.run(
        ["nsenter", "--target", str(host.pid), "--mount", "--", "mount", "-t", "tmpfs", "-o",
         f"size=1m,uid={entry.pw_uid},gid={entry.pw_gid}", "tmpfs", path],
        check=True,
    )  # fmt: skip
    try:
        yield path
    finally:
        subprocess.run(
            ["nsenter", "--target", str(host.pid), "--mount", "--", "umount", path], check=False
        )


def test_remote_disk_full_fails_that_host_naming_the_path(
    lab: Lab, tiny_tmpfs: str, tmp_path: Path
) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3 * 1024 * 1024))
    result = put(lab, str(src), f"{tiny_tmpfs}/")
    assert result.returncode == 5
    hosts, summary = json_lines(result.stdout)
    first = lab.hosts[0].name
    error = hosts[first]["error"]
    assert "No space left on device" in error
    assert f"remote {tiny_tmpfs}/" in error
    assert summary["ok"] == len(lab.hosts) - 1  # the others have room and carry on
    listing = subprocess.run(
        ["nsenter", "--target", str(lab.hosts[0].pid), "--mount", "--", "ls", "-A", tiny_tmpfs],
        capture_output=True,
        text=True,
        check=True,
    )
    assert listing.stdout == ""  # the temporary file was removed


def test_resume_from_partial_files_of_every_size(lab: Lab, remote_dir: str, tmp_path: Path) -> None:
    data = os.urandom(1_000_003)
    src = tmp_path / "blob.bin"
    src.write_bytes(data)
    host = lab.hosts[0].name
    final = lab.host_path(host, f"{remote_dir}/blob.bin")
    part = lab.host_path(host, f"{remote_dir}/.blob.bin.remoteops.part")
    half = len(data) // 2
    cases = {
        "empty": b"",
        "one": data[:1],
        "half": data[:half],
        "all-but-one": data[:-1],
        "equal": data,
        "larger": data + b"extra",
        "wrong-prefix": bytes([data[0] ^ 0xFF]) + data[1:half],  # never a prefix
    }
    for label, partial in cases.items():
        final.unlink(missing_ok=True)
        part.write_bytes(partial)
        chown_lab(lab, part)
        result = put(lab, "--resume", "--verify", str(src), f"{remote_dir}/", pattern=host)
        assert result.returncode == 0, (label, result.stdout, result.stderr)
        assert final.read_bytes() == data, label
        assert not part.exists(), label
        sent = json_lines(result.stdout)[0][host]["bytes"]
        if label in ("one", "half", "all-but-one", "equal"):
            assert sent == len(data) - len(partial), label
        else:
            assert sent == len(data), label


@dataclass
class _Interrupted:
    """What an upload interrupted half way left behind."""

    returncode: int
    out: str
    err: str
    before: bytes
    dest: Path
    root: Path


def run_interrupted(
    argv: list[str],
    watch: Path,
    at_bytes: int,
    interrupt: Callable[[subprocess.Popen[str]], None],
    *,
    ready: Callable[[], bool] | None = None,
) -> tuple[int, str, str]:
    """Run the CLI with ARGV; call INTERRUPT once .huge.bin's part file in WATCH passes AT_BYTES
    (or once READY says so).

    Returns (exit code, stdout, stderr); fails if the run ended before that.
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "remoteops", "--no-log-file", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        acted = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            parts = [p for p in watch.iterdir() if p.name.startswith(".huge.bin.remoteops")]
            if ready() if ready is not None else parts and parts[0].stat().st_size > at_bytes:
                interrupt(proc)
                acted = True
                break
            time.sleep(0.002)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)  # reaps it and closes its pipes
    assert acted, "the transfer finished before it could be interrupted"
    return proc.returncode, out, err


def kill_connections(lab: Lab, index: int) -> Callable[[subprocess.Popen[str]], None]:
    """An interrupt for ``run_interrupted``: SIGKILL host INDEX's sshd connection processes."""

    def kill(_: subprocess.Popen[str]) -> None:
        for pid in descendants([lab.hosts[index].pid]):
            with contextlib.suppress(ProcessLookupError):  # already gone
                os.kill(pid, signal.SIGKILL)

    return kill


def _interrupt_upload(
    lab: Lab,
    remote_dir: str,
    tmp_path: Path,
    *,
    size_mib: int,
    at_mib: int,
    interrupt: Callable[[subprocess.Popen[str]], None],
) -> _Interrupted:
    """Start `put` of a SIZE_MIB file over an older one; call INTERRUPT at AT_MIB sent."""
    src = tmp_path / "huge.bin"
    with open(src, "wb") as fh:
        for _ in range(size_mib):
            fh.write(os.urandom(1024 * 1024))
    victim = lab.hosts[0]
    dest = lab.host_path(victim.name, f"{remote_dir}/huge.bin")
    dest.write_bytes(b"previous version\n")
    chown_lab(lab, dest)
    before = dest.read_bytes()
    root = lab.host_path(victim.name, remote_dir)
    argv = ["put", victim.name, "-i", str(lab.inventory), "--json", str(src), f"{remote_dir}/"]
    returncode, out, err = run_interrupted(argv, root, at_mib * 1024 * 1024, interrupt)
    return _Interrupted(returncode, out, err, before, dest, root)


def test_killed_connection_mid_upload_leaves_the_destination_untouched(
    lab: Lab, remote_dir: str, tmp_path: Path
) -> None:
    victim = lab.hosts[0]
    done = _interrupt_upload(
        lab, remote_dir, tmp_path, size_mib=200, at_mib=50, interrupt=kill_connections(lab, 0)
    )
    assert done.returncode == 5, done.out + done.err
    hosts, _ = json_lines(done.out)
    assert hosts[victim.name]["status"] == "failed"
    assert f"remote {remote_dir}/huge.bin" in hosts[victim.name]["error"]
    assert done.dest.read_bytes() == done.before
    assert leftovers(done.root) == []  # removed over a fresh connection


# --------------------------------------------------------------------------- get


def test_get_files_directory_and_glob_into_host_directories(
    lab: Lab, remote_dir: str, tmp_path: Path
) -> None:
    for host in lab.hosts:
        root = lab.host_path(host.name, remote_dir)
        (root / "logs" / "old").mkdir(parents=True)
        (root / "logs" / "app.log").write_text(f"log of {host.name}\n")
        (root / "logs" / "old" / "app.log.1").write_bytes(os.urandom(300_000))
        (root / "a.txt").write_text("a")
        (root / "b.txt").write_text("b")
        (root / "c.dat").write_text("c")
    out = tmp_path / "out"
    result = get(lab, f"{remote_dir}/logs", f"{remote_dir}/*.txt", "/etc/hostname", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    hosts, _ = json_lines(result.stdout)
    for host in lab.hosts:
        mine = out / host.name
        local_root = mine / remote_dir.lstrip("/")
        remote_root = lab.host_path(host.name, remote_dir)
        assert (local_root / "logs" / "app.log").read_text() == f"log of {host.name}\n"
        assert (local_root / "logs" / "old" / "app.log.1").read_bytes() == (
            remote_root / "logs" / "old" / "app.log.1"
        ).read_bytes()
        assert (local_root / "a.txt").read_text() == "a"
        assert not (local_root / "c.dat").exists()
        assert (mine / "etc" / "hostname").read_text().strip() == host.name
        assert hosts[host.name]["files"] == 5
        assert leftovers(mine) == []
    again = get(lab, "--verify", f"{remote_dir}/logs", str(out))
    hosts, _ = json_lines(again.stdout)
    assert all((o["files"], o["unchanged"], o["changed"]) == (0, 2, False) for o in hosts.values())


def test_get_drops_setuid_and_keeps_mtimes_with_p(
    lab: Lab, remote_dir: str, tmp_path: Path
) -> None:
    host = lab.hosts[0].name
    remote = lab.host_path(host, f"{remote_dir}/tool")
    remote.write_bytes(b"#!/bin/sh\n")
    os.chmod(remote, 0o6755)
    os.utime(remote, (1_400_000_000, 1_400_000_000))
    out = tmp_path / "out"
    result = get(lab, "-p", f"{remote_dir}/tool", str(out), pattern=host)
    assert result.returncode == 0, result.stderr
    local = out / host / remote_dir.lstrip("/") / "tool"
    assert local.stat().st_mode & 0o7777 == 0o755
    assert int(local.stat().st_mtime) == 1_400_000_000


def test_get_never_writes_through_a_planted_local_symlink(
    lab: Lab, remote_dir: str, tmp_path: Path
) -> None:
    host = lab.hosts[0].name
    (lab.host_path(host, remote_dir) / "sub").mkdir()
    lab.host_path(host, f"{remote_dir}/sub/file").write_text("remote data")
    lab.host_path(host, f"{remote_dir}/top").write_text("remote top")
    victim_dir = tmp_path / "victim"
    victim_dir.mkdir()
    victim_file = tmp_path / "victim.txt"
    victim_file.write_text("precious")
    out = tmp_path / "out"
    local_root = out / host / remote_dir.lstrip("/")
    local_root.mkdir(parents=True)
    (local_root / "sub").symlink_to(victim_dir)  # a planted directory symlink
    (local_root / "top").symlink_to(victim_file)  # a planted file symlink
    result = get(lab, remote_dir, str(out), pattern=host)
    assert result.returncode == 5
    obj = json_lines(result.stdout)[0][host]
    assert "not a directory" in obj["error"]
    assert f"local {local_root / 'sub'}" in obj["error"]
    assert list(victim_dir.iterdir()) == []
    assert victim_file.read_text() == "precious"
    # The file symlink itself was replaced by the downloaded file, not written through.
    assert not (local_root / "top").is_symlink()
    assert (local_root / "top").read_text() == "remote top"


def test_get_skips_remote_symlinks_out_of_the_tree(
    lab: Lab, remote_dir: str, tmp_path: Path
) -> None:
    host = lab.hosts[0].name
    root = lab.host_path(host, remote_dir)
    (root / "tree").mkdir()
    (root / "tree" / "ok.txt").write_text("ok")
    (root / "tree" / "passwd").symlink_to("/etc/passwd")
    (root / "tree" / "etc").symlink_to("/etc")
    out = tmp_path / "out"
    result = get(lab, f"{remote_dir}/tree", str(out), pattern=host)
    assert result.returncode == 0, result.stderr
    obj = json_lines(result.stdout)[0][host]
    assert obj["files"] == 1
    assert obj["skipped"] == 2
    assert any("symlink not followed" in w for w in obj["warnings"])
    local = out / host / remote_dir.lstrip("/") / "tree"
    assert sorted(p.name for p in local.iterdir()) == ["ok.txt"]


def test_get_into_an_unwritable_local_directory_fails_naming_the_local_path(
    lab: Lab, remote_dir: str, tmp_path: Path
) -> None:
    first, *others = lab.hosts
    for host in lab.hosts:
        lab.host_path(host.name, f"{remote_dir}/f").write_text("x")
    out = tmp_path / "out"
    out.mkdir()
    (out / first.name).write_text("a file where a directory is expected")
    result = get(lab, f"{remote_dir}/f", str(out))
    assert result.returncode == 5
    hosts, summary = json_lines(result.stdout)
    assert hosts[first.name]["status"] == "failed"
    assert f"local {out / first.name}" in hosts[first.name]["error"]
    assert summary["ok"] == len(others)
    missing = get(lab, "/nonexistent/file", str(out), pattern=others[0].name)
    assert missing.returncode == 5
    assert "remote /nonexistent/file" in json_lines(missing.stdout)[0][others[0].name]["error"]


def test_get_resume_continues_a_matching_local_partial(
    lab: Lab, remote_dir: str, tmp_path: Path
) -> None:
    host = lab.hosts[0].name
    data = os.urandom(2_000_001)
    lab.host_path(host, f"{remote_dir}/g.bin").write_bytes(data)
    out = tmp_path / "out"
    local_dir = out / host / remote_dir.lstrip("/")
    local_dir.mkdir(parents=True)
    for partial in (b"", data[:1], data[:1000], data[:-1], data, data + b"x", b"Y" * 10):
        (local_dir / "g.bin").unlink(missing_ok=True)
        (local_dir / ".g.bin.remoteops.part").write_bytes(partial)
        result = get(lab, "--resume", "--verify", f"{remote_dir}/g.bin", str(out), pattern=host)
        assert result.returncode == 0, result.stderr
        assert hashlib.sha256((local_dir / "g.bin").read_bytes()).digest() == (
            hashlib.sha256(data).digest()
        )
        assert not (local_dir / ".g.bin.remoteops.part").exists()


def test_large_get_streams_and_resumes_byte_identical(
    lab: Lab, remote_dir: str, tmp_path: Path, fast_paths: bool
) -> None:
    """Files of 64 MiB and more come through a `cat`/`tail -c` stream, not SFTP reads
    (unless the fast paths are off)."""
    host = lab.hosts[0].name
    data = os.urandom(70 * 1024 * 1024 + 7)
    lab.host_path(host, f"{remote_dir}/large.bin").write_bytes(data)
    out = tmp_path / "out"
    before = lab.sshd_log(host).read_text().count("Starting session: command")
    result = get(lab, f"{remote_dir}/large.bin", str(out), pattern=host)
    assert result.returncode == 0, result.stderr
    hosts, _ = json_lines(result.stdout)
    assert hosts[host]["bytes"] == len(data)
    local = out / host / remote_dir.lstrip("/") / "large.bin"
    assert hashlib.sha256(local.read_bytes()).digest() == hashlib.sha256(data).digest()
    # Without --verify the only command session is the one that carried the bytes.
    time.sleep(0.2)
    assert lab.sshd_log(host).read_text().count("Starting session: command") == before + fast_paths

    for keep in (1, len(data) // 2, len(data) - 1):
        local.unlink()
        (local.parent / ".large.bin.remoteops.part").write_bytes(data[:keep])
        again = get(lab, "--resume", f"{remote_dir}/large.bin", str(out), pattern=host)
        assert again.returncode == 0, again.stderr
        hosts, _ = json_lines(again.stdout)
        assert hosts[host]["bytes"] == len(data) - keep
        assert hashlib.sha256(local.read_bytes()).digest() == hashlib.sha256(data).digest()
        assert not leftovers(out)


@pytest.fixture
def many_small(tmp_path: Path) -> Path:
    """40 small files in nested directories, with assorted modes and old mtimes."""
    src = tmp_path / "many"
    for index in range(40):
        path = src / f"d{index % 4}" / f"f{index:02d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(100 + index))
        path.chmod((0o600, 0o640, 0o755, 0o644)[index % 4])
        os.utime(path, (1_600_000_000 + index, 1_600_000_000 + index))
    return src


def _check_many(lab: Lab, host: str, remote_dir: str, src: Path) -> None:
    for path in src.rglob("*.txt"):
        remote = lab.host_path(host, f"{remote_dir}/many/{path.relative_to(src)}")
        assert remote.read_bytes() == path.read_bytes()
        assert (remote.stat().st_mode & 0o7777) == (path.stat().st_mode & 0o7777)
        assert int(remote.stat().st_mtime) == int(path.stat().st_mtime)
    assert not leftovers(lab.host_path(host, remote_dir))


def test_many_small_files_go_in_one_tar_stream(
    lab: Lab, remote_dir: str, many_small: Path, fast_paths: bool
) -> None:
    host = lab.hosts[0].name
    before = lab.sshd_log(host).read_text().count("Starting session: command")
    result = put(lab, "-p", str(many_small), f"{remote_dir}/", pattern=host)
    assert result.returncode == 0, result.stderr
    hosts, _ = json_lines(result.stdout)
    assert hosts[host]["files"] == 40
    _check_many(lab, host, remote_dir, many_small)
    time.sleep(0.2)
    # With the fast paths, one listing decides what to send and one tar stream sends it.
    assert (
        lab.sshd_log(host).read_text().count("Starting session: command") == before + 2 * fast_paths
    )


@contextlib.contextmanager
def replaced_by_false(lab: Lab, index: int, program: str) -> Iterator[str]:
    """Lab host INDEX's PROGRAM (e.g. "tar") replaced by /bin/false in its mount namespace."""
    host = lab.hosts[index]
    path = f"/usr/bin/{program}" if Path(f"/usr/bin/{program}").exists() else f"/bin/{program}"
    enter = ["nsenter", "--target", str(host.pid), "--mount", "--"]
    subprocess.run([*enter, "mount", "--bind", "/bin/false", path], check=True)
    try:
        yield host.name
    finally:
        subprocess.run([*enter, "umount", path], check=False)


@pytest.fixture
def no_tar(lab: Lab) -> Iterator[str]:
    """The first host without a working tar."""
    with replaced_by_false(lab, 0, "tar") as host:
        yield host


def test_many_small_files_fall_back_to_sftp_without_tar(
    lab: Lab, remote_dir: str, many_small: Path, no_tar: str
) -> None:
    result = put(lab, str(many_small), f"{remote_dir}/", pattern=no_tar)
    assert result.returncode == 0, result.stderr
    hosts, _ = json_lines(result.stdout)
    assert hosts[no_tar]["files"] == 40
    _check_many(lab, no_tar, remote_dir, many_small)


def test_ctrl_c_mid_upload_keeps_the_old_file_and_cleans_up(
    lab: Lab, remote_dir: str, tmp_path: Path
) -> None:
    done = _interrupt_upload(
        lab, remote_dir, tmp_path, size_mib=300, at_mib=30,
        interrupt=lambda proc: proc.send_signal(signal.SIGINT),
    )  # fmt: skip
    assert done.returncode == 130, done.out + done.err
    hosts, summary = json_lines(done.out)
    assert hosts[lab.hosts[0].name]["status"] == "interrupted"
    assert summary["exit_code"] == 130
    assert done.dest.read_bytes() == done.before
    assert leftovers(done.root) == []
