"""Benchmark the analysis stage: logscan against the shell tools it replaces.

    .venv/bin/python benchmarks/analyze_bench.py [--hosts 50] [--mb-per-host 16.5]
        [--error-percent 8] [--sparse-percent 0.1] [--repeat 3] [--workers 2]
        [--skip-sparse] [--skip-dense] [--skip-models] [--skip-ssh] [--ssh-hosts 20] [--latency 50]

1. ``logscan`` over ``--hosts`` generated log files (825 MB by default, in a
   ``get`` directory layout; ``--error-percent`` of the lines are ``ERROR``
   lines, the only lines with a logscan keyword), in rounds, the order
   rotating each round: the same code in this process (``workers=0``), a pool
   of 1 and a pool of ``--workers`` processes (``AnalysisStage``, pool start-up
   included), the command ``remoteops analyze logscan DIR --json -w N`` (a new
   process, as an operator runs it), the one-liner it replaces,
   ``LC_ALL=C grep -h ERROR FILES | sed -E 's/[0-9]+/<n>/g' | sort | uniq -c |
   sort -rn``, and ``grep -c -i -w -E`` with logscan's words. Every variant must
   count the same error lines. The pool runs again with every file read in
   Python (``REMOTEOPS_NO_FAST_PATHS=1``: no grep prefilter), side by side,
   and so does one process. Targets: the pool <= 1.0x the pipeline's wall time
   (median of the per-round ratios), and >= 1.8x faster than one process. With
   the prefilter, one process already keeps two busy (GNU grep reads ahead of
   it), so the pool's scaling is shown on the same work without it.
2. Threads vs processes vs serial for the CPU-bound stage (``--skip-models``).
3. The same logs with ``--sparse-percent`` error lines: the pool and the
   command against ``LC_ALL=C grep -c ERROR`` (target: within 2x), and
   ``logscan:ERROR`` (the same literal, case-sensitive, as grep) against it.
4. SSH (I/O-bound): ``sleep 0.2; hostname`` on ``--ssh-hosts`` lab hosts with
   ``--latency`` ms added: one host at a time, the Executor's threads, one
   process per host (``--skip-ssh``).

Each round prints its times and the load average; rows give medians, the
range of the per-round ratios and the load. Data generation is not timed and
the page cache is warmed first. Numbers vary on a shared machine; the script
never asserts a time.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import random
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import Row, ensure_bytecode, print_table

from remoteops.analysis import AnalysisStage
from remoteops.analysis.model import Document
from remoteops.analysis.registry import check_spec, parse_spec
from remoteops.analysis.sources import iter_source
from remoteops.analysis.worker import Task, run_task
from remoteops.fastswitch import ENV_SWITCH

GREP_WORDS = "error|fatal|crit|panic|emerg"
# logscan with every file read in Python: no grep prefilter (REMOTEOPS_NO_FAST_PATHS=1).
NO_GREP = "no grep prefilter"

# The shell one-liner logscan replaces: error lines, numbers masked, counted, most first.
PIPELINE = "LC_ALL=C grep -h ERROR {files} | sed -E 's/[0-9]+/<n>/g' | sort | uniq -c | sort -rn"


def generate(root: Path, hosts: int, mb_per_host: float, error_percent: float) -> int:
    """``root/<host>/var/log/app.log`` per host, ``error_percent`` of the lines
    ``ERROR`` lines (the only lines with a logscan keyword). Returns bytes."""
    rng = random.Random(42)
    levels = ["INFO"] * 90 + ["DEBUG"] * 7 + ["WARN"] * 3
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
            level = "ERROR" if rng.random() * 100 < error_percent else rng.choice(levels)
            lines.append(
                f"2024-05-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:{(n * 7) % 60:02d}Z "
                f"{name} app[{rng.randrange(1, 30000)}]: {level} {msg}\n"
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


def _files(root: Path) -> list[str]:
    return sorted(str(p) for p in root.glob("*/var/log/app.log"))


def time_logscan(
    root: Path, workers: int, spec: str = "logscan", *, prefilter: bool = True
) -> tuple[float, int]:
    """``logscan`` through ``AnalysisStage`` in this process (pool start-up included);
    without ``prefilter``, every file read in Python (``REMOTEOPS_NO_FAST_PATHS=1``)."""
    if not prefilter:
        os.environ[ENV_SWITCH] = "1"  # workers inherit it: each stage starts a new forkserver
        try:
            return time_logscan(root, workers, spec)
        finally:
            del os.environ[ENV_SWITCH]
    start = time.perf_counter()
    with AnalysisStage([spec], workers=workers) as stage:
        for result, paths, _name in iter_source(root):
            stage.submit(result, paths=paths)
        report = stage.finish()
    elapsed = time.perf_counter() - start
    assert not report.errors, report.errors
    return elapsed, int(report.sections[0].data["total"])


def time_cli(root: Path, workers: int, spec: str = "logscan") -> tuple[float, int]:
    """``remoteops analyze logscan ROOT --json`` as an operator runs it: a new process."""
    command = [str(Path(sys.executable).with_name("remoteops")), "analyze", spec]
    start = time.perf_counter()
    out = subprocess.run(
        [*command, str(root), "--json", "--workers", str(workers)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    elapsed = time.perf_counter() - start
    section = json.loads(out.splitlines()[0])
    return elapsed, int(section["total"])


def time_pipeline(root: Path) -> tuple[float, int]:
    """The shell pipeline of PIPELINE over the same files: (seconds, error lines)."""
    command = PIPELINE.format(files=" ".join(shlex.quote(f) for f in _files(root)))
    start = time.perf_counter()
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout
    elapsed = time.perf_counter() - start
    return elapsed, sum(int(line.split(None, 1)[0]) for line in out.splitlines())


def time_grep_count(root: Path, *options: str, pattern: str = "ERROR") -> tuple[float, int]:
    """``LC_ALL=C grep -c [options] PATTERN`` over the same files: (seconds, lines)."""
    start = time.perf_counter()
    out = subprocess.run(
        ["grep", "-c", *options, pattern, *_files(root)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "LC_ALL": "C"},
    ).stdout
    elapsed = time.perf_counter() - start
    return elapsed, sum(int(line.rsplit(":", 1)[1]) for line in out.splitlines())


def _fmt(values: list[float]) -> str:
    return f"best {min(values):.2f}s median {statistics.median(values):.2f}s"


def _load() -> float:
    return os.getloadavg()[0]


def _rounds(
    runs: dict[str, Callable[[], tuple[float, int]]], repeat: int, title: str
) -> tuple[dict[str, list[float]], dict[str, set[int]], list[float]]:
    """Each run once per round, the order rotating; times, line counts, load per round."""
    times: dict[str, list[float]] = {label: [] for label in runs}
    counts: dict[str, set[int]] = {label: set() for label in runs}
    loads: list[float] = []
    for round_ in range(repeat):
        order = list(runs)
        order = order[round_ % len(order) :] + order[: round_ % len(order)]
        for label in order:
            elapsed, count = runs[label]()
            times[label].append(elapsed)
            counts[label].add(count)
        loads.append(_load())
        print(
            f"  {title} round {round_ + 1}: "
            + ", ".join(f"{label} {times[label][-1]:.2f}s" for label in runs)
            + f" (load average {loads[-1]:.1f})",
            flush=True,
        )
    return times, counts, loads


def _ratio_row(
    label: str, ours: list[float], theirs: list[float], loads: list[float], target: str
) -> Row:
    ratios = [o / t for o, t in zip(ours, theirs, strict=True)]
    return (
        label,
        f"{statistics.median(ours):.2f}s vs {statistics.median(theirs):.2f}s: median "
        f"{statistics.median(ratios):.2f}x (rounds {min(ratios):.2f}-{max(ratios):.2f}x), "
        f"load {min(loads):.1f}-{max(loads):.1f}",
        target,
    )


def bench_logscan(
    root: Path, nbytes: int, repeat: int, workers: int, error_percent: float
) -> list[Row]:
    pool = f"pool of {workers}"
    runs: dict[str, Callable[[], tuple[float, int]]] = {
        "one process": lambda: time_logscan(root, 0),
        "pool of 1": lambda: time_logscan(root, 1),
        pool: lambda: time_logscan(root, workers),
        NO_GREP: lambda: time_logscan(root, workers, prefilter=False),
        f"one process, {NO_GREP}": lambda: time_logscan(root, 0, prefilter=False),
        "command": lambda: time_cli(root, workers),
        "pipeline": lambda: time_pipeline(root),
        "grep -c -i -w -E": lambda: time_grep_count(root, "-i", "-w", "-E", pattern=GREP_WORDS),
    }
    times, counts, loads = _rounds(runs, repeat, f"logscan {error_percent:g}%")
    lines = set().union(*counts.values())
    assert len(lines) == 1, counts  # every variant found the same error lines
    mb = nbytes / 1e6
    serial = times["one process"]
    pooled = times[pool]
    ratios = [s / p for s, p in zip(serial, pooled, strict=True)]
    rows: list[Row] = [
        (f"logscan, {label}", f"{_fmt(times[label])} ({mb / min(times[label]):.0f} MB/s best)", "")
        for label in ("one process", "pool of 1", pool)
    ]
    rows.append(
        (
            f"speed-up, {pool} vs one process",
            f"best {max(ratios):.2f}x median {statistics.median(ratios):.2f}x "
            f"(best times: {min(serial) / min(pooled):.2f}x)",
            ">= 1.8x",
        )
    )
    single = times["pool of 1"]
    doubled = [s / p for s, p in zip(single, pooled, strict=True)]
    rows.append(
        (
            f"speed-up, {pool} vs pool of 1 (1 to 2 processes, both paying the pool)",
            f"best {max(doubled):.2f}x median {statistics.median(doubled):.2f}x "
            f"(rounds {min(doubled):.2f}-{max(doubled):.2f}x)",
            ">= 1.8x",
        )
    )
    # With the prefilter, "one process" is already two: GNU grep reads ahead of it. The
    # pool's own scaling shows on the same work without the prefilter.
    alone, spread = times[f"one process, {NO_GREP}"], times[NO_GREP]
    plain = [s / p for s, p in zip(alone, spread, strict=True)]
    rows.append(
        (
            f"speed-up without the grep prefilter, {pool} vs one process",
            f"best {max(plain):.2f}x median {statistics.median(plain):.2f}x "
            f"({statistics.median(alone):.2f}s vs {statistics.median(spread):.2f}s)",
            ">= 1.8x",
        )
    )
    what = f"{mb:.0f} MB, {error_percent:g}% error lines ({lines.pop()})"
    rows.append(_ratio_row(f"logscan ({pool}) / {NO_GREP}", pooled, times[NO_GREP], loads, ""))
    rows.append(
        _ratio_row(
            f"logscan ({pool}) / grep|sed|sort|uniq -c, {what}",
            pooled,
            times["pipeline"],
            loads,
            "<= 1.0x",
        )
    )
    rows.append(
        _ratio_row(
            f"remoteops analyze logscan -w {workers} / grep|sed|sort|uniq -c",
            times["command"],
            times["pipeline"],
            loads,
            "<= 1.0x",
        )
    )
    rows.append(
        (
            "grep -c -i -w -E (one process)",
            f"{_fmt(times['grep -c -i -w -E'])} ({mb / min(times['grep -c -i -w -E']):.0f} MB/s)",
            "reference",
        )
    )
    return rows


def bench_sparse(root: Path, nbytes: int, repeat: int, workers: int, percent: float) -> list[Row]:
    """logscan over logs with few error lines, against ``grep -c``."""
    pool = f"pool of {workers}"
    runs: dict[str, Callable[[], tuple[float, int]]] = {
        pool: lambda: time_logscan(root, workers),
        NO_GREP: lambda: time_logscan(root, workers, prefilter=False),
        "command": lambda: time_cli(root, workers),
        "logscan:ERROR": lambda: time_logscan(root, workers, "logscan:ERROR"),
        "command logscan:ERROR": lambda: time_cli(root, workers, "logscan:ERROR"),
        "grep -c": lambda: time_grep_count(root),
        "grep -c -i -w -E": lambda: time_grep_count(root, "-i", "-w", "-E", pattern=GREP_WORDS),
    }
    times, counts, loads = _rounds(runs, repeat, f"logscan {percent:g}%")
    lines = set().union(*counts.values())
    assert len(lines) == 1, counts
    what = f"{nbytes / 1e6:.0f} MB, {percent:g}% error lines ({lines.pop()})"
    return [
        _ratio_row(f"logscan ({pool}) / {NO_GREP}", times[pool], times[NO_GREP], loads, ""),
        _ratio_row(
            f"logscan ({pool}) / LC_ALL=C grep -c ERROR, {what}",
            times[pool],
            times["grep -c"],
            loads,
            "<= 2x",
        ),
        _ratio_row(
            f"remoteops analyze logscan -w {workers} / grep -c",
            times["command"],
            times["grep -c"],
            loads,
            "<= 2x",
        ),
        _ratio_row(
            f"logscan ({pool}) / grep -c -i -w -E (the same words)",
            times[pool],
            times["grep -c -i -w -E"],
            loads,
            "<= 2x",
        ),
        _ratio_row(
            f"logscan:ERROR ({pool}) / grep -c ERROR (the same literal)",
            times["logscan:ERROR"],
            times["grep -c"],
            loads,
            "<= 2x",
        ),
        _ratio_row(
            f"remoteops analyze logscan:ERROR -w {workers} / grep -c",
            times["command logscan:ERROR"],
            times["grep -c"],
            loads,
            "<= 2x",
        ),
    ]


def _tasks(root: Path, hosts: int) -> list[Task]:
    spec = parse_spec("logscan")
    config = check_spec(spec)
    tasks = []
    for result, paths, _name in list(iter_source(root))[:hosts]:
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
    parser.add_argument("--mb-per-host", type=float, default=16.5)
    parser.add_argument("--error-percent", type=float, default=8.0)
    parser.add_argument("--sparse-percent", type=float, default=0.1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-sparse", action="store_true")
    parser.add_argument("--skip-dense", action="store_true")
    parser.add_argument("--skip-models", action="store_true")
    parser.add_argument("--skip-ssh", action="store_true")
    parser.add_argument("--ssh-hosts", type=int, default=20)
    parser.add_argument("--latency", type=int, default=50)
    args = parser.parse_args()
    ensure_bytecode()
    root = Path(tempfile.mkdtemp(prefix="analyze-bench-"))
    rows: list[Row] = []
    try:
        dense, sparse = root / "dense", root / "sparse"
        print(f"generating {args.hosts} x {args.mb_per_host} MB of logs in {root} ...", flush=True)
        print(f"CPUs: {len(os.sched_getaffinity(0))}", flush=True)
        if not args.skip_dense:
            nbytes = generate(dense, args.hosts, args.mb_per_host, args.error_percent)
            time_grep_count(dense)  # warm the page cache: every variant reads from memory
            print(f"{nbytes / 1e9:.2f} GB", flush=True)
            rows += bench_logscan(dense, nbytes, args.repeat, args.workers, args.error_percent)
            if not args.skip_models:
                rows += bench_cpu_models(dense, args.workers)
            shutil.rmtree(dense)
        if not args.skip_sparse:
            nbytes = generate(sparse, args.hosts, args.mb_per_host, args.sparse_percent)
            time_grep_count(sparse)
            rows += bench_sparse(sparse, nbytes, args.repeat, args.workers, args.sparse_percent)
        if not args.skip_ssh:
            rows += bench_ssh_models(args.ssh_hosts, args.latency)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print()
    print_table(rows)


if __name__ == "__main__":
    main()
