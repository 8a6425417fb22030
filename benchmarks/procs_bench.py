"""Benchmark ``--procs``: one process against two on 1,000 lab hosts, and the break-even.

    flock /work/notes/gate.lock flock /work/notes/bench.lock \\
        .venv/bin/python benchmarks/procs_bench.py [--hosts 1000] [--rounds 3]
        [--sizes 50,100,200,400] [--port 25222] [--forks 50]

On one lab of ``--hosts`` real sshd hosts, ``remoteops run all --json -- true``
(strict host keys; ``-f 50`` as run_bench.py, 25 per shard with two) runs with
``--procs 1`` and ``--procs 2`` in interleaved rounds (the order alternates).
Every run must have every host ok. Per run:

* wall time;
* client CPU: user+sys of remoteops and every worker it reaped (``os.wait4``
  returns the rusage of the process and its waited-for children), per host,
  as measured and minus a start-up-only run (``remoteops --version``);
* the parent's own CPU (``/proc/PID/stat``, sampled every 50 ms until it exits:
  the serial part every shard's results go through);
* peak memory: the peak RSS (``VmHWM``) of the parent plus that of each worker,
  summed (``ru_maxrss`` would give only the largest one), per host; this counts
  the pages a worker still shares with its parent twice, so the peak of the
  summed PSS (shared pages split between their users; sampled) is shown too;
* per-shard overhead: the start of a shard (``os.fork`` of a process holding the
  1,000 resolved targets, to the child's exit, reaped), and for comparison what a
  ``spawn`` or ``forkserver`` worker pays first (a new interpreter importing the
  engine); and the extra client CPU of the second shard over the whole run.

Then the break-even: the first ``--sizes`` hosts (``-l @FILE``) with ``--procs 1``
and ``--procs 2``, ``--rounds`` interleaved rounds each, median walls; the
smallest size from which two processes are faster is the break-even that
``--procs auto`` uses (``remoteops.shards.BREAK_EVEN_HOSTS``).

Last, a projection of hosts per second for 4, 16 and 64 cores from the measured
CPU per host (see ``projection_rows`` for what it assumes).

Target: the client CPU per host with ``--procs 2`` is at most 1.10x that of
``--procs 1``.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _common import Row, print_table
from run_bench import REMOTEOPS, RUN_TIMEOUT, Measurement, TreeMemorySampler, measure

from remoteops.lab import descendants

PYTHON = sys.executable
TICK = os.sysconf("SC_CLK_TCK")
CORES = (4, 16, 64)


def log(message: str) -> None:
    print(f"[procs_bench] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- measuring


class ShardSampler(TreeMemorySampler):
    """Peak RSS of a process and each of its children, and its own CPU, from /proc."""

    def __init__(self, interval: float = 0.05) -> None:
        super().__init__(interval)
        self.hwm_kb: dict[int, int] = {}
        self.peak_pss_kb = 0
        self.parent_cpu_s = 0.0
        self.workers = 0

    @property
    def peak_kb(self) -> int:
        return sum(self.hwm_kb.values())

    def _loop(self, parent: int) -> None:
        deadline = time.monotonic() + RUN_TIMEOUT
        while not self._stop.is_set() and time.monotonic() < deadline:
            children = descendants([parent])
            self.workers = max(self.workers, len(children))
            pss = 0
            for pid in [parent, *children]:
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
                    pss += int(rollup.split("\nPss:", 1)[1].split()[0])
                    if pid == parent:
                        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                        self.parent_cpu_s = (int(fields[11]) + int(fields[12])) / TICK
                except OSError:
                    continue
                for line in status.splitlines():
                    if line.startswith("VmHWM:"):
                        self.hwm_kb[pid] = max(self.hwm_kb.get(pid, 0), int(line.split()[1]))
            self.peak_pss_kb = max(self.peak_pss_kb, pss)
            self._stop.wait(self.interval)


@dataclass(slots=True)
class Run:
    procs: int
    hosts: int
    m: Measurement
    sampler: ShardSampler

    @property
    def ok(self) -> int:
        return self.m.stdout.count(b'"status": "ok"')

    @property
    def host_seconds(self) -> float:
        """The median time a host took, connect to result."""
        lines = (json.loads(line) for line in self.m.stdout.splitlines())
        return med([obj["duration_s"] for obj in lines if obj.get("type") == "host"] or [0.0])


FORKS = 50  # set by --forks


def run(inventory: Path, procs: int, hosts: int, limit: Path | None = None) -> Run:
    argv = [REMOTEOPS, "--no-log-file", "run", "all", "-i", str(inventory)]
    argv += ["-f", str(FORKS)] if FORKS else []
    argv += ["-l", f"@{limit}"] if limit else []
    argv += ["--procs", str(procs), "--connect-timeout", "60", "--json", "--", "true"]
    sampler = ShardSampler()
    try:
        m = measure(argv, on_start=sampler.start)
    finally:
        sampler.stop()
    result = Run(procs, hosts, m, sampler)
    if m.returncode != 0 or result.ok != hosts:
        log(f"--procs {procs}, {hosts} hosts: rc={m.returncode}, {result.ok} ok")
        log(m.stderr.decode(errors="replace")[-2000:])
    return result


def med(values: list[float]) -> float:
    return float(statistics.median(values))


# --------------------------------------------------------------------------- shard start


def fork_ms(inventory: Path, repeat: int = 20) -> float:
    """A fork of a process that holds the run's resolved targets, to the reaped exit."""
    from remoteops.fleet import FleetOptions, resolve_fleet

    fleet = resolve_fleet("all", FleetOptions(inventory=(str(inventory),)))
    assert fleet.targets
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        times.append(time.perf_counter() - start)
    return med(times) * 1000


def spawn_ms(repeat: int = 5) -> float:
    """What a spawn (or a forkserver, once) worker pays before working: a new
    interpreter importing the engine."""
    code = "import remoteops.execution, remoteops.session, remoteops.transfer"
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([PYTHON, "-c", code], check=True)
        times.append(time.perf_counter() - start)
    return med(times) * 1000


# --------------------------------------------------------------------------- rows


def main_rows(
    runs: list[Run], hosts: int, base: Measurement, fork: float, spawn: float
) -> tuple[list[Row], dict[str, float]]:
    by = {p: [r for r in runs if r.procs == p] for p in (1, 2)}
    wall = {p: med([r.m.wall_s for r in by[p]]) for p in by}
    cpu = {p: med([r.m.cpu_s for r in by[p]]) for p in by}
    net = {p: (cpu[p] - base.cpu_s) / hosts * 1000 for p in by}
    parent = {p: med([r.sampler.parent_cpu_s for r in by[p]]) for p in by}
    peak = {p: med([r.sampler.peak_kb for r in by[p]]) for p in by}
    pss = {p: med([r.sampler.peak_pss_kb for r in by[p]]) for p in by}
    took = {p: med([r.host_seconds for r in by[p]]) for p in by}
    ratios = [b.m.wall_s / a.m.wall_s for a, b in zip(by[1], by[2], strict=False)]
    growth = net[2] / net[1] - 1
    rows: list[Row] = [
        (
            f"run -f {FORKS or 'default'} -- true, {hosts} hosts: wall --procs 1 / 2",
            f"{wall[1]:.2f} / {wall[2]:.2f} s ({wall[2] / wall[1]:.2f}x; rounds "
            + ", ".join(f"{r:.2f}x" for r in ratios)
            + ")",
            "-",
        ),
        (
            "  a host's time, connect to result (median), 1 / 2",
            f"{took[1] * 1000:.0f} / {took[2] * 1000:.0f} ms",
            "-",
        ),
        (
            "  hosts per second --procs 1 / 2",
            f"{hosts / wall[1]:.0f} / {hosts / wall[2]:.0f}",
            "-",
        ),
        (
            "  client CPU per host (total / minus start-up), 1",
            f"{cpu[1] / hosts * 1000:.2f} / {net[1]:.2f} ms",
            "-",
        ),
        (
            "  client CPU per host (total / minus start-up), 2",
            f"{cpu[2] / hosts * 1000:.2f} / {net[2]:.2f} ms ({growth:+.1%})",
            "<= +10%",
        ),
        (
            "  parent's own CPU per host, 1 / 2",
            f"{parent[1] / hosts * 1000:.2f} / {parent[2] / hosts * 1000:.2f} ms",
            "-",
        ),
        (
            "  peak RSS, parent + workers, per host, 1 / 2",
            f"{peak[1] / 1024 / hosts:.3f} / {peak[2] / 1024 / hosts:.3f} MB "
            f"({peak[1] / 1024:.0f} / {peak[2] / 1024:.0f} MB)",
            "-",
        ),
        (
            "  peak PSS (shared pages split), per host, 1 / 2",
            f"{pss[1] / 1024 / hosts:.3f} / {pss[2] / 1024 / hosts:.3f} MB "
            f"({pss[1] / 1024:.0f} / {pss[2] / 1024:.0f} MB, sampled every 50 ms)",
            "-",
        ),
        (
            "  per-shard start: fork (+exit, reaped) / spawn",
            f"{fork:.1f} ms / {spawn:.0f} ms (a new interpreter importing the engine)",
            "-",
        ),
        (
            "  extra client CPU of the second shard",
            f"{(cpu[2] - cpu[1]) * 1000:+.0f} ms over the run",
            "-",
        ),
        ("  start-up only (remoteops --version)", f"{base.cpu_s * 1000:.0f} ms CPU", "-"),
    ]
    model = {
        "worker_ms": (cpu[2] - parent[2]) / hosts * 1000,
        "parent_ms": max(parent[2] - base.cpu_s, 0.0) / hosts * 1000,
        "fork_ms": fork,
    }
    return rows, model


def projection_rows(model: dict[str, float], hosts: int = 10_000) -> list[Row]:
    """Hosts per second on C cores, one shard per core, from the measured CPU per host.

    Assumes the client is CPU-bound (enough network, and servers that keep up:
    on this machine the lab's sshds share the 2 cores), the workers' CPU per
    host stays as measured, and the parent's serial CPU per host (results,
    output) is on a core of its own next to the workers; the shards start one
    after another (C forks) at the start of a run of ``hosts`` hosts.
    """
    worker, parent, fork = model["worker_ms"], model["parent_ms"], model["fork_ms"]
    rows: list[Row] = [
        (
            "projection: hosts/s for a run of 10,000 hosts",
            f"from {worker:.2f} ms of worker CPU and {parent:.2f} ms of parent CPU per "
            f"host, {fork:.1f} ms per shard start",
            "-",
        )
    ]
    for cores in (1, *CORES):
        rate = min(cores * 1000 / worker, 1000 / parent if parent else float("inf"))
        total = cores * fork / 1000 + hosts / rate
        bound = "parent" if parent and 1000 / parent < cores * 1000 / worker else "workers"
        rows.append((f"  {cores} cores, {cores} shards", f"{hosts / total:,.0f} ({bound})", "-"))
    return rows


def break_even_rows(
    lab: Any, inventory: Path, sizes: list[int], rounds: int, work: Path
) -> list[Row]:
    rows: list[Row] = [("break-even: wall --procs 2 / --procs 1 (median)", "", "-")]
    first = None
    for size in sizes:
        limit = work / f"first-{size}.txt"
        limit.write_text("".join(f"{h.name}\n" for h in lab.hosts[:size]))
        walls: dict[int, list[float]] = {1: [], 2: []}
        for index in range(rounds):
            for procs in (1, 2) if index % 2 == 0 else (2, 1):
                walls[procs].append(run(inventory, procs, size, limit).m.wall_s)
        ratio = med(walls[2]) / med(walls[1])
        if ratio < 1 and first is None:
            first = size
        rows.append(
            (
                f"  {size} hosts",
                f"{ratio:.2f}x ({med(walls[1]) * 1000:.0f} / {med(walls[2]) * 1000:.0f} ms)",
                "-",
            )
        )
    rows.append(("  first size where 2 processes win", str(first), "-"))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="50,100,200,400")
    parser.add_argument("--port", type=int, default=25222)
    parser.add_argument(
        "--forks",
        type=int,
        default=50,
        help="hosts in flight over all shards (run_bench.py's 50; 0: remoteops' default)",
    )
    args = parser.parse_args()
    global FORKS
    FORKS = args.forks
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds must be 1..10")
    sizes = [int(s) for s in args.sizes.split(",") if s]

    import remoteops
    from remoteops.lab import lab_down, lab_up

    compileall.compile_dir(str(Path(remoteops.__file__).parent), quiet=1)
    base = sorted((measure([REMOTEOPS, "--version"]) for _ in range(3)), key=lambda m: m.cpu_s)[1]
    spawn = spawn_ms()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="ro-procsbench-") as tmp:
        work = Path(tmp)
        lab_dir = work / "lab"
        start = time.perf_counter()
        lab = lab_up(lab_dir, hosts=args.hosts, port=args.port, timeout=180).lab
        log(f"lab: {args.hosts} hosts up in {time.perf_counter() - start:.1f} s")
        try:
            inventory = lab.inventory
            fork = fork_ms(inventory)
            for procs in (1, 2):  # warm-up: page cache, sshd's first forks
                run(inventory, procs, args.hosts)
            runs = []
            for index in range(args.rounds):
                for procs in (1, 2) if index % 2 == 0 else (2, 1):
                    one = run(inventory, procs, args.hosts)
                    log(
                        f"round {index + 1} --procs {procs}: wall {one.m.wall_s:.2f} s, "
                        f"cpu {one.m.cpu_s:.2f} s, {one.ok} ok, workers {one.sampler.workers}"
                    )
                    runs.append(one)
            main, model = main_rows(runs, args.hosts, base, fork, spawn)
            rows += main
            rows += projection_rows(model)
            rows += break_even_rows(lab, inventory, sizes, args.rounds, work)
        finally:
            lab_down(lab_dir)
    rows.append(("load average at the end", " ".join(f"{x:.2f}" for x in os.getloadavg()), "-"))
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
