"""remoteops.fleet against the lab: the Python API builds the fleet the CLI builds."""

from __future__ import annotations

import pytest

from remoteops.execution import CommandSpec
from remoteops.fleet import FleetOptions, resolve_fleet
from remoteops.lab import Lab

pytestmark = pytest.mark.integration


def test_a_fleet_resolved_by_the_library_runs_on_the_selected_hosts(lab: Lab) -> None:
    options = FleetOptions(
        inventory=(str(lab.inventory),), limit="web*", use_ssh_config=False, forks=2
    )
    fleet = resolve_fleet("all", options)
    names = [t.name for t in fleet.targets]
    assert names
    assert all(name.startswith("web") for name in names)
    results = {r.host: r for r in fleet.executor.run_command(CommandSpec(command="hostname"))}
    assert sorted(results) == sorted(names)
    for name, result in results.items():
        assert result.is_ok, result.error
        assert result.stdout.decode().strip() == name
