"""Benchmark `remoteops put`/`get` against OpenSSH's sftp, scp and tar over ssh on the lab.

    sudo .venv/bin/python benchmarks/transfer_bench.py [--repeat 3]
        [--skip-big] [--skip-small] [--skip-fanout] [--strace] [--port 2801]

Every case runs remoteops and OpenSSH's tools as a user runs them (default
settings, the lab's ``ssh_config``), in the same run, interleaved (the order
rotates every round), ``--repeat`` times; the table shows medians. Every run
really transfers: destination copies are removed before it and their sizes are
checked after it (through ``lab.host_path``: each lab host's private /tmp).

1. big: one 1 GiB file of random data (made once under /var/tmp) up and down
   one host (``web01``): ``remoteops put web01 -i INV FILE /tmp/x`` and
   ``remoteops get web01 -i INV /tmp/x DIR`` vs ``sftp -q -F CFG -b BATCH web01``
   (``put``/``get``) and ``scp -q -F CFG`` both ways. Throughput in MB/s
   (10^6 bytes); ratios remoteops/sftp and remoteops/scp of throughput.
   Targets: >= 0.8x sftp, >= 1.0x scp. (OpenSSH 9's scp speaks SFTP too.)
2. small: 2,000 files of 4 KiB (20 dirs x 100) to 20 hosts:
   ``remoteops put all -i INV SRC /tmp/`` vs ``xargs -P 20 scp -q -r`` and, as a
   reference, ``tar c | ssh HOST tar x`` (``xargs -P 20``; first round only, to
   keep the default run under ~6 minutes). Target: wall
   remoteops/scp-r <= 0.5x. A second, unchanged remoteops put is timed too (it
   must send no file).
3. fanout: 100 MiB to 50 hosts: ``remoteops put all -i INV FILE /tmp/`` vs
   ``xargs -P 50 scp -q``. The source must be read once, not 50 times: the
   remoteops process's ``rchar`` (bytes passed to read(2), /proc/PID/io, read
   after it exits but before it is reaped, so nothing is missed) minus the
   ``rchar`` of the same put of a 1-byte file (start-up, imports, inventory,
   keys), divided by the file size (target ~1x); with ``--strace``, also the
   number of ``openat`` calls on the source file in one untimed run under
   ``strace -f`` (slow: about 5 minutes with 50 hosts, so not by default).

Wall time and client CPU (user+sys of the child and all it waited for, from
``os.wait4``) are taken per run; for the big case also server CPU: the lab
host's sshd (and every process it starts for the connection: sftp-server,
``cat``) is moved into a cpuacct cgroup of its own, read before and after each
run. The big case prints the best and the median of each tool, and the ratios
of both; the machine is shared, so look at CPU seconds as well as wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import Row, ensure_bytecode, print_table

VENV_BIN = Path(sys.executable).parent
REMOTEOPS = str(VENV_BIN / "remoteops")
RUN_TIMEOUT = 600.0
DATA_ROOT = Path("/var/tmp")  # big random files: disk, not tmpfs
GIB = 1024**3
MIB = 1024**2
MB = 1e6


def log(message: str) -> None:
    print(f"[transfer_bench] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- measuring


@dataclass(slots=True)
class Measurement:
    """One child process: wall, CPU of it and its waited-for descendants, peak RSS, /proc io."""

    wall_s: float
    cpu_s: float
    maxrss_kb: int
    returncode: int
    stdout: bytes
    stderr: bytes
    io: dict[str, int] = field(default_factory=dict)

    @property
    def rchar(self) -> int:
        """Bytes the process passed to read(2) and friends (/proc/PID/io)."""
        return self.io.get("rchar", 0)


def measure(
    argv: Sequence[str], *, stdin: bytes | None = None, timeout: float = RUN_TIMEOUT
) -> Measurement:
    """Run ``argv``; rusage from ``os.wait4``, and ``/proc/PID/io`` read while it is a zombie.

    ``waitid(WNOWAIT)`` waits for the exit without reaping, so the process's
    final I/O counters (all its threads, and children it reaped) can still be
    read; then ``wait4`` reaps it. Output goes to temporary files, not pipes.
    """
    with (
        tempfile.TemporaryFile() as fin,
        tempfile.TemporaryFile() as fout,
        tempfile.TemporaryFile() as ferr,
    ):
        if stdin is not None:
            fin.write(stdin)
            fin.seek(0)
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), stdin=fin, stdout=fout, stderr=ferr, start_new_session=True
        )

        def kill() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            wall = time.perf_counter() - start
            io: dict[str, int] = {}
            with contextlib.suppress(OSError, ValueError):
                for line in Path(f"/proc/{proc.pid}/io").read_text().splitlines():
                    key, _, value = line.partition(":")
                    io[key.strip()] = int(value)
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        fout.seek(0)
        ferr.seek(0)
        return Measurement(
            wall_s=wall,
            cpu_s=usage.ru_utime + usage.ru_stime,
            maxrss_kb=usage.ru_maxrss,
            returncode=proc.returncode,
            stdout=fout.read(),
            stderr=ferr.read(),
            io=io,
        )


@dataclass(slots=True)
class Series:
    """The good runs of one tool in one case, and what went wrong in the others."""

    runs: list[Measurement] = field(default_factory=list)

    def median(self, attr: str = "wall_s") -> float:
        if not self.runs:
            return float("nan")
        return statistics.median(float(getattr(m, attr)) for m in self.runs)


ANOMALIES: list[str] = []


def record(series: Series, label: str, m: Measurement, problem: str | None) -> None:
    """Keep a good run; note a bad one (it is left out of the medians)."""
    if problem is None:
        series.runs.append(m)
        return
    note = f"{label}: {problem}; stderr: {m.stderr.decode(errors='replace').strip()[-300:]}"
    ANOMALIES.append(note)
    log(f"ANOMALY {note}")


def rotated(tools: Sequence[str], round_no: int) -> list[str]:
    k = round_no % len(tools)
    return [*tools[k:], *tools[:k]]


def make_random_file(path: Path, size: int) -> None:
    chunk = 16 * MIB
    with path.open("wb") as fh:
        left = size
        while left:
            n = min(chunk, left)
            fh.write(os.urandom(n))
            left -= n


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def size_problem(paths: Sequence[Path], size: int) -> str | None:
    bad = []
    for p in paths:
        try:
            got = p.stat().st_size
        except FileNotFoundError:
            got = -1
        if got != size:
            bad.append(f"{p}: {got if got >= 0 else 'missing'}")
    if bad:
        return f"{len(bad)} wrong size (want {size}): {'; '.join(bad[:3])}"
    return None


def host_records(m: Measurement) -> list[dict[str, Any]]:
    out = []
    for line in m.stdout.decode(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record_ = json.loads(line)
            if isinstance(record_, dict) and record_.get("type") == "host":
                out.append(record_)
    return out


def remoteops_problem(m: Measurement, hosts: int, *, files: int | None = None) -> str | None:
    """None if rc is 0 and every host is ok (and sent ``files`` files, when given)."""
    records = host_records(m)
    bad = [
        f"{r.get('host')}: {r.get('status')} files={r.get('files')} {r.get('error') or ''}"
        for r in records
        if r.get("status") != "ok" or (files is not None and r.get("files") != files)
    ]
    if m.returncode != 0 or bad or len(records) != hosts:
        return (
            f"rc={m.returncode}, {len(records)}/{hosts} hosts reported, bad: {'; '.join(bad[:3])}"
        )
    return None


def rc_problem(m: Measurement) -> str | None:
    return None if m.returncode == 0 else f"rc={m.returncode}"


def ro(*args: str) -> list[str]:
    return [REMOTEOPS, "--no-log-file", *args, "--json"]


class ServerCpu:
    """CPU seconds used by one process tree (a lab sshd and its children), via a cgroup.

    cgroup v1 ``cpuacct`` or cgroup v2 ``cpu.stat``; ``read()`` is None where
    neither can be used (then the tables say n/a).
    """

    def __init__(self, pid: int) -> None:
        self._usage: Path | None = None
        self._dir: Path | None = None
        self._parent: Path | None = None
        self._pid = pid
        name = f"remoteops-bench-{os.getpid()}"
        v1 = Path("/sys/fs/cgroup/cpuacct")
        v2 = next(
            (p for p in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))
             if (p / "cgroup.controllers").exists()),
            None,
        )  # fmt: skip
        candidates = []
        if (v1 / "cpuacct.usage").exists():
            candidates.append((v1, "cpuacct.usage"))
        if v2 is not None:
            candidates.append((v2, "cpu.stat"))
        for parent, usage in candidates:
            try:
                group = parent / name
                group.mkdir(exist_ok=True)
                (group / "cgroup.procs").write_text(f"{pid}\n")
            except OSError as exc:
                log(f"server CPU: cannot use {parent} ({exc})")
                with contextlib.suppress(OSError):
                    (parent / name).rmdir()
                continue
            self._dir, self._parent, self._usage = group, parent, group / usage
            break

    def read(self) -> float | None:
        """Seconds of CPU used so far, or None."""
        if self._usage is None:
            return None
        try:
            text = self._usage.read_text()
        except OSError:
            return None
        if self._usage.name == "cpuacct.usage":
            return int(text) / 1e9
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) / 1e6
        return None

    def close(self) -> None:
        """Move what is left back to the parent group and remove ours."""
        if self._dir is None or self._parent is None:
            return
        with contextlib.suppress(OSError):
            for pid in (self._dir / "cgroup.procs").read_text().split():
                with contextlib.suppress(OSError):
                    (self._parent / "cgroup.procs").write_text(f"{pid}\n")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                self._dir.rmdir()
                return
            except OSError:
                time.sleep(0.1)
        log(f"server CPU: could not remove {self._dir}")


def measure_with_server(argv: Sequence[str], server: ServerCpu) -> tuple[Measurement, float | None]:
    """``measure`` plus the server CPU seconds used meanwhile (None if unknown)."""
    before = server.read()
    m = measure(argv)
    time.sleep(0.05)  # let sshd's connection process finish and be accounted
    after = server.read()
    return m, (after - before) if before is not None and after is not None else None


# --------------------------------------------------------------------------- 1. big file


def big_rows(work: Path, data: Path, port: int, repeat: int) -> list[Row]:
    from remoteops.lab import lab_down, lab_up

    size = GIB
    src = data / "big-1g.bin"
    log("big: writing 1 GiB of random data")
    make_random_file(src, size)
    lab_dir = work / "lab-big"
    lab = lab_up(lab_dir, hosts=1, port=port).lab
    host = lab.hosts[0].name
    inv, cfg = str(lab.inventory), str(lab.ssh_config)
    remote = "/tmp/ro-bench-big.bin"  # the lab host's private /tmp
    remote_local = lab.host_path(host, remote)
    down = work / "big-down"
    down.mkdir()
    down_file = down / "big.bin"
    ro_down_file = down / host / remote.lstrip("/")
    batch_put, batch_get = work / "put.batch", work / "get.batch"
    batch_put.write_text(f"put {src} {remote}\n")
    batch_get.write_text(f"get {remote} {down_file}\n")
    up_cmd: dict[str, list[str]] = {
        "remoteops": ro("put", host, "-i", inv, str(src), remote),
        "sftp": ["sftp", "-q", "-F", cfg, "-b", str(batch_put), host],
        "scp": ["scp", "-q", "-F", cfg, str(src), f"{host}:{remote}"],
    }
    down_cmd: dict[str, list[str]] = {
        "remoteops": ro("get", host, "-i", inv, remote, str(down)),
        "sftp": ["sftp", "-q", "-F", cfg, "-b", str(batch_get), host],
        "scp": ["scp", "-q", "-F", cfg, f"{host}:{remote}", str(down_file)],
    }
    tools = ("remoteops", "sftp", "scp")
    up = {t: Series() for t in tools}
    dn = {t: Series() for t in tools}
    server_s: dict[tuple[str, str], list[float]] = {}
    server = ServerCpu(lab.hosts[0].pid)

    def note_server(direction: str, tool: str, seconds: float | None) -> str:
        if seconds is None:
            return ""
        server_s.setdefault((direction, tool), []).append(seconds)
        return f", server CPU {seconds:.2f} s"

    try:
        for r in range(repeat):
            for tool in rotated(tools, r):
                remove(remote_local)
                m, cpu = measure_with_server(up_cmd[tool], server)
                problem = (
                    remoteops_problem(m, 1, files=1) if tool == "remoteops" else rc_problem(m)
                ) or size_problem([remote_local], size)
                record(up[tool], f"big put {tool} #{r + 1}", m, problem)
                extra = note_server("up", tool, cpu) if problem is None else ""
                log(
                    f"big #{r + 1} {tool} up: {m.wall_s:.2f} s ({size / m.wall_s / MB:.0f} MB/s), "
                    f"client CPU {m.cpu_s:.2f} s{extra}"
                )
                if not remote_local.exists():
                    shutil.copyfile(src, remote_local)  # so the download still has a source
                remove(down / host)
                remove(down_file)
                m, cpu = measure_with_server(down_cmd[tool], server)
                local = ro_down_file if tool == "remoteops" else down_file
                problem = (
                    remoteops_problem(m, 1, files=1) if tool == "remoteops" else rc_problem(m)
                ) or size_problem([local], size)
                record(dn[tool], f"big get {tool} #{r + 1}", m, problem)
                extra = note_server("down", tool, cpu) if problem is None else ""
                log(
                    f"big #{r + 1} {tool} down: {m.wall_s:.2f} s "
                    f"({size / m.wall_s / MB:.0f} MB/s), client CPU {m.cpu_s:.2f} s{extra}"
                )
                remove(down / host)
                remove(down_file)
                remove(remote_local)
    finally:
        server.close()
        lab_down(lab_dir)
        remove(src)

    def mbps(s: Series, how: str) -> float:
        if not s.runs:
            return float("nan")
        walls = [m.wall_s for m in s.runs]
        wall = min(walls) if how == "best" else statistics.median(walls)
        return size / wall / MB

    def server_median(direction: str, tool: str) -> str:
        values = server_s.get((direction, tool))
        return f"{statistics.median(values):.2f}" if values else "n/a"

    rows: list[Row] = []
    for label, direction, series in (("put (up)", "up", up), ("get (down)", "down", dn)):
        med = {t: mbps(series[t], "median") for t in tools}
        best = {t: mbps(series[t], "best") for t in tools}
        runs = min(len(series[t].runs) for t in tools)
        rows += [
            (
                f"1 GiB {label} 1 host, {runs} runs: MB/s median remoteops / sftp / scp",
                " / ".join(f"{med[t]:.0f}" for t in tools),
                "-",
            ),
            (
                "  MB/s best remoteops / sftp / scp",
                " / ".join(f"{best[t]:.0f}" for t in tools),
                "-",
            ),
            (
                "  client CPU s (median) remoteops / sftp / scp",
                " / ".join(f"{series[t].median('cpu_s'):.2f}" for t in tools),
                "-",
            ),
            (
                "  server CPU s (median) remoteops / sftp / scp",
                " / ".join(server_median(direction, t) for t in tools),
                "-",
            ),
            (
                "  throughput ratio remoteops / sftp: median (best)",
                f"{med['remoteops'] / med['sftp']:.2f}x ({best['remoteops'] / best['sftp']:.2f}x)",
                ">= 0.8x",
            ),
            (
                "  throughput ratio remoteops / scp: median (best)",
                f"{med['remoteops'] / med['scp']:.2f}x ({best['remoteops'] / best['scp']:.2f}x)",
                ">= 1.0x",
            ),
        ]
    return rows


# --------------------------------------------------------------------------- 2. small files


def small_rows(work: Path, port: int, repeat: int, *, with_scp: bool) -> list[Row]:
    """2,000 x 4 KiB to 20 hosts and back, and an unchanged put, each round side by side."""
    from remoteops.lab import lab_down, lab_up

    n_hosts, n_dirs, per_dir, fsize = 20, 20, 100, 4096
    parent = work / "small"
    src = parent / "ro-small"
    for d in range(n_dirs):
        (src / f"d{d:02d}").mkdir(parents=True)
        for f in range(per_dir):
            (src / f"d{d:02d}" / f"f{f:03d}").write_bytes(os.urandom(fsize))
    n_files = n_dirs * per_dir
    lab_dir = work / "lab-small"
    lab = lab_up(lab_dir, hosts=n_hosts, port=port).lab
    names = [h.name for h in lab.hosts]
    inv, cfg = str(lab.inventory), str(lab.ssh_config)
    stdin = "".join(n + "\n" for n in names).encode()
    dests = [lab.host_path(n, "/tmp/ro-small") for n in names]
    down = work / "down"
    put_cmds: dict[str, list[str]] = {
        "remoteops": ro("put", "all", "-i", inv, str(src), "/tmp/"),
        "tar|ssh": [
            "xargs", "-P", str(n_hosts), "-I{}", "sh", "-c",
            'tar c -C "$1" ro-small | ssh -F "$2" "$3" tar x -C /tmp',
            "sh", str(parent), cfg, "{}",
        ],
    }  # fmt: skip
    if with_scp:
        put_cmds["scp -r"] = [
            "xargs", "-P", str(n_hosts), "-I{}", "scp", "-q", "-r", "-F", cfg, str(src), "{}:/tmp/",
        ]  # fmt: skip
    get_cmds: dict[str, list[str]] = {
        "remoteops": ro("get", "all", "-i", inv, "/tmp/ro-small", str(down / "remoteops")),
        "ssh tar|tar": [
            "xargs", "-P", str(n_hosts), "-I{}", "sh", "-c",
            'mkdir -p "$1/$3" && ssh -F "$2" "$3" tar c -C /tmp ro-small | tar x -C "$1/$3"',
            "sh", str(down / "tar"), cfg, "{}",
        ],
    }  # fmt: skip
    fetched = {
        "remoteops": [down / "remoteops" / n / "tmp" / "ro-small" for n in names],
        "ssh tar|tar": [down / "tar" / n / "ro-small" for n in names],
    }

    def clean() -> None:
        for d in dests:
            remove(d)

    def check(trees: Sequence[Path]) -> str | None:
        bad = []
        for d in trees:
            count = 0
            for _root, _dirs, files in os.walk(d):
                count += sum(1 for f in files if os.path.getsize(os.path.join(_root, f)) == fsize)
            if count != n_files:
                bad.append(f"{d}: {count} files of {fsize} B")
        return f"{len(bad)} trees incomplete: {'; '.join(bad[:3])}" if bad else None

    puts = {t: Series() for t in put_cmds}
    gets = {t: Series() for t in get_cmds}
    again = Series()
    ratios: dict[str, list[float]] = {"put": [], "get": []}
    loads: list[float] = []
    try:
        for r in range(repeat):
            walls: dict[str, float] = {}
            for tool in rotated(tuple(put_cmds), r):
                clean()
                m = measure(put_cmds[tool], stdin=stdin)
                problem = (
                    remoteops_problem(m, n_hosts, files=n_files)
                    if tool == "remoteops"
                    else rc_problem(m)
                ) or check(dests)
                record(puts[tool], f"small put {tool} #{r + 1}", m, problem)
                walls[f"put {tool}"] = m.wall_s if problem is None else float("nan")
            # Every host now has a complete copy (tar x keeps mtimes too): nothing to send.
            m = measure(put_cmds["remoteops"])
            problem = remoteops_problem(m, n_hosts, files=0) or check(dests)
            record(again, f"small put unchanged #{r + 1}", m, problem)
            walls["unchanged"] = m.wall_s if problem is None else float("nan")
            for tool in rotated(tuple(get_cmds), r):
                remove(down)
                m = measure(get_cmds[tool], stdin=stdin)
                problem = (
                    remoteops_problem(m, n_hosts, files=n_files)
                    if tool == "remoteops"
                    else rc_problem(m)
                ) or check(fetched[tool])
                record(gets[tool], f"small get {tool} #{r + 1}", m, problem)
                walls[f"get {tool}"] = m.wall_s if problem is None else float("nan")
            load = os.getloadavg()[0]
            loads.append(load)
            put_ratio = walls["put remoteops"] / walls["put tar|ssh"]
            get_ratio = walls["get remoteops"] / walls["get ssh tar|tar"]
            ratios["put"].append(put_ratio)
            ratios["get"].append(get_ratio)
            log(
                f"small #{r + 1}: put {walls['put remoteops']:.2f} s vs tar|ssh "
                f"{walls['put tar|ssh']:.2f} s ({put_ratio:.2f}x); unchanged put "
                f"{walls['unchanged']:.2f} s; get {walls['get remoteops']:.2f} s vs ssh tar|tar "
                f"{walls['get ssh tar|tar']:.2f} s ({get_ratio:.2f}x); load average {load:.1f}"
            )
        clean()
        remove(down)
    finally:
        lab_down(lab_dir)

    def ratio_text(key: str, mine: Series, theirs: Series) -> str:
        good = [x for x in ratios[key] if x == x]  # not NaN
        per_round = f"{statistics.median(good):.2f}x" if good else "n/a"
        return f"{per_round} ({mine.median() / theirs.median():.2f}x of the medians)"

    rows: list[Row] = [
        (
            f"{n_files} x 4 KiB put to {n_hosts} hosts, {repeat} rounds: wall remoteops / "
            + " / ".join(t for t in put_cmds if t != "remoteops"),
            " / ".join(f"{puts[t].median():.2f}" for t in put_cmds) + " s",
            "-",
        ),
        (
            "  client CPU s remoteops / " + " / ".join(t for t in put_cmds if t != "remoteops"),
            " / ".join(f"{puts[t].median('cpu_s'):.2f}" for t in put_cmds),
            "-",
        ),
        (
            "  wall ratio remoteops / tar|ssh: median of rounds",
            ratio_text("put", puts["remoteops"], puts["tar|ssh"]),
            "<= 1.3x",
        ),
        (
            f"put again, nothing changed ({n_files * n_hosts:,} files): wall, CPU",
            f"{again.median():.2f} s, CPU {again.median('cpu_s'):.2f} s",
            "<= 1.0 s, 0 sent",
        ),
        (
            f"the tree back from {n_hosts} hosts: wall remoteops / ssh tar|tar",
            " / ".join(f"{gets[t].median():.2f}" for t in get_cmds) + " s",
            "-",
        ),
        (
            "  client CPU s remoteops / ssh tar|tar",
            " / ".join(f"{gets[t].median('cpu_s'):.2f}" for t in get_cmds),
            "-",
        ),
        (
            "  wall ratio remoteops / ssh tar|tar: median of rounds",
            ratio_text("get", gets["remoteops"], gets["ssh tar|tar"]),
            "<= 1.3x",
        ),
        (
            "  load average (1 min) after each round: median (min-max)",
            f"{statistics.median(loads):.1f} ({min(loads):.1f}-{max(loads):.1f})",
            "-",
        ),
    ]
    if with_scp:
        rows.insert(
            3,
            (
                "  wall ratio remoteops / scp -r",
                f"{puts['remoteops'].median() / puts['scp -r'].median():.2f}x",
                "<= 0.5x",
            ),
        )
    return rows


# --------------------------------------------------------------------------- 3. fan-out


def strace_opens(argv: Sequence[str], path: Path, log_file: Path) -> tuple[int, int] | None:
    """(rc, openat calls naming ``path``) of one run under strace -f, or None without strace."""
    strace = shutil.which("strace")
    if strace is None:
        return None
    cmd = [strace, "-f", "-qq", "-e", "trace=openat", "-o", str(log_file)]
    probe = subprocess.run(
        [strace, "--seccomp-bpf", "-f", "-qq", "-e", "trace=openat", "-o", os.devnull, "true"],
        capture_output=True,
        check=False,
    )
    if probe.returncode == 0:
        cmd.insert(1, "--seccomp-bpf")  # stop only on the traced calls
    m = measure([*cmd, *argv])
    needle = f'"{path}"'
    with log_file.open(encoding="utf-8", errors="replace") as fh:
        opens = sum(1 for line in fh if "openat(" in line and needle in line)
    return m.returncode, opens


def fanout_rows(work: Path, data: Path, port: int, repeat: int, *, use_strace: bool) -> list[Row]:
    from remoteops.lab import lab_down, lab_up

    n_hosts, size = 50, 100 * MIB
    src = data / "ro-fan.bin"
    tiny = data / "ro-fan-tiny.bin"
    make_random_file(src, size)
    tiny.write_bytes(b"x")
    lab_dir = work / "lab-fanout"
    lab = lab_up(lab_dir, hosts=n_hosts, port=port).lab
    names = [h.name for h in lab.hosts]
    inv, cfg = str(lab.inventory), str(lab.ssh_config)
    stdin = "".join(n + "\n" for n in names).encode()
    dests = [lab.host_path(n, "/tmp/ro-fan.bin") for n in names]
    cmds: dict[str, list[str]] = {
        "remoteops": ro("put", "all", "-i", inv, str(src), "/tmp/"),
        "scp": ["xargs", "-P", str(n_hosts), "-I{}", "scp", "-q", "-F", cfg, str(src), "{}:/tmp/"],
    }

    def clean() -> None:
        for d in dests:
            remove(d)

    tools = tuple(cmds)
    series = {t: Series() for t in tools}
    opens: tuple[int, int] | None = None
    baseline = float("nan")
    try:
        # Start-up reads: the same put of a 1-byte file (also the warm-up).
        m = measure(ro("put", "all", "-i", inv, str(tiny), "/tmp/"))
        problem = remoteops_problem(m, n_hosts, files=1)
        if problem is None:
            baseline = m.rchar
        else:
            record(Series(), "fanout baseline (1-byte put)", m, problem)
        for r in range(repeat):
            for tool in rotated(tools, r):
                clean()
                m = measure(cmds[tool], stdin=stdin)
                problem = (
                    remoteops_problem(m, n_hosts, files=1) if tool == "remoteops" else rc_problem(m)
                ) or size_problem(dests, size)
                record(series[tool], f"fanout {tool} #{r + 1}", m, problem)
                extra = (
                    f", rchar {m.io.get('rchar', 0) / MIB:.0f} MiB" if tool == "remoteops" else ""
                )
                log(f"fanout #{r + 1} {tool}: {m.wall_s:.2f} s{extra}")
        clean()
        if use_strace:
            t0 = time.perf_counter()
            opens = strace_opens(cmds["remoteops"], src, work / "strace-fanout.log")
            log(f"fanout: strace run {time.perf_counter() - t0:.1f} s")
            if opens is not None and opens[0] != 0:
                ANOMALIES.append(f"fanout remoteops under strace: rc={opens[0]}")
            clean()
    finally:
        lab_down(lab_dir)
        remove(src)
        remove(tiny)
    w = {t: series[t].median() for t in tools}
    rchar = series["remoteops"].median("rchar") if series["remoteops"].runs else float("nan")
    total = n_hosts * size
    rows: list[Row] = [
        (
            f"100 MiB to {n_hosts} hosts: wall remoteops / scp xargs -P {n_hosts}",
            f"{w['remoteops']:.2f} / {w['scp']:.2f} s",
            "-",
        ),
        ("  wall ratio remoteops / scp", f"{w['remoteops'] / w['scp']:.2f}x", "-"),
        (
            "  aggregate MB/s remoteops / scp",
            f"{total / w['remoteops'] / MB:.0f} / {total / w['scp'] / MB:.0f}",
            "-",
        ),
        (
            "  client CPU s remoteops / scp",
            " / ".join(f"{series[t].median('cpu_s'):.2f}" for t in tools),
            "-",
        ),
        (
            "  remoteops bytes read (rchar - 1-byte-put rchar) / size",
            f"{(rchar - baseline) / size:.2f}x ({rchar / MIB:.0f} - {baseline / MIB:.0f} MiB)",
            "~1x (not 50x)",
        ),
    ]
    if use_strace:
        rows.append(
            (
                "  openat of the source file (strace -f, one run)",
                "strace not installed" if opens is None else str(opens[1]),
                "1",
            )
        )
    return rows


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--port", type=int, default=2801, help="big: PORT, small: +10, fanout: +20")
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--skip-small", action="store_true")
    parser.add_argument("--skip-fanout", action="store_true")
    parser.add_argument(
        "--scp", action="store_true", help="small: also time `xargs -P 20 scp -r` every round"
    )
    parser.add_argument(
        "--strace",
        action="store_true",
        help="fanout: also count openat of the source under strace -f (one untimed run; "
        "slow: several minutes with 50 hosts)",
    )
    args = parser.parse_args()
    ensure_bytecode()
    if not 1 <= args.repeat <= 20:
        parser.error("--repeat must be 1..20")
    cases: list[tuple[str, Callable[[Path, Path], list[Row]]]] = []
    if not args.skip_big:
        cases.append(("big", lambda w, d: big_rows(w, d, args.port, args.repeat)))
    if not args.skip_small:
        cases.append(
            ("small", lambda w, d: small_rows(w, args.port + 10, args.repeat, with_scp=args.scp))
        )
    if not args.skip_fanout:
        cases.append(
            (
                "fanout",
                lambda w, d: fanout_rows(w, d, args.port + 20, args.repeat, use_strace=args.strace),
            )
        )
    rows: list[Row] = []
    start = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="ro-transferbench-") as tmp,
        tempfile.TemporaryDirectory(prefix="ro-transferbench-", dir=DATA_ROOT) as data_tmp,
    ):
        for name, case in cases:
            case_start = time.perf_counter()
            work = Path(tmp) / name
            work.mkdir()
            rows += case(work, Path(data_tmp))
            log(f"{name}: {time.perf_counter() - case_start:.0f} s")
    log(f"total: {time.perf_counter() - start:.0f} s")
    if rows:
        print_table(rows)
    if ANOMALIES:
        print(f"\n{len(ANOMALIES)} anomalies (left out of the medians):")
        for note in ANOMALIES:
            print(f"  {note}")
    return 1 if ANOMALIES else 0


if __name__ == "__main__":
    sys.exit(main())
