"""`remoteops inventory list|graph|host` over the recorded Ansible cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import run_cli

CASES = Path(__file__).resolve().parents[1] / "data" / "inventories"


def _sources(case: str) -> list[str]:
    spec = json.loads((CASES / case / "case.json").read_text())
    args: list[str] = []
    for source in spec["sources"]:
        args += ["-i", source]
    return args


def test_list_json_equals_ansible_inventory_list() -> None:
    case = CASES / "deep_children"
    result = run_cli("inventory", "list", "--json", *_sources("deep_children"), cwd=case)
    assert result.returncode == 0, result.stderr
    ours = json.loads(result.stdout)
    expected = json.loads((case / "expected_list.json").read_text())
    assert ours["_meta"]["hostvars"] == expected["_meta"]["hostvars"]
    for group, body in expected.items():
        if group == "_meta":
            continue
        assert sorted(ours[group].get("hosts", [])) == sorted(body.get("hosts", []))
        assert sorted(ours[group].get("children", [])) == sorted(body.get("children", []))


def test_list_pattern_gives_ansible_hosts() -> None:
    case = CASES / "deep_children"
    expected = json.loads((case / "expected_patterns.json").read_text())
    pattern, hosts = next((p, h) for p, h in expected.items() if h)
    result = run_cli("inventory", "list", pattern, *_sources("deep_children"), cwd=case)
    assert result.returncode == 0, result.stderr
    listed = [line.strip() for line in result.stdout.splitlines()[1:]]
    assert sorted(listed) == sorted(hosts)


def test_graph_equals_ansible_graph() -> None:
    case = CASES / "deep_children"
    result = run_cli("inventory", "graph", *_sources("deep_children"), cwd=case)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (case / "expected_graph.txt").read_text().strip()


def test_host_shows_connection_with_sources(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.yml"
    inv.write_text(
        "all:\n  hosts:\n    web1:\n      ansible_host: 10.9.8.7\n      ansible_user: deploy\n"
        "      ansible_ssh_pass: s3cret-value\n"
        "      ansible_ssh_common_args: -o ProxyJump=bastion:2200\n"
    )
    config = tmp_path / "ssh_config"
    config.write_text("Host 10.9.8.7\n  Port 2022\n  User ignored\n")
    result = run_cli(
        "inventory", "host", "web1", "-i", str(inv), "-F", str(config), "--json", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    conn = data["connection"]
    assert conn["address"] == "10.9.8.7"
    assert conn["port"] == 2022  # from ssh_config
    assert data["sources"]["port"].startswith(str(config))
    assert conn["user"] == "deploy"  # inventory beats ssh_config
    assert data["sources"]["user"] == "inventory"
    assert conn["proxy_jump"] == ["bastion:2200"]
    assert "s3cret-value" not in result.stdout


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("all:\n  hosts:\n    a:\n    a:\n", "duplicate"),
        ("all:\n  hosts:\n    ../evil:\n", "../evil"),
        ("plugin: aws_ec2\n", "ansible-inventory"),
    ],
)
def test_bad_inventory_is_one_line_exit_2(tmp_path: Path, text: str, needle: str) -> None:
    inv = tmp_path / "bad.yml"
    inv.write_text(text)
    result = run_cli("inventory", "list", "-i", str(inv), cwd=tmp_path)
    assert result.returncode == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_ini_inventory_lists_as_ansible_does() -> None:
    """-i FILE.ini: kubespray's layout (INI file, group_vars/ beside it), as recorded."""
    case = CASES / "ini_kubespray"
    result = run_cli("inventory", "list", "--json", *_sources("ini_kubespray"), cwd=case)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert json.loads(result.stdout) == json.loads((case / "expected_list.json").read_text())


def test_bad_ini_inventory_is_one_line_exit_2(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.ini"
    inv.write_text("[web]\nweb1\n\n[k8s_cluster:children]\nweb\nkube_node\n")
    result = run_cli("inventory", "list", "-i", str(inv), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        f"remoteops: error: {inv}:6: [k8s_cluster:children] lists group 'kube_node', which "
        "no [kube_node] or [kube_node:children] section defines; add one or fix the name\n"
    )
