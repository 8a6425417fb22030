"""inventories/hosts.yml describes the lab `remoteops lab up` and `scripts/demo` start."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import typer.main

from remoteops.cli import app
from remoteops.inventory import load_inventory
from remoteops.lab import Lab, default_lab_dir, host_layout
from remoteops.sshconfig import SSHConfig
from remoteops.target import ConnectOverrides, resolve_targets

ROOT = Path(__file__).resolve().parents[2]


def _lab_up_default(name: str) -> object:
    lab = typer.main.get_command(app).commands["lab"]  # type: ignore[attr-defined]
    (param,) = [p for p in lab.commands["up"].params if p.name == name]
    return param.default


def test_example_inventory_matches_the_default_lab(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hosts, addresses, port and groups of `lab up` with its defaults, and the key and
    known_hosts it writes into its default directory: a plain `remoteops lab up` then
    `remoteops run all -- uptime` from the top of the repository verifies host keys."""
    hosts, port = _lab_up_default("hosts"), _lab_up_default("port")
    assert (hosts, port) == (10, 2222)
    inv = load_inventory([ROOT / "inventories" / "hosts.yml"])
    layout = host_layout(hosts, port)
    assert [h.name for h in inv.select("all")] == [h.name for h in layout]
    for host in layout:
        hostvars = inv.host_vars(host.name)
        assert hostvars["ansible_host"] == host.address
        assert hostvars["ansible_port"] == port
        assert sorted(inv.groups_of(host.name)) == sorted(host.groups)
    monkeypatch.delenv("REMOTEOPS_LAB_DIR", raising=False)
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    lab = Lab(dir=default_lab_dir(), user="rolab", is_root_mode=True, latency_ms=0)
    (target,) = resolve_targets(
        inv, ["web01"], ssh_config=SSHConfig.empty(), overrides=ConnectOverrides()
    )
    assert target.identity_files[0] == str(lab.client_key)
    assert target.known_hosts_files[0] == str(lab.known_hosts)
    assert target.user == lab.user
    demo = (ROOT / "scripts" / "demo").read_text()
    assert '--hosts "${HOSTS:-10}"' in demo
    assert '--port "${LAB_PORT:-2222}"' in demo
    assert "REMOTEOPS_LAB_DIR=" not in demo  # the default lab directory, as `lab up`'s
    assert os.fspath(default_lab_dir()).startswith(str(Path.home()))
