"""Analysis on real outputs and files from the lab: --analyze on run and get, and analyze."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from remoteops.lab import Lab
from tests.helpers import run_cli as cli

pytestmark = pytest.mark.integration

PLUGINS = Path(__file__).parent.parent / "data" / "analysis"


def plugin_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(PLUGINS), os.getcwd()]))


def parse(output: str) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert lines[-1]["type"] == "summary"
    hosts = {obj["host"]: obj for obj in lines if obj["type"] == "host"}
    analyses = [obj for obj in lines if obj["type"] == "analysis"]
    return hosts, analyses, lines[-1]


def test_run_with_every_output_analyzer(lab: Lab, tmp_path: Path) -> None:
    odd = lab.hosts[0].name
    command = (
        "df -P /; free; uptime; nproc; cat /etc/os-release; echo pid $$; "
        f'if [ "$(hostname)" = {odd} ]; then echo extra line; fi'
    )
    rules = tmp_path / "rules.yml"
    rules.write_text("- threshold: nproc < 100000\n  name: always\n- threshold: load1 < 0\n")
    result = cli(
        "run", "all", "-i", str(lab.inventory), "--json",
        "-a", "group", "-a", "group:normalize", "-a", "drift:normalize", "-a", "grep:^extra",
        "-a", "count:^ID=", "-a", "extract", "-a", "extract:os-release",
        "-a", "extract:pid (?P<pid>\\d+)", "--rules", str(rules),
        "--", command,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    hosts, analyses, summary = parse(result.stdout)
    names = sorted(h.name for h in lab.hosts)
    assert sorted(hosts) == names
    assert summary["exit_code"] == 0
    assert summary["findings"] == len(names) + 2  # the 'always' rule, drift and grep on one host
    (group, normal, drift, grep, count, extract, osr, pid, always, never) = analyses
    # Exact: the pid differs everywhere; normalised: one group and the odd host out.
    assert len(group["rows"]) == len(names)
    assert [r["count"] for r in normal["rows"]] == [len(names) - 1, 1]
    assert normal["outliers"] == [odd]
    assert [f["host"] for f in drift["findings"]] == [odd]
    assert "+extra line" in drift["rows"][0]["diff"]
    assert [f["host"] for f in grep["findings"]] == [odd]
    assert grep["total"] == 1
    assert count["total"] == len(names)
    parsers = {(r["host"], r["parser"]) for r in extract["rows"]}
    for name in names:
        for parser in ("df", "free", "uptime", "nproc", "os-release"):
            assert (name, parser) in parsers
    df_rows = [r for r in extract["rows"] if r["parser"] == "df"]
    assert all(r["mounted"] == "/" and 0 <= r["use%"] <= 100 for r in df_rows)
    nproc = {r["host"]: r["nproc"] for r in extract["rows"] if r["parser"] == "nproc"}
    assert set(nproc.values()) == {os.cpu_count()}
    assert {r["id"] for r in osr["rows"]} == {"debian"}
    assert {r["host"]: r["pid"] for r in pid["rows"]}.keys() == set(names)
    assert always["label"] == "always"
    assert sorted(f["host"] for f in always["findings"]) == names
    assert never["findings"] == []

    failing = cli(
        "run", "all", "-i", str(lab.inventory), "--json", "--rules", str(rules),
        "--fail-on-findings", "--", command,
    )  # fmt: skip
    assert failing.returncode == 5
    assert parse(failing.stdout)[2]["exit_code"] == 5
    assert parse(failing.stdout)[2]["failed"] == 0


def test_text_report_and_out_dir_files_by_path(lab: Lab, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = cli(
        "run", "all", "-i", str(lab.inventory), "--out-dir", str(out),
        "-a", "threshold:df.use% > 101", "-a", "count:x",
        "--", "df -P /; head -c 300000 /dev/zero | tr '\\0' x",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "0 of 6 hosts in breach of 'df.use% > 101'" in result.stdout
    # The counts come from the --out-dir files: the captured output is capped at 1 MiB,
    # these are not, and every x is counted.
    assert f"{300000 * len(lab.hosts)} matches over 6 hosts" in result.stdout
    again = cli("analyze", "count:x", str(out), "--json")
    assert again.returncode == 0
    assert json.loads(again.stdout.splitlines()[0])["total"] == 300000 * len(lab.hosts)


def _write_logs(lab: Lab, remote_dir: str) -> dict[str, int]:
    """Per host: a log whose error count is known; one big enough to be split."""
    expected = {}
    for index, host in enumerate(lab.hosts):
        lines = []
        errors = 0
        for n in range(2000 + 40000 * (index == 0)):
            if n % (7 + index) == 0:
                lines.append(f"2024-05-01T10:{n % 60:02d}:00Z {host.name} app[{n}]: ERROR disk {n}")
                errors += 1
            elif n % 11 == 0:
                lines.append(f"May  1 10:00:{n % 60:02d} {host.name} kernel: panic: oops {n:x}")
                errors += 1
            else:
                lines.append(f"2024-05-01T10:00:00Z {host.name} app[{n}]: INFO fine {n}")
        path = lab.host_path(host.name, f"{remote_dir}/app.log")
        path.write_text("\n".join(lines) + "\n")
        expected[host.name] = errors
    return expected


def test_get_with_logscan_and_analyze_again(lab: Lab, remote_dir: str, tmp_path: Path) -> None:
    expected = _write_logs(lab, remote_dir)
    local = tmp_path / "logs"
    result = cli(
        "get", "all", "-i", str(lab.inventory), "--json", "-a", "logscan:top=3",
        f"{remote_dir}/app.log", str(local),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    _, (logscan,), summary = parse(result.stdout)
    assert logscan["by_host"] == expected
    assert logscan["total"] == sum(expected.values())
    messages = {r["message"]: r for r in logscan["rows"]}
    assert len(logscan["rows"]) == 3
    disk = messages["<host> app[<n>]: ERROR disk <n>"]
    assert disk["hosts"] == len(lab.hosts)
    assert disk["first"].startswith("2024-05-01T10:00:00Z")
    assert disk["last"].startswith("2024-05-01T10:5")
    assert summary["findings"] == len(lab.hosts)

    # The downloaded files again, standalone: the same answer.
    again = cli("analyze", "logscan:top=3", str(local), "--json", "--fail-on-findings")
    assert again.returncode == 5
    assert json.loads(again.stdout.splitlines()[0])["by_host"] == expected
    drift = cli("analyze", "drift", str(local), "-a", "grep:app\\[0\\]: ERROR", "--json")
    assert drift.returncode == 0
    drift_obj, grep_obj, _ = (json.loads(x) for x in drift.stdout.splitlines())
    # Every host's log differs (host names): no majority, so no host is said to drift.
    assert drift_obj["findings"] == []
    assert grep_obj["total"] == len(lab.hosts)  # n = 0 is an error line on every host
    assert {f["document"] for f in grep_obj["findings"]} == {f"{remote_dir}/app.log"}


def test_get_analyzes_what_this_run_covered_not_older_files(
    lab: Lab, remote_dir: str, tmp_path: Path
) -> None:
    expected = _write_logs(lab, remote_dir)
    local = tmp_path / "logs"
    first = lab.hosts[0].name
    stale = local / first / remote_dir.lstrip("/") / "old.log"
    stale.parent.mkdir(parents=True)
    stale.write_text("2024-04-01T00:00:00Z old app[1]: ERROR from an earlier run\n" * 50)
    args = ["get", "all", "-i", str(lab.inventory), "--json", "-a", "logscan"]
    args += [f"{remote_dir}/app.log", str(local)]
    for round_ in ("downloaded", "unchanged"):
        result = cli(*args)
        assert result.returncode == 0, result.stderr
        hosts, (logscan,), _ = parse(result.stdout)
        assert logscan["by_host"] == expected, round_
        key = "files" if round_ == "downloaded" else "unchanged"
        assert all(h[key] == 1 and "_covered" not in h for h in hosts.values()), round_
    assert stale.exists()


def test_analysis_of_early_hosts_ends_before_the_slowest_host_answers(lab: Lab) -> None:
    slow = lab.hosts[-1].name
    # Each host prints the time it finished; the plugin records when it analysed a host.
    command = f'if [ "$(hostname)" = {slow} ]; then sleep 5; fi; date +%s.%N'
    result = cli(
        "run", "all", "-i", str(lab.inventory), "--json", "-a", "plugins:stamp",
        "--", command, env=plugin_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    hosts, (stamp,), _ = parse(result.stdout)
    slow_answered = float(hosts[slow]["stdout"])
    analysed = {r["host"]: r["analyzed_at"] for r in stamp["rows"]}
    assert set(analysed) == set(hosts)
    early = [h for h in hosts if h != slow]
    for host in early:
        assert float(hosts[host]["stdout"]) <= analysed[host] < slow_answered, host
    # ...and in worker processes, not in the CLI's own.
    assert len({r["pid"] for r in stamp["rows"]}) >= 1


def test_a_crashing_plugin_costs_only_its_host(lab: Lab) -> None:
    victim = lab.hosts[1].name
    result = cli(
        "run", "all", "-i", str(lab.inventory), "--json", "-a", f"plugins:crash:{victim}",
        "-a", "count:.", "--", "echo hello",
        env=plugin_env(),
    )  # fmt: skip
    assert result.returncode == 5
    _, (crash, count), summary = parse(result.stdout)
    assert summary["ok"] == len(lab.hosts)
    assert [e["host"] for e in crash["errors"]] == [victim]
    assert sorted(r["host"] for r in crash["rows"]) == sorted(
        h.name for h in lab.hosts if h.name != victim
    )
    assert count["total"] == 5 * len(lab.hosts)
    assert f"analysis plugins:crash: {victim}: the analysis worker process died" in result.stderr
    assert "Traceback" not in result.stderr


def _descendants(root: int) -> dict[int, str]:
    """PID -> start time of every live descendant of ``root`` (from /proc)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
        starts[int(entry)] = fields[19]
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = starts[child]
            todo.append(child)
    return found


def _alive(pid: int, start: str) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19] == start and fields[0] != "Z"


def test_ctrl_c_during_analysis_leaves_no_process(lab: Lab) -> None:
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "remoteops", "--no-log-file", "run", "all",
            "-i", str(lab.inventory), "-a", "plugins:slow:120", "--", "echo hi",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=plugin_env(), text=True,
    )  # fmt: skip
    try:
        started: dict[int, str] = {}
        deadline = time.monotonic() + 60
        # The forkserver and two workers, all busy in the slow plugin.
        while time.monotonic() < deadline and len(started) < 3:
            started = _descendants(proc.pid)
            time.sleep(0.1)
        assert len(started) >= 3, started
        time.sleep(0.5)
        started = _descendants(proc.pid)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(p, s) for p, s in started.items()):
        time.sleep(0.1)
    assert [p for p, s in started.items() if _alive(p, s)] == []


def test_workers_of_the_command_do_not_import_the_command_line(tmp_path: Path) -> None:
    """Run as the installed ``remoteops`` script, workers start without the CLI's imports.

    multiprocessing runs a script that has no module name again in every new
    worker (the script imports the whole command line); each worker then paid
    ~100 ms of CPU for nothing it uses.
    """
    for host in ("web1", "web2"):
        (tmp_path / "logs" / host).mkdir(parents=True)
        (tmp_path / "logs" / host / "app.log").write_text("ERROR one\n")
    script = Path(sys.executable).with_name("remoteops")
    result = subprocess.run(
        [str(script), "--no-log-file", "analyze", "plugins:modules:remoteops.cli,typer",
         str(tmp_path / "logs"), "--json", "--workers", "2"],
        capture_output=True, text=True, timeout=120, check=False, env=plugin_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    _hosts, (section,), _summary = parse(result.stdout)
    assert [row["imported"] for row in section["rows"]] == [[], []]
