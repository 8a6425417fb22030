"""Files as another user: `put`, `get` and play's put/get steps with --become, on the lab.

Every remote path here is under a lab host's private /srv (never this machine's
/etc): a directory owned by root with mode 0700, which the login user cannot
even look into. Also: a failure names the path the user asked for, never a
temporary name, so identical failures on many hosts fold into one line.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from remoteops.lab import Lab
from remoteops.nodeset import fold
from tests.helpers import run_cli as cli
from tests.integration.test_transfer import (
    json_lines,
    kill_connections,
    leftovers,
    run_interrupted,
)

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
OLD = 1_600_000_000  # the sources' modification time
NOBODY = 65534  # owner and group of a file that a put replaces


@pytest.fixture
def root_dir(lab: Lab) -> Iterator[str]:
    """A fresh directory /srv/r-<id> on every lab host, owned by root, mode 0700."""
    name = f"/srv/r-{uuid.uuid4().hex[:10]}"
    local_dirs = []
    for host in lab.hosts:
        local = lab.host_path(host.name, name)
        local.mkdir()
        local.chmod(0o700)
        local_dirs.append(local)
    try:
        yield name
    finally:
        for local in local_dirs:
            shutil.rmtree(local, ignore_errors=True)


def become(lab: Lab, password_file: Path | None = None) -> list[str]:
    return ["--become", "--become-password-file", str(password_file or lab.become_password_file)]


def transfer(
    lab: Lab, verb: str, *args: str, pattern: str = "all"
) -> subprocess.CompletedProcess[str]:
    return cli(verb, pattern, "-i", str(lab.inventory), *args)


def commands(lab: Lab, host: str) -> int:
    """Commands (exec channels) sshd started on ``host`` so far."""
    time.sleep(0.2)  # sshd writes its log line after the session starts
    return lab.sshd_log(host).read_text().count("Starting session: command")


def no_secret(lab: Lab, *outputs: str) -> None:
    password = lab.become_password_file.read_text().strip()
    assert all(password not in text for text in outputs)


# --------------------------------------------------------------------------- messages


def test_permission_denied_names_the_destination_and_folds_across_hosts(
    lab: Lab, root_dir: str, tmp_path: Path
) -> None:
    src = tmp_path / "motd"
    src.write_text("welcome\n")
    dest = f"{root_dir}/motd"
    expected = f"remote {dest}: Permission denied"
    names = [h.name for h in lab.hosts]
    result = transfer(lab, "put", str(src), dest, "--mode", "0644")
    assert result.returncode == 5, result.stdout + result.stderr
    assert ".remoteops" not in result.stderr  # no temporary name anywhere
    folded = [line for line in result.stderr.splitlines() if line.startswith("  ")]
    assert folded == [f"  {fold(names)} ({len(names)}): failed: {expected}"]
    as_json = transfer(lab, "put", "--json", str(src), dest)
    hosts, _ = json_lines(as_json.stdout)
    assert {obj["error"] for obj in hosts.values()} == {expected}
    assert all(list(lab.host_path(n, root_dir).iterdir()) == [] for n in names)


# --------------------------------------------------------------------------- put and get


def _tree(tmp_path: Path) -> Path:
    """20 small files (one tar batch) and a setuid program, all with an old mtime."""
    src = tmp_path / "conf"
    src.mkdir()
    for index in range(20):
        path = src / f"f{index:02d}.conf"
        path.write_bytes(os.urandom(50 + index))
        path.chmod(0o640)
    (src / "tool").write_bytes(b"#!/bin/sh\n")
    (src / "tool").chmod(0o4755)
    for path in src.iterdir():
        os.utime(path, (OLD, OLD))
    return src


def test_put_and_get_as_root_in_a_root_only_directory(
    lab: Lab, root_dir: str, tmp_path: Path, fast_paths: bool
) -> None:
    src = _tree(tmp_path)
    host = lab.hosts[0].name
    for name in (h.name for h in lab.hosts):
        replaced = lab.host_path(name, f"{root_dir}/conf/f00.conf")
        replaced.parent.mkdir()
        replaced.write_bytes(b"old\n")
        os.chown(replaced, NOBODY, NOBODY)
        replaced.chmod(0o600)
    before = commands(lab, host)
    result = transfer(lab, "put", "--json", "--verify", str(src), f"{root_dir}/", *become(lab))
    assert result.returncode == 0, result.stdout + result.stderr
    # The password check, then with the fast paths one listing and one tar stream (its
    # plan runs sha256sum -c before moving anything), without them sftp-server and
    # sha256sum: all under sudo.
    assert commands(lab, host) == before + 3
    hosts, summary = json_lines(result.stdout)
    assert summary["ok"] == len(lab.hosts)
    assert {(o["files"], o["unchanged"]) for o in hosts.values()} == {(21, 0)}
    for name in (h.name for h in lab.hosts):
        root = lab.host_path(name, f"{root_dir}/conf")
        for path in src.iterdir():
            copy = root / path.name
            info = copy.stat()
            assert copy.read_bytes() == path.read_bytes()
            assert stat.S_IMODE(info.st_mode) == stat.S_IMODE(path.stat().st_mode)
            assert int(info.st_mtime) == OLD
            # A new file belongs to the become user; a replaced one keeps its owner.
            owner = (NOBODY, NOBODY) if path.name == "f00.conf" else (0, 0)
            assert (info.st_uid, info.st_gid) == owner, path.name
        assert leftovers(root) == []
    again = transfer(lab, "put", "--json", str(src), f"{root_dir}/", *become(lab))
    assert {(o["files"], o["unchanged"]) for o in json_lines(again.stdout)[0].values()} == {(0, 21)}
    got = tmp_path / "got"
    fetched = transfer(lab, "get", "--json", "--verify", f"{root_dir}/conf", str(got), *become(lab))
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    for name in (h.name for h in lab.hosts):
        local = got / name / root_dir.lstrip("/") / "conf"
        assert sorted(p.name for p in local.iterdir()) == sorted(p.name for p in src.iterdir())
        assert (local / "f07.conf").read_bytes() == (src / "f07.conf").read_bytes()
        assert stat.S_IMODE((local / "tool").stat().st_mode) == 0o755  # setuid dropped
        assert int((local / "tool").stat().st_mtime) == OLD
    no_secret(lab, result.stdout, result.stderr, fetched.stdout, fetched.stderr)


def test_wrong_or_missing_sudo_password_is_one_clear_line(
    lab: Lab, root_dir: str, tmp_path: Path
) -> None:
    src = tmp_path / "motd"
    src.write_text("welcome\n")
    wrong = tmp_path / "wrong"
    wrong.write_text("not the password\n")
    names = [h.name for h in lab.hosts]
    cases = {
        "incorrect sudo password": become(lab, wrong),
        "sudo asks for a password": ["--become"],
    }
    for words, options in cases.items():
        result = transfer(lab, "put", str(src), f"{root_dir}/motd", *options)
        assert result.returncode == 5, result.stdout + result.stderr
        (folded,) = [line for line in result.stderr.splitlines() if line.startswith("  ")]
        assert folded.startswith(f"  {fold(names)} ({len(names)}): failed: become: {words}")
        assert "--become-password-file" in folded
        assert "Traceback" not in result.stderr
    assert all(list(lab.host_path(n, root_dir).iterdir()) == [] for n in names)


def test_large_put_and_get_stream_through_sudo(
    lab: Lab, root_dir: str, tmp_path: Path, fast_paths: bool
) -> None:
    host = lab.hosts[1].name
    data = os.urandom(64 * MIB + 4099)  # over the `cat` stream threshold
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    before = commands(lab, host)
    sent = transfer(lab, "put", "--verify", str(src), f"{root_dir}/", *become(lab), pattern=host)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    # The password check, sftp-server, `cat >> TEMP` (a fast path) and sha256sum.
    assert commands(lab, host) == before + 3 + fast_paths
    assert lab.host_path(host, f"{root_dir}/big.bin").read_bytes() == data
    got = tmp_path / "got"
    before = commands(lab, host)
    fetched = transfer(lab, "get", f"{root_dir}/big.bin", str(got), *become(lab), pattern=host)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert commands(lab, host) == before + 2 + fast_paths  # check, sftp-server, `cat`
    assert (got / host / root_dir.lstrip("/") / "big.bin").read_bytes() == data


def _interrupted_upload(
    lab: Lab,
    root_dir: str,
    tmp_path: Path,
    index: int,
    interrupt: Callable[[subprocess.Popen[str]], None],
) -> tuple[int, dict[str, Any], Path]:
    """`put --become` of 160 MiB over an older file, interrupted at 16 MiB sent."""
    src = tmp_path / "huge.bin"
    with open(src, "wb") as fh:
        for _ in range(160):
            fh.write(os.urandom(MIB))
    host = lab.hosts[index].name
    dest = lab.host_path(host, f"{root_dir}/huge.bin")
    dest.write_bytes(b"previous version\n")
    argv = ["put", host, "-i", str(lab.inventory), "--json", str(src), f"{root_dir}/"]
    code, out, err = run_interrupted([*argv, *become(lab)], dest.parent, 16 * MIB, interrupt)
    hosts, _ = json_lines(out)
    assert dest.read_bytes() == b"previous version\n", err
    assert leftovers(dest.parent) == []  # removed as root, through sudo
    return code, hosts[host], dest


def test_ctrl_c_mid_become_upload_keeps_the_old_file_and_cleans_up(
    lab: Lab, root_dir: str, tmp_path: Path
) -> None:
    code, result, _ = _interrupted_upload(
        lab, root_dir, tmp_path, 2, lambda proc: proc.send_signal(signal.SIGINT)
    )
    assert code == 130
    assert result["status"] == "interrupted"


def test_killed_connection_mid_become_upload_cleans_up_over_a_fresh_one(
    lab: Lab, root_dir: str, tmp_path: Path
) -> None:
    code, result, _ = _interrupted_upload(lab, root_dir, tmp_path, 3, kill_connections(lab, 3))
    assert code == 5
    assert result["status"] == "failed"
    assert result["error"].startswith(f"remote {root_dir}/huge.bin: ")


@pytest.fixture
def root_tmpfs(lab: Lab, root_dir: str) -> Iterator[str]:
    """A 1 MiB tmpfs owned by root (mode 0700) at ROOT_DIR/small on the first host."""
    host = lab.hosts[0]
    path = f"{root_dir}/small"
    lab.host_path(host.name, path).mkdir()
    enter = ["nsenter", "--target", str(host.pid), "--mount", "--"]
    options = "size=1m,mode=0700"
    subprocess.run([*enter, "mount", "-t", "tmpfs", "-o", options, "tmpfs", path], check=True)
    try:
        yield path
    finally:
        subprocess.run([*enter, "umount", path], check=False)


def test_disk_full_under_become_names_the_file_and_leaves_nothing(
    lab: Lab, root_tmpfs: str, tmp_path: Path
) -> None:
    host = lab.hosts[0]
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3 * MIB))
    result = transfer(
        lab, "put", "--json", str(src), f"{root_tmpfs}/", *become(lab), pattern=host.name
    )
    assert result.returncode == 5
    error = json_lines(result.stdout)[0][host.name]["error"]
    assert error.startswith(f"remote {root_tmpfs}/big.bin: No space left on device")
    listing = subprocess.run(
        ["nsenter", "--target", str(host.pid), "--mount", "--", "ls", "-A", root_tmpfs],
        capture_output=True,
        text=True,
        check=True,
    )
    assert listing.stdout == ""  # the temporary file was removed


# --------------------------------------------------------------------------- playbooks


def test_play_put_and_get_steps_with_become(lab: Lab, root_dir: str, tmp_path: Path) -> None:
    host = lab.hosts[4].name
    (tmp_path / "app.conf").write_text("workers = 4\n")
    got = tmp_path / "got"
    book = tmp_path / "book.yml"
    book.write_text(
        f"- hosts: {host}\n  steps:\n"
        f"    - put: {{src: app.conf, dest: {root_dir}/app.conf, mode: '0640', verify: true}}\n"
        "      become: true\n"
        f"    - get: {{src: {root_dir}/app.conf, dest: {got}}}\n"
        "      become: true\n"
    )

    def play(*args: str) -> list[dict[str, Any]]:
        result = cli(
            "play", str(book), "-i", str(lab.inventory), "--json", *args,
            "--become-password-file", str(lab.become_password_file),
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        no_secret(lab, result.stdout, result.stderr)
        return [json.loads(line) for line in result.stdout.splitlines() if '"host"' in line]

    planned = play("--check")
    assert [o["would"].split(" ")[:3] for o in planned] == [
        ["put", "(with", "sudo)"],
        ["get", "(with", "sudo)"],
    ]
    assert [(o["files"], o["unchanged"]) for o in play()] == [(1, 0), (1, 0)]
    remote = lab.host_path(host, f"{root_dir}/app.conf")
    info = remote.stat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o640, 0)
    assert (got / host / root_dir.lstrip("/") / "app.conf").read_text() == "workers = 4\n"
    assert [(o["files"], o["unchanged"]) for o in play()] == [(0, 1), (0, 1)]
