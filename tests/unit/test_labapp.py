"""The sample app every lab host ships: one host drifting, a few ERROR lines per host."""

from __future__ import annotations

import re

from remoteops.lab import host_layout
from remoteops.lab.app import app_files

NOW = 1_700_000_000.0


def test_one_host_runs_the_previous_version() -> None:
    versions = {
        h.name: app_files(h.name, i, NOW)["/srv/app/VERSION"]
        for i, h in enumerate(host_layout(10, 22))
    }
    assert versions.pop("db01") == "2.4.0\n"
    assert set(versions.values()) == {"2.4.1\n"}


def test_logs_hold_zero_to_two_errors_shared_across_hosts() -> None:
    logs = [
        app_files(h.name, i, NOW)["/srv/app/log/app.log"] for i, h in enumerate(host_layout(6, 22))
    ]
    errors = [re.findall(r"^\S+Z ERROR (.*)$", log, re.M) for log in logs]
    assert [len(e) for e in errors] == [0, 1, 2, 0, 1, 2]
    assert errors[1] == errors[4] == errors[2][:1]  # the same message on several hosts
    for log in logs:
        lines = log.splitlines()
        assert lines == sorted(lines)  # in time order, the last within the hour before NOW
        assert lines[-1] < "2023-11-14T22:13:20Z"
        # logscan's default words (error, fatal, ...) only on the ERROR lines
        assert all(" ERROR " in line for line in lines if "error" in line.lower())
