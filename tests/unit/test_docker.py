"""docker/ runs the same OpenSSH test host as the lab."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from remoteops.lab import LAB_USER, render_sshd_config

DOCKER = Path(__file__).resolve().parents[2] / "docker"


def test_docker_sshd_config_is_the_lab_config() -> None:
    expected = render_sshd_config(address="0.0.0.0", port=22)
    actual = (DOCKER / "sshd_config").read_text()
    assert actual == expected, (
        "docker/sshd_config drifted from remoteops.lab.render_sshd_config(); regenerate it "
        "with `make docker-config`"
    )


def test_dockerfile_installs_the_lab_user_and_config() -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert "COPY sshd_config /etc/ssh/sshd_config" in dockerfile
    assert re.search(rf"useradd .*\b{LAB_USER}\b", dockerfile)
    assert f"{LAB_USER} ALL=(ALL:ALL) ALL" in dockerfile
    entrypoint = (DOCKER / "entrypoint.sh").read_text()
    assert "sshd -D" in entrypoint


def test_compose_hosts_match_the_docker_inventory() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    inventory = yaml.safe_load((DOCKER / "inventory.yml").read_text())
    ports = {}
    for group in inventory["all"]["children"].values():
        for name, hostvars in group["hosts"].items():
            ports[name] = hostvars["ansible_port"]
    published = {
        name: int(service["ports"][0].split(":")[1])
        for name, service in compose["services"].items()
    }
    assert published == ports
