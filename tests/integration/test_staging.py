"""put and get through cluster staging (``transfer.staging``) against the lab's real sshd.

A worker of a cluster cannot read the client's files: ``put`` runs on what
``unpack`` wrote from a ``pack`` (through pickle, as a task argument travels),
and must leave on the hosts exactly what a direct put leaves. ``get`` runs on
the worker into its own directory, and ``outgoing``/``Receiver`` carry the
files to the client's LOCAL_DIR/<host>/ unchanged.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import pwd
import stat
from pathlib import Path

import pytest

import remoteops
from remoteops.lab import Lab
from remoteops.results import HostResult
from remoteops.transfer import PutOptions, SourceSet, get, put
from remoteops.transfer.staging import Receiver, outgoing, pack, unpack
from tests.integration import test_one_engine
from tests.integration.test_one_engine import _by_host
from tests.unit.test_staging import _snapshot, _tree

pytestmark = pytest.mark.integration

executor = test_one_engine.executor  # an Executor on three lab hosts


def _counts(results: dict[str, HostResult]) -> dict[str, tuple[object, ...]]:
    keys = ("files", "unchanged", "failed_files", "bytes", "skipped")
    return {h: (r.status, r.error, *(r.extra.get(k) for k in keys)) for h, r in results.items()}


def _remote_tree(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry below a host directory: kind, mode, mtime (seconds) and sha256."""
    out: dict[str, tuple[object, ...]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        out[path.relative_to(root).as_posix()] = (
            stat.filemode(info.st_mode),
            int(info.st_mtime) if digest else None,
            digest,
        )
    return out


@pytest.mark.parametrize("slash", ["", "/"], ids=["dir", "dir-slash"])
def test_a_put_through_pack_and_unpack_lands_as_a_direct_put(
    lab: Lab, executor: remoteops.Executor, remote_dir: str, tmp_path: Path, slash: str
) -> None:
    src = _tree(tmp_path / "src")
    scanned = SourceSet.scan([str(src) + slash], need_hash=True)
    staged = pickle.loads(pickle.dumps(pack(scanned, chunk=64 * 1024)))
    unpacked = unpack(staged, tmp_path / "worker", memory_budget=100_000)  # both kinds
    assert {f.data is None for f in unpacked.files} == {True, False}
    assert unpacked.warnings == scanned.warnings != ()
    direct = _by_host(put(executor, scanned, f"{remote_dir}/direct/"))
    via = _by_host(put(executor, unpacked, f"{remote_dir}/staged/"))
    assert _counts(via) == _counts(direct)
    assert all(r.status == "ok" and r.extra["files"] == len(scanned.files) for r in via.values())
    for host in via:
        want = _remote_tree(lab.host_path(host, f"{remote_dir}/direct"))
        assert _remote_tree(lab.host_path(host, f"{remote_dir}/staged")) == want
        assert want["empty" if slash else "src/empty"][0].startswith("d")
        assert want["secret" if slash else "src/secret"][:2] == ("-rw-------", 1_500_000_000)
    # The copies carry the sources' times and hashes: a second put sends nothing,
    # by the quick check or by sha256.
    for options in (PutOptions(), PutOptions(checksum=True)):
        again = _by_host(put(executor, unpacked, f"{remote_dir}/staged/", options=options))
        assert {h: (r.extra["files"], r.extra["unchanged"]) for h, r in again.items()} == {
            h: (0, len(scanned.files)) for h in via
        }


def test_a_get_comes_back_to_the_client_as_it_landed_on_the_worker(
    lab: Lab, executor: remoteops.Executor, remote_dir: str, tmp_path: Path
) -> None:
    entry = pwd.getpwnam(lab.user)
    for target in executor.targets:
        top = lab.host_path(target.name, f"{remote_dir}/tree")
        _tree(top)
        (top / "suid").write_bytes(b"#!/bin/sh\n")
        for path in [top, *top.rglob("*")]:
            os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
        os.chmod(top / "suid", 0o4755)
    worker, client = tmp_path / "worker", tmp_path / "client"
    fetched = _by_host(get(executor, [f"{remote_dir}/tree"], worker))
    assert all(r.status == "ok" and r.extra["files"] == 5 for r in fetched.values()), fetched
    receiver = Receiver(client)
    for host in fetched:
        (worker / host / "planted").symlink_to("/etc/hostname")  # never sent
        messages = list(outgoing(worker, host, chunk=64 * 1024))
        assert len(messages) > 1
        assert max(m.data_bytes for m in messages) <= 64 * 1024
        for message in messages:
            assert receiver.receive(pickle.loads(pickle.dumps(message))) == []
        assert receiver.counts(host)[0] == 5
        assert receiver.finish(host) == []
        got = _snapshot(client / host)
        want = _snapshot(worker / host)
        del want["planted"]
        assert got == want
        tree = f"{remote_dir.lstrip('/')}/tree"
        assert got[f"{tree}/suid"][0] == "-rwxr-xr-x"
        assert got[f"{tree}/secret"][:2] == ("-rw-------", 1_500_000_000 * 10**9)
        assert f"{tree}/link.txt" not in got  # get skips remote symlinks
