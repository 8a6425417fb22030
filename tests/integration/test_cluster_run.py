"""``run`` and ``ping`` with ``--cluster``: the hosts sharded over a real Dask cluster.

A scheduler and two workers on 127.0.0.1 (tests/integration/test_cluster.py
starts them, by PID), against the session's lab; the records, exit codes and
files are compared with the same command run locally.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from remoteops.lab import Lab
from tests.helpers import run_cli
from tests.integration.test_cluster import _dask_cluster, _free_port, _stop
from tests.integration.test_procs import KINDS, _big_inventory, _records, kinds_command
from tests.integration.test_stop import _cleanup, _host_lines, _running, _token, _wait_for
from tests.readme import README

pytestmark = pytest.mark.integration

PLAYBOOKS = Path(__file__).parent.parent.parent / "playbooks"
HOSTS = 2 * len(KINDS)  # every kind of host, on each worker
TIMEOUT_S = 2


@dataclass(frozen=True)
class Cluster:
    address: str
    hidden: Path  # a directory the second worker sees empty
    hiding_worker: str  # that worker's address


def _worker_address(log: Path) -> str:
    found = re.search(r"Start worker at:\s+(tcp://\S+)", log.read_text(errors="replace"))
    assert found, log.read_text(errors="replace")
    return found.group(1)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A scheduler on 127.0.0.1 with two workers, for the module; the second one in a
    mount namespace where ``hidden`` is an empty file system."""
    work = tmp_path_factory.mktemp("dask")
    hidden = tmp_path_factory.mktemp("hidden-on-a-worker")
    with _dask_cluster(work, 2, hide=hidden) as (address, _procs):
        yield Cluster(address, hidden, _worker_address(work / "worker1.log"))


def _start(argv: list[str]) -> subprocess.Popen[str]:
    """The CLI in a session of its own (a signal to it reaches only it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "remoteops", "--no-log-file", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _finish(proc: subprocess.Popen[str]) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_run_and_ping_on_the_cluster_give_the_local_records(
    lab: Lab, cluster: Cluster, tmp_path: Path
) -> None:
    inventory = _big_inventory(lab, tmp_path, HOSTS)
    command = kinds_command(lab)
    runs = {}
    for where in ("local", "cluster"):
        retry = tmp_path / f"retry-{where}.txt"
        more = ["--cluster", cluster.address] if where == "cluster" else []
        proc = run_cli(
            "-v", "run", "all", "-i", str(inventory), "--json", "-t", str(TIMEOUT_S),
            "--retry-file", str(retry), *more, "--", command, timeout=120,
        )  # fmt: skip
        assert "Traceback" not in proc.stderr, proc.stderr
        sharded = f"--cluster {cluster.address}: {HOSTS} hosts over 2 workers" in proc.stderr
        assert sharded == (where == "cluster"), proc.stderr[-2000:]
        runs[where] = (proc.returncode, *_records(proc.stdout), retry.read_text())
    assert runs["cluster"] == runs["local"]
    code, hosts, _summary, _retry = runs["local"]
    assert code == 3  # a timeout outranks the rest
    statuses = {obj["host"].split("-", 1)[1]: obj["status"] for obj in hosts}
    assert statuses == {
        "ok": "ok",
        "failed": "failed",
        "timeout": "timeout",
        "unreachable": "unreachable",
        "auth": "unreachable",
        "hostkey": "hostkey",
    }
    pings = {}
    for where in ("local", "cluster"):
        more = ["--cluster", cluster.address] if where == "cluster" else []
        proc = run_cli("ping", "all", "-i", str(inventory), "--json", *more, timeout=120)
        objs = [json.loads(line) for line in proc.stdout.splitlines()]
        for obj in objs:
            for key in ("duration_s", "rtt_ms", "connect_ms"):
                obj.pop(key, None)
        pings[where] = (proc.returncode, sorted(objs, key=lambda o: o.get("host", "")))
    assert pings["cluster"] == pings["local"]
    assert pings["local"][0] == 4


def test_accept_new_keys_come_back_to_the_clients_known_hosts(
    lab: Lab, cluster: Cluster, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    proc = run_cli(
        "-v", "ping", "all", "-i", str(lab.inventory), "--json", "--cluster", cluster.address,
        "--host-key-policy", "accept-new", "--known-hosts", str(known),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    expected = set(lab.known_hosts.read_text().splitlines())
    assert set(known.read_text().splitlines()) == expected
    assert len(expected) == len(lab.hosts)
    for host in lab.hosts:  # written by the client, once per host
        assert proc.stderr.count(f"Host {host.address!r}: added ssh-ed25519 key") == 1, proc.stderr


def test_a_key_file_missing_on_a_worker_is_unreachable_naming_it(
    lab: Lab, cluster: Cluster
) -> None:
    """The key is at a path one worker does not have: that worker's hosts are unreachable,
    the reason naming it and the path; the other worker's hosts log in with it."""
    key = cluster.hidden / "id_ed25519"
    key.write_bytes(lab.client_key.read_bytes())
    key.chmod(0o600)
    argv = ["ping", "all", "-i", str(lab.inventory), "--key", str(key), "--json"]
    assert run_cli(*argv).returncode == 0  # here the key is there
    proc = run_cli(*argv, "--cluster", cluster.address)
    assert proc.returncode == 4, proc.stderr
    hosts = _host_lines(proc.stdout)
    assert sorted(hosts) == sorted(h.name for h in lab.hosts)
    hiding = 1 if cluster.hiding_worker == max(_addresses(cluster)) else 0
    lacking = {h.name for h in lab.hosts[hiding::2]}  # shard i: targets i, i+2, ...
    for name, obj in hosts.items():
        if name in lacking:
            assert obj["status"] == "unreachable", obj
            why = f"worker {cluster.hiding_worker}: no key file at {key}; install it there"
            assert why in obj["error"], obj["error"]
        else:
            assert obj["status"] == "ok", obj
    assert "BEGIN OPENSSH" not in proc.stdout + proc.stderr


def _addresses(cluster: Cluster) -> list[str]:
    from remoteops.cluster import connect

    client = connect(cluster.address, timeout=10)
    try:
        return sorted(client.nthreads())
    finally:
        client.close()


def test_operations_in_a_row_reuse_the_workers_sessions(lab: Lab, cluster: Cluster) -> None:
    """A playbook's steps: operations one after another on one ClusterExecutor run on
    the same shards and their sessions (the second one connects to no host)."""
    from remoteops.clusterrun import cluster_executor
    from remoteops.fleet import FleetOptions, resolve_fleet

    fleet = resolve_fleet("all", FleetOptions(inventory=(str(lab.inventory),)))
    with cluster_executor(fleet.executor, cluster.address, 10) as executor:
        first = {r.host: r for r in executor.ping()}
        second = {r.host: r for r in executor.ping()}
    assert sorted(first) == sorted(second) == sorted(h.name for h in lab.hosts)
    assert all(r.is_ok for r in [*first.values(), *second.values()]), first | second
    assert all(r.extra["connect_ms"] > 0 for r in first.values()), first
    assert all(r.extra["connect_ms"] == 0 for r in second.values()), second


def test_secrets_are_refused_up_front(lab: Lab, cluster: Cluster, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("hunter2\n")
    secret.chmod(0o600)
    common = ["-i", str(lab.inventory), "--cluster", cluster.address]
    for argv, what in (
        (["ping", "all", *common, "--key-passphrase-file", str(secret)], "--key-passphrase-file"),
        (["run", "all", *common, "--become-password-file", str(secret), "--", "id"], "sudo"),
    ):
        proc = run_cli(*argv)
        assert proc.returncode == 2, proc.stderr
        (line,) = proc.stderr.splitlines()
        assert line.startswith("remoteops: error: --cluster: "), line
        assert what in line, line
        assert "secrets never are" in line, line
        assert "hunter2" not in proc.stdout + proc.stderr
    # A password in the inventory is not sent either.
    inventory = tmp_path / "hosts.yml"
    host = lab.hosts[0]
    inventory.write_text(
        f"all:\n  hosts:\n    {host.name}:\n      ansible_host: {host.address}\n"
        f"      ansible_port: {host.port}\n      ansible_password: hunter2\n"
    )
    proc = run_cli("ping", "all", "-i", str(inventory), "--cluster", cluster.address)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        f"remoteops: error: --cluster: host {host.name}: an SSH password (ansible_password) "
        "would have to be sent to the workers, and secrets never are; give the workers key "
        "files at the same paths (or an agent), or run without --cluster"
    ]


def test_an_unreachable_scheduler_is_one_line_and_exit_2(lab: Lab, tmp_path: Path) -> None:
    address = f"tcp://127.0.0.1:{_free_port()}"
    proc = run_cli(
        "run", "all", "-i", str(lab.inventory), "--cluster", address, "--cluster-timeout", "1",
        "--", "true",
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"remoteops: error: --cluster {address}: no Dask scheduler answered within 1 s; "
        "start one ('dask scheduler') or check the address"
    ]
    # From the config file (its keys are the options' names) and the environment alike.
    config = tmp_path / "config.toml"
    config.write_text(f'cluster = "{address}"\ncluster-timeout = 1\n')
    config.chmod(0o600)
    for env in (
        dict(os.environ, REMOTEOPS_CONFIG=str(config)),
        dict(os.environ, REMOTEOPS_CLUSTER=address),
    ):
        ping = run_cli("ping", "all", "-i", str(lab.inventory), "--cluster-timeout", "1", env=env)
        assert ping.returncode == 2
        assert ping.stderr == proc.stderr


def test_ctrl_c_stops_the_remote_commands(lab: Lab, cluster: Cluster) -> None:
    token = _token()
    argv = ["run", "all", "-i", str(lab.inventory), "--json", "--cluster", cluster.address]
    with _cleanup([token]):
        proc = _start([*argv, "--", f"sleep 600.{token}"])
        try:
            assert _wait_for(lambda: len(_running(token)) >= len(lab.hosts), 30), _running(token)
            proc.send_signal(signal.SIGINT)
            out, err = _finish(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 130, err
        assert "Traceback" not in err
        hosts = _host_lines(out)
        assert sorted(hosts) == sorted(h.name for h in lab.hosts)
        for obj in hosts.values():
            assert obj["status"] == "interrupted", obj
        assert _wait_for(lambda: not _running(token), 10), _running(token)


def test_shards_whose_client_is_killed_stop_their_remote_commands(
    lab: Lab, cluster: Cluster
) -> None:
    token = _token()
    argv = ["run", "all", "-i", str(lab.inventory), "--cluster", cluster.address]
    with _cleanup([token]):
        proc = _start([*argv, "--", f"sleep 600.{token}"])
        try:
            assert _wait_for(lambda: len(_running(token)) >= len(lab.hosts), 30), _running(token)
            proc.kill()  # SIGKILL: the client can tell nobody
            proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        # The scheduler releases its task; each shard sees that and stops its commands.
        assert _wait_for(lambda: not _running(token), timeout=20), _running(token)


def test_a_worker_then_the_scheduler_dying_mid_run(
    lab: Lab, remote_dir: str, tmp_path: Path
) -> None:
    """A cluster of its own. First a worker is killed (kill -9) while its hosts run: the
    other worker's results are kept, its hosts are reported and never run again. Then,
    with one worker left, the scheduler is killed: what finished is kept, one line, exit 2."""
    token = _token()
    base = ["run", "all", "-i", str(lab.inventory), "--json"]
    work = tmp_path / "dask"
    waiting = [h.name for h in lab.hosts[0::2]]  # shard 0 (hosts 0, 2, 4) waits
    quick = [h.name for h in lab.hosts[1::2]]
    command = (
        f"echo ran >> {remote_dir}/ran; "
        f"case $(hostname) in {'|'.join(waiting)}) sleep 600.{token};; esac"
    )
    with _cleanup([token]), _dask_cluster(work, 2) as (address, procs):
        by_address = {_worker_address(work / f"worker{n}.log"): procs[n + 1] for n in range(2)}
        first = sorted(by_address)[0]  # shard 0's worker
        proc = _start([*base, "--cluster", address, "--", command])
        try:
            assert proc.stdout is not None
            seen = [json.loads(proc.stdout.readline())["host"] for _ in quick]
            assert sorted(seen) == sorted(quick)
            assert _wait_for(lambda: _sleeping(token) >= len(waiting), 20), _running(token)
            os.kill(by_address[first].pid, signal.SIGKILL)
            out, err = _finish(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 5, out + err
        hosts = _host_lines(out)
        assert sorted(hosts) == sorted(waiting)  # the quick hosts were read above
        for obj in hosts.values():
            assert obj["status"] == "failed", obj
            assert obj["error"] == f"interrupted: cluster worker {first} died", obj
        assert "Traceback" not in err
        for host in lab.hosts:  # each host ran the command once
            assert lab.host_path(host.name, f"{remote_dir}/ran").read_text() == "ran\n"

        # One worker left: the quick hosts end, the others wait when the scheduler goes.
        proc = _start([*base, "--cluster", address, "--", command])
        try:
            assert proc.stdout is not None
            seen = [json.loads(proc.stdout.readline())["host"] for _ in quick]
            assert sorted(seen) == sorted(quick)
            assert _wait_for(lambda: _sleeping(token) >= 2 * len(waiting), 20)
            _stop(procs[0])
            out, err = _finish(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
            # A worker without its scheduler keeps trying to reach it, deaf to TERM.
            for worker in procs[1:]:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait(15)
    assert proc.returncode == 2, err
    assert err.splitlines()[0] == (
        f"remoteops: error: --cluster {address}: the scheduler went away during the run; "
        "the results above are partial"
    ), err
    assert "Traceback" not in err
    hosts = _host_lines(out)
    assert sorted(hosts) == sorted(waiting)
    for obj in hosts.values():
        assert obj["status"] == "failed", obj
        assert obj["error"] == f"interrupted: the cluster's scheduler {address} went away", obj
    (summary,) = [o for o in _json(out) if o["type"] == "summary"]
    assert summary["exit_code"] == 2


def _sleeping(token: str) -> int:
    """How many hosts are in the command's ``sleep`` (its shell holds the token too, and
    is there before the host's ``echo ran``: counting it would race)."""
    count = 0
    for pid in _running(token):
        with contextlib.suppress(OSError):
            count += Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep\0")
    return count


def _json(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_the_readme_run_command_on_a_cluster(lab: Lab, cluster: Cluster) -> None:
    """README, "More than one machine": its run line, HOST being this cluster's."""
    (line,) = [
        line.split("   #")[0].strip()
        for line in README.read_text().splitlines()
        if line.startswith("remoteops run") and "--cluster tcp://HOST:8786" in line
    ]
    words = shlex.split(line.replace("tcp://HOST:8786", cluster.address))
    proc = run_cli(*words[1:3], "-i", str(lab.inventory), *words[3:])
    assert proc.returncode == 0, proc.stderr
    assert sorted(line.split(":")[0].strip() for line in proc.stdout.splitlines()) == sorted(
        h.name for h in lab.hosts
    )
    assert "load average" in proc.stdout


def _tree_of(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every regular file below ``root``: mode, mtime (s) and content."""
    return {
        p.relative_to(root).as_posix(): (
            p.stat().st_mode & 0o7777,
            int(p.stat().st_mtime),
            p.read_bytes(),
        )
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def _host_records(stdout: str, where: str) -> list[dict[str, Any]]:
    """The JSON host records without durations, the run's own directory names made equal."""
    objs = [json.loads(line) for line in stdout.replace(where, "WHERE").splitlines()]
    for obj in objs:
        obj.pop("duration_s", None)
    return sorted(
        (o for o in objs if o["type"] == "host"), key=lambda o: json.dumps(o, sort_keys=True)
    )


def test_put_and_get_of_a_tree_on_the_cluster_are_a_local_put_and_get(
    lab: Lab, cluster: Cluster, remote_dir: str, tmp_path: Path
) -> None:
    names = [h.name for h in lab.hosts[:4]]
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    (src / "top.txt").write_text("top\n")
    (src / "a" / "secret").write_bytes(b"s" * 70_000)
    (src / "a" / "secret").chmod(0o600)
    (src / "a" / "b" / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    common = ["-i", str(lab.inventory), "-l", ",".join(names), "--json"]
    sharded = f"--cluster {cluster.address}: {len(names)} hosts over 2 workers"
    records: dict[str, Any] = {}
    for where in ("local", "cluster"):
        more = ["--cluster", cluster.address] if where == "cluster" else []
        dest = f"{remote_dir}/{where}/"
        sent = run_cli("-v", "put", "all", *common, *more, str(src), dest, timeout=120)
        assert (sharded in sent.stderr) == (where == "cluster"), sent.stderr
        again = run_cli("put", "all", *common, *more, str(src), dest, timeout=120)
        local = tmp_path / f"got-{where}"
        local.mkdir()
        got = run_cli(
            "get", "all", *common, *more, f"{remote_dir}/{where}", str(local), timeout=120
        )
        for proc in (sent, again, got):
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert "Traceback" not in proc.stderr
        records[where] = [_host_records(p.stdout, where) for p in (sent, again, got)]
        for host in names:
            assert _tree_of(lab.host_path(host, f"{remote_dir}/{where}/src")) == _tree_of(src)
            fetched = local / host / remote_dir.lstrip("/") / where / "src"
            assert _tree_of(fetched) == _tree_of(src)
        assert not list(local.rglob("*.part"))
    assert records["cluster"] == records["local"]
    put_first, put_again, _get = records["cluster"]
    assert {(r["files"], r["unchanged"]) for r in put_first} == {(3, 0)}
    assert {(r["files"], r["unchanged"]) for r in put_again} == {(0, 3)}  # mtimes kept


def test_an_example_playbook_on_the_cluster_gives_the_local_records(
    lab: Lab, cluster: Cluster, remote_dir: str, tmp_path: Path
) -> None:
    # collect-logs: run, get (files back to the client), analyze; and a put step
    # whose sources travel packed, then read back.
    names = [h.name for h in lab.hosts[:4]]
    results = {}
    for where in ("local", "cluster"):
        cwd = tmp_path / where
        shutil.copytree(PLAYBOOKS, cwd / "playbooks")
        (cwd / "conf").mkdir()
        (cwd / "conf" / "app.conf").write_text("workers=4\n")
        (cwd / "put.yml").write_text(
            "- hosts: all\n  steps:\n"
            f"    - put: {{src: conf/, dest: {remote_dir}/{where}/}}\n"
            f"    - run: cat {remote_dir}/{where}/app.conf\n      register: conf\n"
            "    - assert:\n        that: [conf.stdout.strip() == 'workers=4']\n"
        )
        more = ["--cluster", cluster.address] if where == "cluster" else []
        outs = []
        for book in ("playbooks/collect-logs.yml", "put.yml"):
            proc = run_cli(
                "-v", "play", book, "-i", str(lab.inventory), "-l", ",".join(names), "--json",
                *more, cwd=cwd, timeout=120,
            )  # fmt: skip
            assert proc.returncode == 0, proc.stdout + proc.stderr
            sharded = f"--cluster {cluster.address}: {len(names)} hosts over 2 workers"
            assert (sharded in proc.stderr) == (where == "cluster"), proc.stderr
            assert "Traceback" not in proc.stderr
            outs.append(_host_records(proc.stdout, where))
        results[where] = outs
        for host in names:
            log = cwd / "collected" / host / "srv/app/log/app.log"
            assert log.read_bytes() == lab.host_path(host, "/srv/app/log/app.log").read_bytes()
    assert results["cluster"] == results["local"]


def test_run_analyze_on_the_cluster_gives_the_local_analysis(lab: Lab, cluster: Cluster) -> None:
    # The analyzers run as tasks on the cluster's workers, not in a local pool.
    command = "cat /srv/app/log/app.log"
    outs = {}
    for where in ("local", "cluster"):
        more = ["--cluster", cluster.address] if where == "cluster" else []
        proc = run_cli(
            "-v", "run", "all", "-i", str(lab.inventory), "--json", "-a", "logscan:top=5",
            "-a", "count:ERROR", *more, "--", command, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        on_cluster = "analysis: tasks go to the cluster's workers" in proc.stderr
        assert on_cluster == (where == "cluster"), proc.stderr
        objs = [json.loads(line) for line in proc.stdout.splitlines()]
        outs[where] = [o for o in objs if o["type"] == "analysis"]
    assert outs["cluster"] == outs["local"]
    assert [o["analyzer"] for o in outs["local"]] == ["logscan", "count"]
    assert outs["local"][1]["total"] > 0


def test_out_dir_on_the_cluster_holds_the_local_files(
    lab: Lab, cluster: Cluster, tmp_path: Path
) -> None:
    # Each host's exact output comes back from the workers and is written here.
    inventory = _big_inventory(lab, tmp_path, HOSTS)
    command = kinds_command(
        lab,
        failed="printf 'bad\\0' >&2",
        timeout="echo partial",
        rest="head -c 300000 /dev/zero | tr '\\0' x",
    )
    dirs = {}
    for where in ("local", "cluster"):
        more = ["--cluster", cluster.address] if where == "cluster" else []
        out = tmp_path / f"out-{where}"
        proc = run_cli(
            "run", "all", "-i", str(inventory), "-t", str(TIMEOUT_S), "--out-dir", str(out),
            "-a", "count:x", "--json", *more, "--", command, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 3, proc.stderr
        assert "Traceback" not in proc.stderr
        dirs[where] = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
        # The manifest lists names in the order hosts wrote them.
        manifest = dirs[where][".remoteops-last-run"].splitlines()
        dirs[where][".remoteops-last-run"] = b"\n".join(sorted(manifest))
        analyses = [json.loads(line) for line in proc.stdout.splitlines()]
        dirs[where]["analysis"] = json.dumps([a for a in analyses if a["type"] == "analysis"])
    assert dirs["cluster"] == dirs["local"]
    files = dirs["local"]

    def of(suffix: str) -> set[bytes]:
        return {data for name, data in files.items() if name.endswith(suffix)}

    assert of("-ok.out") == {b"x" * 300_000}
    assert of("-failed.err") == {b"bad\0"}
    assert of("-timeout.exit") == {b"timeout\n"}
    assert of("-unreachable.out") == set()  # no command ran there: no files
    assert not any(name.endswith(".part") for name in files)
