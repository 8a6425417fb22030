"""Benchmark shell completion on a 10,000-host inventory, and the start-up config reading costs.

    .venv/bin/python benchmarks/completion_bench.py [--hosts 10000] [--repeat 15] [--other CHECKOUT]

In a temporary directory (HOME, XDG_CACHE_HOME and XDG_CONFIG_HOME point there; no
config file unless a row says so) it writes a YAML inventory of ``--hosts`` hosts in
100 groups, then times, interleaved round by round, each as a fresh process (the way a
shell starts it on every Tab), wall and CPU (user + system of the child, from
``getrusage(RUSAGE_CHILDREN)``):

* ``python -c pass``: the interpreter's own start, the floor of any Python CLI;
* ``remoteops --version``, and ``remoteops help json`` (a command: the global options
  are parsed and the config files read) without and with a config file;
* bash's request on Tab for ``remoteops run -i INV h0999``: the first Tab (cache
  removed before each round: the inventory is read) and the next Tabs (from the cache);
* the same request with a user config file (a profile, a few keys) present;
* ``remoteops --version`` and the cached Tab with a config file present.

The target is a completion answered in under 100 ms (issue 14). ``--other CHECKOUT``
adds the rows of remoteops from another checkout (``git worktree add /tmp/base BASE``),
started with this interpreter and ``PYTHONPATH=CHECKOUT``, in the same rounds.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import ensure_bytecode, print_table

TARGET_MS = 100.0
CONFIG = """\
forks = 20
connect-timeout = 5

[run]
timeout = 300

[profiles.nightly]
quiet = true
run = { timeout = 1800 }
"""


@dataclass(slots=True)
class Case:
    """One command line, timed once per round."""

    name: str
    argv: list[str]
    env: dict[str, str]
    before: list[Path] = field(default_factory=list)
    """Removed (a cache directory) before each run."""
    expect: str = ""
    """A word the output must hold."""
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)


def write_inventory(path: Path, hosts: int) -> None:
    groups = 100
    per = max(1, hosts // groups)
    lines = ["all:", "  children:"]
    for group in range(groups):
        lines += [f"    g{group:02d}:", "      hosts:"]
        lines += [f"        h{group * per + host:05d}:" for host in range(per)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def timed(case: Case) -> None:
    for stale in case.before:
        shutil.rmtree(stale, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        case.argv,
        env=case.env,
        cwd=case.env["HOME"],  # not a checkout: PYTHONPATH decides which remoteops runs
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # only this child ran meanwhile
    if done.returncode != 0 or done.stderr.strip():
        raise SystemExit(f"{case.name}: exit {done.returncode}, stderr: {done.stderr[:500]}")
    if case.expect and case.expect not in done.stdout:
        raise SystemExit(f"{case.name}: {case.expect!r} not in {done.stdout[:300]!r}")
    case.wall.append(wall * 1000)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    case.cpu.append(cpu * 1000)


def cases(root: Path, inventory: Path, python: str, other: Path | None) -> list[Case]:
    cache = root / "cache"
    config = root / "config.toml"
    config.write_text(CONFIG, encoding="utf-8")
    config.chmod(0o600)
    base = {
        "PATH": f"{Path(python).parent}:/usr/bin:/bin",
        "HOME": str(root),
        "XDG_CACHE_HOME": str(cache),
        "XDG_CONFIG_HOME": str(root / "no-config"),
        "XDG_STATE_HOME": str(root / "state"),
        "LANG": "C.UTF-8",
        "REMOTEOPS_SYSTEM_CONFIG": "/dev/null",
    }
    words = ["remoteops", "run", "-i", str(inventory), "h0999"]
    tab = {
        "_REMOTEOPS_COMPLETE": "complete_bash",
        "COMP_WORDS": "\n".join(words),
        "COMP_CWORD": str(len(words) - 1),
    }
    with_config = {"REMOTEOPS_CONFIG": str(config), "REMOTEOPS_PROFILE": "nightly"}
    programs = [("", [python, "-m", "remoteops"], {})]
    if other is not None:
        programs.append((" (other)", [python, "-m", "remoteops"], {"PYTHONPATH": str(other)}))
    found = [Case("python -c pass", [python, "-c", "pass"], base)]
    for suffix, argv, extra in programs:
        env = {**base, **extra}
        found += [
            Case(f"--version{suffix}", [*argv, "--version"], env, expect="remoteops"),
            Case(f"help json{suffix}", [*argv, "help", "json"], env, expect="JSON"),
            Case(
                f"help json, config{suffix}",
                [*argv, "help", "json"],
                {**env, **with_config},
                expect="JSON",
            ),
            Case(f"Tab, first{suffix}", argv, {**env, **tab}, [cache], "h09990"),
            Case(f"Tab, cached{suffix}", argv, {**env, **tab}, expect="h09990"),
            Case(
                f"--version, config{suffix}",
                [*argv, "--version"],
                {**env, **with_config},
                expect="remoteops",
            ),
            Case(f"Tab, cached, config{suffix}", argv, {**env, **tab, **with_config}, [], "h09990"),
        ]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--other", type=Path, help="another checkout to time in the same rounds")
    args = parser.parse_args()
    ensure_bytecode(*([args.other] if args.other else []))
    with tempfile.TemporaryDirectory(prefix="completion-bench-") as tmp:
        root = Path(tmp)
        inventory = root / "hosts.yml"
        write_inventory(inventory, args.hosts)
        every = cases(root, inventory, sys.executable, args.other)
        for case in every:  # warm the page cache and the names cache; not counted
            timed(case)
            case.wall.clear()
            case.cpu.clear()
        for _ in range(args.repeat):
            for case in every:
                timed(case)
    rows = [("load average (1 min)", f"{os.getloadavg()[0]:.2f}", "")]
    for case in every:
        target = f"< {TARGET_MS:.0f} ms" if case.name.startswith("Tab") else ""
        rows.append(
            (
                case.name,
                f"wall {statistics.median(case.wall):6.1f} ms  "
                f"CPU {statistics.median(case.cpu):6.1f} ms (min {min(case.cpu):.1f})",
                target,
            )
        )
    print(f"{args.hosts} hosts, medians of {args.repeat} interleaved rounds")
    print_table(rows)


if __name__ == "__main__":
    main()
