"""Benchmark ``--cluster``: one local process against a 2-worker Dask cluster on 1,000 lab hosts.

    flock /work/notes/gate.lock flock /work/notes/bench.lock \\
        .venv/bin/python benchmarks/cluster_bench.py [--hosts 1000] [--rounds 3] [--port 26222]

On one lab of ``--hosts`` real sshd hosts, ``remoteops run all --json -- true``
(strict host keys, ``-f 50`` as run_bench.py) runs in one local process and
with ``--cluster`` on a ``dask scheduler`` and two ``dask worker`` processes
(``--nthreads 1 --no-nanny``) started here on 127.0.0.1, in interleaved rounds
(the order alternates). Every run must have every host ok. Per run:

* wall time;
* CPU: the client (user+sys from ``os.wait4``), each worker and the scheduler
  (``/proc/PID/stat`` before and after the run);
* per host: the client's CPU minus a start-up-only run (``remoteops --version``),
  the workers' CPU, the scheduler's (it relays every batch of results).

The fixed cost of a cluster run (importing ``distributed``, connecting, the
shard tasks starting and ending) is taken on a run of 2 hosts (one per worker)
against the same 2 hosts locally: the difference of the median walls.

Last, the projection for 100,000 hosts over 10 machines of 16 cores (one
``dask worker --nworkers 16 --nthreads 1`` each: 160 shards); see
``projection_rows`` for what it assumes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from _common import Row, ensure_bytecode, print_table
from run_bench import REMOTEOPS, Measurement, measure

TICK = os.sysconf("SC_CLK_TCK")
DASK = str(Path(sys.executable).with_name("dask"))
FORKS = 50
WORKERS = 2


def log(message: str) -> None:
    print(f"[cluster_bench] {message}", file=sys.stderr, flush=True)


def med(values: list[float]) -> float:
    return float(statistics.median(values))


def cpu_of(pid: int) -> float:
    """user+sys seconds of process ``pid`` so far (its own, not its children's)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


# --------------------------------------------------------------------------- the cluster


def _wait_for(path: Path, pattern: str, proc: subprocess.Popen[bytes], limit: float) -> str:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        found = re.search(pattern, path.read_text(errors="replace"))
        if found:
            return found.group(1)
        if proc.poll() is not None:
            raise RuntimeError(path.read_text(errors="replace"))
        time.sleep(0.05)
    raise RuntimeError(f"{pattern!r} not in {path} after {limit} s")


@contextlib.contextmanager
def dask_cluster(work: Path, workers: int) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """A scheduler and ``workers`` workers on 127.0.0.1, stopped by PID at the end."""
    procs: list[subprocess.Popen[bytes]] = []
    common = ["--no-dashboard", "--host", "127.0.0.1"]
    try:
        logs = [work / "scheduler.log", *(work / f"worker{n}.log" for n in range(workers))]
        with open(logs[0], "wb") as out:
            procs.append(
                subprocess.Popen(
                    [DASK, "scheduler", "--port", "0", *common],
                    stdout=out,
                    stderr=out,
                    start_new_session=True,
                )
            )
        address = _wait_for(logs[0], r"Scheduler at:\s+(tcp://127\.0\.0\.1:\d+)", procs[0], 60)
        for n in range(workers):
            with open(logs[n + 1], "wb") as out:
                command = [DASK, "worker", address, "--nthreads", "1", "--no-nanny"]
                command += ["--local-directory", str(work / f"w{n}"), *common]
                procs.append(
                    subprocess.Popen(command, stdout=out, stderr=out, start_new_session=True)
                )
        for n in range(workers):
            _wait_for(logs[n + 1], r"(Registered to)", procs[n + 1], 60)
        yield address, procs
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(15)


# --------------------------------------------------------------------------- runs


@dataclass(slots=True)
class Run:
    where: str  # "local" or "cluster"
    hosts: int
    m: Measurement
    workers_cpu_s: float = 0.0
    scheduler_cpu_s: float = 0.0

    @property
    def ok(self) -> int:
        return self.m.stdout.count(b'"status": "ok"')


def run(
    inventory: Path,
    hosts: int,
    address: str | None,
    procs: list[subprocess.Popen[bytes]],
    limit: Path | None = None,
) -> Run:
    argv = [REMOTEOPS, "--no-log-file", "run", "all", "-i", str(inventory), "-f", str(FORKS)]
    argv += ["-l", f"@{limit}"] if limit else []
    argv += ["--cluster", address] if address else ["--procs", "1"]
    argv += ["--no-history", "--connect-timeout", "60", "--json", "--", "true"]
    before = [cpu_of(p.pid) for p in procs]
    m = measure(argv)
    after = [cpu_of(p.pid) for p in procs]
    spent = [b - a for a, b in zip(before, after, strict=True)]
    result = Run("cluster" if address else "local", hosts, m)
    if address:
        result.scheduler_cpu_s, result.workers_cpu_s = spent[0], sum(spent[1:])
    if m.returncode != 0 or result.ok != hosts:
        log(f"{result.where}, {hosts} hosts: rc={m.returncode}, {result.ok} ok")
        log(m.stderr.decode(errors="replace")[-2000:])
    return result


# --------------------------------------------------------------------------- rows


def main_rows(runs: list[Run], hosts: int, base: Measurement) -> tuple[list[Row], dict[str, float]]:
    local = [r for r in runs if r.where == "local"]
    clustered = [r for r in runs if r.where == "cluster"]
    wall_l, wall_c = med([r.m.wall_s for r in local]), med([r.m.wall_s for r in clustered])
    cpu_l, cpu_c = med([r.m.cpu_s for r in local]), med([r.m.cpu_s for r in clustered])
    workers = med([r.workers_cpu_s for r in clustered])
    sched = med([r.scheduler_cpu_s for r in clustered])
    net_l = (cpu_l - base.cpu_s) / hosts * 1000
    net_c = (cpu_c - base.cpu_s) / hosts * 1000
    ratios = [c.m.wall_s / a.m.wall_s for a, c in zip(local, clustered, strict=False)]
    total_c = net_c + workers / hosts * 1000 + sched / hosts * 1000
    rows: list[Row] = [
        (
            f"run -f {FORKS} -- true, {hosts} hosts: wall local / cluster of {WORKERS}",
            f"{wall_l:.2f} / {wall_c:.2f} s ({wall_c / wall_l:.2f}x; rounds "
            + ", ".join(f"{r:.2f}x" for r in ratios)
            + ")",
            "-",
        ),
        (
            "  hosts per second, local / cluster",
            f"{hosts / wall_l:.0f} / {hosts / wall_c:.0f}",
            "-",
        ),
        (
            "  CPU per host, local (client minus start-up)",
            f"{net_l:.2f} ms ({cpu_l:.2f} s in all)",
            "-",
        ),
        (
            "  CPU per host, cluster: client / workers / scheduler",
            f"{net_c:.2f} / {workers / hosts * 1000:.2f} / {sched / hosts * 1000:.2f} ms",
            "-",
        ),
        (
            "  overhead per host (cluster's total minus local)",
            f"{total_c - net_l:+.2f} ms ({total_c:.2f} against {net_l:.2f})",
            "-",
        ),
        ("  start-up only (remoteops --version)", f"{base.cpu_s * 1000:.0f} ms CPU", "-"),
    ]
    return rows, {"client_s": cpu_c, "workers_s": workers, "scheduler_s": sched}


def marginal(
    big: dict[str, float], small: list[Run], hosts: int
) -> tuple[list[Row], dict[str, float]]:
    """CPU per extra host: the 1,000-host run's minus the 2-host run's, over the hosts
    between (what importing distributed, connecting and starting the shards cost is
    in both and cancels)."""
    clustered = [r for r in small if r.where == "cluster"]
    extra = hosts - WORKERS
    model = {
        "client_ms": (big["client_s"] - med([r.m.cpu_s for r in clustered])) / extra * 1000,
        "worker_ms": (big["workers_s"] - med([r.workers_cpu_s for r in clustered])) / extra * 1000,
        "scheduler_ms": (big["scheduler_s"] - med([r.scheduler_cpu_s for r in clustered]))
        / extra
        * 1000,
    }
    rows: list[Row] = [
        (
            "  CPU per extra host, cluster: client / workers / scheduler",
            f"{model['client_ms']:.2f} / {model['worker_ms']:.2f} / {model['scheduler_ms']:.2f} ms"
            f" ({hosts} hosts minus {WORKERS})",
            "-",
        )
    ]
    return rows, model


def fixed_rows(small: list[Run]) -> tuple[list[Row], float]:
    local = med([r.m.wall_s for r in small if r.where == "local"])
    clustered = med([r.m.wall_s for r in small if r.where == "cluster"])
    cpu_l = med([r.m.cpu_s for r in small if r.where == "local"])
    cpu_c = med([r.m.cpu_s for r in small if r.where == "cluster"])
    fixed = clustered - local
    return [
        (
            f"fixed cost: {WORKERS} hosts (one per worker), wall local / cluster",
            f"{local * 1000:.0f} / {clustered * 1000:.0f} ms ({fixed * 1000:+.0f} ms a run; "
            f"client CPU {cpu_l * 1000:.0f} / {cpu_c * 1000:.0f} ms)",
            "-",
        )
    ], fixed


def projection_rows(model: dict[str, float], fixed_s: float, hosts: int = 100_000) -> list[Row]:
    """Wall time for ``hosts`` hosts over 10 machines x 16 cores (160 single-threaded shards).

    Assumes: the workers' CPU per extra host stays as measured and each shard keeps
    its core busy (servers and network keep up; each shard's --forks is enough to
    hide the round trips); the client's and the scheduler's CPU per extra host is
    serial work on one core each (every result passes through both: the scheduler
    relays each batch, the client unpickles and prints it); the shards start at
    once (one task each, submitted without waiting), so the fixed cost of a run
    (import, connect, shard start) is as measured with 2 workers. The run takes
    the fixed cost plus the longest of the three.
    """
    shards = 160
    workers, client, sched = model["worker_ms"], model["client_ms"], model["scheduler_ms"]
    parts = {
        "workers": hosts * workers / 1000 / shards,
        "client": hosts * client / 1000,
        "scheduler": hosts * sched / 1000,
    }
    bound = max(parts, key=lambda k: parts[k])
    total = parts[bound] + fixed_s
    return [
        (
            f"projection: {hosts:,} hosts, 10 x 16 cores ({shards} shards)",
            f"~{total:.0f} s, bound by the {bound} ({parts[bound]:.1f} s of it)",
            "-",
        ),
        (
            "  the three rates (s of serial work)",
            ", ".join(f"{k} {v:.1f}" for k, v in parts.items()) + f"; fixed {fixed_s:.2f} s",
            "-",
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=26222)
    args = parser.parse_args()
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds must be 1..10")
    from remoteops.lab import lab_down, lab_up

    ensure_bytecode()
    base = sorted((measure([REMOTEOPS, "--version"]) for _ in range(3)), key=lambda m: m.cpu_s)[1]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="ro-clusterbench-") as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        lab = lab_up(work / "lab", hosts=args.hosts, port=args.port, timeout=180).lab
        log(f"lab: {args.hosts} hosts up in {time.perf_counter() - start:.1f} s")
        try:
            inventory = lab.inventory
            with dask_cluster(work, WORKERS) as (address, procs):
                log(f"cluster at {address}")
                for where in (None, address):  # warm-up
                    run(inventory, args.hosts, where, procs)
                runs: list[Run] = []
                for index in range(args.rounds):
                    order = (None, address) if index % 2 == 0 else (address, None)
                    for where in order:
                        one = run(inventory, args.hosts, where, procs)
                        log(
                            f"round {index + 1} {one.where}: wall {one.m.wall_s:.2f} s, client "
                            f"cpu {one.m.cpu_s:.2f} s, workers {one.workers_cpu_s:.2f} s, "
                            f"scheduler {one.scheduler_cpu_s:.2f} s, {one.ok} ok"
                        )
                        runs.append(one)
                main_, big = main_rows(runs, args.hosts, base)
                limit = work / "two.txt"
                limit.write_text("".join(f"{h.name}\n" for h in lab.hosts[:WORKERS]))
                small = [
                    run(inventory, WORKERS, where, procs, limit)
                    for _ in range(max(3, args.rounds))
                    for where in (None, address)
                ]
                fixed, fixed_s = fixed_rows(small)
                extra, model = marginal(big, small, args.hosts)
            rows = main_ + extra + fixed + projection_rows(model, fixed_s)
        finally:
            lab_down(work / "lab")
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
