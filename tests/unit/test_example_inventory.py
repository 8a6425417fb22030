"""inventories/hosts.yml describes the lab `scripts/demo` starts."""

from __future__ import annotations

from pathlib import Path

from remoteops.inventory import load_inventory
from remoteops.lab import host_layout

ROOT = Path(__file__).resolve().parents[2]


def test_example_inventory_matches_the_demo_lab() -> None:
    inv = load_inventory([ROOT / "inventories" / "hosts.yml"])
    layout = host_layout(10, 2222)
    assert [h.name for h in inv.select("all")] == [h.name for h in layout]
    for host in layout:
        hostvars = inv.host_vars(host.name)
        assert hostvars["ansible_host"] == host.address
        assert hostvars["ansible_port"] == 2222
        assert sorted(inv.groups_of(host.name)) == sorted(host.groups)
    demo = (ROOT / "scripts" / "demo").read_text()
    assert '--hosts "${HOSTS:-10}"' in demo
    assert "$PWD/.lab" in demo
