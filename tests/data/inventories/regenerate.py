#!/usr/bin/env python3
"""Record what ansible-core answers for every case under this directory.

For each CASE/case.json ({"sources": [...], "patterns": [...], "script": bool,
"limits": [[pattern, limit], ...]}) this
writes CASE/expected_list.json (`ansible-inventory -i ... --list`) and
CASE/expected_graph.txt (`ansible-inventory -i ... --graph`) and
CASE/expected_patterns.json ({pattern: hosts of `ansible PATTERN -i ... --list-hosts`}).
"script": true wraps the JSON source in an executable that prints it, which is how
Ansible reads `ansible-inventory --list` output.  "limits" are recorded in
CASE/expected_limits.json from `ansible PATTERN --limit LIMIT --list-hosts`.  Each
answer is asked --repeat times; patterns whose host order changes between runs (Ansible
walks grand-child groups in set order) are listed in CASE/expected_unstable_order.json
and recorded sorted.

A directory with an errors.json ({file: line}) instead of a case.json holds inventories
Ansible refuses: for each file this records in CASE/expected_errors.json the reason
`ansible-inventory -i FILE --list` gives (with ANSIBLE_INVENTORY_UNPARSED_FAILED set) and
stops if Ansible reads one of them.  Ansible's message names no line; the lines in
errors.json are where remoteops reports each error.

Usage: python3 regenerate.py [--ansible-bin /tmp/ansible-venv/bin] [CASE...]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def ansible_env(home: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        HOME=home,
        ANSIBLE_CONFIG=os.path.join(home, "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCAL_TEMP=os.path.join(home, "tmp"),
        ANSIBLE_HOST_PATTERN_MISMATCH="ignore",
        PYTHONHASHSEED="0",
    )
    return env


NO_HOSTS = "leaves us with no hosts to target"


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0 and NO_HOSTS in proc.stderr:
        return "  hosts (0):\n"  # --limit matched nothing: Ansible exits 1
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {shlex.join(cmd)}\n{proc.stderr}")
    return proc.stdout


def list_hosts(output: str) -> list[str]:
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if line.strip().startswith("hosts ("):
            return [h.strip() for h in lines[index + 1 :] if h.strip()]
    raise ValueError(f"unexpected --list-hosts output:\n{output}")


def record(case: Path, bin_dir: Path, home: str, repeat: int) -> None:
    spec = json.loads((case / "case.json").read_text())
    env = ansible_env(home)
    sources = list(spec["sources"])
    if spec.get("script"):
        wrapped = []
        for src in sources:
            script = Path(home) / f"{case.name}-{Path(src).stem}.sh"
            script.write_text(f"#!/bin/sh\nexec cat {shlex.quote(str(case / src))}\n")
            script.chmod(0o755)
            wrapped.append(str(script))
        sources = wrapped
    inv_args = [arg for src in sources for arg in ("-i", src)]
    listed = json.loads(run([str(bin_dir / "ansible-inventory"), *inv_args, "--list"], case, env))
    (case / "expected_list.json").write_text(json.dumps(listed, indent=2, sort_keys=True) + "\n")
    graph = run([str(bin_dir / "ansible-inventory"), *inv_args, "--graph"], case, env)
    (case / "expected_graph.txt").write_text(graph)
    answers: dict[str, list[str]] = {}
    unstable: list[str] = []

    def hosts_of(cmd: list[str], key: str) -> list[str]:
        # Ansible walks grand-child groups in set order, which can change between runs:
        # ask several times and keep the order only when every answer agrees.
        seen = [list_hosts(run(cmd, case, env)) for _ in range(repeat)]
        if any(s != seen[0] for s in seen):
            unstable.append(key)
            if any(sorted(s) != sorted(seen[0]) for s in seen):
                sys.exit(f"{case.name}: {key!r} gives different hosts on each run")
            return sorted(seen[0])
        return seen[0]

    for pattern in spec.get("patterns", []):
        cmd = [str(bin_dir / "ansible"), pattern, *inv_args, "--list-hosts"]
        answers[pattern] = hosts_of(cmd, pattern)
    (case / "expected_patterns.json").write_text(json.dumps(answers, indent=2) + "\n")
    limited = []
    for pattern, limit in spec.get("limits", []):
        cmd = [str(bin_dir / "ansible"), pattern, *inv_args, "--limit", limit, "--list-hosts"]
        hosts = hosts_of(cmd, f"{pattern} --limit {limit}")
        limited.append({"pattern": pattern, "limit": limit, "hosts": hosts})
    if limited:
        (case / "expected_limits.json").write_text(json.dumps(limited, indent=2) + "\n")
    unstable_file = case / "expected_unstable_order.json"
    if unstable:
        unstable_file.write_text(json.dumps(unstable, indent=2) + "\n")
    elif unstable_file.exists():
        unstable_file.unlink()
    print(
        f"{case.name}: {len(listed['_meta']['hostvars'])} hosts with vars, {len(answers)} patterns"
    )


CAUSE = "<<< caused by >>>"


def record_errors(case: Path, bin_dir: Path, home: str) -> None:
    env = ansible_env(home)
    env["ANSIBLE_INVENTORY_UNPARSED_FAILED"] = "True"
    reasons: dict[str, str] = {}
    for name in json.loads((case / "errors.json").read_text()):
        cmd = [str(bin_dir / "ansible-inventory"), "-i", name, "--list"]
        proc = subprocess.run(cmd, cwd=case, env=env, capture_output=True, text=True)
        if proc.returncode == 0 or CAUSE not in proc.stderr:
            sys.exit(f"{case.name}/{name}: Ansible reads it ({proc.returncode}):\n{proc.stderr}")
        cause = proc.stderr.split(CAUSE, 1)[1].strip().splitlines()[0]
        reasons[name] = cause.removeprefix("Failed to parse inventory: ")
    (case / "expected_errors.json").write_text(json.dumps(reasons, indent=2) + "\n")
    print(f"{case.name}: {len(reasons)} files refused")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ansible-bin", default="/tmp/ansible-venv/bin", type=Path)
    parser.add_argument("--repeat", type=int, default=4, help="runs per pattern (order check)")
    parser.add_argument("cases", nargs="*")
    args = parser.parse_args()
    version = run([str(args.ansible_bin / "ansible"), "--version"], HERE, os.environ.copy())
    print(version.splitlines()[0])
    names = args.cases or sorted(
        {p.parent.name for p in [*HERE.glob("*/case.json"), *HERE.glob("*/errors.json")]}
    )
    with tempfile.TemporaryDirectory() as home:
        os.mkdir(os.path.join(home, "tmp"))
        Path(home, "ansible.cfg").write_text("[defaults]\n")
        for name in names:
            if (HERE / name / "errors.json").exists():
                record_errors(HERE / name, args.ansible_bin, home)
            else:
                record(HERE / name, args.ansible_bin, home, args.repeat)
    (HERE / "ANSIBLE_VERSION").write_text(version.splitlines()[0] + "\n")


if __name__ == "__main__":
    main()
