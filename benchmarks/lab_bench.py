"""Benchmark the lab itself (issue 2): start-up time, isolation, latency, clean teardown.

    sudo .venv/bin/python benchmarks/lab_bench.py [--hosts 50] [--latency 100]

Prints one table. The lab's start-up has no reference tool to compare with; the
target is `lab up --hosts 50` in under 30 s. The latency check compares a round
trip over an established connection with and without `--latency`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import paramiko
from _common import Row, ensure_bytecode, print_table

from remoteops.lab import Lab, descendants, is_alive, lab_down, lab_up


def _ssh(lab: Lab, host: str, command: str) -> str:
    return subprocess.run(
        ["ssh", "-F", str(lab.ssh_config), "-o", "StrictHostKeyChecking=yes", host, command],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout


def _rtts(lab: Lab, count: int = 10) -> list[float]:
    host = lab.hosts[0]
    transport = paramiko.Transport((host.address, host.port))
    try:
        transport.start_client(timeout=10)
        transport.auth_publickey(
            lab.user, paramiko.Ed25519Key.from_private_key_file(str(lab.client_key))
        )
        out = []
        for _ in range(count):
            start = time.perf_counter()
            transport.global_request("keepalive@openssh.com", wait=True)
            out.append((time.perf_counter() - start) * 1000)
        return out
    finally:
        transport.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--latency", type=int, default=100)
    parser.add_argument("--port", type=int, default=2422)
    args = parser.parse_args()
    ensure_bytecode()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="ro-bench-") as tmp:
        lab_dir = Path(tmp) / "lab"
        start = time.perf_counter()
        lab = lab_up(lab_dir, hosts=args.hosts, port=args.port).lab
        up_s = time.perf_counter() - start
        rows.append((f"lab up --hosts {args.hosts}", f"{up_s:.2f} s", "< 30 s"))
        names = {_ssh(lab, h.name, "hostname").strip() for h in lab.hosts}
        rows.append(("distinct hostnames via OpenSSH ssh", str(len(names)), str(args.hosts)))
        _ssh(lab, lab.hosts[0].name, "touch /srv/bench-marker")
        leaked = (
            subprocess.run(
                ["ssh", "-F", str(lab.ssh_config), lab.hosts[-1].name, "test -e /srv/bench-marker"],
                check=False,
                timeout=30,
            ).returncode
            == 0
        )
        rows.append(("/srv file visible on another host", str(leaked), "False"))
        base = statistics.median(_rtts(lab))
        rows.append(("round trip, no latency (median)", f"{base:.1f} ms", "-"))
        family = [*lab.pids(), *descendants(lab.pids())]
        start = time.perf_counter()
        lab_down(lab_dir)
        down_s = time.perf_counter() - start
        left = [pid for pid in family if is_alive(pid)]
        rows.append(("lab down", f"{down_s:.2f} s, {len(left)} processes left", "0 left"))

        slow_dir = Path(tmp) / "slow"
        slow = lab_up(slow_dir, hosts=2, port=args.port, latency_ms=args.latency).lab
        try:
            slow_rtt = _rtts(slow)
        finally:
            lab_down(slow_dir)
        rows.append(
            (
                f"round trip with --latency {args.latency} (min/median)",
                f"{min(slow_rtt):.1f}/{statistics.median(slow_rtt):.1f} ms",
                f">= {args.latency} ms",
            )
        )
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
