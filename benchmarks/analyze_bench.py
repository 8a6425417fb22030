"""Benchmark the analysis stage: processes for CPU-bound analysis, threads for SSH.

    .venv/bin/python benchmarks/analyze_bench.py [--hosts 50] [--mb-per-host 21]
        [--repeat 3] [--workers 2] [--skip-ssh] [--ssh-hosts 20] [--latency 50]

1. ``logscan`` over ``--hosts`` generated log files (about 1 GB in all, in a
   ``get`` directory layout), timed with the same code three ways, interleaved:
   in this process (``workers=0``: the analyzer in one process, no pool), a pool
   of 1 process, and a pool of ``--workers`` processes. Big files are split
   into 16 MiB byte ranges, so both CPUs share each file. Also ``grep -c -i -E``
   with the same words over the same files, for throughput. Target: the pool
   of 2 >= 1.8x faster than one process (best and median of ``--repeat``).
2. Threads vs processes vs serial, for each stage:
   * analysis (CPU-bound): the same ``logscan`` tasks over 25 of the hosts, run
     one after another, in a ThreadPoolExecutor(2), and in the forkserver pool
     of 2; threads cannot run Python code in parallel (the GIL);
   * SSH (I/O-bound): ``sleep 0.2; hostname`` on ``--ssh-hosts`` lab hosts with
     ``--latency`` ms added, one host at a time (forks=1), in the Executor's
     thread pool (forks=all), and with one process per host (each child
     imports remoteops, loads the keys and connects): time is spent waiting,
     threads wait in parallel for nearly nothing, processes pay start-up.

Data generation is not timed. Numbers vary on a shared machine; the script
prints best and median and never asserts.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import Row, print_table

from remoteops.analysis import AnalysisStage
from remoteops.analysis.model import Document
from remoteops.analysis.registry import check_spec, parse_spec
from remoteops.analysis.sources import iter_source
from remoteops.analysis.worker import Task, run_task

GREP_WORDS = "error|fatal|crit|panic|emerg"


def generate(root: Path, hosts: int, mb_per_host: float) -> int:
    """``root/<host>/var/log/app.log`` per host; about 2% error lines. Returns bytes."""
    rng = random.Random(42)
    levels = ["INFO"] * 90 + ["DEBUG"] * 6 + ["WARN"] * 2 + ["ERROR"] * 1 + ["FATAL"] * 1
    messages = [
        "connection from 10.0.{a}.{b} port {n} closed",
        "request id={h} took {n} ms",
        "user {n} logged in from 192.168.{a}.{b}",
        "disk /dev/sd{c} at {a}% used",
        "cache miss for key session:{h}",
        "worker {a} restarted after {n} s",
    ]
    total = 0
    for index in range(hosts):
        name = f"web{index + 1:02d}"
        lines = []
        for n in range(20000):
            msg = rng.choice(messages).format(
                a=rng.randrange(256),
                b=rng.randrange(256),
                n=rng.randrange(100000),
                h=f"{rng.getrandbits(48):012x}",
                c="abcd"[n % 4],
            )
            lines.append(
                f"2024-05-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:{(n * 7) % 60:02d}Z "
                f"{name} app[{rng.randrange(1, 30000)}]: {rng.choice(levels)} {msg}\n"
            )
        block = "".join(lines).encode()
        repeat = max(1, round(mb_per_host * 1e6 / len(block)))
        path = root / name / "var" / "log" / "app.log"
        path.parent.mkdir(parents=True)
        with open(path, "wb") as fh:
            for _ in range(repeat):
                fh.write(block)
        total += len(block) * repeat
    return total


def time_logscan(root: Path, workers: int) -> tuple[float, int]:
    start = time.perf_counter()
    with AnalysisStage(["logscan"], workers=workers) as stage:
        for result, paths in iter_source(root):
            stage.submit(result, paths=paths)
        report = stage.finish()
    elapsed = time.perf_counter() - start
    assert not report.errors, report.errors
    return elapsed, int(report.sections[0].data["total"])


def time_grep(root: Path) -> tuple[float, int]:
    files = sorted(str(p) for p in root.glob("*/var/log/app.log"))
    start = time.perf_counter()
    out = subprocess.run(
        ["grep", "-c", "-i", "-w", "-E", GREP_WORDS, *files],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    elapsed = time.perf_counter() - start
    return elapsed, sum(int(line.rsplit(":", 1)[1]) for line in out.splitlines())


def _fmt(values: list[float]) -> str:
    return f"best {min(values):.2f}s median {statistics.median(values):.2f}s"


def bench_logscan(root: Path, nbytes: int, repeat: int, workers: int) -> list[Row]:
    times: dict[str, list[float]] = {"one process": [], "pool of 1": [], f"pool of {workers}": []}
    grep_times: list[float] = []
    counts = set()
    for round_ in range(repeat):
        order = list(times)
        order = order[round_ % len(order) :] + order[: round_ % len(order)]
        for label in order:
            n = 0 if label == "one process" else int(label.rsplit(" ", 1)[1])
            elapsed, count = time_logscan(root, n)
            times[label].append(elapsed)
            counts.add(count)
            print(
                f"  round {round_ + 1}: logscan {label}: {elapsed:.2f}s "
                f"(load average {os.getloadavg()[0]:.1f})",
                flush=True,
            )
        elapsed, grep_count = time_grep(root)
        grep_times.append(elapsed)
    assert len(counts) == 1, counts
    mb = nbytes / 1e6
    serial = times["one process"]
    pooled = times[f"pool of {workers}"]
    ratios = [s / p for s, p in zip(serial, pooled, strict=True)]
    rows: list[Row] = []
    for label, values in times.items():
        rows.append(
            (
                f"logscan, {label}",
                f"{_fmt(values)} ({mb / min(values):.0f} MB/s best)",
                "",
            )
        )
    rows.append(
        (
            f"speed-up, pool of {workers} vs one process",
            f"best {max(ratios):.2f}x median {statistics.median(ratios):.2f}x "
            f"(best times: {min(serial) / min(pooled):.2f}x)",
            ">= 1.8x",
        )
    )
    rows.append(
        (
            "grep -c -i -w -E (one process)",
            f"{_fmt(grep_times)} ({mb / min(grep_times):.0f} MB/s best); "
            f"{grep_count} lines vs logscan {counts.pop()}",
            "reference",
        )
    )
    return rows


def _tasks(root: Path, hosts: int) -> list[Task]:
    spec = parse_spec("logscan")
    config = check_spec(spec)
    tasks = []
    for result, paths in list(iter_source(root))[:hosts]:
        for name, path in (paths or {}).items():
            size = path.stat().st_size
            chunk = 16 * 1024 * 1024
            for start in range(0, size, chunk):
                doc = Document(result.host, name, path=str(path), start=start, end=start + chunk)
                tasks.append(Task(doc, ((0, "logscan", config),)))
    return tasks


def bench_cpu_models(root: Path, workers: int) -> list[Row]:
    tasks = _tasks(root, 25)
    results: dict[str, float] = {}
    start = time.perf_counter()
    for task in tasks:
        run_task(task)
    results["serial"] = time.perf_counter() - start
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(run_task, tasks))
    results[f"threads ({workers})"] = time.perf_counter() - start
    ctx = multiprocessing.get_context("forkserver")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as ppool:
        # Start the workers first: this compares running the work, as the thread
        # pool (whose start costs nothing) does; section 1 includes pool start-up.
        warm = Task(Document("warm-up", "x", data=b"x\n"), tasks[0].items)
        list(ppool.map(run_task, [warm] * workers * 4))
        start = time.perf_counter()
        list(ppool.map(run_task, tasks))
        results[f"processes ({workers}, started)"] = time.perf_counter() - start
    base = results["serial"]
    return [
        (f"analysis (CPU-bound), {k}", f"{v:.2f}s ({base / v:.2f}x serial)", "")
        for k, v in results.items()
    ]


_SSH_CHILD = """
import sys, remoteops
from remoteops.execution import CommandSpec, Executor
inv = remoteops.load_inventory([sys.argv[1]])
targets = remoteops.resolve_targets(inv, [sys.argv[2]])
for r in Executor(targets).run_command(CommandSpec(command="sleep 0.2; hostname")):
    assert r.status == "ok", r
"""


def bench_ssh_models(hosts: int, latency: int) -> list[Row]:
    import remoteops
    from remoteops.execution import CommandSpec, Executor, Limits
    from remoteops.lab import lab_down, lab_up

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    lab_dir = Path(tempfile.mkdtemp(prefix="analyze-bench-lab-"))
    try:
        lab = lab_up(lab_dir, hosts=hosts, port=port, latency_ms=latency).lab
        inv = remoteops.load_inventory([str(lab.inventory)])
        names = [h.name for h in inv.select("all")]
        targets = remoteops.resolve_targets(inv, names)
        spec = CommandSpec(command="sleep 0.2; hostname")
        results: dict[str, float] = {}
        for label, forks in (("serial (forks=1)", 1), (f"threads (forks={hosts})", hosts)):
            start = time.perf_counter()
            ok = sum(
                r.is_ok
                for r in Executor(targets, limits=Limits(max_workers=forks)).run_command(spec)
            )
            results[label] = time.perf_counter() - start
            assert ok == hosts, ok
        start = time.perf_counter()
        procs = [
            subprocess.Popen([sys.executable, "-c", _SSH_CHILD, str(lab.inventory), name])
            for name in names
        ]
        assert all(p.wait(timeout=300) == 0 for p in procs)
        results[f"processes ({hosts}, one per host)"] = time.perf_counter() - start
    finally:
        lab_down(lab_dir)
        shutil.rmtree(lab_dir, ignore_errors=True)
    base = results["serial (forks=1)"]
    return [
        (f"SSH (I/O-bound), {k}", f"{v:.2f}s ({base / v:.2f}x serial)", "")
        for k, v in results.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--mb-per-host", type=float, default=21.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-ssh", action="store_true")
    parser.add_argument("--ssh-hosts", type=int, default=20)
    parser.add_argument("--latency", type=int, default=50)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="analyze-bench-"))
    rows: list[Row] = []
    try:
        print(f"generating {args.hosts} x {args.mb_per_host} MB of logs in {root} ...", flush=True)
        nbytes = generate(root, args.hosts, args.mb_per_host)
        time_grep(root)  # warm the page cache: every variant reads from memory
        print(f"{nbytes / 1e9:.2f} GB; CPUs: {len(os.sched_getaffinity(0))}", flush=True)
        rows += bench_logscan(root, nbytes, args.repeat, args.workers)
        rows += bench_cpu_models(root, args.workers)
        if not args.skip_ssh:
            rows += bench_ssh_models(args.ssh_hosts, args.latency)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print()
    print_table(rows)


if __name__ == "__main__":
    main()
