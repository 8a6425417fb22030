"""Benchmark a 5-step `remoteops play` against one `remoteops run` step on the lab.

    sudo .venv/bin/python benchmarks/play_bench.py [--hosts 100] [--repeat 5]

On one lab of ``--hosts`` hosts, interleaved ``--repeat`` times (the order
alternates every round):

* run:  ``remoteops --no-log-file run all -i INV --json -- hostname``
* play: ``remoteops --no-log-file play BOOK -i INV --json`` where BOOK has five
  steps on all hosts: ``run hostname`` (registered), ``run uname -r``, ``run cat
  /etc/hostname``, ``ping`` and an ``assert`` on the first step's output.

Both use the default forks (every host at once) and strict host keys. The table
shows median wall times, the ratio play/run (target < 2x: connection set-up
dominates, each further step is one exec round trip per host, run on all hosts
at once) and the logins sshd accepted per host during all play runs (target:
exactly one per host per run).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import Row, ensure_bytecode, print_table

VENV_BIN = Path(sys.executable).parent
REMOTEOPS = str(VENV_BIN / "remoteops")
TIMEOUT_S = 300.0

BOOK = """\
- name: five steps
  hosts: all
  steps:
    - run: hostname
      register: name
    - run: uname -r
    - run: cat /etc/hostname
    - ping:
    - assert:
        that: name.stdout == inventory_hostname
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _timed(args: list[str]) -> float:
    start = time.monotonic()
    done = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    wall = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args[:4])}... exited {done.returncode}: {done.stderr[-500:]}")
    return wall


def _accepted(lab: Any, names: list[str]) -> dict[str, int]:
    """Logins each host's sshd accepted so far (LogLevel VERBOSE: one line per login)."""
    return {
        n: lab.sshd_log(n).read_text(errors="replace").count("Accepted publickey") for n in names
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    ensure_bytecode()

    from remoteops.lab import lab_down, lab_up

    with tempfile.TemporaryDirectory(prefix="play-bench-") as tmp:
        lab_dir = Path(tmp) / "lab"
        lab = lab_up(lab_dir, hosts=args.hosts, port=_free_port()).lab
        try:
            book = Path(tmp) / "book.yml"
            book.write_text(BOOK)
            inv = str(lab.inventory)
            run_cmd = [
                REMOTEOPS,
                "--no-log-file",
                "run",
                "all",
                "-i",
                inv,
                "--json",
                "--",
                "hostname",
            ]
            play_cmd = [REMOTEOPS, "--no-log-file", "play", str(book), "-i", inv, "--json"]
            _timed(run_cmd)  # warm the page cache and sshd
            names = [h.name for h in lab.hosts]
            runs: list[float] = []
            plays: list[float] = []
            logins = dict.fromkeys(names, 0)
            for round_ in range(args.repeat):
                order = ["run", "play"] if round_ % 2 == 0 else ["play", "run"]
                for which in order:
                    if which == "run":
                        runs.append(_timed(run_cmd))
                        continue
                    before = _accepted(lab, names)
                    plays.append(_timed(play_cmd))
                    after = _accepted(lab, names)
                    for n in names:
                        logins[n] += after[n] - before[n]
        finally:
            lab_down(lab_dir)
    run_s = statistics.median(runs)
    play_s = statistics.median(plays)
    per_host = sorted(set(logins.values()))
    rows: list[Row] = [
        (f"run, 1 step, {args.hosts} hosts (median of {args.repeat})", f"{run_s:.2f} s", ""),
        (f"play, 5 steps, {args.hosts} hosts (median of {args.repeat})", f"{play_s:.2f} s", ""),
        ("play / run", f"{play_s / run_s:.2f}x", "< 2x"),
        (
            "sshd logins per host per play",
            ", ".join(f"{v / args.repeat:g}" for v in per_host),
            "1",
        ),
    ]
    print_table(rows)
    return 0 if play_s < 2 * run_s and per_host == [args.repeat] else 1


if __name__ == "__main__":
    sys.exit(main())
