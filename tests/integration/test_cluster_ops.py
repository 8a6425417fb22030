"""What a cluster's shard runs for put, get and a playbook step, against the lab's real sshd.

No Dask here: the operations a shard receives (``ClusterPut``, ``ClusterGet``,
``run_step`` on ``for_cluster`` records) go through pickle, as the shard's
queue carries them, and run on an executor of lab hosts in a directory of
their own; what they yield is fed to the client's side (``ClientFiles``) as
the cluster's collector does. The results and files must be a local run's.
"""

from __future__ import annotations

import hashlib
import pickle
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pytest

import remoteops
from remoteops.lab import Lab
from remoteops.playbook.remote import GetWork, PutWork, RunWork, for_cluster, run_step
from remoteops.results import HostResult
from remoteops.transfer import SourceSet, TransferOptions, get, put
from remoteops.transfer.clustered import ClientFiles, ClusterGet, ClusterPut
from remoteops.transfer.staging import Message, pack
from tests.integration import test_one_engine
from tests.integration.test_one_engine import _by_host
from tests.unit.test_staging import _tree

pytestmark = pytest.mark.integration

executor = test_one_engine.executor  # an Executor on three lab hosts


def _files(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every regular file below ``root``: mode, mtime (s) and sha256."""
    return {
        p.relative_to(root).as_posix(): (
            p.stat().st_mode & 0o7777,
            int(p.stat().st_mtime),
            hashlib.sha256(p.read_bytes()).hexdigest(),
        )
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


SHIPPED: dict[str, int] = {}  # messages received by host, in the last _collect


def _collect(items: Iterable[object], files: ClientFiles) -> dict[str, HostResult]:
    """The client's side: messages written as they come, each result settled after them."""
    results: dict[str, HostResult] = {}
    SHIPPED.clear()
    for item in items:
        item = pickle.loads(pickle.dumps(item))  # as the shard's queue carries it
        if isinstance(item, Message):
            assert item.host not in results, "a host's files come before its result"
            SHIPPED[item.host] = SHIPPED.get(item.host, 0) + 1
            files.receive(item)
        else:
            assert isinstance(item, HostResult)
            results[item.host] = files.settle(item)
    return results


def _counts(results: dict[str, HostResult]) -> dict[str, tuple[object, ...]]:
    keys = ("files", "unchanged", "failed_files", "bytes")
    return {h: (r.status, r.error, *(r.extra.get(k) for k in keys)) for h, r in results.items()}


def test_cluster_put_and_get_leave_what_a_local_put_and_get_leave(
    lab: Lab, executor: remoteops.Executor, remote_dir: str, tmp_path: Path
) -> None:
    src = _tree(tmp_path / "src")
    scanned = SourceSet.scan([str(src)], need_hash=True)
    op = pickle.loads(
        pickle.dumps(ClusterPut(pack(scanned), f"{remote_dir}/c/", TransferOptions()))
    )
    via = _by_host(r for r in op(executor, None, None) if isinstance(r, HostResult))
    direct = _by_host(put(executor, scanned, f"{remote_dir}/d/"))
    assert _counts(via) == _counts(direct)
    assert all(r.status == "ok" for r in via.values())
    for host in via:
        assert _files(lab.host_path(host, f"{remote_dir}/c")) == _files(
            lab.host_path(host, f"{remote_dir}/d")
        )
    names = [t.name for t in executor.targets]
    local, clustered = tmp_path / "local", tmp_path / "cluster"
    local.mkdir(), clustered.mkdir()
    fetched = _by_host(get(executor, [f"{remote_dir}/c"], local))
    files = ClientFiles(clustered, names, preserve=False)
    got = pickle.loads(pickle.dumps(ClusterGet((f"{remote_dir}/c",), TransferOptions())))
    shipped = _collect(got(executor, None, None), files)
    assert _counts(shipped) == _counts(fetched)
    assert set(SHIPPED) == set(names)  # the files came as messages, not by a shared disk
    for host in names:
        want = _files(local / host)
        assert len(want) == len(scanned.files)
        assert _files(clustered / host) == want
    assert not list(clustered.rglob("*.part"))


def test_a_playbook_step_on_a_worker_ships_get_files_and_unpacks_put_sources(
    lab: Lab, executor: remoteops.Executor, remote_dir: str, tmp_path: Path
) -> None:
    names = [t.name for t in executor.targets]
    src = _tree(tmp_path / "src")
    scanned = SourceSet.scan([str(src)], need_hash=True)
    options = TransferOptions()
    puts = for_cluster({n: PutWork(scanned, f"{remote_dir}/p/", options, None) for n in names})
    assert len({id(w.sources) for w in puts.values() if isinstance(w, PutWork)}) == 1  # packed once
    sent = pickle.loads(pickle.dumps(puts))
    put_results = _collect(
        run_step(executor, sent, None),
        ClientFiles(tmp_path, names, preserve=False),
    )
    assert {h: (r.status, r.extra["files"]) for h, r in put_results.items()} == {
        h: ("ok", len(scanned.files)) for h in names
    }
    dest = tmp_path / "facts"
    dest.mkdir()
    gets = for_cluster({n: GetWork((f"{remote_dir}/p",), dest, options, None) for n in names})
    works = {**gets, names[0]: RunWork(remoteops.CommandSpec(command="true"), None)}
    results = _collect(
        run_step(executor, pickle.loads(pickle.dumps(works)), None),
        ClientFiles(dest, names, preserve=False),
    )
    assert {h: r.status for h, r in results.items()} == dict.fromkeys(names, "ok")
    assert not (dest / names[0]).exists()  # it ran a command, it fetched nothing
    assert set(SHIPPED) == set(names[1:])  # the files came as messages, not by a shared disk
    assert not list(Path(tempfile.gettempdir()).glob("ro-step-*"))  # the worker's dirs are gone
    local = tmp_path / "local"
    local.mkdir()
    fetched = _by_host(get(executor, [f"{remote_dir}/p"], local))
    assert _counts({h: results[h] for h in names[1:]}) == _counts(
        {h: fetched[h] for h in names[1:]}
    )
    for host in names[1:]:
        assert results[host].extra["dest"] == str(dest / host)  # the client's, not the worker's
        want = _files(local / host)
        assert len(want) == len(scanned.files)
        assert _files(dest / host) == want
