"""Benchmark `remoteops run` against OpenSSH's client and parallel-ssh on the lab.

    sudo .venv/bin/python benchmarks/run_bench.py [--hosts 200] [--forks 50] [--repeat 3]
        [--big 1000] [--skip-big] [--skip-latency] [--skip-profile] [--other CHECKOUT]

Needs parallel-ssh in the venv (``pip install parallel-ssh``; pyinstrument too
for the main-thread profile). In one run, on one lab of ``--hosts`` hosts,
``--forks`` at a time, each tool runs ``hostname`` on every host ``--repeat``
times, interleaved (the order rotates every round):

* remoteops: ``remoteops --no-log-file run all -i INV -f 50 --json -- hostname``
  (strict host keys, the default), every host's stdout checked to be its name;
* OpenSSH: ``xargs -P 50 -I{} ssh -F SSH_CONFIG -o KexAlgorithms=curve25519-sha256
  -o StrictHostKeyChecking=yes {} hostname`` (the same key exchange as paramiko
  negotiates with the lab's sshd: curve25519-sha256);
* parallel-ssh: ``ParallelSSHClient(pool_size=50).run_command('hostname')`` in a
  child Python process. parallel-ssh does **not** check host keys.

Wall time, client CPU (user+sys of the child process and everything it waited
for, from ``os.wait4``) and peak RSS (``ru_maxrss``) are taken per run; the
table shows medians. CPU per host is shown as measured and minus the CPU of a
start-up-only run (``remoteops --version``; ``import pssh.clients``), because
both Python tools pay interpreter start-up and imports once per run. OpenSSH's
``ru_maxrss`` is the largest single ``ssh`` process, so one more untimed pass
samples the summed RSS/PSS of all ``ssh`` processes alive at once.

Then: ``--big`` hosts in flight at once (``-f BIG -- 'sleep 2; hostname'``,
peak RSS per host, target < 0.5 MB), the same comparison on a lab with
``--latency 100``, and a profile of remoteops on the ``--hosts`` lab (per-thread
cProfile with a CPU clock, pyinstrument, ``-X importtime``, a sequential
per-phase CPU breakdown, a forks sweep), all written under /tmp.

The time from exec to the first connection to a lab host is taken for each
tool in untimed passes under ``strace`` (``first_connection``), and the
1-minute load average before each timed run is shown: compare rounds of a
quiet machine. ``--other CHECKOUT`` adds remoteops run from another checkout
(``git worktree add /tmp/base BASE``) to the same rounds, so two versions are
compared side by side.

Targets: remoteops wall <= 0.80x OpenSSH's and <= 0.7x parallel-ssh's; client
CPU <= 4 ms per host; < 0.5 MB per host in flight.
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

from remoteops.lab import descendants

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
REMOTEOPS = str(VENV_BIN / "remoteops")
PYTHON = sys.executable
THIS = str(Path(__file__).resolve())
KEX = "curve25519-sha256"
RUN_TIMEOUT = 600.0
PROFILE_DIR = Path("/tmp")  # profiles are meant to land in /tmp


# --------------------------------------------------------------------------- measuring


@dataclass(slots=True)
class Measurement:
    """One child process: wall time, CPU of it and its waited-for descendants, peak RSS."""

    wall_s: float
    user_s: float
    sys_s: float
    maxrss_kb: int
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s


def measure(
    argv: Sequence[str],
    *,
    stdin: bytes | None = None,
    timeout: float = RUN_TIMEOUT,
    env: dict[str, str] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> Measurement:
    """Run ``argv`` and take its rusage with ``os.wait4`` (exact for this child only).

    stdin/stdout/stderr are temporary files, not pipes, so the parent does no
    work while the child runs. A timer kills the child's process group after
    ``timeout`` seconds.
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
            list(argv), stdin=fin, stdout=fout, stderr=ferr, start_new_session=True, env=env
        )

        def kill() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        if on_start is not None:
            on_start(proc.pid)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        fout.seek(0)
        ferr.seek(0)
        return Measurement(
            wall_s=wall,
            user_s=usage.ru_utime,
            sys_s=usage.ru_stime,
            maxrss_kb=usage.ru_maxrss,
            returncode=proc.returncode,
            stdout=fout.read(),
            stderr=ferr.read(),
        )


class TreeMemorySampler:
    """Sum RSS and PSS of the children of one process, sampled every ``interval`` seconds.

    Used for OpenSSH only (many ``ssh`` processes at once): ``ru_maxrss`` gives
    the largest one, not the sum. It scans /proc, so it runs in an untimed pass.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak_rss_kb = 0
        self.peak_pss_kb = 0
        self.peak_count = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, parent: int) -> None:
        self._thread = threading.Thread(target=self._loop, args=(parent,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self, parent: int) -> None:
        deadline = time.monotonic() + RUN_TIMEOUT
        while not self._stop.is_set() and time.monotonic() < deadline:
            rss = pss = 0
            children = descendants([parent])
            for pid in children:
                try:
                    with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
                        for line in fh:
                            if line.startswith(b"Rss:"):
                                rss += int(line.split()[1])
                            elif line.startswith(b"Pss:"):
                                pss += int(line.split()[1])
                except OSError:
                    continue
            if rss > self.peak_rss_kb:
                self.peak_rss_kb, self.peak_pss_kb, self.peak_count = rss, pss, len(children)
            self._stop.wait(self.interval)


def first_connection(
    argv: Sequence[str],
    addresses: set[str],
    *,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
) -> float | None:
    """Seconds from the tool's ``execve`` to its first TCP ``connect`` to a lab host.

    Taken with ``strace -f --seccomp-bpf -e trace=execve,connect``: only those
    two system calls stop the traced processes, so the tool runs at full speed
    in between; both timestamps come from the same trace, so strace's own
    start is not counted. An untimed pass, apart from the rounds. None if
    strace is missing or saw no connection.
    """
    if shutil.which("strace") is None:
        return None
    with tempfile.NamedTemporaryFile(prefix="ro-runbench-strace-", suffix=".txt") as trace:
        measure(
            [
                "strace",
                "-f",
                "--seccomp-bpf",
                "-qq",
                "-e",
                "trace=execve,connect",
                "-e",
                "signal=none",
                "-ttt",
                "-o",
                trace.name,
                *argv,
            ],
            stdin=stdin,
            env=env,
        )
        lines = Path(trace.name).read_text(encoding="utf-8", errors="replace").splitlines()
    start = None
    for line in lines:
        parts = line.split(None, 2)
        if len(parts) < 3:
            continue
        stamp, call = float(parts[1]), parts[2]
        if start is None and call.startswith("execve(") and call.rstrip().endswith("= 0"):
            start = stamp
        elif start is not None and call.startswith("connect(") and "AF_INET" in call:
            address = call.split('inet_addr("', 1)[-1].split('"', 1)[0]
            if address in addresses:
                return stamp - start
    return None


# --------------------------------------------------------------------------- the tools


@dataclass(slots=True)
class Fleet:
    """What the three clients need to know about one lab."""

    names: list[str]
    addresses: dict[str, str]  # address -> name
    inventory: Path
    ssh_config: Path
    spec_file: Path  # JSON for the parallel-ssh child


def fleet_of(lab: Any, work: Path) -> Fleet:
    spec = {
        "hosts": [{"name": h.name, "address": h.address, "port": h.port} for h in lab.hosts],
        "user": lab.user,
        "key": str(lab.client_key),
        "pool": 50,
    }
    spec_file = work / f"pssh-{lab.dir.name}.json"
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    return Fleet(
        names=[h.name for h in lab.hosts],
        addresses={h.address: h.name for h in lab.hosts},
        inventory=lab.inventory,
        ssh_config=lab.ssh_config,
        spec_file=spec_file,
    )


def remoteops_argv(fleet: Fleet, forks: int, command: str = "hostname") -> list[str]:
    return [
        "--no-log-file",
        "run",
        "all",
        "-i",
        str(fleet.inventory),
        "-f",
        str(forks),
        "--host-key-policy",
        "strict",
        "--json",
        "--",
        command,
    ]


def check_remoteops(fleet: Fleet, m: Measurement) -> str | None:
    """None if every host answered its own name, else what went wrong."""
    seen: dict[str, str] = {}
    bad: list[str] = []
    for line in m.stdout.decode(errors="replace").splitlines():
        record = json.loads(line)
        if record.get("type") != "host":
            continue
        seen[record["host"]] = record["stdout"]
        if record["status"] != "ok" or record["stdout"] != record["host"] + "\n":
            bad.append(f"{record['host']}: {record['status']} {record.get('error')}")
    missing = set(fleet.names) - set(seen)
    if m.returncode != 0 or bad or missing:
        return (
            f"rc={m.returncode}, {len(bad)} bad ({'; '.join(bad[:3])}), {len(missing)} missing; "
            f"stderr: {m.stderr.decode(errors='replace')[-300:]}"
        )
    return None


def other_env(checkout: str) -> dict[str, str]:
    """The environment that runs the venv's ``remoteops`` from another checkout's code."""
    return {**os.environ, "PYTHONPATH": checkout}


def run_remoteops(fleet: Fleet, forks: int, checkout: str | None = None) -> Measurement:
    env = other_env(checkout) if checkout is not None else None
    m = measure([REMOTEOPS, *remoteops_argv(fleet, forks)], env=env)
    problem = check_remoteops(fleet, m)
    if problem:
        raise RuntimeError(f"remoteops: {problem}")
    return m


def openssh_argv(fleet: Fleet, forks: int) -> list[str]:
    return [
        "xargs",
        "-P",
        str(forks),
        "-I{}",
        "ssh",
        "-F",
        str(fleet.ssh_config),
        "-o",
        f"KexAlgorithms={KEX}",
        "-o",
        "StrictHostKeyChecking=yes",
        "{}",
        "hostname",
    ]


def run_openssh(fleet: Fleet, forks: int, sampler: TreeMemorySampler | None = None) -> Measurement:
    names = "".join(f"{n}\n" for n in fleet.names).encode()
    m = measure(
        openssh_argv(fleet, forks),
        stdin=names,
        on_start=sampler.start if sampler is not None else None,
    )
    if sampler is not None:
        sampler.stop()
    got = sorted(m.stdout.decode(errors="replace").split())
    if m.returncode != 0 or got != sorted(fleet.names):
        raise RuntimeError(
            f"openssh: rc={m.returncode}, {len(got)} names back of {len(fleet.names)}; "
            f"stderr: {m.stderr.decode(errors='replace')[-300:]}"
        )
    return m


def run_pssh(fleet: Fleet, forks: int) -> Measurement:
    m = measure([PYTHON, THIS, "--pssh-child", str(fleet.spec_file), str(forks)])
    bad = []
    seen = set()
    for line in m.stdout.decode(errors="replace").splitlines():
        record = json.loads(line)
        name = fleet.addresses.get(record["host"], "?")
        seen.add(name)
        if record["exception"] or record["stdout"] != name:
            bad.append(f"{name}: {record['exception'] or record['stdout']!r}")
    if m.returncode != 0 or bad or len(seen) != len(fleet.names):
        raise RuntimeError(
            f"parallel-ssh: rc={m.returncode}, {len(bad)} bad ({'; '.join(bad[:3])}), "
            f"{len(seen)} hosts seen; stderr: {m.stderr.decode(errors='replace')[-300:]}"
        )
    return m


def pssh_child(spec_path: str, pool: int) -> int:
    """The parallel-ssh client, in its own process (imports only pssh)."""
    from pssh.clients import ParallelSSHClient  # type: ignore[import-untyped]
    from pssh.config import HostConfig  # type: ignore[import-untyped]

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    hosts = [h["address"] for h in spec["hosts"]]
    config = [
        HostConfig(port=h["port"], user=spec["user"], private_key=spec["key"])
        for h in spec["hosts"]
    ]
    client = ParallelSSHClient(hosts, host_config=config, pool_size=pool, timeout=60, num_retries=1)
    output = client.run_command("hostname", stop_on_errors=False)
    client.join(output)
    lines = []
    for host_out in output:
        stdout = "\n".join(host_out.stdout or []) if host_out.exception is None else ""
        lines.append(
            json.dumps(
                {
                    "host": host_out.host,
                    "exception": repr(host_out.exception) if host_out.exception else None,
                    "stdout": stdout,
                }
            )
        )
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


# --------------------------------------------------------------------------- comparisons


@dataclass(slots=True)
class Series:
    """Repeated measurements of one tool."""

    runs: list[Measurement] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)  # 1-minute load average before each run

    def median(self, attr: str) -> float:
        return float(statistics.median(getattr(m, attr) for m in self.runs))


def log(message: str) -> None:
    print(f"[run_bench] {message}", file=sys.stderr, flush=True)


def baselines(repeat: int) -> tuple[Measurement, Measurement]:
    """Start-up-only runs: ``remoteops --version`` and ``import pssh.clients``."""
    ro = [measure([REMOTEOPS, "--version"]) for _ in range(repeat)]
    ps = [measure([PYTHON, THIS, "--pssh-import-only"]) for _ in range(repeat)]

    def med(ms: list[Measurement]) -> Measurement:
        ms = sorted(ms, key=lambda m: m.cpu_s)
        return ms[len(ms) // 2]

    return med(ro), med(ps)


def compare(
    fleet: Fleet,
    *,
    forks: int,
    repeat: int,
    tools: Sequence[str],
    label: str,
    other: str | None = None,
) -> dict[str, Series]:
    runners: dict[str, Callable[[], Measurement]] = {
        "remoteops": lambda: run_remoteops(fleet, forks),
        "other": lambda: run_remoteops(fleet, forks, other),
        "openssh": lambda: run_openssh(fleet, forks),
        "pssh": lambda: run_pssh(fleet, forks),
    }
    series = {tool: Series() for tool in tools}
    for round_ in range(repeat):
        order = list(tools[round_ % len(tools) :]) + list(tools[: round_ % len(tools)])
        for tool in order:
            load = os.getloadavg()[0]
            m = runners[tool]()
            series[tool].runs.append(m)
            series[tool].loads.append(load)
            log(
                f"{label} round {round_ + 1}/{repeat} {tool}: wall {m.wall_s:.2f} s, "
                f"cpu {m.cpu_s:.2f} s, maxrss {m.maxrss_kb / 1024:.0f} MB, load {load:.2f}"
            )
    return series


def main_rows(
    fleet: Fleet,
    series: dict[str, Series],
    base_ro: Measurement,
    base_ps: Measurement,
    ssh_mem: TreeMemorySampler | None,
    hosts: int,
    forks: int,
) -> list[Row]:
    ro, ossh, ps = series["remoteops"], series["openssh"], series["pssh"]
    ro_wall, ossh_wall, ps_wall = (s.median("wall_s") for s in (ro, ossh, ps))
    rows: list[Row] = [
        (
            f"{hosts} hosts, -f {forks}: wall remoteops/OpenSSH/pssh (median)",
            f"{ro_wall:.2f} / {ossh_wall:.2f} / {ps_wall:.2f} s",
            "-",
        ),
        ("  ratio remoteops / OpenSSH xargs -P", f"{ro_wall / ossh_wall:.2f}x", "<= 0.80x"),
        (
            "  ratio per round (remoteops / OpenSSH)",
            " ".join(f"{a.wall_s / b.wall_s:.2f}" for a, b in zip(ro.runs, ossh.runs, strict=True)),
            "-",
        ),
        ("  ratio remoteops / parallel-ssh", f"{ro_wall / ps_wall:.2f}x", "<= 0.70x"),
        ("  load average (1 min) before each run", _load_text(series), "quiet: < 1"),
    ]
    for name, s, base in (
        ("remoteops", ro, base_ro),
        ("OpenSSH (all ssh processes)", ossh, None),
        ("parallel-ssh", ps, base_ps),
    ):
        cpu = s.median("cpu_s")
        per = cpu / hosts * 1000
        text = f"{per:.1f} ms/host ({cpu:.2f} s)"
        if base is not None:
            text += f"; -startup {(cpu - base.cpu_s) / hosts * 1000:.1f}"
        rows.append((f"  client CPU per host, {name}", text, "<= 4 ms (remoteops)"))
    rows.append(
        (
            "  peak RSS remoteops / pssh (one process)",
            f"{ro.median('maxrss_kb') / 1024:.0f} / {ps.median('maxrss_kb') / 1024:.0f} MB",
            "reported",
        )
    )
    biggest = ossh.median("maxrss_kb") / 1024
    if ssh_mem is not None and ssh_mem.peak_rss_kb:
        text = (
            f"{ssh_mem.peak_rss_kb / 1024:.0f} MB RSS, {ssh_mem.peak_pss_kb / 1024:.0f} MB PSS "
            f"({ssh_mem.peak_count} ssh); 1 ssh {biggest:.1f} MB"
        )
    else:
        text = f"1 ssh process {biggest:.1f} MB"
    rows.append(("  peak memory OpenSSH (sum of ssh alive at once)", text, "reported"))
    rows.append(
        (
            "  start-up only: remoteops --version / import pssh",
            f"{base_ro.cpu_s * 1000:.0f} / {base_ps.cpu_s * 1000:.0f} ms CPU, "
            f"{base_ro.maxrss_kb / 1024:.0f} / {base_ps.maxrss_kb / 1024:.0f} MB",
            "-",
        )
    )
    rows.append(("  host keys checked: remoteops / OpenSSH / pssh", "yes / yes / NO", "-"))
    return rows


def _load_text(series: dict[str, Series]) -> str:
    loads = [load for s in series.values() for load in s.loads]
    if not loads:
        return "-"
    return f"median {statistics.median(loads):.2f} (min {min(loads):.2f}, max {max(loads):.2f})"


def other_rows(series: dict[str, Series], checkout: str, hosts: int) -> list[Row]:
    """remoteops from ``--other`` against this one and OpenSSH, same rounds."""
    ro, ossh, other = series["remoteops"], series["openssh"], series["other"]
    return [
        (
            f"  --other {checkout}: wall, ratio to OpenSSH",
            f"{other.median('wall_s'):.2f} s, "
            f"{other.median('wall_s') / ossh.median('wall_s'):.2f}x",
            "-",
        ),
        (
            "  client CPU per host, this / --other",
            f"{ro.median('cpu_s') / hosts * 1000:.2f} / "
            f"{other.median('cpu_s') / hosts * 1000:.2f} ms",
            "-",
        ),
    ]


def first_connection_rows(
    fleet: Fleet, forks: int, repeat: int, other: str | None = None
) -> list[Row]:
    """Exec to first connection (``first_connection``), median of ``repeat`` untimed passes."""
    addresses = set(fleet.addresses)
    names = "".join(f"{n}\n" for n in fleet.names).encode()
    probes: dict[str, tuple[list[str], bytes | None]] = {
        "remoteops": ([REMOTEOPS, *remoteops_argv(fleet, forks)], None),
        "OpenSSH": (openssh_argv(fleet, forks), names),
        "parallel-ssh": ([PYTHON, THIS, "--pssh-child", str(fleet.spec_file), str(forks)], None),
    }
    envs = {"--other": other_env(other)} if other else {}
    if other:
        probes["--other"] = probes["remoteops"]
    medians: dict[str, float | None] = {}
    for tool, (argv, stdin) in probes.items():
        env = envs.get(tool)
        got = [first_connection(argv, addresses, stdin=stdin, env=env) for _ in range(repeat)]
        seen = [t for t in got if t is not None]
        medians[tool] = statistics.median(seen) if seen else None
        log(f"exec to first connection, {tool}: " + " ".join(f"{t * 1000:.0f}" for t in seen))
    text = " / ".join(f"{t * 1000:.0f}" if t is not None else "?" for t in medians.values())
    return [
        (
            "  exec to first connection remoteops / OpenSSH / pssh"
            + (" / --other" if other else "")
            + " (median, strace)",
            f"{text} ms",
            "-",
        )
    ]


def _failure_kinds(stdout: bytes) -> tuple[int, int, list[float], dict[str, int]]:
    """(hosts, ok, durations, failures by status and message with numbers blanked)."""
    import re

    kinds: dict[str, int] = {}
    hosts = ok = 0
    durations = []
    for line in stdout.decode(errors="replace").splitlines():
        record = json.loads(line)
        if record.get("type") != "host":
            continue
        hosts += 1
        durations.append(record["duration_s"])
        if record["status"] == "ok" and record["stdout"] == record["host"] + "\n":
            ok += 1
            continue
        kind = record["status"] + ": " + re.sub(r"[0-9.:]+", "N", record["error"] or "")[:60]
        kinds[kind] = kinds.get(kind, 0) + 1
    return hosts, ok, durations, kinds


def big_rows(
    work: Path, hosts: int, port: int, base_ro: Measurement, connect_timeout: float
) -> list[Row]:
    from remoteops.errors import LabError
    from remoteops.lab import lab_down, lab_up

    lab_dir = work / "big"
    label = f"{hosts} hosts in flight (-f {hosts}, 'sleep 2; hostname')"
    try:
        start = time.perf_counter()
        lab = lab_up(lab_dir, hosts=hosts, port=port, timeout=120).lab
        log(f"big lab: {hosts} hosts up in {time.perf_counter() - start:.1f} s")
    except LabError as exc:
        return [(label, f"lab did not start: {exc}"[:120], "-")]
    try:
        fleet = fleet_of(lab, work)
        argv = remoteops_argv(fleet, hosts, "sleep 2; hostname")
        argv[argv.index("--json") : argv.index("--json")] = [
            "--connect-timeout",
            f"{connect_timeout:g}",
        ]
        m = measure([REMOTEOPS, *argv])
    finally:
        lab_down(lab_dir)
    log(f"big run: wall {m.wall_s:.2f} s, cpu {m.cpu_s:.2f} s, maxrss {m.maxrss_kb / 1024:.0f} MB")
    seen, ok, durations, kinds = _failure_kinds(m.stdout)
    per = m.maxrss_kb / 1024 / hosts
    above = (m.maxrss_kb - base_ro.maxrss_kb) / 1024 / hosts
    rows: list[Row] = [
        (
            label,
            f"{ok}/{hosts} ok (rc={m.returncode}), wall {m.wall_s:.2f} s, slowest host "
            f"{max(durations, default=0):.1f} s, --connect-timeout {connect_timeout:g}",
            f"{hosts} ok",
        ),
    ]
    for kind, count in sorted(kinds.items(), key=lambda kv: -kv[1])[:4]:
        rows.append((f"  failed: {count} x", kind, "0"))
    if seen != hosts:
        rows.append(("  hosts missing from the output", str(hosts - seen), "0"))
    rows += [
        (
            "  peak RSS per host (total / above --version)",
            f"{per:.2f} / {above:.2f} MB ({m.maxrss_kb / 1024:.0f} MB)",
            "< 0.5 MB",
        ),
        (
            "  client CPU per host (total / -startup)",
            f"{m.cpu_s / hosts * 1000:.1f} / {(m.cpu_s - base_ro.cpu_s) / hosts * 1000:.1f} ms"
            f" (user {m.user_s:.1f} s, sys {m.sys_s:.1f} s)",
            "-",
        ),
    ]
    return rows


def latency_rows(
    work: Path, hosts: int, forks: int, repeat: int, port: int, latency: int
) -> list[Row]:
    from remoteops.lab import lab_down, lab_up

    lab_dir = work / "slow"
    lab = lab_up(lab_dir, hosts=hosts, port=port, latency_ms=latency).lab
    try:
        fleet = fleet_of(lab, work)
        series = compare(
            fleet,
            forks=forks,
            repeat=repeat,
            tools=("remoteops", "openssh"),
            label=f"latency {latency}",
        )
    finally:
        lab_down(lab_dir)
    ro, ossh = series["remoteops"].median("wall_s"), series["openssh"].median("wall_s")
    return [
        (
            f"{hosts} hosts, --latency {latency}, -f {forks}: wall remoteops/OpenSSH",
            f"{ro:.2f} / {ossh:.2f} s",
            "-",
        ),
        ("  ratio remoteops / OpenSSH xargs -P", f"{ro / ossh:.2f}x", "<= 0.85x"),
        (
            "  client CPU per host remoteops / OpenSSH",
            f"{series['remoteops'].median('cpu_s') / hosts * 1000:.1f} / "
            f"{series['openssh'].median('cpu_s') / hosts * 1000:.1f} ms",
            "-",
        ),
    ]


# --------------------------------------------------------------------------- profiling

# (label, file suffix, function): cumulative CPU (thread_time) summed over all threads.
_PROFILE_POINTS: tuple[tuple[str, str, str], ...] = (
    ("main thread: cli main (after imports)", "remoteops/cli/app.py", "main"),
    ("  run_cmd", "remoteops/cli/run.py", "run_cmd"),
    ("  resolve (inventory, ssh_config, targets)", "remoteops/cli/options.py", "resolve"),
    ("    load_inventory", "remoteops/inventory.py", "load_inventory"),
    ("    resolve_targets", "remoteops/target.py", "resolve_targets"),
    ("  JSON output", "remoteops/results.py", "to_json"),
    ("worker threads: guarded()", "remoteops/execution.py", "guarded"),
    ("  connect()", "remoteops/session/connection.py", "connect"),
    ("    socket connect", "remoteops/session/connection.py", "_open_socket"),
    ("    paramiko Transport() init", "paramiko/transport.py", "__init__"),
    ("    start_client (thread start, waits)", "paramiko/transport.py", "start_client"),
    ("    known_hosts: known_key_types", "remoteops/hostkeys.py", "known_key_types"),
    ("    known_hosts: verify_host_key", "remoteops/hostkeys.py", "verify_host_key"),
    ("    known_hosts: load_known_hosts", "remoteops/hostkeys.py", "load_known_hosts"),
    ("    _authenticate (waits)", "remoteops/session/connection.py", "_authenticate"),
    ("    Credentials.key (parse key)", "remoteops/session/credentials.py", "key"),
    ("  Session.exec", "remoteops/session/session.py", "exec"),
    ("  Session.close", "remoteops/session/session.py", "close"),
    ("transport threads: Transport.run", "paramiko/transport.py", "run"),
    ("  kex: curve25519 parse_next", "paramiko/kex_curve25519.py", "parse_next"),
    ("  kex: _parse_kex_init", "paramiko/transport.py", "_parse_kex_init"),
    ("  kex: host key sig verify (_verify_key)", "paramiko/transport.py", "_verify_key"),
    ("  kex: _activate_outbound", "paramiko/transport.py", "_activate_outbound"),
    ("  kex: _activate_inbound", "paramiko/transport.py", "_activate_inbound"),
    ("  auth: _parse_service_accept (sign)", "paramiko/auth_handler.py", "_parse_service_accept"),
    ("  packets: Packetizer.read_message", "paramiko/packet.py", "read_message"),
    ("  packets: Packetizer.send_message", "paramiko/packet.py", "send_message"),
    (
        "  channel: _parse_channel_open_success",
        "paramiko/transport.py",
        "_parse_channel_open_success",
    ),
    ("thread bootstrap (all threads)", "threading.py", "_bootstrap_inner"),
)


def profile_child(out: str, argv: list[str]) -> int:
    """Run the remoteops CLI in-process with one cProfile (CPU clock) per thread, merged.

    A thread's profile is only used once that thread has ended: disabling a
    cProfile from another thread would time its unfinished calls with the wrong
    thread's clock. Threads still alive 5 s after the run are counted and left out
    (written to ``OUT.json``).
    """
    import cProfile
    import pstats

    finished: list[cProfile.Profile] = []
    started: list[threading.Thread] = []
    lock = threading.Lock()
    original = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]

    def bootstrap(self: threading.Thread) -> None:
        prof = cProfile.Profile(time.thread_time)
        with lock:
            started.append(self)
        prof.enable()
        try:
            original(self)
        finally:
            prof.disable()
            with lock:
                finished.append(prof)

    threading.Thread._bootstrap_inner = bootstrap  # type: ignore[attr-defined]
    main_prof = cProfile.Profile(time.thread_time)
    code: Any = 0
    main_prof.enable()
    try:
        from remoteops.cli import main

        main(argv)
    except SystemExit as exc:
        code = exc.code
    finally:
        main_prof.disable()
    deadline = time.monotonic() + 5.0
    with lock:
        threads = list(started)
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    stats = pstats.Stats(main_prof)
    with lock:
        for prof in finished:
            stats.add(prof)
        info = {"threads": len(started), "profiled": len(finished)}
    stats.dump_stats(out)
    Path(out + ".json").write_text(json.dumps(info), encoding="utf-8")
    return int(code or 0)


def _cumulative(stats: Any, suffix: str, func: str) -> tuple[float, int]:
    total, calls = 0.0, 0
    for (filename, _line, name), (_cc, nc, _tt, ct, _callers) in stats.stats.items():
        if name == func and filename.endswith(suffix):
            total += ct
            calls += nc
    return total, calls


def sequential_breakdown(lab: Any, count: int, ciphers: Sequence[str] | None) -> dict[str, float]:
    """CPU per phase of one host at a time, in this process (no thread contention).

    Phases: TCP + Transport(); start_client (kex: the transport thread's CPU is
    counted because nothing else runs); host key check; auth; exec hostname; close.
    """
    import paramiko

    from remoteops.hostkeys import HostKeyStore, verify_host_key

    store = HostKeyStore([str(lab.known_hosts)])
    key = paramiko.Ed25519Key.from_private_key_file(str(lab.client_key))
    phases: dict[str, float] = {}
    disabled = None
    if ciphers is not None:
        disabled = {
            "ciphers": [
                c
                for c in paramiko.Transport._preferred_ciphers  # type: ignore[attr-defined]
                if c not in ciphers
            ]
        }

    def add(name: str, since: float) -> float:
        now = time.process_time()
        phases[name] = phases.get(name, 0.0) + (now - since)
        return now

    import socket

    for host in lab.hosts[:count]:
        t = time.process_time()
        sock = socket.create_connection((host.address, host.port), timeout=10)
        transport = paramiko.Transport(sock, disabled_algorithms=disabled)
        t = add("tcp + Transport()", t)
        transport.start_client(timeout=10)
        t = add("start_client (kex)", t)
        verify_host_key(store, host.address, host.port, transport.get_remote_server_key(), "strict")
        t = add("known_hosts check", t)
        transport.auth_publickey(lab.user, key)
        t = add("auth (ed25519 sign)", t)
        channel = transport.open_session()
        channel.exec_command("hostname")
        channel.recv(1024)
        channel.recv_exit_status()
        t = add("exec hostname", t)
        transport.close()
        sock.close()
        t = add("close", t)
    return {k: v / count * 1000 for k, v in phases.items()}


def profile_rows(lab: Any, fleet: Fleet, hosts: int, forks: int) -> list[Row]:
    import pstats

    rows: list[Row] = []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    pstats_file = PROFILE_DIR / f"remoteops-cprofile-{stamp}.pstats"
    text_file = PROFILE_DIR / f"remoteops-cprofile-{stamp}.txt"
    m = measure([PYTHON, THIS, "--profile-child", str(pstats_file), *remoteops_argv(fleet, forks)])
    problem = check_remoteops(fleet, m)
    if problem:
        return [("profile run", f"FAILED: {problem}"[:200], "-")]
    stats = pstats.Stats(str(pstats_file))
    total = sum(tt for (_cc, _nc, tt, _ct, _c) in stats.stats.values())  # type: ignore[attr-defined]
    info = json.loads(Path(str(pstats_file) + ".json").read_text(encoding="utf-8"))
    rows.append(
        (
            f"profile: cProfile, CPU clock, all threads ({hosts} hosts)",
            f"{total / hosts * 1000:.1f} ms/host profiled ({m.cpu_s / hosts * 1000:.1f} measured, "
            f"{info['profiled']}/{info['threads']} threads)",
            str(pstats_file),
        )
    )
    for label, suffix, func in _PROFILE_POINTS:
        cum, calls = _cumulative(stats, suffix, func)
        rows.append((f"  {label}", f"{cum / hosts * 1000:.2f} ms/host ({calls} calls)", "-"))
    with text_file.open("w", encoding="utf-8") as fh:
        report = pstats.Stats(str(pstats_file), stream=fh)
        report.sort_stats("tottime").print_stats(40)
        report.sort_stats("cumulative").print_stats(60)
    rows.append(("  top functions (tottime, cumulative)", str(text_file), "-"))

    # Main thread with pyinstrument (wall clock: imports, start-up, the result loop).
    pyi_file = PROFILE_DIR / f"remoteops-pyinstrument-{stamp}.txt"
    m = measure(
        [
            PYTHON,
            "-m",
            "pyinstrument",
            "--show-all",
            "-o",
            str(pyi_file),
            "-m",
            "remoteops",
            *remoteops_argv(fleet, forks),
        ]
    )
    rows.append(("  pyinstrument (main thread, wall)", f"rc={m.returncode} {pyi_file}", "-"))

    # Start-up and imports.
    bare = statistics.median(measure([PYTHON, "-c", "pass"]).cpu_s for _ in range(3))
    imports = statistics.median(
        measure([PYTHON, "-c", "import remoteops.cli"]).cpu_s for _ in range(3)
    )
    rows.append(
        (
            "  interpreter start-up / + import remoteops.cli",
            f"{bare * 1000:.0f} / {imports * 1000:.0f} ms CPU "
            f"({bare / hosts * 1000:.2f} / {imports / hosts * 1000:.2f} ms/host)",
            "-",
        )
    )
    importtime = PROFILE_DIR / f"remoteops-importtime-{stamp}.txt"
    m = measure([PYTHON, "-X", "importtime", "-c", "import remoteops.cli"])
    entries = []
    for line in m.stderr.decode().splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[1].strip().isdigit():
            entries.append((int(parts[1]), parts[2].rstrip()))
    importtime.write_text(m.stderr.decode(), encoding="utf-8")
    top = [e for e in entries if e[1].startswith(" ") and not e[1].startswith("  ")]
    top.sort(reverse=True)
    rows.append(
        (
            "  heaviest top-level imports (cumulative)",
            ", ".join(f"{n.strip()} {us / 1000:.0f}ms" for us, n in top[:5]),
            str(importtime),
        )
    )

    # One host at a time, CPU per phase; default ciphers vs aes128-gcm.
    for label, ciphers in (
        ("aes128-ctr+hmac (default)", None),
        ("aes128-gcm", ["aes128-gcm@openssh.com"]),
    ):
        phases = sequential_breakdown(lab, min(40, hosts), ciphers)
        rows.append(
            (
                f"  sequential CPU/host, {label}",
                f"{sum(phases.values()):.1f} ms: "
                + ", ".join(f"{k} {v:.1f}" for k, v in phases.items()),
                "-",
            )
        )

    # Threads: the same run at several --forks values.
    sweep = []
    for f in sorted({10, forks, hosts}):
        m = run_remoteops(fleet, f)
        sweep.append(f"-f {f}: {m.wall_s:.2f} s wall, {m.cpu_s / hosts * 1000:.1f} ms/host")
    rows.append(("  forks sweep (remoteops)", "; ".join(sweep), "-"))
    return rows


# --------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--forks", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--big", type=int, default=1000)
    parser.add_argument("--latency", type=int, default=100)
    parser.add_argument("--port", type=int, default=2622)
    parser.add_argument(
        "--big-connect-timeout",
        type=float,
        default=120.0,
        help="--connect-timeout of the big run: 1,000 handshakes at once take longer "
        "than the default 10 s when the lab's sshds share this machine's CPUs",
    )
    parser.add_argument(
        "--other",
        metavar="CHECKOUT",
        help="also run remoteops from this checkout (e.g. a `git worktree` of the base "
        "commit) in the same rounds, to compare two versions side by side",
    )
    parser.add_argument("--skip-big", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-profile", action="store_true")
    args = parser.parse_args()
    ensure_bytecode(*([args.other] if args.other else []))
    if not 1 <= args.repeat <= 20:
        parser.error("--repeat must be 1..20")

    from remoteops.lab import lab_down, lab_up

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="ro-runbench-") as tmp:
        work = Path(tmp)
        base_ro, base_ps = baselines(3)
        lab_dir = work / "main"
        start = time.perf_counter()
        lab = lab_up(lab_dir, hosts=args.hosts, port=args.port).lab
        log(f"lab: {args.hosts} hosts up in {time.perf_counter() - start:.1f} s")
        try:
            fleet = fleet_of(lab, work)
            # Warm-up (page cache, sshd's first fork): one untimed run of each tool.
            run_remoteops(fleet, args.forks)
            run_openssh(fleet, args.forks)
            run_pssh(fleet, args.forks)
            tools: tuple[str, ...] = ("remoteops", "openssh", "pssh")
            if args.other:
                run_remoteops(fleet, args.forks, args.other)
                tools += ("other",)
            series = compare(
                fleet,
                forks=args.forks,
                repeat=args.repeat,
                tools=tools,
                label="main",
                other=args.other,
            )
            sampler = TreeMemorySampler()
            run_openssh(fleet, args.forks, sampler)
            rows += main_rows(fleet, series, base_ro, base_ps, sampler, args.hosts, args.forks)
            if args.other:
                rows += other_rows(series, args.other, args.hosts)
            rows += first_connection_rows(fleet, args.forks, args.repeat, args.other)
            if not args.skip_profile:
                rows += profile_rows(lab, fleet, args.hosts, args.forks)
        finally:
            lab_down(lab_dir)
        if not args.skip_big:
            rows += big_rows(work, args.big, args.port + 10, base_ro, args.big_connect_timeout)
        if not args.skip_latency:
            rows += latency_rows(
                work, args.hosts, args.forks, args.repeat, args.port + 20, args.latency
            )
    print_table(rows)
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--pssh-child":
        sys.exit(pssh_child(sys.argv[2], int(sys.argv[3])))
    if len(sys.argv) >= 2 and sys.argv[1] == "--pssh-import-only":
        import pssh.clients  # type: ignore[import-untyped]  # noqa: F401

        sys.exit(0)
    if len(sys.argv) >= 3 and sys.argv[1] == "--profile-child":
        sys.exit(profile_child(sys.argv[2], sys.argv[3:]))
    sys.exit(main())
