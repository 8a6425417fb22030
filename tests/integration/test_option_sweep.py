"""Every command, every path and number option, given the inputs people really have.

The cases are generated from the CLI's own parameters (typer's click
commands), so a new option is swept as soon as it exists: a ``Path`` option
gets a missing file, a directory, a non-UTF-8 name, an empty file and a
300-character name; an ``int`` or ``float`` option gets 0, a negative and a
non-number. A ``str`` parameter must be classified below as a path or not, or
the test fails and says so.

Each case runs ``remoteops.cli.main`` in a forked child of this process, with
real file descriptors for stdin, stdout and stderr (stdout encoding strictly,
as under a UTF-8 locale), a few at a time: the whole sweep takes seconds. A
refused input must end as exactly one line on stderr, ``remoteops: error:
...``, and exit 2, before any host is contacted; an input that is valid must
just work. Nothing may end in an internal error (exit 1) or a traceback.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import typer.main

from remoteops.cli import app, main
from remoteops.history import HistoryStore, default_history_path
from remoteops.lab import Lab
from remoteops.results import HostResult
from tests.conftest import free_port

pytestmark = pytest.mark.integration

Expect = Literal["refused", "valid"]
PATH_CASES = ("missing", "directory", "non-utf8", "empty", "long-name")
NUMBER_CASES = ("0", "-1", "abc")

# str parameters that name local files, and how a path becomes their value.
PATH_STRINGS: dict[str, Callable[[str], str]] = {
    "inventory": lambda path: path,
    "extra_vars": lambda path: f"@{path}",
    "paths": lambda path: path,  # put's SRC, get's LOCAL_DIR (see _place)
}
# str parameters that take a number (or a word such as auto): swept as numbers.
NUMBER_STRINGS = {"procs"}
NOT_PATHS = {
    "pattern", "command", "limit", "user", "host_key_policy", "become_user", "env",
    "analyze", "more", "start_at", "mode", "analyzer", "name", "group", "topic", "shell",
    "run", "run_a", "run_b", "job", "status", "since", "max_age", "max_size",
    "profile", "words", "cluster",
}  # fmt: skip

# What each path option accepts: for each case, refused (exit 2) or valid.
R: Expect = "refused"
V: Expect = "valid"
_INPUT = dict.fromkeys(PATH_CASES, R)
PATH_RULES: dict[str, dict[str, Expect]] = {
    "key": _INPUT,
    "ssh_config": {**_INPUT, "empty": V},  # an empty ssh_config is a valid one
    "known_hosts": {**_INPUT, "missing": V, "non-utf8": V, "empty": V},  # as OpenSSH: none known
    "stdin_file": {**_INPUT, "empty": V},
    "rules": _INPUT,  # empty: no rules, nothing to analyse (analyze has its ANALYZER too)
    "become_password_file": _INPUT,  # empty: no password in it
    "key_passphrase_file": _INPUT,
    "playbook": _INPUT,
    "extra_vars": _INPUT,
    "inventory": _INPUT,  # a directory here is an inventory directory, with no host in it
    "sources": {**_INPUT, "empty": V, "directory": V},  # analyze: a run with no host
    "put_sources": {**_INPUT, "directory": V, "empty": V},
    "retry_file": {**_INPUT, "missing": V, "non-utf8": V, "empty": V},
    "metrics": {**_INPUT, "missing": V, "non-utf8": V, "empty": V},
    "report": {**_INPUT, "missing": V, "non-utf8": V, "empty": V},
    "lock": {**_INPUT, "missing": V, "non-utf8": V, "empty": V},
    # A log file that cannot be written does not stop a run (README, Logging): one warning.
    "log_file": {**_INPUT, "missing": V, "non-utf8": V, "empty": V, "directory": V, "long-name": V},
    "out_dir": {**_INPUT, "missing": V, "non-utf8": V, "directory": V},
    "get_local_dir": {**_INPUT, "missing": V, "non-utf8": V, "directory": V},
    "lab_dir": {**_INPUT, "missing": V, "directory": V},  # lab up; status and down need a lab
    "output": {**_INPUT, "missing": V, "non-utf8": V, "empty": V},  # report -o FILE.html
}
# Number options for which 0 is a meaningful value.
ZERO_IS_VALID = {
    "retries", "max_output", "keepalive_interval", "latency", "lock_wait", "workers", "number",
}  # fmt: skip


@dataclass
class Case:
    name: str
    argv: list[str]
    expect: Expect
    cleanup: Callable[[], None] | None = None
    result: tuple[int, str, str] | None = field(default=None, repr=False)
    seconds: float = 0.0
    cpu: float = 0.0


# --------------------------------------------------------------------------- the CLI's parameters


def _commands() -> Iterator[tuple[tuple[str, ...], Any]]:
    root = typer.main.get_command(app)

    def walk(cmd: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                yield from walk(sub, (*path, name))
        else:
            yield path, cmd

    yield (), root
    yield from walk(root, ())


def _kind(param: Any) -> str:
    """Classify one parameter as "path", "number" or "other", from its annotation."""
    annotation = str(param.type_descriptor.annotation)
    if getattr(param, "count", False) or getattr(param, "is_flag", False):
        return "other"
    if "pathlib.Path" in annotation:
        return "path"
    if annotation in ("<class 'int'>", "<class 'float'>"):
        return "number"
    if param.name in PATH_STRINGS:
        return "path"
    if param.name in NUMBER_STRINGS:
        return "number"
    assert param.name in NOT_PATHS, (
        f"new str parameter {param.name!r}: add it to PATH_STRINGS or NOT_PATHS in this test"
    )
    return "other"


# --------------------------------------------------------------------------- valid invocations


class Sweep:
    """Builds each command's valid invocation against the lab, and the cases around it."""

    def __init__(self, lab: Lab, tmp: Path, remote_dir: str) -> None:
        self.lab = lab
        self.tmp = tmp
        self.host = lab.hosts[0].name
        self.remote_dir = remote_dir
        self.n = 0
        self.src = tmp / "src.txt"
        self.src.write_text("hello\n")
        self.book = tmp / "book.yml"
        self.book.write_text(f"- hosts: {self.host}\n  steps:\n    - ping:\n")
        self.results = tmp / "results.jsonl"
        self.results.write_text(
            '{"v": 1, "type": "host", "host": "h1", "status": "ok", "exit_code": 0, '
            '"stdout": "x\\n", "stderr": ""}\n'
        )
        self.rules = tmp / "rules.yml"
        self.rules.write_text("- group\n")

    def fresh(self, what: str) -> Path:
        self.n += 1
        return self.tmp / f"{what}-{self.n}"

    def value(self, case: str, what: str) -> str:
        """A path for ``case`` (new names each time, so no case sees another's leftovers)."""
        if case == "missing":
            return str(self.fresh(f"missing-{what}"))
        if case == "directory":
            directory = self.fresh(f"directory-{what}")
            directory.mkdir()
            return str(directory)
        if case == "non-utf8":
            return os.fsdecode(bytes(self.fresh(what)) + b"-\xff\xfe")
        if case == "empty":
            empty = self.fresh(f"empty-{what}")
            empty.write_bytes(b"")
            return str(empty)
        self.n += 1
        return str(self.tmp / f"{self.n:04d}{'x' * 296}")

    def defaults(self, command: tuple[str, ...]) -> dict[str, list[str]]:
        """Parameter name -> its values in a valid invocation of ``command``."""
        inv = [str(self.lab.inventory)]
        found = {"inventory": inv, "pattern": [self.host], "no_log_file": []}
        table: dict[tuple[str, ...], dict[str, list[str]]] = {
            (): {"no_log_file": []},
            ("run",): {**found, "command": ["true"]},
            ("ping",): found,
            ("put",): {**found, "paths": [str(self.src), f"{self.remote_dir}/"]},
            ("get",): {**found, "paths": ["/etc/hostname", str(self.fresh("got"))]},
            ("play",): {"inventory": inv, "playbook": [str(self.book)]},
            ("analyze",): {"analyzer": ["group"], "sources": [str(self.results)]},
            ("lab", "up"): {
                "lab_dir": [str(self.fresh("lab"))],
                "hosts": ["1"],
                "port": [str(free_port())],
            },
            ("lab", "status"): {"lab_dir": [str(self.lab.dir)]},
            ("lab", "down"): {"lab_dir": [str(self.fresh("no-lab"))]},
            ("inventory", "list"): {"inventory": inv},
            ("inventory", "graph"): {"inventory": inv},
            ("inventory", "host"): {"inventory": inv, "name": [self.host]},
            ("history", "list"): {},
            ("report",): {"run": ["last"], "output": [str(self.fresh("report.html"))]},
        }
        return dict(table[command])

    def argv(self, command: tuple[str, ...], cmd: Any, values: dict[str, list[str]]) -> list[str]:
        """The command line: root options, the command, its options, then its arguments."""
        root_values = values.pop("__root__", {"no_log_file": []})
        argv: list[str] = []
        for name, vals in root_values.items():
            argv += _option(name, vals)
        if not command:
            command, cmd = ("inventory", "list"), _command(("inventory", "list"))
            values = {**self.defaults(command), **values}
        argv += list(command)
        positional: list[str] = []
        for param in cmd.params:
            if param.name not in values:
                continue
            if param.param_type_name == "argument":
                if param.name == "command":
                    positional.append("--")
                positional += values[param.name]
            else:
                argv += _option(param.name, values[param.name], cmd)
        return argv + positional

    def cases(self) -> Iterator[Case]:
        for command, cmd in _commands():
            for param in cmd.params:
                kind = _kind(param)
                if kind == "path":
                    yield from self._path_cases(command, cmd, param)
                elif kind == "number":
                    yield from self._number_cases(command, cmd, param)

    def _path_cases(self, command: tuple[str, ...], cmd: Any, param: Any) -> Iterator[Case]:
        rule = param.name
        if command == ("put",) and rule == "paths":
            rule = "put_sources"
        elif command == ("get",) and rule == "paths":
            rule = "get_local_dir"
        assert rule in PATH_RULES, f"new path option {rule!r}: say in PATH_RULES what it accepts"
        for case in PATH_CASES:
            expect = PATH_RULES[rule][case]
            if rule == "lab_dir" and command != ("lab", "up"):
                expect = R
            if rule == "lab_dir" and case == "non-utf8":
                expect = R  # the lab writes its paths into sshd_config and YAML
            if (command, rule, case) == (("analyze",), "rules", "empty"):
                expect = V  # the ANALYZER argument is there to run
            if command == ("inventory", "graph") and rule == "inventory" and case != "long-name":
                expect = V if case in ("empty", "directory") else expect  # an empty tree
            values = self.defaults(command) if command else {}
            value = self.value(case, param.name)
            shown = PATH_STRINGS.get(param.name, lambda p: p)(value)
            _place(command, param.name, values, shown)
            cleanup = None
            if command == ("lab", "up") and expect == V:
                cleanup = _lab_down(values["lab_dir"][0])
            name = f"{' '.join(command) or '(root)'} {_flag(param)} {case}"
            yield Case(name, self.argv(command, cmd, values), expect, cleanup)

    def _number_cases(self, command: tuple[str, ...], cmd: Any, param: Any) -> Iterator[Case]:
        for case in NUMBER_CASES:
            expect: Expect = V if case == "0" and param.name in ZERO_IS_VALID else R
            values = self.defaults(command) if command else {}
            if command:
                values[param.name] = [case]
            else:
                values = {"__root__": {"no_log_file": [], param.name: [case]}}  # type: ignore[dict-item]
            cleanup = None
            if command == ("lab", "up") and expect == V:
                cleanup = _lab_down(values["lab_dir"][0])
            name = f"{' '.join(command) or '(root)'} {_flag(param)} {case}"
            yield Case(name, self.argv(command, cmd, values), expect, cleanup)


def _command(path: tuple[str, ...]) -> Any:
    return dict(_commands())[path]


def _option(name: str, values: list[str], cmd: Any = None) -> list[str]:
    if cmd is None:
        cmd = typer.main.get_command(app)
    (param,) = [p for p in cmd.params if p.name == name]
    flag = _flag(param)
    if getattr(param, "is_flag", False):
        return [flag]
    return [part for value in values for part in (flag, value)]


def _flag(param: Any) -> str:
    return next((o for o in param.opts if o.startswith("--")), param.opts[0])


def _place(command: tuple[str, ...], name: str, values: dict[str, Any], value: str) -> None:
    if not command:  # a root option
        root = {"no_log_file": []} if name != "log_file" else {}
        values["__root__"] = {**root, name: [value]}
    elif command == ("put",) and name == "paths":
        values["paths"] = [value, values["paths"][-1]]
    elif command == ("get",) and name == "paths":
        values["paths"] = [values["paths"][0], value]
    else:
        values[name] = [value]


def _lab_down(lab_dir: str) -> Callable[[], None]:
    def down() -> None:
        from remoteops.lab import lab_down

        if Path(lab_dir, "lab.json").exists():
            lab_down(Path(lab_dir))

    return down


# --------------------------------------------------------------------------- running cases


def _child(argv: list[str], out: Path, err: Path, env: dict[str, str]) -> None:
    """In the forked child: real fds 0-2, the streams a UTF-8 locale gives, then main()."""
    code = 1
    try:
        os.environ.clear()
        os.environ.update(env)
        for fd, path, flags in (
            (0, os.devnull, os.O_RDONLY),
            (1, str(out), os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
            (2, str(err), os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        ):
            opened = os.open(path, flags, 0o600)
            os.dup2(opened, fd)
            os.close(opened)
        sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "rb", closefd=False)))
        sys.stdout = io.TextIOWrapper(
            io.BufferedWriter(io.FileIO(1, "wb", closefd=False)), encoding="utf-8", errors="strict"
        )
        sys.stderr = io.TextIOWrapper(
            io.BufferedWriter(io.FileIO(2, "wb", closefd=False)),
            encoding="utf-8",
            errors="backslashreplace",
            line_buffering=True,
        )
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
    except BaseException:  # whatever happens, the parent sees it on fd 2
        import traceback

        os.write(2, traceback.format_exc().encode(errors="replace"))
        code = 99
    finally:
        os._exit(code)


def _run_all(cases: list[Case], tmp: Path, env: dict[str, str], parallel: int = 4) -> None:
    """Run every case in a forked child, ``parallel`` at a time; a child still running
    after 60 s is killed (and its case fails). Only this function's children are reaped."""
    pending = list(enumerate(cases))
    running: dict[int, tuple[int, float]] = {}
    deadline = time.monotonic() + 60 + 10 * len(cases)
    while (pending or running) and time.monotonic() < deadline:
        while pending and len(running) < parallel:
            index, case = pending.pop(0)
            pid = os.fork()
            if pid == 0:
                _child(case.argv, tmp / f"case{index}.out", tmp / f"case{index}.err", env)
            running[pid] = (index, time.monotonic())
        reaped = False
        for pid, (index, started) in list(running.items()):
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done == 0:
                if time.monotonic() - started > 60:
                    os.kill(pid, signal.SIGKILL)
                continue
            reaped = True
            del running[pid]
            case = cases[index]
            case.seconds = time.monotonic() - started
            case.cpu = usage.ru_utime + usage.ru_stime
            case.result = (
                os.waitstatus_to_exitcode(status),
                (tmp / f"case{index}.out").read_bytes().decode(errors="replace"),
                (tmp / f"case{index}.err").read_bytes().decode(errors="replace"),
            )
        if not reaped:
            time.sleep(0.005)
    for pid in running:  # only if the overall deadline passed
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert not running, "the sweep did not finish in time"
    assert not pending, "the sweep did not finish in time"


def _warm_up() -> None:
    """Import here, once, what every command imports, so forked children start warm."""
    import importlib

    for module in (
        "remoteops.argcheck", "remoteops.execution", "remoteops.session", "remoteops.transfer",
        "remoteops.inventory", "remoteops.sshconfig", "remoteops.hostkeys", "remoteops.target",
        "remoteops.playbook", "remoteops.analysis", "remoteops.analysis.sources",
        "remoteops.report", "remoteops.lab", "remoteops.runlock", "rich.console", "rich.table",
        "concurrent_log_handler", "pydantic", "typer._adapters", "typer._click.decorators",
        "encodings.idna", "zoneinfo", "unicodedata",
    ):  # fmt: skip
        importlib.import_module(module)
    importlib.import_module("remoteops.cli.app")._click_command()  # typer's command, once


def _problem(case: Case) -> str | None:
    assert case.result is not None
    code, _, err = case.result
    lines = err.splitlines()
    if code == 1 or code == 99 or "Traceback" in err or "internal error" in err:
        return f"exit {code}: {err.strip()[-600:]}"
    if case.expect == "refused":
        if code != 2:
            return f"expected exit 2, got {code}: {err.strip()[-300:]}"
        errors = [line for line in lines if line.startswith("remoteops: error: ")]
        # The error is one line; a pattern that matched nothing may be warned about first.
        others = [line for line in lines if line not in errors and "warning" not in line.lower()]
        if len(errors) != 1 or others or lines[-1] != errors[0]:
            return f"expected one line 'remoteops: error: ...', got {lines!r}"
        return None
    if code == 2:
        return f"a valid input was refused: {err.strip()[-300:]}"
    if code not in (0, 3, 4, 5):  # a valid input ends as any run ends
        return f"exit {code}: {err.strip()[-300:]}"
    return None


def test_every_path_and_number_option_fails_cleanly_or_works(
    lab: Lab, remote_dir: str, tmp_path: Path
) -> None:
    (tmp_path / "files").mkdir()
    sweep = Sweep(lab, tmp_path / "files", remote_dir)
    cases = list(sweep.cases())
    swept = {c.name.rsplit(" ", 1)[0] for c in cases}
    # Every command is reached, with the options the issue names among them.
    assert {n.split(" -")[0].split(" paths")[0] for n in swept} >= {
        "(root)", "run", "ping", "put", "get", "play", "analyze", "lab up", "lab status",
        "lab down", "inventory list", "inventory graph", "inventory host",
    }  # fmt: skip
    assert swept >= {
        "run --inventory", "run --key", "run --ssh-config", "run --known-hosts", "run --out-dir",
        "run --retry-file", "run --stdin", "run --rules", "run --become-password-file",
        "run --key-passphrase-file", "(root) --log-file", "(root) --lock", "play playbook",
        "play --extra-vars", "put paths", "get paths", "analyze sources", "lab up --dir",
        "run --forks", "run --port", "run --connect-timeout", "run --timeout", "run --retries",
        "run --max-output", "run --keepalive-interval", "run --keepalive-count", "lab up --hosts",
        "lab up --latency", "lab up --port", "analyze --workers", "(root) --lock-wait",
        "run --procs", "play --procs",
    }  # fmt: skip
    _warm_up()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "LANG": "C.UTF-8",
    }
    # A run in the history, for `report last -o FILE`.
    recorder = HistoryStore(default_history_path(env)).start_run(
        command="ping", argv=["remoteops", "ping"], pattern="all", inventory=None
    )
    recorder.host(HostResult(sweep.host, "127.0.0.1", 22, "ok", 0))
    recorder.finish(0, 0.1)
    start = time.monotonic()
    try:
        _run_all(cases, tmp_path, env)
    finally:
        for case in cases:
            if case.cleanup is not None:
                case.cleanup()
    elapsed = time.monotonic() - start
    problems = [f"{c.name}: {p}" for c in cases if (p := _problem(c))]
    if os.environ.get("SWEEP_REPORT"):
        slow = sorted(cases, key=lambda c: -c.cpu)[:20]
        total = f"{time.monotonic() - start:.1f}s wall, {sum(c.cpu for c in cases):.1f}s CPU"
        Path(os.environ["SWEEP_REPORT"]).write_text(
            "\n".join([*problems, total, *(f"{c.cpu:.2f}s {c.name}" for c in slow)]) + "\n"
        )
    assert not problems, f"{len(problems)} of {len(cases)} cases:\n" + "\n".join(problems)
    assert len(cases) > 300
    cpu = sum(c.cpu for c in cases)
    print(f"{len(cases)} cases in {elapsed:.1f}s ({cpu:.1f}s of CPU)")
