"""Pure parts of the lab: host names, addresses, groups and generated files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from remoteops.errors import LabError
from remoteops.lab import Lab, LabHost, host_layout
from remoteops.lab.render import render_inventory


def test_layout_splits_roles_and_regions() -> None:
    hosts = host_layout(5, 2222)
    assert [h.name for h in hosts] == ["web01", "web02", "web03", "db01", "db02"]
    assert [h.groups for h in hosts] == [
        ("web", "eu"),
        ("web", "us"),
        ("web", "eu"),
        ("db", "eu"),
        ("db", "us"),
    ]
    assert len({h.address for h in hosts}) == 5
    assert all(h.address.startswith("127.") for h in hosts)


def test_layout_pads_names_for_large_labs() -> None:
    hosts = host_layout(500, 22)
    assert hosts[0].name == "web001"
    assert hosts[-1].name == "db250"
    assert len({h.address for h in hosts}) == 500


@pytest.mark.parametrize("count", [0, -1, 10**6])
def test_layout_rejects_silly_counts(count: int) -> None:
    with pytest.raises(LabError, match="--hosts"):
        host_layout(count, 22)


def test_inventory_is_ansible_yaml_with_connection_vars(tmp_path: Path) -> None:
    lab = Lab(dir=tmp_path, user="rolab", is_root_mode=True, latency_ms=0)
    lab.hosts = [
        LabHost(name=h.name, address=h.address, port=h.port, groups=h.groups)
        for h in host_layout(4, 2300)
    ]
    data = yaml.safe_load(render_inventory(lab))
    all_vars = data["all"]["vars"]
    assert all_vars["ansible_user"] == "rolab"
    assert all_vars["ansible_ssh_private_key_file"] == str(tmp_path / "client_key")
    assert str(tmp_path / "known_hosts") in all_vars["ansible_ssh_common_args"]
    assert data["all"]["children"]["web"]["hosts"]["web02"] == {
        "ansible_host": lab.hosts[1].address,
        "ansible_port": 2300,
    }


def test_host_path_maps_private_areas(tmp_path: Path) -> None:
    lab = Lab(dir=tmp_path, user="rolab", is_root_mode=True, latency_ms=0)
    assert lab.host_path("web01", "/srv/a/b") == tmp_path / "hosts/web01/srv/a/b"
    assert lab.host_path("web01", "/tmp") == tmp_path / "hosts/web01/tmp"
    assert lab.host_path("web01", "/home/rolab/x") == tmp_path / "hosts/web01/home/x"
    with pytest.raises(LabError):
        lab.host_path("web01", "/etc/passwd")
