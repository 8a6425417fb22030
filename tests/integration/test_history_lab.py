"""History and metrics fed with real results from the lab: the same job twice, one host's
output changed and one host down the second time."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

import remoteops
from remoteops.history import HistoryStore
from remoteops.lab import Lab
from remoteops.metrics import RunMetrics, read_metrics, write_metrics

pytestmark = pytest.mark.integration


def _run(inventory: Path, store: HistoryStore, command: str) -> tuple[int, remoteops.RunResult]:
    """One `run web -- COMMAND` through the Python API, recorded as the CLI will."""
    inv = remoteops.load_inventory([inventory])
    targets = remoteops.resolve_targets(inv, [h.name for h in inv.select("web")])
    executor = remoteops.Executor(targets, timeouts=remoteops.Timeouts(connect=10, command=30))
    recorder = store.start_run(
        command="run",
        argv=["remoteops", "run", "web", "-i", str(inventory), "--", command],
        pattern="web",
        inventory=str(inventory),
    )
    run = remoteops.RunResult()
    for result in executor.run_command(remoteops.CommandSpec(command=command)):
        run.add(result)
        recorder.host(result)
    recorder.finish(run.exit_code, run.duration_s)
    assert recorder.run_id is not None
    return recorder.run_id, run


def test_two_runs_of_a_job_diff_rerun_and_metrics(
    lab: Lab, tmp_path: Path, remote_dir: str
) -> None:
    web = sorted(h.name for h in lab.hosts if "web" in h.groups)
    changed, down = web[0], web[1]
    store = HistoryStore(tmp_path / "history.sqlite3")
    metrics = tmp_path / "nightly.prom"
    # the time of day differs on every host and run: only --normalize sees past it
    command = f"hostname; date +%H:%M:%S.%N; cat {remote_dir}/marker 2>/dev/null; true"

    first, result = _run(lab.inventory, store, command)
    assert result.exit_code == 0
    write_metrics(metrics, RunMetrics.from_result("nightly", result))
    succeeded = read_metrics(metrics)["nightly"].last_success

    lab.host_path(changed, remote_dir).joinpath("marker").write_text("new config\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    second_inventory = tmp_path / "inventory.yml"
    second_inventory.write_text(
        re.sub(
            rf"^(\s+{down}: ){{.*}}$",
            rf"\1{{ansible_host: 127.0.0.1, ansible_port: {closed}}}",
            lab.inventory.read_text(),
            flags=re.M,
        )
    )
    second, result = _run(second_inventory, store, command)
    assert result.exit_code == 4
    write_metrics(metrics, RunMetrics.from_result("nightly", result))

    diff = store.diff(normalize=True)  # the last two runs of `run web`
    assert (diff.a.id, diff.b.id) == (first, second)
    assert diff.names("status") == [down]
    assert diff.names("output") == [changed]
    assert diff.names("added") == diff.names("gone") == []
    assert len(store.diff().names("output")) == len(web) - 1  # unnormalised: times differ

    assert store.hosts(store.resolve("last"), ["failed", "unreachable"]) == [down]
    assert store.not_succeeded("run", "web") == (second, [down])
    shown = store.show(second)
    records = {h["host"]: h for h in shown.hosts}
    assert records[down]["status"] == "unreachable"
    assert "refused" in records[down]["error"]
    assert records[changed]["stdout"].endswith("new config\n")
    assert shown.summary_json()["exit_code"] == 4

    job = read_metrics(metrics)["nightly"]
    assert job.exit_code == 4
    assert job.counts["unreachable"] == 1
    assert job.counts["ok"] == len(web) - 1
    assert job.last_success == succeeded  # the failing run kept the last success
    assert store.last_success("run web") is not None
