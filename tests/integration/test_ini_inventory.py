"""An Ansible INI inventory drives real connections to the lab."""

from __future__ import annotations

import json
from pathlib import Path

from remoteops.lab import Lab
from tests.helpers import run_cli


def _ini_inventory(lab: Lab, path: Path) -> Path:
    """The lab as a kubespray-style INI inventory: connection values on host lines,
    groups by role, become for db set as Ansible users write it (the text "true")."""
    lines = ["# the lab, as Ansible's INI inventory", "[all]"]
    lines += [f"{h.name} ansible_host={h.address} ansible_port={h.port}" for h in lab.hosts]
    for role in ("web", "db"):
        lines += ["", f"[{role}]"]
        lines += [h.name for h in lab.hosts if role in h.groups]
    password = lab.become_password_file.read_text().strip()
    lines += [
        "",
        "[fleet:children]",
        "web",
        "db",
        "",
        "[db:vars]",
        "ansible_become=true",
        f"ansible_become_password='{password}'",
        "",
        "[all:vars]",
        f"ansible_user={lab.user}",
        f"ansible_ssh_private_key_file={lab.client_key}",
        f"ansible_ssh_common_args='-o UserKnownHostsFile={lab.known_hosts}'",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_run_over_an_ini_inventory(lab: Lab, tmp_path: Path) -> None:
    """remoteops refused INI inventories and asked for `ansible-inventory --list` JSON."""
    inventory = _ini_inventory(lab, tmp_path / "hosts.ini")
    result = run_cli("run", "fleet", "-i", str(inventory), "--json", "--", "id -un")
    assert result.returncode == 0, result.stdout + result.stderr
    users = {
        record["host"]: record["stdout"]
        for record in map(json.loads, result.stdout.splitlines())
        if record["type"] == "host"
    }
    expected = {
        h.name: "root\n" if "db" in h.groups else f"{lab.user}\n"
        for h in lab.hosts
        if {"web", "db"} & set(h.groups)
    }
    assert users == expected
    assert {"root\n", f"{lab.user}\n"} == set(expected.values())  # both roles are there
    password = lab.become_password_file.read_text().strip()
    assert password not in result.stdout + result.stderr
