"""``--metrics FILE`` (remoteops/metrics.py), read back by Prometheus' own text parser."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from remoteops.errors import UsageError
from remoteops.metrics import (
    MetricsError,
    RunMetrics,
    check_metrics_path,
    read_metrics,
    write_metrics,
)
from remoteops.results import HostResult, RunResult
from tests.helpers import python_in_mount_namespace

ROOT = Path(__file__).resolve().parents[2]


def _result(*statuses: str, duration: float = 2.5) -> RunResult:
    run = RunResult(duration_s=duration)
    for i, status in enumerate(statuses):
        run.add(HostResult(f"web{i}", "127.0.0.1", 22, status))  # type: ignore[arg-type]
    return run


def _parsed(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the file as Prometheus reads it: (name, labels) -> value."""
    samples = {}
    for family in text_string_to_metric_families(path.read_text()):
        assert family.type == "gauge", family.name
        assert family.documentation, family.name
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _job(name: str, **labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"job_name": name, **labels}.items()))


def test_a_run_is_written_in_prometheus_text_format(tmp_path: Path) -> None:
    path = tmp_path / "nightly.prom"
    result = _result("ok", "ok", "failed", "unreachable", "hostkey", "timeout")
    write_metrics(path, RunMetrics.from_result("nightly", result, finished=1_800_000_000.5))
    samples = _parsed(path)
    for status, count in [("ok", 2), ("failed", 1), ("unreachable", 1), ("hostkey", 1)]:
        assert samples[("remoteops_hosts", _job("nightly", status=status))] == count
    assert samples[("remoteops_hosts", _job("nightly", status="skipped"))] == 0
    assert samples[("remoteops_duration_seconds", _job("nightly"))] == 2.5
    assert samples[("remoteops_exit_code", _job("nightly"))] == 3  # timeout wins
    assert samples[("remoteops_last_run_timestamp_seconds", _job("nightly"))] == 1_800_000_000.5
    # never succeeded: no last-success series, so `absent()` or a staleness alert fires
    assert not any(name == "remoteops_last_success_timestamp_seconds" for name, _ in samples)


def test_the_last_success_survives_failing_runs(tmp_path: Path) -> None:
    path = tmp_path / "nightly.prom"
    write_metrics(path, RunMetrics.from_result("nightly", _result("ok"), finished=1000.0))
    write_metrics(path, RunMetrics.from_result("nightly", _result("failed"), finished=2000.0))
    write_metrics(path, RunMetrics.from_result("nightly", _result("timeout"), finished=3000.0))
    samples = _parsed(path)
    assert samples[("remoteops_last_success_timestamp_seconds", _job("nightly"))] == 1000.0
    assert samples[("remoteops_last_run_timestamp_seconds", _job("nightly"))] == 3000.0
    assert samples[("remoteops_exit_code", _job("nightly"))] == 3
    write_metrics(path, RunMetrics.from_result("nightly", _result("ok"), finished=4000.0))
    assert _parsed(path)[("remoteops_last_success_timestamp_seconds", _job("nightly"))] == 4000.0


def test_a_last_success_from_the_history_fills_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "nightly.prom"
    metrics = RunMetrics.from_result(
        "nightly", _result("failed"), finished=2000.0, last_success=1500.0
    )
    write_metrics(path, metrics)
    assert _parsed(path)[("remoteops_last_success_timestamp_seconds", _job("nightly"))] == 1500.0


def test_jobs_sharing_a_file_keep_each_others_series(tmp_path: Path) -> None:
    path = tmp_path / "remoteops.prom"
    odd = 'backup "db"\\nightly\nline two'
    write_metrics(path, RunMetrics.from_result(odd, _result("ok"), finished=1000.0))
    write_metrics(path, RunMetrics.from_result("ping all", _result("failed"), finished=2000.0))
    samples = _parsed(path)
    assert samples[("remoteops_last_success_timestamp_seconds", _job(odd))] == 1000.0
    assert samples[("remoteops_exit_code", _job("ping all"))] == 5
    assert read_metrics(path)[odd].last_success == 1000.0  # the label escapes read back
    assert sorted(read_metrics(path)) == sorted([odd, "ping all"])


def test_the_file_is_replaced_atomically_0644_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "nightly.prom"
    write_metrics(path, RunMetrics.from_result("nightly", _result("ok"), finished=1.0))
    with path.open() as reader:  # a collector reading the old file meanwhile
        old = os.fstat(reader.fileno()).st_ino
        mask = os.umask(0o077)
        try:
            write_metrics(path, RunMetrics.from_result("nightly", _result("failed"), finished=2.0))
        finally:
            os.umask(mask)
        assert 'remoteops_exit_code{job_name="nightly"} 0' in reader.read()  # whole, unchanged
    assert path.stat().st_ino != old  # a new file renamed over the old one
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nightly.prom"]  # no temp file left


def test_several_processes_writing_one_file_lose_no_job(tmp_path: Path) -> None:
    path = tmp_path / "shared.prom"
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from remoteops.metrics import RunMetrics, write_metrics\n"
        "for i in range(20):\n"
        "    write_metrics(Path(sys.argv[1]), RunMetrics.from_counts(\n"
        "        sys.argv[2], {'ok': i}, duration_s=1.0, exit_code=0, finished=float(i)))\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(path), f"job{n}"], cwd=ROOT)
        for n in range(4)
    ]
    for proc in procs:
        assert proc.wait(120) == 0
    jobs = read_metrics(path)
    assert sorted(jobs) == [f"job{n}" for n in range(4)]
    assert all(m.counts["ok"] == 19 for m in jobs.values())
    _parsed(path)  # still one valid file


def test_a_bad_metrics_path_is_refused_before_the_run(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"directory .*missing does not exist; create it first"):
        check_metrics_path(tmp_path / "missing" / "x.prom")
    with pytest.raises(UsageError, match=r"is a directory"):
        check_metrics_path(tmp_path)
    check_metrics_path(tmp_path / "ok.prom")


def test_a_failed_write_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "gone"
    with pytest.raises(MetricsError, match=r"--metrics .*x\.prom: cannot write the metrics"):
        write_metrics(directory / "x.prom", RunMetrics.from_result("j", _result("ok")))
    assert list(tmp_path.iterdir()) == []


FULL_DISK = """
import sys
from pathlib import Path
from remoteops.metrics import MetricsError, RunMetrics, write_metrics
directory = Path(sys.argv[1])
path = directory / "nightly.prom"
write_metrics(path, RunMetrics.from_counts("nightly", {"ok": 1}, duration_s=1, exit_code=0))
before = path.read_bytes()
with open(directory / "filler", "wb", buffering=0) as filler:  # fill the file system up
    try:
        for _ in range(10_000):
            filler.write(b"x" * 4096)
            filler.flush()
    except OSError:
        pass
try:
    many = {f"status{i}": i for i in range(500)}
    write_metrics(path, RunMetrics.from_counts("nightly", many, duration_s=2, exit_code=5))
except MetricsError as exc:
    print(exc)
print("unchanged", path.read_bytes() == before)
print(sorted(p.name for p in directory.iterdir()))
"""


def test_a_full_disk_keeps_the_previous_file_whole(tmp_path: Path) -> None:
    mount = tmp_path / "mnt"
    mount.mkdir()
    done = python_in_mount_namespace(
        f"mount -t tmpfs -o size=64k tmpfs {mount}", FULL_DISK, str(mount)
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"--metrics {mount}/nightly.prom: cannot write the metrics (No space left on device); "
        "free some space",
        "unchanged True",
        "['filler', 'nightly.prom']",  # no temporary file left behind
    ]
