"""`remoteops play` against the lab's real sshd servers."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from remoteops.lab import Lab, lab_up
from tests.conftest import free_port
from tests.helpers import gated_rolling_config
from tests.helpers import run_cli as cli

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = ROOT / "playbooks"
RECAP_LINE = re.compile(r"^(\w+) +ok=\d+ changed=\d+ failed=(\d+) .*unreachable=(\d+)", re.M)


def play(lab: Lab, playbook: Path, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return cli("play", str(playbook), "-i", str(lab.inventory), *args, **kwargs)


def json_lines(output: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    objs = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert objs
    assert objs[-1]["type"] == "summary"
    assert all(o["type"] == "host" for o in objs[:-1])
    return objs[:-1], objs[-1]


def write_book(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "book.yml"
    path.write_text(text)
    return path


def accepted(lab: Lab, host: str) -> int:
    """Logins sshd accepted so far on ``host`` (LogLevel VERBOSE logs one line per login)."""
    return lab.sshd_log(host).read_text(errors="replace").count("Accepted publickey")


def seed(lab: Lab, host: str, remote: str, text: str) -> None:
    """Write a file (and its missing directories) on a lab host as its login user would."""
    entry = pwd.getpwnam(lab.user)
    local = lab.host_path(host, remote)
    for directory in reversed([d for d in local.parents if not d.exists()]):
        directory.mkdir()
        os.chown(directory, entry.pw_uid, entry.pw_gid)
    local.write_text(text)
    os.chown(local, entry.pw_uid, entry.pw_gid)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def start_lab(lab_factory: list[Path], tmp_path: Path, hosts: int) -> Lab:
    lab_dir = tmp_path / f"lab{hosts}"
    lab_factory.append(lab_dir)
    return lab_up(lab_dir, hosts=hosts, port=free_port()).lab


# --------------------------------------------------------------------------- examples


def test_every_example_playbook_runs_green_on_a_fresh_lab(
    lab_factory: list[Path], tmp_path: Path
) -> None:
    """As a newcomer runs them right after `lab up`: from a checkout, by relative path,
    --check first, then for real; nothing seeded by the test. Each does its job: the lab
    ships the sample app (remoteops.lab.app) the examples audit and collect."""
    lab = start_lab(lab_factory, tmp_path, 6)
    names = [h.name for h in lab.hosts]
    web = [n for n in names if n.startswith("web")]
    cwd = tmp_path / "checkout"
    shutil.copytree(PLAYBOOKS, cwd / "playbooks")
    conf = (PLAYBOOKS / "files" / "app.conf").read_bytes()

    def checked(out: str) -> None:
        """The recap lists hosts, and none failed or was unreachable."""
        recap = RECAP_LINE.findall(out)
        assert recap, out
        assert [
            host for host, failed, unreachable in recap if (failed, unreachable) != ("0", "0")
        ] == []

    def version_audit(out: str) -> None:
        # db01 drifts: a warning, not a failure; no other host warns.
        assert "db01 : WARNING app 2.4.0 drifts, the fleet runs 2.4.1" in out
        assert out.count("WARNING") == 1, out

    def collect_logs(out: str) -> None:
        for host in names:
            log = cwd / "collected" / host / "srv/app/log/app.log"
            assert log.read_bytes() == lab.host_path(host, "/srv/app/log/app.log").read_bytes()
        assert re.search(r"== logscan:top=5: [1-9]\d* error lines on [1-9]\d* of 6 hosts", out)

    def rolling_config(out: str) -> None:
        for host in web:
            assert lab.host_path(host, "/srv/app/app.conf").read_bytes() == conf
            loaded = lab.host_path(host, "/srv/app/loaded.sha256").read_text().strip()
            assert loaded == sha256(conf), host

    def disk_report(out: str) -> None:
        assert "STEP 3 [below the limit] (assert)\n  -> ok: db[01-03],web[01-03] (6)" in out

    examples: dict[str, Callable[[str], None]] = {
        "collect-logs.yml": collect_logs,
        "disk-report.yml": disk_report,
        "rolling-config.yml": rolling_config,
        "version-audit.yml": version_audit,
    }
    assert sorted(p.name for p in PLAYBOOKS.glob("*.yml")) == sorted(examples)
    for name, does_its_job in examples.items():
        book = f"playbooks/{name}"
        before = sorted(cwd.rglob("*"))
        result = cli("play", book, "-i", str(lab.inventory), "--check", cwd=cwd)
        assert result.returncode == 0, f"{book} --check: {result.stdout}{result.stderr}"
        checked(result.stdout)
        assert sorted(cwd.rglob("*")) == before  # --check fetched nothing
        result = cli("play", book, "-i", str(lab.inventory), cwd=cwd)
        assert result.returncode == 0, f"{book}: {result.stdout}{result.stderr}"
        checked(result.stdout)
        does_its_job(result.stdout)


def test_example_playbooks_on_20_hosts(lab_factory: list[Path], tmp_path: Path) -> None:
    lab = start_lab(lab_factory, tmp_path, 20)
    names = [h.name for h in lab.hosts]
    web = [n for n in names if n.startswith("web")]

    # Rolling config update: every web host gets the config and loads it.
    result = play(lab, PLAYBOOKS / "rolling-config.yml", "--json")
    assert result.returncode == 0, result.stderr
    lines, summary = json_lines(result.stdout)
    assert summary["exit_code"] == 0
    assert set(summary["recap"]) == set(web)
    for host in web:
        assert summary["recap"][host] == {
            "ok": 7,
            "changed": 3,
            "failed": 0,
            "skipped": 0,
            "unreachable": 0,
            "ignored": 0,
            "interrupted": 0,
        }
        conf = lab.host_path(host, "/srv/app/app.conf").read_bytes()
        assert conf == (PLAYBOOKS / "files" / "app.conf").read_bytes()
        assert lab.host_path(host, "/srv/app/loaded.sha256").exists()
    # serial [1, 25%] of 10 hosts: batches of 1, 2, 2, 2, 2, 1; the canary first.
    first_step = [o["host"] for o in lines if o["step"] == 1]
    assert first_step[0] == "web01"
    # A second run changes nothing and restarts nothing.
    again = play(lab, PLAYBOOKS / "rolling-config.yml", "--json")
    assert again.returncode == 0
    _, summary = json_lines(again.stdout)
    assert summary["recap"]["web05"]["changed"] == 1  # only mkdir -p, which always runs
    assert summary["recap"]["web05"]["skipped"] == 1  # the restart

    # Version audit: the lab's db01 runs app 2.4.0, the fleet 2.4.1. Naming the
    # release fails the hosts that do not run it.
    result = play(lab, PLAYBOOKS / "version-audit.yml", "-e", "app_version=2.4.1", "--json")
    assert result.returncode == 5
    lines, summary = json_lines(result.stdout)
    assert summary["failed"] == 1
    assert summary["ok"] == 19
    assert summary["recap"]["db01"]["failed"] == 1
    (drift,) = [o for o in lines if o["status"] == "failed"]
    assert drift["host"] == "db01"
    assert drift["error"] == "app 2.4.0, not 2.4.1"
    (warning,) = [o for o in lines if "WARNING" in o["stdout"]]
    assert (warning["host"], warning["stdout"]) == (
        "db01",
        "WARNING app 2.4.0 drifts, the fleet runs 2.4.1\n",
    )

    # Logs: every lab host logs 0 to 2 ERROR lines; web01's logs are gone.
    errors = {
        host: lab.host_path(host, "/srv/app/log/app.log").read_text().count(" ERROR ")
        for host in names
    }
    shutil.rmtree(lab.host_path("web01", "/srv/app/log"))
    del errors["web01"]
    noisy = sorted(host for host, count in errors.items() if count > 1)
    assert 0 < len(noisy) < len(errors)
    collected = tmp_path / "collected"
    result = play(
        lab, PLAYBOOKS / "collect-logs.yml", "-e", f"collect_dir={collected} max_errors=1"
    )
    assert result.returncode == 5, result.stderr
    failed = re.findall(r"^(\w+) *: failed: (.*)$", result.stderr, re.M)
    assert failed, result.stderr
    assert sorted(failed) == [(h, "2 ERROR lines in /srv/app/log (limit 1)") for h in noisy]
    assert sorted(p.name for p in collected.iterdir()) == sorted(errors)
    assert "web01  ok=1 changed=0 failed=0 skipped=4" in result.stdout  # no logs: skipped
    # The analysis stage saw every collected log's error lines.
    total, hosts_with = sum(errors.values()), sum(1 for c in errors.values() if c)
    assert f"== logscan:top=5: {total} error lines on {hosts_with} of 19 hosts" in result.stdout

    # Disk report: thresholds from -e; over the warning level every host warns.
    result = play(lab, PLAYBOOKS / "disk-report.yml", "-e", "warn_percent=-1", "--gather")
    assert result.returncode == 0, result.stderr
    assert "WARNING /srv is" in result.stdout
    assert "(20)" in result.stdout  # the warning folded over all 20 hosts
    result = play(lab, PLAYBOOKS / "disk-report.yml", "-e", "max_percent=-1", "--json")
    assert result.returncode == 5
    _, summary = json_lines(result.stdout)
    assert summary["failed"] == 20
    assert summary["recap"]["web01"] == {
        "ok": 1,
        "changed": 0,
        "failed": 1,
        "skipped": 1,
        "unreachable": 0,
        "ignored": 0,
        "interrupted": 0,
    }


def test_rolling_config_run_again_restarts_the_hosts_an_interrupted_run_left(
    lab: Lab, remote_dir: str, tmp_path: Path
) -> None:
    """A rollout stopped between upload and restart leaves a host with the new config on
    disk and the old one loaded; running the playbook again restarts that host."""
    app_dir, gate = f"{remote_dir}/app", f"{remote_dir}/go"
    web = [h.name for h in lab.hosts if h.name.startswith("web")]
    new = (PLAYBOOKS / "files" / "app.conf").read_bytes()
    old = b"workers=2\n"
    for host in web:  # the app runs the previous config everywhere
        seed(lab, host, f"{app_dir}/app.conf", old.decode())
        seed(lab, host, f"{app_dir}/loaded.sha256", sha256(old) + "\n")

    def state(host: str) -> tuple[str, str]:
        """(sha256 of the config on disk, sha256 of the config the app loaded)"""
        conf = lab.host_path(host, f"{app_dir}/app.conf").read_bytes()
        return sha256(conf), lab.host_path(host, f"{app_dir}/loaded.sha256").read_text().strip()

    # Ctrl-C while the canary waits at a gate after the upload: its restart never runs.
    book = gated_rolling_config(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "remoteops", "--no-log-file", "play", str(book),
         "-i", str(lab.inventory), "-e", f"app_dir={app_dir} gate={gate}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for _ in range(1000):
            line = proc.stdout.readline()
            if not line or b"at-the-gate" in line:
                break
        assert b"at-the-gate" in line
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for host in web:  # no gate loop may outlive the test
            lab.host_path(host, gate).touch()
    assert proc.returncode == 130
    assert state(web[0]) == (sha256(new), sha256(old))  # new config, never restarted
    for host in web[1:]:
        assert state(host) == (sha256(old), sha256(old)), f"{host} was started"

    result = play(lab, PLAYBOOKS / "rolling-config.yml", "-e", f"app_dir={app_dir}", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    lines, _ = json_lines(result.stdout)
    for host in web:
        assert state(host) == (sha256(new), sha256(new)), host
    restarted = [o["host"] for o in lines if o["step_name"] == "restart the app" and o["changed"]]
    assert sorted(restarted) == sorted(web)  # the canary too, though its upload changed nothing
    (canary_upload,) = [
        o for o in lines if o["host"] == web[0] and o["step_name"] == "upload the config"
    ]
    assert canary_upload["changed"] is False


# --------------------------------------------------------------------------- connections


def test_five_steps_on_100_hosts_use_one_connection_per_host(
    lab_factory: list[Path], tmp_path: Path
) -> None:
    lab = start_lab(lab_factory, tmp_path, 100)
    (tmp_path / "motd").write_text("hello\n")
    book = write_book(
        tmp_path,
        "- hosts: all\n"
        "  steps:\n"
        "    - run: hostname\n"
        "      register: name\n"
        "    - put: {src: motd, dest: /tmp/motd}\n"
        "    - run: cat /tmp/motd\n"
        "    - ping:\n"
        "    - assert:\n"
        "        that: name.stdout == inventory_hostname\n",
    )
    before = {h.name: accepted(lab, h.name) for h in lab.hosts}
    result = play(lab, book, "--json")
    assert result.returncode == 0, result.stderr
    lines, summary = json_lines(result.stdout)
    assert summary["ok"] == 100
    assert len(lines) == 500
    after = {h.name: accepted(lab, h.name) for h in lab.hosts}
    assert {h: after[h] - before[h] for h in after} == {h: 1 for h in after}


# --------------------------------------------------------------------------- rollout


def test_a_failed_canary_stops_the_rollout_before_the_second_batch(
    lab: Lab, tmp_path: Path
) -> None:
    marker = f"/tmp/rolled-{uuid.uuid4().hex[:8]}"
    book = write_book(
        tmp_path,
        "- hosts: all\n"
        '  serial: [1, "25%"]\n'
        "  steps:\n"
        "    - run: touch " + marker + "\n"
        "    - run: test {{ inventory_hostname }} != web01\n"
        "    - run: echo after\n",
    )
    before = {h.name: accepted(lab, h.name) for h in lab.hosts}
    result = play(lab, book, "--json")
    assert result.returncode == 5
    lines, summary = json_lines(result.stdout)
    assert {o["host"] for o in lines} == {"web01"}
    assert [o["step"] for o in lines] == [1, 2]
    assert summary["failed"] == 1
    assert summary["skipped"] == len(lab.hosts) - 1
    assert summary["stopped"].startswith("rollout stopped in batch 1/")
    assert "the batch's only host failed" in summary["stopped"]
    assert "not started" in summary["stopped"]
    assert "rollout stopped in batch 1/" in result.stderr
    for host in lab.hosts:
        contacted = accepted(lab, host.name) - before[host.name]
        assert contacted == (1 if host.name == "web01" else 0)
        assert lab.host_path(host.name, marker).exists() == (host.name == "web01")
    lab.host_path("web01", marker).unlink()


def test_failed_hosts_drop_out_and_the_retry_file_names_them(lab: Lab, tmp_path: Path) -> None:
    book = write_book(
        tmp_path,
        "- hosts: all\n"
        "  steps:\n"
        "    - name: gate\n"
        "      run: test {{ inventory_hostname }} != db02\n"
        "    - name: after\n"
        "      run: echo after\n"
        "    - name: fails but ignored\n"
        "      run: exit 3\n"
        "      ignore_errors: true\n"
        "      register: r\n"
        "    - assert:\n"
        "        that: r.rc == 3 and r.failed\n",
    )
    retry = tmp_path / "retry.txt"
    result = play(lab, book, "--json", "--retry-file", str(retry))
    assert result.returncode == 5
    lines, summary = json_lines(result.stdout)
    assert [o["step"] for o in lines if o["host"] == "db02"] == [1]
    assert len([o for o in lines if o["step"] == 2]) == len(lab.hosts) - 1
    assert retry.read_text() == "db02\n"
    assert summary["recap"]["web01"] == {
        "ok": 3,
        "changed": 2,
        "failed": 0,
        "skipped": 0,
        "unreachable": 0,
        "ignored": 1,
        "interrupted": 0,
    }
    # Again on the failed host only, from the second step on.
    result = play(lab, book, "-l", f"@{retry}", "--start-at", "after", "--json")
    assert result.returncode == 0, result.stderr
    lines, summary = json_lines(result.stdout)
    assert {o["host"] for o in lines} == {"db02"}
    assert [o["step"] for o in lines] == [2, 3, 4]


def test_a_step_timeout_is_exit_3(lab: Lab, tmp_path: Path) -> None:
    book = write_book(tmp_path, "- hosts: web01\n  steps:\n    - run: sleep 30\n      timeout: 1\n")
    result = play(lab, book, "--json", timeout=60)
    assert result.returncode == 3
    lines, _ = json_lines(result.stdout)
    assert lines[0]["status"] == "timeout"
    assert "within 1s (the step's timeout)" in lines[0]["error"]


# --------------------------------------------------------------------------- templates


def test_hostile_values_arrive_literally(lab: Lab, tmp_path: Path) -> None:
    token = uuid.uuid4().hex[:8]
    pwned = f"/tmp/pwned-{token}"
    hostile = {
        "semicolon": f"x; touch {pwned}-1",
        "subst": f"$(touch {pwned}-2)",
        "backtick": f"`touch {pwned}-3`",
        "quote": f"a'b\"c; touch {pwned}-4",
        "jinja": "{{ lookup('pipe', 'touch " + pwned + "-5') }}",
        "newline": f"line\ntouch {pwned}-6",
    }
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "hosts.yml").write_text(lab.inventory.read_text())
    (inventory / "host_vars").mkdir()
    (inventory / "host_vars" / "web01.yml").write_text(json.dumps(hostile))
    steps = "".join(
        f"    - run: printf '%s' {{{{ {name} }}}}\n      register: {name}_out\n"
        f"    - assert:\n        that: {name}_out.stdout == {name}\n"
        for name in hostile
    )
    book = write_book(
        tmp_path,
        "- hosts: web01\n  steps:\n" + steps + "    - run: printf '%s' $(printf x)"
        " {{ subst_out.stdout }} {{ extra }}\n      register: again\n",
    )
    extra = json.dumps({"extra": f"; touch {pwned}-7"})
    result = cli("play", str(book), "-i", str(inventory), "--json", "-e", extra)
    assert result.returncode == 0, result.stdout + result.stderr
    lines, _ = json_lines(result.stdout)
    outputs = {o["step"]: o["stdout"] for o in lines if o["action"] == "run"}
    assert list(outputs.values())[:-1] == list(hostile.values())
    assert list(outputs.values())[-1] == f"x$(touch {pwned}-2); touch {pwned}-7"
    leftovers = list(lab.host_path("web01", "/tmp").glob(f"pwned-{token}*"))
    assert leftovers == []


# --------------------------------------------------------------------------- modes


def test_check_mode_lists_steps_and_changes_nothing(lab: Lab, tmp_path: Path) -> None:
    app_dir = f"/tmp/app-{uuid.uuid4().hex[:8]}"
    before = {h.name: accepted(lab, h.name) for h in lab.hosts}
    result = play(lab, PLAYBOOKS / "rolling-config.yml", "--check", "-e", f"app_dir={app_dir}")
    assert result.returncode == 0, result.stderr
    assert f"would run: mkdir -p {app_dir}  on web01 (1)" in result.stdout
    assert f"would put {PLAYBOOKS.relative_to(ROOT)}" not in result.stdout  # absolute paths shown
    assert "would run if loaded.rc != 0 (depends on --check results)" in result.stdout
    assert "web01  ok=0 changed=0 failed=0 skipped=7" in result.stdout
    for host in lab.hosts:
        assert accepted(lab, host.name) == before[host.name]
        assert not lab.host_path(host.name, app_dir).exists()
    # A step marked check_safe runs; its result feeds later steps.
    book = write_book(
        tmp_path,
        "- hosts: web01\n  steps:\n    - run: hostname\n      register: h\n      check_safe: true\n"
        "    - run: touch " + app_dir + "\n      when: h.stdout == 'web01'\n",
    )
    result = play(lab, book, "--check", "--json")
    assert result.returncode == 0, result.stderr
    lines, _ = json_lines(result.stdout)
    assert lines[0]["stdout"] == "web01\n"
    assert lines[1]["check_mode"] is True
    assert lines[1]["would"] == f"run: touch {app_dir}"
    assert not lab.host_path("web01", app_dir).exists()


def test_become_script_env_and_get(lab: Lab, tmp_path: Path) -> None:
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "who.py").write_text(
        "#!/usr/bin/env python3\nimport os, sys\nprint(os.getuid(), os.environ.get('LANG'),"
        " *sys.argv[1:])\n"
    )
    name = f"/tmp/got-{uuid.uuid4().hex[:8]}"
    book = write_book(
        tmp_path,
        "- hosts: db01\n  steps:\n"
        "    - run: id -u\n      become: true\n      register: root\n"
        "    - script: files/who.py {{ word }}\n      env: {LANG: C.UTF-8}\n      register: who\n"
        "    - run: echo {{ root.stdout }} > " + name + "\n"
        "    - get: {src: " + name + ", dest: " + str(tmp_path / "got") + "}\n"
        "      register: got\n"
        "    - assert:\n        that: [root.stdout == '0', got.files == 1]\n",
    )
    result = play(
        lab,
        book,
        "--json",
        "-e",
        "word='two words'",
        "--become-password-file",
        str(lab.become_password_file),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines, _ = json_lines(result.stdout)
    uid = pwd.getpwnam(lab.user).pw_uid
    assert lines[1]["stdout"] == f"{uid} C.UTF-8 two words\n"
    assert (tmp_path / "got" / "db01" / name.lstrip("/")).read_text() == "0\n"
    password = lab.become_password_file.read_text().strip()
    assert password not in result.stdout + result.stderr


def test_step_asks_on_a_terminal(lab: Lab, tmp_path: Path) -> None:
    import pty
    import select
    import time

    marker = f"/tmp/step-{uuid.uuid4().hex[:8]}"
    book = write_book(
        tmp_path,
        "- hosts: web01\n  steps:\n    - name: first\n      run: touch " + marker + "-1\n"
        "    - name: second\n      run: touch " + marker + "-2\n",
    )
    main, secondary = pty.openpty()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "remoteops",
            "--no-log-file",
            "play",
            str(book),
            "-i",
            str(lab.inventory),
            "--step",
        ],
        stdin=secondary,
        stdout=subprocess.DEVNULL,
        stderr=secondary,
    )
    os.close(secondary)
    seen = b""
    answers = [b"n\n", b"y\n"]
    deadline = time.monotonic() + 60
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.2)
            if not ready:
                continue
            try:
                seen += os.read(main, 4096)
            except OSError:
                break
            if seen.count(b"[q]uit: ") > 2 - len(answers):
                os.write(main, answers.pop(0))
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main)
    assert proc.returncode == 0
    assert b"step 1 'first' (run) on web01 (1)?" in seen
    assert not lab.host_path("web01", f"{marker}-1").exists()
    assert lab.host_path("web01", f"{marker}-2").exists()
    lab.host_path("web01", f"{marker}-2").unlink()


def test_policies_any_errors_fatal_and_max_fail_percentage(lab: Lab, tmp_path: Path) -> None:
    fatal = write_book(
        tmp_path,
        "- hosts: all\n  any_errors_fatal: true\n  steps:\n"
        "    - run: test {{ inventory_hostname }} != db01\n    - run: echo second\n",
    )
    result = play(lab, fatal, "--json")
    assert result.returncode == 5
    lines, summary = json_lines(result.stdout)
    assert {o["step"] for o in lines} == {1}
    assert "any_errors_fatal" in summary["stopped"]
    assert summary["skipped"] == len(lab.hosts) - 1
    # 1 failure in a batch of 3 is 33%: under 50% the rollout goes on.
    tolerant = write_book(
        tmp_path,
        "- hosts: all\n  serial: 3\n  max_fail_percentage: 50\n  steps:\n"
        "    - run: test {{ inventory_hostname }} != web02\n    - run: echo second\n",
    )
    result = play(lab, tolerant, "--json")
    assert result.returncode == 5
    lines, summary = json_lines(result.stdout)
    assert summary["stopped"] is None
    assert summary["ok"] == len(lab.hosts) - 1
    assert len([o for o in lines if o["step"] == 2]) == len(lab.hosts) - 1


def test_an_unreachable_host_is_exit_4_and_the_others_go_on(lab: Lab, tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        lab.inventory.read_text()
        + f"    ghosts:\n      hosts:\n        ghost: {{ansible_host: 127.0.0.1, "
        f"ansible_port: {free_port()}}}\n"
    )
    book = write_book(tmp_path, "- hosts: all\n  steps:\n    - ping:\n    - run: hostname\n")
    result = cli("play", str(book), "-i", str(inventory), "--json")
    assert result.returncode == 4, result.stderr
    lines, summary = json_lines(result.stdout)
    assert summary["unreachable"] == 1
    assert summary["ok"] == len(lab.hosts)
    assert summary["recap"]["ghost"]["unreachable"] == 1
    assert [o["step"] for o in lines if o["host"] == "ghost"] == [1]


def test_ctrl_c_stops_the_play_with_exit_130(lab: Lab, tmp_path: Path) -> None:
    import signal
    import time

    marker = f"/tmp/started-{uuid.uuid4().hex[:8]}"
    book = write_book(
        tmp_path,
        "- hosts: web01\n  steps:\n    - run: touch " + marker + "; sleep 60\n"
        "    - run: echo never\n",
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "remoteops",
            "--no-log-file",
            "play",
            str(book),
            "-i",
            str(lab.inventory),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not lab.host_path("web01", marker).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        lab.host_path("web01", marker).unlink(missing_ok=True)
    assert proc.returncode == 130
    lines, summary = json_lines(out)
    assert [(o["step"], o["status"]) for o in lines] == [(1, "interrupted")]
    assert summary["exit_code"] == 130
