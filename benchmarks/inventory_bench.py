"""Benchmark loading and resolving a large Ansible YAML inventory against ansible-inventory.

    .venv/bin/python benchmarks/inventory_bench.py [--hosts 10000] [--repeat 3] [--ansible PATH]

Generates, in a temporary directory, a YAML inventory of ``--hosts`` hosts written as
host ranges (``web[0001:4000].dc1.example``, ``lb[a:f]``, a stepped range, a range with
a port), nested ``children`` groups, group variables, ``ansible_group_priority``, inline
host variables, and a ``group_vars/`` (file and directory forms) and ``host_vars/``
beside it. In this one process it times, with ``time.perf_counter``:

* load: ``load_inventory([path])``;
* vars: every host's merged variables (``inv.host_vars``) and a few ``inv.select`` patterns;
* targets: ``resolve_targets(inv, names, ssh_config=SSHConfig.empty())``.

The target is load + vars under 1 s for 10,000 hosts. The reference, in the same run,
is the wall time of ``ansible-inventory -i INV --list`` (a subprocess, so it includes
interpreter start-up; ``remoteops inventory list --json`` is timed the same way for a
like-for-like ratio). The ansible-inventory binary is ``--ansible``, else the one on
PATH, else ``/tmp/ansible-venv/bin/ansible-inventory``. Both outputs are then compared:
the set of hosts, the group structure and the merged variables of 50 hosts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from remoteops.inventory import Inventory, load_inventory
from remoteops.sshconfig import SSHConfig
from remoteops.target import resolve_targets

TARGET_S = 1.0
PATTERNS = ("web:&dc1:!db", "db:cache", "canary:&web", "all:!dc2", "web*.dc2.example")
FALLBACK_ANSIBLE = Path("/tmp/ansible-venv/bin/ansible-inventory")
SAMPLE = 50


# --- generating the inventory ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Generated:
    path: Path
    hosts: int
    special: tuple[str, ...]  # hosts with host_vars files or inline vars: always sampled


def _range(prefix: str, count: int, suffix: str) -> tuple[str, list[str]]:
    """A numeric Ansible range of *count* hosts, zero-padded, and the names it expands to."""
    width = len(str(count))
    first = "1".zfill(width)
    pattern = f"{prefix}[{first}:{count}]{suffix}"
    return pattern, [f"{prefix}{str(n).zfill(width)}{suffix}" for n in range(1, count + 1)]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def generate(root: Path, total: int) -> Generated:
    """Write ``hosts.yml``, ``group_vars/`` and ``host_vars/`` under *root*."""
    fixed = 6 + 2  # lb[a:f].dc1.example and bastion[1:2].example:2222
    if total < 100:
        raise SystemExit("--hosts must be at least 100")
    counts = {
        ("web", "dc1"): int(total * 0.40),
        ("db", "dc1"): int(total * 0.05),
        ("cache", "dc1"): int(total * 0.05),
        ("web", "dc2"): int(total * 0.30),
        ("db", "dc2"): int(total * 0.05),
    }
    counts[("app", "dc2")] = total - fixed - sum(counts.values())
    ranges: dict[tuple[str, str], tuple[str, list[str]]] = {
        (role, dc): _range(role, n, f".{dc}.example") for (role, dc), n in counts.items()
    }
    web1 = ranges[("web", "dc1")][1]
    db1 = ranges[("db", "dc1")][1]
    db2 = ranges[("db", "dc2")][1]
    web1_width = len(str(counts[("web", "dc1")]))
    step = max(counts[("web", "dc1")] // 40, 1)
    canary = f"web[{'1'.zfill(web1_width)}:{counts[('web', 'dc1')]}:{step}].dc1.example"

    def group(role: str, dc: str, **gvars: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {"hosts": {ranges[(role, dc)][0]: None}}
        if gvars:
            entry["vars"] = gvars
        return entry

    db_dc1 = group("db", "dc1", ansible_port=2201, db_role="replica")
    db_dc1["hosts"][db1[0]] = {
        "ansible_host": "10.1.2.1",
        "db_role": "primary",
        "backup": {"schedule": "0 3 * * *", "keep": 14},
    }
    data: dict[str, Any] = {
        "all": {
            "vars": {
                "ansible_user": "deploy",
                "ansible_ssh_private_key_file": "~/.ssh/fleet_ed25519",
                "ntp": {"servers": ["ntp1.example", "ntp2.example"], "iburst": True},
                "monitoring": True,
            },
            "children": {
                "prod": {
                    "vars": {
                        "env": "prod",
                        "ansible_ssh_common_args": "-o ServerAliveInterval=30 -o ConnectTimeout=7",
                    },
                    "children": {
                        "dc1": {
                            "vars": {"datacenter": "dc1", "gateway": "10.1.0.1"},
                            "children": {
                                "web_dc1": group("web", "dc1"),
                                "db_dc1": db_dc1,
                                "cache_dc1": group("cache", "dc1", cache_size_mb=2048),
                                "lb_dc1": {
                                    "hosts": {"lb[a:f].dc1.example": {"ansible_user": "lbadmin"}}
                                },
                            },
                        },
                        "dc2": {
                            "vars": {
                                "datacenter": "dc2",
                                "gateway": "10.2.0.1",
                                "ansible_ssh_common_args": (
                                    "-o ServerAliveInterval=15 -o ProxyJump=bastion1.example:2222"
                                ),
                            },
                            "children": {
                                "web_dc2": group("web", "dc2"),
                                "db_dc2": group("db", "dc2"),
                                "app_dc2": group("app", "dc2", app_workers=8),
                            },
                        },
                    },
                },
                "web": {
                    "vars": {"http_port": 8080, "packages": ["nginx", "certbot"]},
                    "children": {"web_dc1": None, "web_dc2": None},
                },
                "db": {
                    "vars": {"ansible_become": True, "ansible_become_user": "postgres"},
                    "children": {"db_dc1": None, "db_dc2": None},
                },
                "cache": {"children": {"cache_dc1": None}},
                "canary": {
                    "vars": {
                        "ansible_group_priority": 10,
                        "http_port": 8081,
                        "release_channel": "beta",
                    },
                    "hosts": {canary: None},
                },
                "bastions": {
                    "hosts": {"bastion[1:2].example:2222": {"ansible_ssh_common_args": ""}}
                },
            },
        }
    }
    header = f"# generated by benchmarks/inventory_bench.py: {total} hosts\n"
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    inventory = header + body.replace(": null\n", ":\n")  # bare keys, as people write them
    path = root / "hosts.yml"
    _write(path, inventory)
    gv, hv = root / "group_vars", root / "host_vars"
    _write(
        gv / "all.yml",
        "timezone: UTC\nntp:\n  servers: [ntp.corp.example]\n  iburst: false\n"
        "admins: [alice, bob]\n",
    )
    _write(gv / "web.yml", "nginx:\n  worker_processes: auto\n  keepalive: 65\nhttp_port: 80\n")
    _write(gv / "dc1" / "10-network.yml", "dns: [10.1.0.53, 10.1.1.53]\nmtu: 9000\n")
    _write(gv / "dc1" / "20-ssh.yaml", "ansible_port: 2022\nmtu: 1500\n")
    _write(gv / "db_dc2", "db_role: standby\npg_version: 16\n")
    _write(gv / "canary.yaml", "release_channel: canary\n")
    _write(gv / "prod.yml", "---\nalerting: pagerduty\n")
    _write(hv / f"{web1[0]}.yml", "ansible_host: 10.1.10.1\nnginx: {worker_processes: 16}\n")
    _write(hv / db1[0] / "main.yml", "pg_version: 15\n")
    _write(hv / db1[0] / "tuning.yaml", "shared_buffers: 8GB\n")
    _write(hv / f"{db2[-1]}.yaml", "decommission: true\n")
    _write(hv / "bastion1.example.yml", "ansible_user: jump\n")
    special = (web1[0], web1[-1], db1[0], db1[1], db2[-1], "bastion1.example", "lba.dc1.example")
    return Generated(path=path, hosts=total, special=special)


# --- timing ----------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    load: float
    vars: float
    targets: float
    selected: dict[str, int]


def run_once(path: Path) -> tuple[Run, Inventory]:
    start = time.perf_counter()
    inv = load_inventory([path])
    loaded = time.perf_counter()
    names = list(inv.hosts)
    for name in names:
        inv.host_vars(name)
    selected = {pattern: len(inv.select(pattern)) for pattern in PATTERNS}
    resolved = time.perf_counter()
    targets = resolve_targets(inv, names, ssh_config=SSHConfig.empty())
    done = time.perf_counter()
    assert len(targets) == len(names)
    return Run(loaded - start, resolved - loaded, done - resolved, selected), inv


def timed_subprocess(argv: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return elapsed, proc.stdout


def find_ansible(explicit: str | None) -> Path | None:
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise SystemExit(f"--ansible {explicit}: not an executable file")
        return path
    found = shutil.which("ansible-inventory")
    if found:
        return Path(found)
    if FALLBACK_ANSIBLE.is_file() and os.access(FALLBACK_ANSIBLE, os.X_OK):
        return FALLBACK_ANSIBLE
    return None


# --- comparing -------------------------------------------------------------------------


def _all_hosts(listing: dict[str, Any]) -> set[str]:
    return {h for name, g in listing.items() if name != "_meta" for h in g.get("hosts", [])}


def _structure(listing: dict[str, Any]) -> dict[str, tuple[list[str], list[str]]]:
    return {
        name: (list(g.get("hosts", [])), list(g.get("children", [])))
        for name, g in listing.items()
        if name != "_meta"
    }


def compare(
    ours: dict[str, Any], theirs: dict[str, Any], special: tuple[str, ...]
) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    ours_hosts, their_hosts = _all_hosts(ours), _all_hosts(theirs)
    if ours_hosts == their_hosts:
        rows.append(("same set of hosts", f"OK ({len(ours_hosts)})", "OK"))
    else:
        only_ours = sorted(ours_hosts - their_hosts)[:3]
        only_theirs = sorted(their_hosts - ours_hosts)[:3]
        rows.append(
            (
                "same set of hosts",
                f"MISMATCH: only ours {only_ours}, only ansible {only_theirs}",
                "OK",
            )
        )
    a, b = _structure(ours), _structure(theirs)
    bad = sorted(g for g in a.keys() | b.keys() if a.get(g) != b.get(g))
    rows.append(
        ("same groups, hosts, children", "OK" if not bad else f"MISMATCH in {bad[:5]}", "OK")
    )
    rng = random.Random(2024)
    pool = sorted(h for h in ours_hosts & their_hosts if h not in special)
    sample = [h for h in special if h in their_hosts]
    sample += rng.sample(pool, min(SAMPLE - len(sample), len(pool)))
    ours_vars = ours["_meta"]["hostvars"]
    their_vars = theirs["_meta"]["hostvars"]
    differ: list[str] = []
    for host in sample:
        mine, ref = ours_vars.get(host, {}), their_vars.get(host, {})
        if mine != ref:
            keys = sorted(
                k
                for k in mine.keys() | ref.keys()
                if mine.get(k, "<unset>") != ref.get(k, "<unset>")
            )
            differ.append(f"{host} {keys}")
    rows.append(
        (
            f"merged vars of {len(sample)} hosts",
            "OK" if not differ else f"MISMATCH ({len(differ)}): {'; '.join(differ[:3])}",
            "OK",
        )
    )
    return rows


# --- main ------------------------------------------------------------------------------


def _stats(values: list[float]) -> str:
    return f"{min(values) * 1000:.0f} / {statistics.median(values) * 1000:.0f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ansible", help="path of the ansible-inventory binary")
    args = parser.parse_args()
    repeat = max(args.repeat, 1)
    ansible = find_ansible(args.ansible)
    rows: list[tuple[str, str, str]] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ro-inv-bench-") as tmp:
        gen = generate(Path(tmp), args.hosts)
        runs: list[Run] = []
        inv: Inventory | None = None
        for _ in range(repeat):
            run, inv = run_once(gen.path)
            runs.append(run)
        assert inv is not None
        if len(inv) != gen.hosts:
            notes.append(f"MISMATCH: generated {gen.hosts} hosts, remoteops loaded {len(inv)}")
        ours_json = inv.to_ansible_list()

        def col(get: Callable[[Run], float]) -> list[float]:
            return [get(r) for r in runs]

        load_vars = col(lambda r: r.load + r.vars)
        everything = col(lambda r: r.load + r.vars + r.targets)
        rows.append((f"load_inventory ({len(inv)} hosts)", _stats(col(lambda r: r.load)), "-"))
        rows.append(
            (
                f"host_vars x{len(inv)} + {len(PATTERNS)} select()",
                _stats(col(lambda r: r.vars)),
                "-",
            )
        )
        rows.append(("resolve_targets (SSHConfig.empty)", _stats(col(lambda r: r.targets)), "-"))
        verdict = "PASS" if min(load_vars) < TARGET_S else "FAIL"
        rows.append(
            ("load + vars", f"{_stats(load_vars)} {verdict}", f"< {TARGET_S * 1000:.0f} ms")
        )
        rows.append(("load + vars + targets", _stats(everything), "-"))

        env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_HOME": str(Path(tmp) / "ansible")}
        cli = [
            sys.executable,
            "-m",
            "remoteops",
            "inventory",
            "list",
            "--json",
            "-i",
            str(gen.path),
        ]
        cli_times = [timed_subprocess(cli, env)[0] for _ in range(repeat)]
        rows.append(("remoteops inventory list --json (process)", _stats(cli_times), "-"))

        if ansible is None:
            notes.append(
                "ansible-inventory NOT FOUND (not on PATH, not at "
                f"{FALLBACK_ANSIBLE}; pass --ansible PATH): no reference numbers or agreement check"
            )
        else:
            argv = [str(ansible), "-i", str(gen.path), "--list"]
            ref: list[float] = []
            out = ""
            for _ in range(repeat):
                elapsed, out = timed_subprocess(argv, env)
                ref.append(elapsed)
            rows.append(("ansible-inventory --list (process)", _stats(ref), "reference"))
            best_ref, med_ref = min(ref), statistics.median(ref)
            rows.append(
                (
                    "ratio load+vars / ansible",
                    f"{min(load_vars) / best_ref:.3f} / "
                    f"{statistics.median(load_vars) / med_ref:.3f}",
                    "-",
                )
            )
            rows.append(
                (
                    "ratio load+vars+targets / ansible",
                    f"{min(everything) / best_ref:.3f} / "
                    f"{statistics.median(everything) / med_ref:.3f}",
                    "-",
                )
            )
            rows.append(
                (
                    "ratio CLI process / ansible process",
                    f"{min(cli_times) / best_ref:.3f} / "
                    f"{statistics.median(cli_times) / med_ref:.3f}",
                    "-",
                )
            )
            rows.extend(compare(ours_json, json.loads(out), gen.special))
            notes.append(f"reference: {ansible}")
        for pattern, count in runs[-1].selected.items():
            notes.append(f"select({pattern!r}) -> {count} hosts")

    width = max(len(r[0]) for r in rows)
    vwidth = max(28, *(len(r[1]) for r in rows))
    print(f"{args.hosts} hosts, best / median of {repeat} runs")
    print(f"{'measure'.ljust(width)}  {'result'.ljust(vwidth)}  target")
    for name, value, target in rows:
        print(f"{name.ljust(width)}  {value.ljust(vwidth)}  {target}")
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
