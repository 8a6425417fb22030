"""Bulk put and get as one listing and one tar stream per host, against the lab's real sshd.

A put lists the destination once (``find -printf``) and sends what changed as
one ``tar`` stream; a get lists a tree once and reads one ``tar -c`` stream.
These tests check that an unchanged tree costs one listing and nothing else,
that a tree comes back through the stream with the listing's modes (setuid
dropped), that a host whose ``tar`` is replaced by a script sending hostile
archives does no more harm than a malicious SFTP server, and the fallbacks to
SFTP where ``find`` or ``tar`` do not work.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import signal
import stat
import subprocess
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from remoteops.lab import Lab
from tests.integration.test_get_malicious import changed_outside, snapshot
from tests.integration.test_transfer import (
    chown_lab,
    get,
    json_lines,
    kill_connections,
    leftovers,
    put,
    replaced_by_false,
    run_interrupted,
)

pytestmark = pytest.mark.integration

OLD = 1_600_000_000
EVIL = b"EVIL CONTENT - must never be written anywhere\n"


def _commands(lab: Lab, host: str) -> int:
    time.sleep(0.2)  # sshd writes its log line after the session starts
    return lab.sshd_log(host).read_text().count("Starting session: command")


def _digest(path: Path) -> bytes:
    return hashlib.sha256(path.read_bytes()).digest()


def _source_tree(root: Path, dirs: int, per_dir: int) -> list[Path]:
    """dirs x per_dir small files (d00/f000.txt ...), mode 0640, mtime OLD."""
    files = []
    for d in range(dirs):
        folder = root / f"d{d:02d}"
        folder.mkdir(parents=True)
        for f in range(per_dir):
            path = folder / f"f{f:03d}.txt"
            path.write_bytes(f"{d}/{f} ".encode() * (1 + f % 7))
            path.chmod(0o640)
            os.utime(path, (OLD, OLD + d + f))
            files.append(path)
    return files


def test_an_unchanged_put_of_2000_files_is_one_listing_and_nothing_else(
    lab: Lab, remote_dir: str, tmp_path: Path, fast_paths: bool
) -> None:
    host = lab.hosts[2].name
    src = tmp_path / "bulk"
    files = _source_tree(src, 20, 100)
    first = put(lab, str(src), f"{remote_dir}/", pattern=host)
    assert first.returncode == 0, first.stdout + first.stderr
    assert json_lines(first.stdout)[0][host]["files"] == 2000
    remote_root = lab.host_path(host, remote_dir)
    before_state = {}
    for path in files:
        remote = remote_root / path.relative_to(src.parent)
        info = remote.stat()
        assert remote.read_bytes() == path.read_bytes()
        assert (stat.S_IMODE(info.st_mode), int(info.st_mtime)) == (
            0o640,
            int(path.stat().st_mtime),
        )
        before_state[remote] = (info.st_ino, info.st_ctime_ns, info.st_mtime_ns)
    assert not leftovers(remote_root)

    before = _commands(lab, host)
    again = put(lab, str(src), f"{remote_dir}/", pattern=host)
    assert again.returncode == 0, again.stdout + again.stderr
    obj = json_lines(again.stdout)[0][host]
    assert (obj["files"], obj["unchanged"], obj["bytes"], obj["changed"]) == (0, 2000, 0, False)
    # One command session (the listing) decided it for all 2,000 files (without the fast
    # paths: SFTP lstats); none was touched.
    assert _commands(lab, host) == before + fast_paths
    for remote, state in before_state.items():
        info = remote.stat()
        assert (info.st_ino, info.st_ctime_ns, info.st_mtime_ns) == state, remote


def test_a_tree_comes_back_through_one_tar_stream_with_setuid_dropped(
    lab: Lab, remote_dir: str, tmp_path: Path, fast_paths: bool
) -> None:
    host = lab.hosts[2].name
    root = lab.host_path(host, f"{remote_dir}/tree")
    wanted: dict[Path, tuple[bytes, int, int]] = {}  # remote path: content, mode, mtime
    for index in range(40):
        path = root / f"d{index % 4}" / f"f{index:02d}.conf"
        path.parent.mkdir(parents=True, exist_ok=True)
        content = os.urandom(10 + index * 37)
        path.write_bytes(content)
        mode = 0o4755 if index == 7 else 0o6750 if index == 8 else 0o640
        path.chmod(mode)
        os.utime(path, (OLD, OLD + index))
        wanted[path] = (content, mode & 0o777, OLD + index)
    for path in [root, *root.rglob("*")]:
        chown_lab(lab, path)
    out = tmp_path / "out"
    before = _commands(lab, host)
    result = get(lab, f"{remote_dir}/tree", str(out), pattern=host)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json_lines(result.stdout)[0][host]["files"] == 40
    # The listing and one tar stream; SFTP only answered the stat of the argument (without
    # the fast paths: SFTP alone).
    assert _commands(lab, host) == before + 2 * fast_paths
    base = out / host / remote_dir.lstrip("/")
    for remote, (content, mode, mtime) in wanted.items():
        local = base / remote.relative_to(root.parent)
        info = local.lstat()
        assert stat.S_ISREG(info.st_mode)
        assert local.read_bytes() == content
        assert (stat.S_IMODE(info.st_mode), int(info.st_mtime)) == (mode, mtime), local
    assert not leftovers(out)
    again = get(lab, f"{remote_dir}/tree", str(out), pattern=host)
    assert json_lines(again.stdout)[0][host]["unchanged"] == 40


# --------------------------------------------------------------------------- a malicious tar


@contextlib.contextmanager
def _tar_replaced_by(lab: Lab, index: int, script: str) -> Iterator[Path]:
    """Lab host INDEX's ``tar`` replaced by ``script`` (in its mount namespace); yields the
    host-side /tmp directory holding the script's files."""
    host = lab.hosts[index]
    tag = uuid.uuid4().hex[:10]
    inside = f"/tmp/evil-tar-{tag}"
    here = lab.host_path(host.name, inside)
    here.mkdir(mode=0o755)
    chown_lab(lab, here)  # the fake tar runs as the login user and notes that it ran
    (here / "tar").write_text(script.replace("@DIR@", inside))
    (here / "tar").chmod(0o755)
    target = "/usr/bin/tar" if Path("/usr/bin/tar").exists() else "/bin/tar"
    enter = ["nsenter", "--target", str(host.pid), "--mount", "--"]
    subprocess.run([*enter, "mount", "--bind", f"{inside}/tar", target], check=True)
    try:
        yield here
    finally:
        subprocess.run([*enter, "umount", target], check=False)


# The fake tar notes that it ran, then sends the archive the test prepared.
_EVIL_TAR = '#!/bin/sh\necho "$*" >> @DIR@/ran\ncat @DIR@/stream\n'


def _member(name: str, data: bytes = EVIL, **fields: object) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = OLD
    for key, value in fields.items():
        setattr(info, key, value)
    if info.type != tarfile.REGTYPE:
        info.size = 0
        data = b""
    return info, data


def _archive(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data))
    return buf.getvalue()


Streams = Callable[[dict[str, bytes], str], bytes]


def _oversize_header(files: dict[str, bytes], esc: str) -> bytes:
    info = tarfile.TarInfo("././@PaxHeader")
    info.type = tarfile.XHDTYPE
    info.size = 1 << 32  # a 4 GiB pax record
    return info.tobuf(tarfile.USTAR_FORMAT) + b"x" * 4096


def _cut_mid_file(files: dict[str, bytes], esc: str) -> bytes:
    """A whole first member, then the second's header and half its bytes: the end."""
    out = b""
    for number, name in enumerate(sorted(files)[:2]):
        info, data = _member(name, files[name])
        out += info.tobuf(tarfile.PAX_FORMAT)
        if number == 0:
            out += data + bytes(-len(data) % tarfile.BLOCKSIZE)
        else:
            out += data[: len(data) // 2]
    return out


def _first(files: dict[str, bytes]) -> str:
    return sorted(files)[0]


# name: (the stream, the file that fails (None: no file), a word of the host's error)
HOSTILE: dict[str, tuple[Streams, int | None, str]] = {
    "dotdot": (
        lambda f, esc: _archive(
            [_member(_first(f), f[_first(f)]), _member(f"../../../../tmp/remoteops-escape-{esc}")]
        ),
        None,
        "refused the member",
    ),
    "absolute": (lambda f, esc: _archive([_member(f"/etc/evil-{esc}")]), None, "refused"),
    "symlink-then-file": (
        lambda f, esc: _archive(
            [
                _member(
                    sorted(f)[1], type=tarfile.SYMTYPE, linkname=f"/tmp/remoteops-escape-{esc}"
                ),
                _member(sorted(f)[1], f[sorted(f)[1]]),
            ]
        ),
        1,
        "not a regular file",
    ),
    "hardlink": (
        lambda f, esc: _archive(
            [_member(sorted(f)[2], type=tarfile.LNKTYPE, linkname="/etc/passwd")]
        ),
        2,
        "not a regular file",
    ),
    "device": (
        lambda f, esc: _archive(
            [_member(sorted(f)[3], type=tarfile.CHRTYPE, devmajor=1, devminor=3)]
        ),
        3,
        "not a regular file",
    ),
    "setuid": (
        lambda f, esc: _archive([_member(sorted(f)[4], f[sorted(f)[4]], mode=0o6755, uid=0)]),
        None,
        "",
    ),
    "wrong-size": (
        lambda f, esc: _archive([_member(sorted(f)[5], EVIL * 1000)]),
        5,
        "bytes in the tar stream",
    ),
    "oversize-header": (_oversize_header, None, "refused"),
    "nan-time": (
        lambda f, esc: _archive(
            [_member(sorted(f)[6], f[sorted(f)[6]], pax_headers={"mtime": "nan"})]
        ),
        None,
        "",
    ),
    "cut-mid-file": (_cut_mid_file, None, ""),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_malicious_tar_is_as_harmless_as_a_malicious_sftp_server(
    lab: Lab, remote_dir: str, tmp_path: Path, name: str, fast_paths: bool
) -> None:
    index = 4
    host = lab.hosts[index].name
    esc = uuid.uuid4().hex[:12]
    root = lab.host_path(host, f"{remote_dir}/tree")
    files: dict[str, bytes] = {}  # remote path (as the host names it): content
    for number in range(20):
        local = root / f"d{number % 2}" / f"f{number:02d}.txt"
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(os.urandom(100 + number))
        local.chmod(0o640)
        files[f"{remote_dir}/tree/{local.relative_to(root)}"] = local.read_bytes()
    for path in [root, *root.rglob("*")]:
        chown_lab(lab, path)
    build, failing, word = HOSTILE[name]
    if not fast_paths:  # the switch keeps the stream, and whatever it holds, out
        failing, word = None, ""
    out = tmp_path / "w1" / "w2" / "out"
    out.mkdir(parents=True)
    before = snapshot(tmp_path)
    with _tar_replaced_by(lab, index, _EVIL_TAR) as fake:
        (fake / "stream").write_bytes(build(files, esc))
        result = get(lab, f"{remote_dir}/tree", str(out), pattern=host)
        ran = (fake / "ran").read_text() if (fake / "ran").exists() else ""
    shown = result.stdout + result.stderr
    assert ("-c" in ran) == fast_paths, shown  # the stream was asked for
    assert changed_outside(before, snapshot(tmp_path), out / host) == []
    for escape in (
        Path(f"/tmp/remoteops-escape-{esc}"),
        Path(f"/etc/evil-{esc}"),
        lab.host_path(host, f"/tmp/remoteops-escape-{esc}"),
    ):
        assert not os.path.lexists(escape), escape
    obj = json_lines(result.stdout)[0][host]
    names = sorted(files)
    base = out / host
    for number, remote in enumerate(names):
        local = base / remote.lstrip("/")
        if number == failing:
            assert not os.path.lexists(local), shown
            assert remote in shown, shown
            continue
        info = local.lstat()
        assert stat.S_ISREG(info.st_mode), local
        assert info.st_nlink == 1, local
        assert local.read_bytes() == files[remote], local  # the file's bytes, never EVIL
        assert stat.S_IMODE(info.st_mode) == 0o640, local  # the listing's mode, not the header's
    for current, _dirs, names_here in os.walk(base):
        for entry in names_here:
            info = os.lstat(os.path.join(current, entry))
            assert stat.S_ISREG(info.st_mode), entry
            assert not info.st_mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX), entry
    assert not leftovers(out)
    if name == "nan-time" and fast_paths:  # the listed time where the stream's is not a number
        remote = names[6]
        assert int((base / remote.lstrip("/")).stat().st_mtime) == int(
            lab.host_path(host, remote).stat().st_mtime
        )
    assert obj["files"] == len(files) - (failing is not None), shown
    if failing is None and not word:
        assert result.returncode == 0, shown
    else:
        assert result.returncode == 5, shown
        assert word in obj["error"] or word in shown, shown


# --------------------------------------------------------------------------- fallbacks


def _check_copies(lab: Lab, host: str, remote_dir: str, src: Path, out: Path) -> None:
    """Every file of SRC on HOST under REMOTE_DIR and back in OUT: bytes, mode, mtime."""
    remote_root = lab.host_path(host, remote_dir)
    for path in src.rglob("*.txt"):
        relative = path.relative_to(src.parent)
        remote = remote_root / relative
        assert remote.read_bytes() == path.read_bytes()
        info = remote.stat()
        assert (stat.S_IMODE(info.st_mode), int(info.st_mtime)) == (
            0o640,
            int(path.stat().st_mtime),
        )
        local = out / host / remote_dir.lstrip("/") / relative
        assert _digest(local) == _digest(path)
        assert int(local.stat().st_mtime) == int(path.stat().st_mtime)
    assert not leftovers(remote_root)
    assert not leftovers(out)


def test_without_find_put_and_get_fall_back_to_sftp(
    lab: Lab, remote_dir: str, tmp_path: Path, fast_paths: bool
) -> None:
    src = tmp_path / "bulk"
    _source_tree(src, 2, 20)
    with replaced_by_false(lab, 5, "find") as host:
        before = _commands(lab, host)
        sent = put(lab, str(src), f"{remote_dir}/", pattern=host)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert json_lines(sent.stdout)[0][host]["files"] == 40
        # The listing was tried; then SFTP decided, and tar -x wrote batches to temporary names.
        assert _commands(lab, host) == before + 2 * fast_paths
        out = tmp_path / "out"
        fetched = get(lab, f"{remote_dir}/bulk", str(out), pattern=host)
        assert fetched.returncode == 0, fetched.stdout + fetched.stderr
        assert json_lines(fetched.stdout)[0][host]["files"] == 40
    _check_copies(lab, host, remote_dir, src, out)


def test_without_tar_get_falls_back_to_sftp(
    lab: Lab, remote_dir: str, tmp_path: Path, fast_paths: bool
) -> None:
    src = tmp_path / "bulk"
    _source_tree(src, 2, 20)
    with replaced_by_false(lab, 5, "tar") as host:
        sent = put(lab, str(src), f"{remote_dir}/", pattern=host)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        out = tmp_path / "out"
        before = _commands(lab, host)
        fetched = get(lab, f"{remote_dir}/bulk", str(out), pattern=host)
        assert fetched.returncode == 0, fetched.stdout + fetched.stderr
        assert json_lines(fetched.stdout)[0][host]["files"] == 40
        assert _commands(lab, host) == before + 2 * fast_paths  # the listing, the failed tar
    _check_copies(lab, host, remote_dir, src, out)


@contextlib.contextmanager
def _login_shell_runs_nothing(lab: Lab, index: int) -> Iterator[str]:
    """Lab host INDEX's login user gets /bin/false as its shell (a bind-mounted /etc/passwd
    in the host's mount namespace): every exec runs nothing; SFTP (internal-sftp) still
    works."""
    host = lab.hosts[index]
    lines = []
    for line in Path("/etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == lab.user:
            fields[-1] = "/bin/false"
        lines.append(":".join(fields))
    inside = f"/tmp/passwd-{uuid.uuid4().hex[:10]}"
    copy = lab.host_path(host.name, inside)
    copy.write_text("\n".join(lines) + "\n")
    copy.chmod(0o644)
    enter = ["nsenter", "--target", str(host.pid), "--mount", "--"]
    subprocess.run([*enter, "mount", "--bind", inside, "/etc/passwd"], check=True)
    try:
        yield host.name
    finally:
        subprocess.run([*enter, "umount", "/etc/passwd"], check=False)
        copy.unlink()


def test_where_exec_runs_nothing_put_and_get_use_sftp(
    lab: Lab, remote_dir: str, tmp_path: Path, fast_paths: bool
) -> None:
    src = tmp_path / "bulk"
    _source_tree(src, 2, 20)
    out = tmp_path / "out"
    with _login_shell_runs_nothing(lab, 5) as host:
        before = _commands(lab, host)
        sent = put(lab, str(src), f"{remote_dir}/", pattern=host)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert json_lines(sent.stdout)[0][host]["files"] == 40
        # The listing and a tar -x batch, both tried (without the fast paths, neither).
        assert _commands(lab, host) == before + 2 * fast_paths
        fetched = get(lab, f"{remote_dir}/bulk", str(out), pattern=host)
        assert fetched.returncode == 0, fetched.stdout + fetched.stderr
        assert json_lines(fetched.stdout)[0][host]["files"] == 40
        assert _commands(lab, host) == before + 4 * fast_paths  # the listing, the tar stream
    _check_copies(lab, host, remote_dir, src, out)


@pytest.mark.parametrize("how", ["ctrl-c", "connection-killed"])
def test_a_bulk_put_stopped_mid_stream_leaves_no_file_and_no_stage(
    lab: Lab, remote_dir: str, tmp_path: Path, how: str, fast_paths: bool
) -> None:
    """Files appear only once the whole archive is in: stopped midway, none appears (over
    SFTP each one appears only complete)."""
    src = tmp_path / "bulk"
    for index in range(120):
        path = src / f"d{index % 3}" / f"f{index:03d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(1024 * 1024))
    index = 0
    victim = lab.hosts[index]
    root = lab.host_path(victim.name, remote_dir)
    argv = ["put", victim.name, "-i", str(lab.inventory), "--json", str(src), f"{remote_dir}/"]

    def ready() -> bool:
        return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) >= 20 * 1024 * 1024

    stop = (lambda proc: proc.send_signal(signal.SIGINT)) if how == "ctrl-c" else None
    code, out, err = run_interrupted(
        argv, root, 0, stop or kill_connections(lab, index), ready=ready
    )
    assert code == (130 if how == "ctrl-c" else 5), out + err
    for path in root.rglob("*"):
        if path.is_file():  # under its final name only complete
            assert path.read_bytes() == (src / path.relative_to(root / "bulk")).read_bytes()
    assert not leftovers(root), out + err
    if fast_paths:
        assert not (root / "bulk").exists(), out + err  # no file half-way, none at all
        assert list(root.iterdir()) == [], out + err  # the stage is gone too


def test_files_the_stream_cannot_place_fail_one_by_one(
    lab: Lab, remote_dir: str, tmp_path: Path, fast_paths: bool
) -> None:
    """A directory where a file goes, a directory the login user may not write: those files
    fail, each named; the others are placed."""
    host = lab.hosts[3].name
    src = tmp_path / "bulk"
    _source_tree(src, 2, 20)
    remote = lab.host_path(host, f"{remote_dir}/bulk")
    (remote / "d00" / "f005.txt").mkdir(parents=True)
    (remote / "d01").mkdir(mode=0o755)  # root's
    for path in (remote, remote / "d00", remote / "d00" / "f005.txt"):
        chown_lab(lab, path)
    before = _commands(lab, host)
    result = put(lab, str(src), f"{remote_dir}/", pattern=host)
    assert _commands(lab, host) == before + 2 * fast_paths  # the listing, the stream (then SFTP)
    shown = result.stdout + result.stderr
    assert result.returncode == 5, shown
    obj = json_lines(result.stdout)[0][host]
    assert (obj["files"], obj["failed_files"]) == (19, 21), shown
    assert f"remote {remote_dir}/bulk/d00/f005.txt: is a directory" in shown
    assert f"remote {remote_dir}/bulk/d01/f000.txt" in shown
    for number in range(20):
        placed = remote / "d00" / f"f{number:03d}.txt"
        assert (
            placed.is_dir()
            if number == 5
            else placed.read_bytes() == (src / "d00" / placed.name).read_bytes()
        )
    assert list((remote / "d01").iterdir()) == []
    assert not leftovers(lab.host_path(host, remote_dir))
