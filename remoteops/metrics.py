"""``--metrics FILE``: a run's outcome for Prometheus' node_exporter (docs/metrics.md).

The file is in Prometheus' text exposition format, for node_exporter's
textfile collector (``--collector.textfile.directory``), and is replaced
atomically: written to a temporary file in the same directory (a name the
collector ignores), fsynced, renamed over FILE, mode 0644. The collector
never reads half a file.

One file may hold several jobs (``job_name`` label): writing one job keeps
the other jobs' series. A job's last success survives its failing runs: it
is read back from the file (or given from the history) when the run fails.
A lock on the directory keeps two runs that finish together from losing one
another's series. The CLI uses it so::

    check_metrics_path(path)                          # before the run: UsageError, exit 2
    ...
    write_metrics(path, RunMetrics.from_result(job, result, last_success=...))
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from remoteops.errors import RemoteOpsError, UsageError
from remoteops.exitcodes import ExitCode
from remoteops.fileops import flock_within, write_atomic
from remoteops.results import STATUSES, RunResult

__all__ = [
    "MetricsError",
    "RunMetrics",
    "check_metrics_path",
    "read_metrics",
    "render_metrics",
    "write_metrics",
]

_LOCK_WAIT_S: Final = 10.0

#: (name, help) of each metric, in the order the file lists them.
_HOSTS: Final = "remoteops_hosts"
_DURATION: Final = "remoteops_duration_seconds"
_EXIT: Final = "remoteops_exit_code"
_LAST_RUN: Final = "remoteops_last_run_timestamp_seconds"
_LAST_SUCCESS: Final = "remoteops_last_success_timestamp_seconds"
_HELP: Final = {
    _HOSTS: "Hosts of the job's last run, by how they ended.",
    _DURATION: "How long the job's last run took, in seconds.",
    _EXIT: "The exit code of the job's last run (0: every host succeeded).",
    _LAST_RUN: "When the job's last run ended, in seconds since the epoch.",
    _LAST_SUCCESS: "When the job's last run that exited 0 ended, in seconds since the epoch.",
}


class MetricsError(RemoteOpsError):
    """The metrics file cannot be written (exit 1)."""


@dataclass(frozen=True, slots=True)
class RunMetrics:
    """One job's series: its last run's outcome and its last success."""

    job: str
    counts: Mapping[str, int]
    duration_s: float
    exit_code: int
    finished: float
    last_success: float | None = None

    @classmethod
    def from_result(
        cls,
        job: str,
        result: RunResult,
        *,
        finished: float | None = None,
        last_success: float | None = None,
    ) -> RunMetrics:
        """The metrics of a finished run; ``last_success`` is the job's last success known
        elsewhere (the history), used when this run failed and the file has none."""
        return cls.from_counts(
            job,
            result.counts(),
            duration_s=result.duration_s,
            exit_code=result.exit_code,
            finished=finished,
            last_success=last_success,
        )

    @classmethod
    def from_counts(
        cls,
        job: str,
        counts: Mapping[str, int],
        *,
        duration_s: float,
        exit_code: int,
        finished: float | None = None,
        last_success: float | None = None,
    ) -> RunMetrics:
        """As :meth:`from_result`, from host counts per status (a playbook's recap)."""
        now = time.time() if finished is None else finished
        if exit_code == ExitCode.OK:
            last_success = now
        return cls(job, dict(counts), duration_s, exit_code, now, last_success)


# --------------------------------------------------------------------------- the text format


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _unlabel(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def _number(value: float) -> str:
    if isinstance(value, int) or (math.isfinite(value) and value == int(value)):
        return str(int(value))
    return repr(float(value))


def render_metrics(jobs: Iterable[RunMetrics]) -> str:
    """The exposition text for these jobs, sorted by job name."""
    ordered = sorted(jobs, key=lambda m: m.job)
    lines: list[str] = []
    for name, help_text in _HELP.items():
        samples: list[str] = []
        for m in ordered:
            job = f'job_name="{_label(m.job)}"'
            if name == _HOSTS:
                statuses = [*STATUSES, *(s for s in m.counts if s not in STATUSES)]
                samples += [
                    f'{name}{{{job},status="{_label(s)}"}} {m.counts.get(s, 0)}' for s in statuses
                ]
            elif name == _DURATION:
                samples.append(f"{name}{{{job}}} {_number(round(m.duration_s, 3))}")
            elif name == _EXIT:
                samples.append(f"{name}{{{job}}} {m.exit_code}")
            elif name == _LAST_RUN:
                samples.append(f"{name}{{{job}}} {_number(round(m.finished, 3))}")
            elif m.last_success is not None:
                samples.append(f"{name}{{{job}}} {_number(round(m.last_success, 3))}")
        if samples:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", *samples]
    return "\n".join(lines) + "\n" if lines else ""


_SAMPLE: Final = re.compile(r"(remoteops_\w+)\{((?:[^}\"]|\"(?:[^\"\\]|\\.)*\")*)\} (\S+)")
_LABEL: Final = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def _samples(text: str) -> Iterator[tuple[str, dict[str, str], float]]:
    for line in text.splitlines():
        match = _SAMPLE.fullmatch(line.strip())
        if match is None:
            continue
        labels = {k: _unlabel(v) for k, v in _LABEL.findall(match.group(2))}
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        if "job_name" in labels and math.isfinite(value):
            yield match.group(1), labels, value


def read_metrics(path: Path) -> dict[str, RunMetrics]:
    """The jobs a metrics file written by remoteops holds; {} when it is absent or unreadable.

    Lines that are not remoteops' series are ignored (and not kept on the next write).
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    found: dict[str, dict[str, float]] = {}
    counts: dict[str, dict[str, int]] = {}
    for name, labels, value in _samples(text):
        job = labels["job_name"]
        if name == _HOSTS and "status" in labels:
            counts.setdefault(job, {})[labels["status"]] = int(value)
        else:
            found.setdefault(job, {})[name] = value
    jobs: dict[str, RunMetrics] = {}
    for job, values in found.items():
        if _LAST_RUN not in values:
            continue
        jobs[job] = RunMetrics(
            job=job,
            counts=counts.get(job, {}),
            duration_s=values.get(_DURATION, 0.0),
            exit_code=int(values.get(_EXIT, 0)),
            finished=values[_LAST_RUN],
            last_success=values.get(_LAST_SUCCESS),
        )
    return jobs


# --------------------------------------------------------------------------- writing


def check_metrics_path(path: Path) -> None:
    """Refuse, before a run, a ``--metrics`` FILE that could not be written (exit 2)."""
    parent = path.parent
    if path.is_dir():
        raise UsageError(f"--metrics {path}: is a directory; give a file name ending in .prom")
    if not parent.is_dir():
        raise UsageError(f"--metrics {path}: directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(
            f"--metrics {path}: directory {parent} is not writable; "
            "choose another or fix its permissions"
        )


@contextlib.contextmanager
def _dir_lock(directory: Path) -> Iterator[None]:
    """An exclusive flock on the directory, within _LOCK_WAIT_S (then going on without)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        flock_within(fd, _LOCK_WAIT_S)  # a stuck writer: writing anyway beats writing nothing
        yield
    finally:
        os.close(fd)  # releases the lock


def write_metrics(path: Path, metrics: RunMetrics) -> None:
    """Write ``metrics`` into ``path`` atomically, keeping the file's other jobs.

    A failed run keeps the job's last success from the file when it is later
    than the one ``metrics`` carries. Raises MetricsError with one line.
    """
    directory = path.parent if str(path.parent) else Path(".")
    tmp = directory / f".{path.name}.{os.getpid()}.tmp"  # not *.prom: the collector skips it
    try:
        with _dir_lock(directory):
            jobs = read_metrics(path)
            previous = jobs.get(metrics.job)
            if previous is not None and previous.last_success is not None:
                kept = max(previous.last_success, metrics.last_success or 0.0)
                metrics = RunMetrics(
                    metrics.job,
                    metrics.counts,
                    metrics.duration_s,
                    metrics.exit_code,
                    metrics.finished,
                    kept,
                )
            jobs[metrics.job] = metrics
            # 0644 whatever the umask: node_exporter runs as another user.
            write_atomic(path, render_metrics(jobs.values()).encode("utf-8"), temp=tmp)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        hint = "; free some space" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        raise MetricsError(f"--metrics {path}: cannot write the metrics ({reason}){hint}") from None
