"""A playbook step's remote part is plain data: it travels by pickle and binds to any engine."""

from __future__ import annotations

import pickle
from pathlib import Path

from remoteops.operations import CommandSpec
from remoteops.playbook.remote import GetWork, PingWork, PutWork, RunWork, StepWork
from remoteops.transfer import SourceSet, TransferOptions


def _works(tmp_path: Path) -> list[StepWork]:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("hello\n")
    sources = SourceSet.scan([str(tmp_path / "site")], need_hash=True)
    options = TransferOptions(checksum=True)
    return [
        PingWork(2.5),
        RunWork(CommandSpec("echo hi", env={"A": "1"}), None),
        PutWork(sources, "/srv/www", options, 30.0),
        GetWork(("/etc/os-release",), tmp_path / "facts", options, None),
    ]


def test_each_step_work_survives_a_pickle_round_trip(tmp_path: Path) -> None:
    # A cluster worker gets them by pickling: nothing of the client's runner or
    # executor rides along, and what arrives is equal to what left.
    for work in _works(tmp_path):
        copy = pickle.loads(pickle.dumps(work))
        assert copy == work
        assert type(copy) is type(work)
