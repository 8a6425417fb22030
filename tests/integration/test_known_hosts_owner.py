"""accept-new run as root on a known_hosts file of another user, by several processes at once."""

from __future__ import annotations

import grp
import json
import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path

import paramiko
import pytest

from remoteops.hostkeys import hash_hostname
from remoteops.lab import Lab

pytestmark = pytest.mark.integration


def _group_other_than(gid: int) -> int:
    """A group the lab user is not in by default (``daemon``, else any other)."""
    for name in ("daemon", "adm", "nogroup"):
        with_name = [g.gr_gid for g in grp.getgrall() if g.gr_name == name]
        if with_name and with_name[0] != gid:
            return with_name[0]
    return next(g.gr_gid for g in grp.getgrall() if g.gr_gid not in (0, gid))


def _unrelated_line(name: str) -> bytes:
    key = paramiko.ECDSAKey.generate()
    return f"{name} {key.get_name()} {key.get_base64()}".encode()


def test_accept_new_as_root_keeps_a_shared_known_hosts_owner_and_lines(
    lab: Lab, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root, as the lab does")
    user = pwd.getpwnam(lab.user)
    group = _group_other_than(user.pw_gid)
    path = tmp_path / "known_hosts"
    old = b"\n".join(
        [
            b"# shared by the ops team; root's cron adds new hosts",
            _unrelated_line("build1.example.com,10.1.0.7"),
            _unrelated_line(hash_hostname("secret.example.com")),
            b"",
            b"@revoked * " + _unrelated_line("x").split(b" ", 1)[1],
            _unrelated_line("[git.example.com]:2222"),  # no newline at the end
        ]
    )
    path.write_bytes(old)
    os.chown(path, user.pw_uid, group)
    path.chmod(0o640)

    argv = [sys.executable, "-m", "remoteops", "--no-log-file", "run", "all"]
    argv += ["-i", str(lab.inventory), "--known-hosts", str(path)]
    argv += ["--host-key-policy", "accept-new", "--json", "--", "true"]
    writers = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    for writer in writers:
        out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, out + err
        records = [json.loads(line) for line in out.splitlines()]
        assert [r["status"] for r in records if r["type"] == "host"] == ["ok"] * len(lab.hosts)

    st = path.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (user.pw_uid, group, 0o640)
    lock = path.with_name("known_hosts.lock").stat()
    assert (lock.st_uid, lock.st_gid) == (user.pw_uid, group)  # the owner can still write
    final = path.read_bytes()
    assert final.startswith(old + b"\n")  # every line kept, in order, byte for byte
    added = final[len(old) + 1 :].decode().splitlines()
    expected = lab.known_hosts.read_text().splitlines()
    assert sorted(added) == sorted(expected)  # each host once, though four runs added it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["known_hosts", "known_hosts.lock"]
