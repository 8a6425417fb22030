"""The command line at a real terminal: the README's commands and scripts/demo on a pty.

Every other test runs remoteops without a terminal, which is how a crash of
every progress display at a terminal went unseen. Here each command of the
README's tour (A short tour, Files, Analysis, Playbooks) runs on a
pseudo-terminal against the session lab, and must exit with the expected code,
print no traceback and leave the terminal as it found it (cursor shown, every
escape sequence complete, attributes reset). Also: stdout redirected while
stderr is the terminal, Ctrl-C and SIGTERM mid-run, ``play --step`` answered
through the terminal, and a cron-like run with no terminal and an empty
environment.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from remoteops.lab import Lab, lab_down
from tests.conftest import free_port
from tests.ptyterm import (
    HIDE_CURSOR,
    PtyRun,
    assert_clean_exit,
    remoteops_argv,
    run_in_pty,
    terminal_env,
    terminal_problems,
)
from tests.readme import section_commands

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOUR_SECTIONS = ("## A short tour", "### Files", "### Analysis", "### Playbooks")


def readme_commands() -> list[str]:
    """Every ``remoteops`` line of the sh blocks of the README's tour sections."""
    return section_commands(*TOUR_SECTIONS)


@dataclass
class Tour:
    """A directory to run the tour in, with what its commands need."""

    lab: Lab
    cwd: Path
    remote: str  # a directory of the tour's own on every lab host
    env: dict[str, str]

    def argv(self, line: str) -> list[str]:
        """A README line (one command, no shell operators) as argv, with the lab's -i."""
        words = shlex.split(line)
        assert words[0] == "remoteops"
        args = words[1:]
        at = 2 if args[0] == "inventory" else 1
        if args[0] != "analyze":
            args[at:at] = ["-i", str(self.lab.inventory)]
        return [*remoteops_argv(), *args]

    def pty(self, line: str, **kwargs: object) -> PtyRun:
        """Run one README line on a pty in the tour's directory."""
        return run_in_pty(self.argv(line), cwd=self.cwd, env=self.env, **kwargs)  # type: ignore[arg-type]


def seed(lab: Lab, host: str, path: str, text: str, mode: int = 0o644) -> None:
    """A file on a lab host (in a directory of its login user's), owned by that user."""
    entry = pwd.getpwnam(lab.user)
    local = lab.host_path(host, path)
    local.parent.mkdir(exist_ok=True)
    os.chown(local.parent, entry.pw_uid, entry.pw_gid)
    local.write_text(text)
    os.chmod(local, mode)
    os.chown(local, entry.pw_uid, entry.pw_gid)


@pytest.fixture
def tour(lab: Lab, remote_dir: str, tmp_path: Path) -> Tour:
    """The tour's local files in a fresh directory, and its remote files on every host."""
    cwd = tmp_path / "tour"
    (cwd / "site").mkdir(parents=True)
    (cwd / "site" / "index.html").write_text("<h1>hello</h1>\n")  # the README's mkdir line
    shutil.copy(ROOT / "README.md", cwd / "README.md")
    shutil.copytree(ROOT / "playbooks", cwd / "playbooks")
    # The playbook writes under the tour's own directory, not the lab's shared /srv/app.
    book = cwd / "playbooks" / "rolling-config.yml"
    book.write_text(book.read_text().replace("app_dir: /srv/app", f"app_dir: {remote_dir}/app"))
    # site.yml: a restart that fails once on web02, so --retry-file names it.
    (cwd / "site.yml").write_text(
        "- name: site\n  hosts: web\n  steps:\n"
        "    - name: prepare\n      run: echo prepared\n"
        "    - name: restart\n"
        f"      run: test $(hostname) != web02 || test -e {remote_dir}/restarted-once"
        f" || {{ touch {remote_dir}/restarted-once; echo 'not ready' >&2; exit 1; }}\n"
        "    - name: verify\n      run: echo verified\n"
    )
    for host in lab.hosts:  # the README's printf and put lines
        seed(lab, host.name, f"{remote_dir}/logs/app.log", "boot ok\nkernel: ERROR disk full\n")
    state = tmp_path / "state"
    return Tour(lab=lab, cwd=cwd, remote=remote_dir, env=terminal_env(XDG_STATE_HOME=str(state)))


# What differs on the session lab, shared by every test: the lab's own become
# password file, and the tour's own remote directory instead of /srv. Lines not
# listed run verbatim.
def _substitutions(tour: Tour) -> dict[str, str]:
    return {
        "~/.local/state/remoteops/lab/become_password": str(tour.lab.become_password_file),
        "/srv/": f"{tour.remote}/",
    }


def as_run_here(tour: Tour, line: str) -> str:
    for old, new in _substitutions(tour).items():
        line = line.replace(old, new)
    return line


def json_objects(run: PtyRun) -> list[dict[str, object]]:
    """The JSON Lines a run printed on the terminal, each on one line of its own."""
    return [json.loads(line) for line in run.lines if line.startswith("{")]


def test_the_tour_commands_are_the_readmes() -> None:
    """The tour below runs every remoteops line of those README sections, no more, no less."""
    assert readme_commands() == TOUR, "the README's tour changed: update TOUR and the test"


TOUR = [
    "remoteops lab up",  # not run here: the session lab runs (test_readme.py runs it)
    "remoteops run all -- uptime",
    "remoteops run 'web:&eu' --gather -- 'uname -r'",
    "remoteops run db --json -- df -h / | python3 -m json.tool --json-lines",
    "remoteops run all --retry-file failed.txt -- 'test $(hostname) != web02'",
    "remoteops run all -l @failed.txt -- hostname",
    "remoteops run web --become --become-password-file "
    "~/.local/state/remoteops/lab/become_password -- id -un",
    "remoteops ping all",
    "remoteops inventory list 'web:!db' --json",
    "remoteops inventory graph",
    "remoteops inventory host web01",
    "remoteops put web ./site /srv/www",
    "remoteops put web ./site/ /srv/www -p --verify",
    "remoteops put all README.md /root/motd --mode 0644 -b --become-password-file "
    "~/.local/state/remoteops/lab/become_password",
    "remoteops put all 'site/*.html' /srv/pages/",
    "remoteops get all /etc/os-release ./facts",
    "remoteops get db '/etc/ssh/*.pub' /srv/pages ./fetched --json",
    "remoteops run all -a group:normalize -- 'uname -r; cat /etc/os-release'",
    "remoteops run all -a threshold:'df.use% > 90' -a threshold:'load1 > nproc' "
    "-- 'df -P /; uptime; nproc'",
    "remoteops run all --json -- df -P / > run.jsonl && remoteops analyze drift run.jsonl",
    "remoteops get all /srv/logs/app.log ./logs -a logscan:top=20",
    "remoteops analyze logscan ./logs --json",
    "remoteops play playbooks/rolling-config.yml --check",
    "remoteops play playbooks/rolling-config.yml",
    "remoteops play playbooks/rolling-config.yml",
    "remoteops play playbooks/rolling-config.yml -e app_dir=/srv/app2 --gather",
]


def test_the_short_tour_at_a_terminal(tour: Tour) -> None:
    lab = tour.lab
    names = [h.name for h in lab.hosts]
    web = [n for n in names if n.startswith("web")]

    run = tour.pty(TOUR[1])
    assert_clean_exit(run)
    for name in names:
        assert re.search(rf"{name} *\x1b\[0m: .*load average", run.text), run.text  # coloured
    run = tour.pty(TOUR[2])
    assert_clean_exit(run)
    assert HIDE_CURSOR in run.output  # the progress display was up, and taken down
    assert "web[01,03] (2)" in run.text

    # `| python3 -m json.tool`: stdout is a pipe, not the terminal; one JSON object a line.
    command, _, _ = TOUR[3].partition(" | ")
    run = tour.pty(command, stdout_path=tour.cwd / "db.jsonl")
    assert_clean_exit(run)
    objects = [json.loads(line) for line in (tour.cwd / "db.jsonl").read_text().splitlines()]
    assert sorted(str(o.get("host")) for o in objects[:-1]) == ["db01", "db02", "db03"]
    assert objects[-1]["type"] == "summary"
    run = tour.pty(command)  # and on the terminal, under the progress display
    assert_clean_exit(run)
    assert HIDE_CURSOR in run.output
    shown = sorted(str(o.get("host", o["type"])) for o in json_objects(run))
    assert shown == ["db01", "db02", "db03", "summary"], run.text

    run = tour.pty(TOUR[4])
    assert_clean_exit(run, 5)
    assert (tour.cwd / "failed.txt").read_text() == "web02\n"
    run = tour.pty(TOUR[5])
    assert_clean_exit(run)
    assert re.search(r"web02\x1b\[0m: web02", run.text), run.text
    assert "web01" not in run.text
    run = tour.pty(as_run_here(tour, TOUR[6]))
    assert_clean_exit(run)
    assert all(f"{name}\x1b[0m: root" in run.text for name in web), run.text

    run = tour.pty(TOUR[7])
    assert_clean_exit(run)
    assert run.text.count("ok  rtt") == len(names)
    run = tour.pty(TOUR[8])
    assert_clean_exit(run)
    assert json.loads(run.text)["web"]["hosts"] == web
    for line in TOUR[9:11]:
        run = tour.pty(line)
        assert_clean_exit(run)
    assert "connection:" in run.text


def test_files_at_a_terminal(tour: Tour) -> None:
    lab, rd = tour.lab, tour.remote
    for line in TOUR[11:15]:
        run = tour.pty(as_run_here(tour, line))
        assert_clean_exit(run)
        assert HIDE_CURSOR in run.output, f"no progress display for {line}"
        assert "0 unchanged" in run.text or "1 unchanged" in run.text, run.text
    assert (lab.host_path("web01", f"{rd}/www/site/index.html")).read_text() == "<h1>hello</h1>\n"
    assert (lab.host_path("db01", f"{rd}/pages/index.html")).read_text() == "<h1>hello</h1>\n"
    motd = lab.host_path("web02", "/root/motd")  # the lab host's own /root, through sudo
    assert (motd.stat().st_uid, motd.stat().st_mode & 0o7777) == (0, 0o644)
    assert motd.read_text() == (ROOT / "README.md").read_text()
    run = tour.pty(as_run_here(tour, TOUR[15]))
    assert_clean_exit(run)
    assert (tour.cwd / "facts" / "db02" / "etc" / "os-release").is_file()
    run = tour.pty(as_run_here(tour, TOUR[16]))
    assert_clean_exit(run)
    # Each JSON line whole on a line of its own, above the progress display.
    objects = {o.get("host", "summary"): o for o in json_objects(run)}
    assert sorted(objects) == ["db01", "db02", "db03", "summary"], run.text
    assert objects["db03"]["files"] == 2  # the host key and index.html
    assert (tour.cwd / "fetched" / "db03" / rd.lstrip("/") / "pages" / "index.html").is_file()


def test_analysis_at_a_terminal(tour: Tour) -> None:
    run = tour.pty(TOUR[17])
    assert_clean_exit(run)
    assert "== group:normalize" in run.text
    run = tour.pty(TOUR[18])
    assert_clean_exit(run)  # findings do not change the exit code without --fail-on-findings
    # `> run.jsonl && remoteops analyze drift run.jsonl`: stdout is a file, stderr the terminal.
    first, _, second = TOUR[19].partition(" && ")
    command, _, target = first.partition(" > ")
    run = tour.pty(command, stdout_path=tour.cwd / target)
    assert_clean_exit(run)
    assert HIDE_CURSOR in run.output  # a progress display on stderr while stdout is a file
    assert all(json.loads(line) for line in (tour.cwd / target).read_text().splitlines())
    run = tour.pty(second)
    assert_clean_exit(run)
    assert "== drift" in run.text
    run = tour.pty(as_run_here(tour, TOUR[20]))
    assert_clean_exit(run)
    assert "ERROR disk full" in run.text
    run = tour.pty(TOUR[21])
    assert_clean_exit(run)
    sections = [o for o in json_objects(run) if o.get("type") == "analysis"]
    # one ERROR line per host, in the files `get` pulled
    assert [(o["analyzer"], o["total"]) for o in sections] == [("logscan", len(tour.lab.hosts))]


def test_playbooks_at_a_terminal(tour: Tour) -> None:
    web = [h.name for h in tour.lab.hosts if h.name.startswith("web")]
    run = tour.pty(TOUR[22])
    assert_clean_exit(run)
    assert "would run: mkdir -p" in run.text
    run = tour.pty(TOUR[23])
    assert_clean_exit(run)
    for host in web:
        assert re.search(rf"{host}\s+ok=7 changed=3 failed=0", run.text), run.text
    run = tour.pty(TOUR[24])
    assert_clean_exit(run)
    for host in web:  # the config is unchanged and loaded: no restart
        assert re.search(rf"{host}\s+ok=6 changed=1 failed=0 skipped=1", run.text), run.text
    run = tour.pty(as_run_here(tour, TOUR[25]))
    assert_clean_exit(run)
    assert tour.lab.host_path(web[0], f"{tour.remote}/app2/app.conf").is_file()
    run = tour.pty("remoteops play site.yml --start-at restart --retry-file failed.txt")
    assert_clean_exit(run, 5)
    assert (tour.cwd / "failed.txt").read_text() == "web02\n"
    # --step: each question answered through the terminal, as an operator types.
    run = tour.pty(
        "remoteops play site.yml -l @failed.txt --step",
        steps=[
            (b"step 1 'prepare'", b"n\r"),
            (b"step 2 'restart'", b"y\r"),
            (b"step 3 'verify'", b"y\r"),
        ],
    )
    assert_clean_exit(run)
    assert "prepared" not in run.text  # answered no
    assert "verified" in run.text
    assert re.search(r"web02\s+ok=2 changed=2 failed=0 skipped=0", run.text), run.text


def test_stdout_to_a_file_while_stderr_is_the_terminal(tour: Tour, tmp_path: Path) -> None:
    """Live lines go to the file, remote stderr and the progress display to the terminal."""
    out = tmp_path / "out.txt"
    run = tour.pty(
        "remoteops run all -- 'echo out; echo err >&2; exit 3'", stdout_path=out, timeout=60
    )
    assert_clean_exit(run, 5)
    assert HIDE_CURSOR in run.output
    lines = out.read_text().splitlines()
    width = max(len(h.name) for h in tour.lab.hosts)
    assert sorted(lines) == sorted(f"{h.name.ljust(width)}: out" for h in tour.lab.hosts)
    for host in tour.lab.hosts:
        assert re.search(rf"\x1b\[2K{host.name} *: err\n", run.text), run.text  # above the bar
    assert f"{len(tour.lab.hosts)} hosts: 0 ok, {len(tour.lab.hosts)} failed" in run.text
    for line in ("remoteops put all README.md /tmp/", "remoteops get db /etc/hostname ./got"):
        run = tour.pty(line, stdout_path=out)
        assert_clean_exit(run)
        assert HIDE_CURSOR in run.output
        assert re.match(r"db01 *: ok  1 ", sorted(out.read_text().splitlines())[0])


def test_ctrl_c_mid_run_restores_the_terminal_and_exits_130(tour: Tour, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    start = time.monotonic()
    run = tour.pty(
        "remoteops run all --gather -- 'echo started >&2; sleep 60'",
        steps=[(HIDE_CURSOR, b"\x03")],
        timeout=40,
    )
    assert_clean_exit(run, 130)
    assert "interrupted" in run.text
    assert time.monotonic() - start < 30
    # Stdout to a file, remote lines on the way; and a second Ctrl-C while a
    # command that ignores SIGTERM is being stopped: exit at once, still clean.
    run = tour.pty(
        "remoteops run all -- 'trap \"\" TERM HUP; echo started; sleep 60'",
        stdout_path=out,
        steps=[(HIDE_CURSOR, b"\x03"), (b"Ctrl-C again", b"\x03")],
        timeout=40,
    )
    assert_clean_exit(run, 130)


def test_sigterm_mid_run_restores_the_terminal_and_exits_143(tour: Tour) -> None:
    run = tour.pty(
        "remoteops run all --gather -- 'sleep 60'",
        steps=[(HIDE_CURSOR, lambda pid: os.kill(pid, signal.SIGTERM))],
        timeout=40,
    )
    assert_clean_exit(run, 143)


def test_ctrl_c_at_a_step_prompt_stops_the_playbook(tour: Tour) -> None:
    run = tour.pty(
        "remoteops play site.yml --step",
        steps=[(b"step 1 'prepare'", b"y\r"), (b"step 2 'restart'", b"\x03")],
        timeout=40,
    )
    assert_clean_exit(run, 130)
    assert "prepared" in run.text
    assert "stopped at the --step prompt before step 2" in run.text
    # End of input at the prompt (Ctrl-D) quits too.
    run = tour.pty("remoteops play site.yml --step", steps=[(b"step 1", b"\x04")])
    assert_clean_exit(run, (0, 5))
    assert "stopped at the --step prompt before step 1" in run.text


def test_failures_at_a_terminal_leave_it_clean(tour: Tour, tmp_path: Path) -> None:
    """Exit codes 2, 4 and 5, each with the progress display up or not."""
    run = tour.pty("remoteops run nosuchhost -- true")
    assert_clean_exit(run, 2)
    closed = free_port()
    inventory = tmp_path / "down.ini"
    inventory.write_text(f"127.0.0.1:{closed}\n")
    run = run_in_pty(
        [*remoteops_argv(), "run", "-i", str(inventory), "all", "--gather", "--", "true"],
        cwd=tour.cwd,
        env=tour.env,
    )
    assert_clean_exit(run, 4)
    run = tour.pty("remoteops get all /nonexistent ./x")
    assert_clean_exit(run, 5)
    assert "remote /nonexistent" in run.text
    for args in (["--version"], ["--help"], ["run", "--help"], ["run"]):
        run = run_in_pty([*remoteops_argv(), *args], env=tour.env)
        assert_clean_exit(run, 2 if args == ["run"] else 0)


# --------------------------------------------------------------------------- demo


def test_demo_at_a_terminal_and_without_one(tmp_path: Path) -> None:
    """`bash scripts/demo` as the README says, on a pty; then again with no terminal."""
    lab_dir = tmp_path / "demo-lab"
    env = terminal_env(
        REMOTEOPS_LAB_DIR=str(lab_dir),
        LAB_PORT=str(free_port()),
        HOSTS="4",
        XDG_STATE_HOME=str(tmp_path / "state"),
    )
    try:
        run = run_in_pty(["bash", "scripts/demo"], cwd=ROOT, env=env, timeout=120)
        assert_clean_exit(run)
        assert HIDE_CURSOR in run.output
        for shown in ("+ remoteops get db", "RECAP", "The lab keeps running"):
            assert shown in run.text, run.text
        plain = subprocess.run(
            ["bash", "scripts/demo"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=120,
            check=False,
            start_new_session=True,  # no controlling terminal, as under cron
        )
        assert plain.returncode == 0, plain.stderr.decode()
        assert b"\x1b" not in plain.stdout + plain.stderr
        assert b"already running" in plain.stderr
        # The lab's own commands at the terminal too.
        run = run_in_pty([*remoteops_argv(), "lab", "status"], cwd=tmp_path, env=env)
        assert_clean_exit(run)
        assert "4/4 hosts answer" in run.text
        run = run_in_pty([*remoteops_argv(), "lab", "down"], cwd=tmp_path, env=env)
        assert_clean_exit(run)
        assert "(4 hosts stopped)" in run.text
    finally:
        if (lab_dir / "lab.json").exists():
            lab_down(lab_dir)


# --------------------------------------------------------------------------- cron


def test_cron_like_run_without_terminal_or_environment(lab: Lab, tmp_path: Path) -> None:
    """`env -i PATH=/usr/bin:/bin`, no terminal: output to a file, and to a closed pipe."""
    home = tmp_path / "home"
    home.mkdir()
    out = tmp_path / "disk.jsonl"
    inventory = ["-i", str(lab.inventory)]
    # README's crontab line, with a fresh HOME, then with none at all.
    for cron_env in ([f"HOME={home}"], []):
        log = [] if cron_env else ["--log-file", str(tmp_path / "cron.log")]
        cron = ["env", "-i", "PATH=/usr/bin:/bin", *cron_env, *remoteops_argv(), *log]
        run = [*inventory, "--json", "--", "df", "-P", "/"]
        with out.open("ab") as sink:
            done = subprocess.run(
                [*cron, "--lock", str(tmp_path / "disk.lock"), "run", "all", *run],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.PIPE,
                timeout=60,
                check=False,
                start_new_session=True,  # no controlling terminal
            )
        assert done.returncode == 0, done.stderr.decode()
        assert done.stderr == b""
    objects = [json.loads(line) for line in out.read_text().splitlines()]
    assert [o["type"] for o in objects].count("summary") == 2
    assert (home / ".local" / "state" / "remoteops" / "remoteops.log").is_file()
    assert (tmp_path / "cron.log").is_file()
    # A reader that has gone away: no traceback, not reported as a bug (exit 1).
    cron_with_home = ["env", "-i", "PATH=/usr/bin:/bin", f"HOME={home}", *remoteops_argv()]
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [*cron_with_home, "run", "all", *inventory, "--", "seq 1000"],
            stdin=subprocess.DEVNULL,
            stdout=write,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
            start_new_session=True,
        )
    finally:
        os.close(write)
    stderr = done.stderr.decode()
    assert done.returncode != 1, stderr
    assert "Traceback" not in stderr
    assert "internal error" not in stderr
    assert b"\x1b" not in done.stderr


# --------------------------------------------------------------------------- remote bytes

HOSTILE = (
    r'printf "title\033]0;pwned\007clear\033[2J\rweb02: forged\n\351t\303\251 \302\233x\tend\n"'
)
SHOWN = r"title\x1b]0;pwned\x07clear\x1b[2J\rweb02: forged"


def test_remote_bytes_cannot_drive_the_terminal(tour: Tour, tmp_path: Path) -> None:
    """Live lines, --gather blocks and failures show control characters escaped."""
    run = tour.pty(f"remoteops run web01 -- '{HOSTILE}; exit 1'")
    assert_clean_exit(run, 5)
    assert f"web01\x1b[0m: {SHOWN}\n" in run.text
    assert "web01\x1b[0m: \\xe9té \\x9bx\tend\n" in run.text  # not UTF-8, C1, tab kept
    run = tour.pty(f"remoteops run web --gather -- '{HOSTILE}'")
    assert_clean_exit(run)
    assert f"\n{SHOWN}\n\\xe9té \\x9bx\tend\n" in run.text
    # A playbook: the step's lines, and an assert's message quoting the output.
    book = tour.cwd / "hostile.yml"
    book.write_text(
        "- hosts: web01\n  steps:\n"
        f"    - run: {json.dumps(HOSTILE)}\n      register: out\n"
        "    - assert:\n        that: out.rc == 1\n        msg: 'got {{ out.stdout }}'\n"
    )
    run = tour.pty("remoteops play hostile.yml")
    assert_clean_exit(run, 5)
    assert f": {SHOWN}\n" in run.text
    quoted = f"got {SHOWN}\\n\ufffdté \\x9bx\tend\n"  # the template saw U+FFFD for \\xe9
    assert f"web01: failed: {quoted}" in run.text
    assert f"web01: failed: step 2 'assert': {quoted}" in run.text  # the summary


def test_remote_bytes_escaped_without_a_terminal_exact_in_out_dir_and_json(
    lab: Lab, tmp_path: Path
) -> None:
    from tests.helpers import run_cli

    inventory = str(lab.inventory)
    raw = b"title\x1b]0;pwned\x07clear\x1b[2J\rweb02: forged\n\xe9t\xc3\xa9 \xc2\x9bx\tend\n"
    out_dir = str(tmp_path / "out")
    cli = [sys.executable, "-m", "remoteops", "--no-log-file", "run", "web01", "-i", inventory]
    done = subprocess.run(
        [*cli, "--out-dir", out_dir, "--", HOSTILE], capture_output=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert b"\x1b" not in done.stdout
    assert done.stdout.decode() == f"web01: {SHOWN}\nweb01: \\xe9té \\x9bx\tend\n"
    assert (tmp_path / "out" / "web01.out").read_bytes() == raw
    result = run_cli("run", "web01", "-i", inventory, "--json", "--", HOSTILE)
    host = json.loads(result.stdout.splitlines()[0])
    assert host["stdout"] == raw.decode("utf-8", errors="replace")
    assert "\u009b" not in result.stdout  # the C1 CSI is a \u escape in the JSON text
    result = run_cli("run", "web01", "-i", inventory, "--gather", "--", HOSTILE)
    assert "\x1b" not in result.stdout
    assert f"{SHOWN}\n" in result.stdout


def test_remote_names_in_get_errors_are_escaped(tour: Tour, tmp_path: Path) -> None:
    """Names a server sends, quoted in a warning, an error and the summary, stay inert."""
    rd = tour.remote
    c1 = "\u009b2J"  # a C1 CSI: valid UTF-8, so a name get accepts and writes
    tree = tour.lab.host_path("web01", f"{rd}/tree")
    tree.mkdir()
    user = pwd.getpwnam(tour.lab.user)
    os.chown(tree, user.pw_uid, user.pw_gid)
    seed(tour.lab, "web01", f"{rd}/tree/file{c1}", "data\n")
    os.symlink("file", tour.lab.host_path("web01", f"{rd}/tree/link{c1}"))  # not followed
    shown = {"file": f"{rd}/tree/file\\x9b2J", "link": f"{rd}/tree/link\\x9b2J"}
    for local in (tour.cwd / "got", tmp_path / "got"):  # a directory where the file goes
        (local / "web01" / rd.lstrip("/") / "tree" / f"file{c1}").mkdir(parents=True)
    run = tour.pty(f"remoteops get web01 {rd}/tree ./got")
    assert_clean_exit(run, 5)
    screen = "\n".join(run.lines)
    assert f"remote {shown['link']}: symlink not followed" in screen  # a warning
    assert f"web01: failed: local got/web01{shown['file']}: is a directory\n" in screen
    assert c1 not in run.text
    log = tmp_path / "log"
    get = ["get", "web01", "-i", str(tour.lab.inventory), f"{rd}/tree", str(tmp_path / "got")]
    result = subprocess.run(
        [*remoteops_argv(), "--log-file", str(log), *get],
        capture_output=True,
        timeout=60,
        check=False,
        text=True,
    )
    assert result.returncode == 5
    assert c1 not in result.stderr + result.stdout
    assert f"remote {shown['link']}: symlink not followed" in result.stderr
    assert f"{shown['file']}: is a directory" in result.stderr
    assert f"remote {shown['link']}: symlink not followed" in log.read_text()
    assert c1 not in log.read_text()


def test_terminal_checker_catches_what_it_should() -> None:
    """The checks above would see a hidden cursor, a cut sequence, a retitle."""
    assert terminal_problems(b"\x1b[?25lwork\x1b[?25h\x1b[1mbold\x1b[0m") == []
    assert terminal_problems(b"\x1b[?25lwork") == ["the cursor is left hidden"]
    assert terminal_problems(b"text\x1b[3") == ["unterminated escape sequence b'\\x1b[3'"]
    assert terminal_problems(b"\x1b]0;t\x07") == [
        "the output drives the terminal: b'\\x1b]0;t\\x07'"
    ]
    assert terminal_problems(b"\x1b[31mred") == ["attributes left on: \\x1b[31m"]
