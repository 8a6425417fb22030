"""The exception tree: exit codes, statuses and pickling (errors cross process pools)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

import remoteops
from remoteops import errors


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (errors.UsageError("bad flag"), 2),
        (errors.InventoryError("inv.yml:3: duplicate key"), 2),
        (errors.UnknownHostError("no host web99"), 2),
        (errors.LabError("no lab"), 2),
        (errors.PlaybookError("site.yml:3: unknown key 'sudo'; use 'become'"), 2),
        (errors.LockHeldError("held"), 75),
        (errors.ConnectError("web01", "connection refused"), 4),
        (errors.AuthenticationError("web01", "denied"), 4),
        (errors.HostKeyError("web01", "changed"), 4),
        (errors.CommandTimeoutError("web01", "deadline"), 3),
        (errors.TransferError("web01", "remote disk full"), 5),
        (errors.AnalysisError("bad rule"), 5),
    ],
)
def test_exit_codes_and_pickle_round_trip(exc: errors.RemoteOpsError, code: int) -> None:
    assert exc.exit_code == code
    clone = pickle.loads(pickle.dumps(exc))
    assert type(clone) is type(exc)
    assert str(clone) == str(exc)
    if isinstance(exc, errors.HostError):
        assert isinstance(clone, errors.HostError)
        assert clone.host == exc.host


def test_host_errors_map_to_contract_statuses() -> None:
    assert errors.ConnectError("h", "m").status == "unreachable"
    assert errors.HostKeyError("h", "m").status == "hostkey"
    assert errors.CommandTimeoutError("h", "m").status == "timeout"
    assert errors.TransferError("h", "m").status == "failed"


def test_unknown_host_error_is_also_a_key_error_without_quotes() -> None:
    exc = errors.UnknownHostError("no host named web99 in inv.yml")
    assert isinstance(exc, KeyError)
    assert str(exc) == "no host named web99 in inv.yml"


def test_run_failed_error_keeps_its_result() -> None:
    exc = errors.RunFailedError("2 hosts failed", {"web01": "x"}, 5)
    clone = pickle.loads(pickle.dumps(exc))
    assert clone.result == {"web01": "x"}
    assert clone.run_exit_code == 5


def test_public_names_are_pinned() -> None:
    assert sorted(remoteops.__all__) == sorted(
        [
            "AnalysisError",
            "CommandSpec",
            "ConnectOverrides",
            "Executor",
            "HostResult",
            "Inventory",
            "Limits",
            "RunResult",
            "Target",
            "Timeouts",
            "load_inventory",
            "resolve_targets",
            "AuthenticationError",
            "CommandTimeoutError",
            "ConnectError",
            "HostError",
            "HostKeyError",
            "InterruptedHostError",
            "InventoryError",
            "LabError",
            "LockHeldError",
            "PlaybookError",
            "RemoteOpsError",
            "RunFailedError",
            "TransferError",
            "UnknownHostError",
            "UsageError",
            "__version__",
        ]
    )
    for name in remoteops.__all__:
        assert hasattr(remoteops, name)


def test_playbook_error_is_in_the_tree_and_still_public_from_playbook() -> None:
    from remoteops import playbook

    assert playbook.PlaybookError is errors.PlaybookError is remoteops.PlaybookError
    assert issubclass(errors.PlaybookError, errors.UsageError)
    assert "PlaybookError" in (errors.__doc__ or "")
    with pytest.raises(errors.PlaybookError, match=r"^site\.yml:2: "):
        playbook.model.parse_playbook("- hosts: all\n  sudo: true\n", path=Path("site.yml"))
