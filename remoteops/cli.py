"""The ``remoteops`` command line: a thin Typer layer over the library.

This is the only module that prints or exits. Commands parse their arguments,
call the library, render what comes back and map errors to the exit codes of
docs/exit-codes.md. Tracebacks never show local variables (they may hold secrets) and
appear only with ``--debug``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import json
import logging
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
import typer.main

from remoteops import __version__, cliparams
from remoteops.errors import RemoteOpsError, UsageError
from remoteops.logconfig import (
    LogSettings,
    PrintableFormatter,
    default_log_path,
    hold_stderr,
    release_stderr,
    setup_logging,
)
from remoteops.outputs import EXIT_BROKEN_PIPE, guard_streams, watch
from remoteops.wording import plural

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from contextlib import AbstractContextManager

    from remoteops.fleet import FleetOptions
    from remoteops.results import HostResult, RunResult

__all__ = ["app", "main"]

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USAGE = 2
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


@dataclass(slots=True)
class _State:
    debug: bool = False
    verbosity: int = 0
    lock_fd: int | None = None
    live: Any = None  # the progress display on the terminal, while one is up


_state = _State()


class _LazyConsole:
    """A rich Console built on first use: importing rich costs ~50 ms of every start,
    and a run whose output goes to files or pipes never needs it.

    Attribute access is passed on; rich's own classes (a progress display, the
    log handler) are given the real Console from :meth:`get`, since they also
    use it as a context manager, which a stand-in cannot be.
    """

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._console: Any = None

    def get(self) -> Any:
        """The rich Console itself, built now if it was not yet."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._kwargs)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


# Soft wrap: a long line (a JSON line, an error) printed above a progress display
# is left for the terminal to wrap, not cut into several lines.
# markup=False: what they print holds paths and host names, where [...] is text, not style.
stderr: Any = _LazyConsole(stderr=True, highlight=False, soft_wrap=True, markup=False)
stdout: Any = _LazyConsole(highlight=False, soft_wrap=True, markup=False)

_CONTEXT = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(
    name="remoteops",
    help=(
        "Run commands and move files across a fleet over SSH, with verified host keys, "
        "exit codes cron can use, and local analysis of what comes back.\n\n"
        "The reference (every option, exit codes, JSON Lines, patterns, inventories): "
        "remoteops help TOPIC, man remoteops, or docs/ in the source repository.\n\n"
        "Example: remoteops run web -- uptime"
    ),
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings=_CONTEXT,
    rich_markup_mode=None,
)
lab_app = typer.Typer(
    help=(
        "A local fleet of real OpenSSH servers to try remoteops on.\n\n"
        'Example: remoteops lab up && remoteops run all -i "$(remoteops lab status '
        '--inventory-path)" -- hostname'
    ),
    no_args_is_help=True,
    context_settings=_CONTEXT,
    rich_markup_mode=None,
)
app.add_typer(lab_app, name="lab")


def _version_callback(value: bool) -> None:
    if not value:
        return
    import cryptography
    import paramiko

    typer.echo(
        f"remoteops {__version__} (paramiko {paramiko.__version__}, "
        f"cryptography {cryptography.__version__}, "
        f"Python {platform.python_version()})"
    )
    raise typer.Exit(EXIT_OK)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version_callback,
            is_eager=True,
            help="Print the versions of remoteops, paramiko, cryptography and Python.",
        ),
    ] = False,
    verbose: Annotated[
        int, typer.Option("-v", "--verbose", count=True, help="More log lines on stderr (-vv).")
    ] = 0,
    debug: Annotated[
        bool,
        typer.Option("--debug", help="Debug logs (paramiko's too) and full tracebacks on errors."),
    ] = False,
    log_file: Annotated[
        Path | None,
        typer.Option(
            "--log-file",
            envvar="REMOTEOPS_LOG_FILE",
            help="Rotating log file; default $XDG_STATE_HOME/remoteops/remoteops.log.",
        ),
    ] = None,
    no_log_file: Annotated[
        bool,
        typer.Option("--no-log-file", envvar="REMOTEOPS_NO_LOG_FILE", help="Write no log file."),
    ] = False,
    lock: Annotated[
        Path | None,
        typer.Option(
            "--lock",
            envvar="REMOTEOPS_LOCK",
            metavar="FILE",
            help="Run only if no other run holds FILE (flock); else exit 75. For cron.",
        ),
    ] = None,
    lock_wait: Annotated[
        float,
        typer.Option("--lock-wait", metavar="SEC", help="Wait up to SEC for --lock to be free."),
    ] = 0.0,
) -> None:
    """Global options; they go before the command."""
    _state.debug = debug or _state.debug
    _state.verbosity = verbose
    handler: logging.Handler
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler = RichHandler(
            console=stderr.get(),  # the Console progress bars use: logs print above them
            show_time=False,
            show_path=False,
            rich_tracebacks=False,
            markup=False,
        )
        handler.setFormatter(PrintableFormatter("%(message)s"))
    else:
        # Not a terminal (cron, pipes, tests): plain lines, and no rich import.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(PrintableFormatter("%(levelname)s %(name)s: %(message)s"))
    settings = LogSettings(
        log_file=None if no_log_file else (log_file or default_log_path()),
        verbosity=verbose,
        debug=_state.debug,
    )
    try:
        setup_logging(settings, stderr_handler=handler)
    except OSError as exc:
        # A log file we cannot open must not stop the run; say so once.
        setup_logging(
            LogSettings(log_file=None, verbosity=verbose, debug=_state.debug),
            stderr_handler=handler,
        )
        logger.warning("log file %s cannot be written (%s); logging to stderr only", log_file, exc)
    if lock_wait < 0:
        raise UsageError("--lock-wait must be 0 or more seconds")
    if lock is not None:
        from remoteops.runlock import acquire_run_lock

        # Held until the process exits, however it exits.
        _state.lock_fd = acquire_run_lock(lock, wait=lock_wait)


# --------------------------------------------------------------------------- lab

_LabDir = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        help="Lab directory; default $REMOTEOPS_LAB_DIR, else $XDG_STATE_HOME/remoteops/lab.",
    ),
]


def _lab_dir(value: Path | None) -> Path:
    from remoteops.lab import default_lab_dir

    return (value or default_lab_dir()).absolute()


@lab_app.command("up")
def lab_up_cmd(
    hosts: Annotated[int, typer.Option("--hosts", "-n", help="How many hosts.")] = 10,
    lab_dir: _LabDir = None,
    latency: Annotated[
        int,
        typer.Option("--latency", help="Round-trip delay in ms added by a TCP proxy per host."),
    ] = 0,
    port: Annotated[
        int,
        typer.Option("--port", envvar="REMOTEOPS_LAB_PORT", help="SSH port of every lab host."),
    ] = 2222,
    install: Annotated[
        bool, typer.Option("--install", help="Install openssh-server with apt-get if missing.")
    ] = False,
) -> None:
    """Start HOSTS real sshd servers, each with its own address, host key, hostname and files.

    Writes an Ansible YAML inventory, a known_hosts and a client key into the
    lab directory, so commands against the lab work with strict host key
    checking. As root each host gets its own mount and UTS namespace, and a
    sample app for playbooks/: /srv/app/VERSION (db01 drifts) and a log with
    a few ERROR lines in /srv/app/log/.

    Example: remoteops lab up --hosts 20 --latency 100
    """
    from remoteops.argcheck import check_output_dir, shown
    from remoteops.lab import lab_up

    if lab_dir is not None:
        if shown(lab_dir) != str(lab_dir):
            raise UsageError(
                f"--dir {shown(lab_dir)}: the lab writes its paths into sshd_config and YAML; "
                "give a directory name in UTF-8"
            )
        check_output_dir(lab_dir, "--dir", create=False)
    report = lab_up(_lab_dir(lab_dir), hosts=hosts, port=port, latency_ms=latency, install=install)
    lab = report.lab
    if report.was_running:
        stderr.print(f"A lab of {plural(len(lab.hosts), 'host')} is already running in {lab.dir}.")
    else:
        stderr.print(
            f"Lab of {plural(len(lab.hosts), 'host')} up in {report.elapsed_s:.1f}s in {lab.dir}"
            + (f" (latency {lab.latency_ms} ms)" if lab.latency_ms else "")
        )
    for what in report.not_isolated:
        stderr.print(f"not isolated without root: {what}")
    stderr.print(f"inventory:   {lab.inventory}")
    stderr.print(f"known_hosts: {lab.known_hosts}")
    stderr.print(f"try:         remoteops run all -i {lab.inventory} -- hostname")


@lab_app.command("status")
def lab_status_cmd(
    lab_dir: _LabDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    inventory_path: Annotated[
        bool, typer.Option("--inventory-path", help="Print only the inventory's path.")
    ] = False,
) -> None:
    """Show the lab's files and which hosts answer.

    Example: remoteops lab status --json
    """
    from remoteops.lab import lab_status

    lab, statuses = lab_status(_lab_dir(lab_dir))
    if inventory_path:
        sys.stdout.write(f"{lab.inventory}\n")
        return
    answering = sum(1 for s in statuses if s.is_answering)
    if as_json:
        data: dict[str, Any] = {
            "dir": str(lab.dir),
            "inventory": str(lab.inventory),
            "known_hosts": str(lab.known_hosts),
            "client_key": str(lab.client_key),
            "ssh_config": str(lab.ssh_config),
            "user": lab.user,
            "become_password_file": str(lab.become_password_file) if lab.is_root_mode else None,
            "isolated": lab.is_root_mode,
            "latency_ms": lab.latency_ms,
            "running": lab.is_running(),
            "hosts": [
                {
                    "name": s.host.name,
                    "address": s.host.address,
                    "port": s.host.port,
                    "groups": list(s.host.groups),
                    "answers": s.is_answering,
                }
                for s in statuses
            ],
        }
        sys.stdout.write(json.dumps(data) + "\n")
        return
    from rich.table import Table

    table = Table("host", "address", "port", "groups", "answers", box=None)
    for s in statuses:
        table.add_row(
            s.host.name,
            s.host.address,
            str(s.host.port),
            ",".join(s.host.groups),
            "yes" if s.is_answering else "NO",
        )
    stdout.print(table)
    stdout.print(
        f"{answering}/{plural(len(statuses), 'host')} "
        f"{'answers' if answering == 1 else 'answer'}; lab directory {lab.dir}"
    )
    stdout.print(f"inventory {lab.inventory}")
    if answering < len(statuses):
        raise typer.Exit(4)


@lab_app.command("down")
def lab_down_cmd(lab_dir: _LabDir = None) -> None:
    """Stop every process the lab started (by PID) and remove the files it created.

    Example: remoteops lab down
    """
    from remoteops.lab import lab_down

    lab = lab_down(_lab_dir(lab_dir))
    stderr.print(f"Lab in {lab.dir} is down ({plural(len(lab.hosts), 'host')} stopped).")


# --------------------------------------------------------------------------- targeting

_Inventory = Annotated[
    list[str] | None,
    typer.Option(
        "-i",
        "--inventory",
        help=(
            "Inventory: Ansible YAML or INI file or directory (read as ansible-core reads "
            "them), a host list ([user@]host[:port] lines; one address on two ports is two "
            "hosts, ADDRESS:PORT), ansible-inventory --list JSON, or 'a,b,c'. Repeatable. "
            "Default $REMOTEOPS_INVENTORY, else ./inventories/hosts.yml."
        ),
    ),
]
_Limit = Annotated[
    str | None,
    typer.Option(
        "-l",
        "--limit",
        help=(
            "Further limit hosts (Ansible pattern). Numbers with - or , in brackets are a "
            "node set of names (web[01-03,07]); [x:y] and [x] pick a group's hosts by "
            "position (web[0:2]). @FILE: the names in FILE, one per line, # comments; a "
            "FILE naming no host selects none."
        ),
    ),
]
_Forks = Annotated[
    int | None,
    typer.Option(
        "-f",
        "--forks",
        help=(
            "Most hosts worked on at once. Default: all hosts, at most 256 and a quarter of "
            "the open-file limit."
        ),
    ),
]
_User = Annotated[str | None, typer.Option("-u", "--user", help="Login user (beats inventory).")]
_Key = Annotated[
    list[Path] | None, typer.Option("--key", help="Private key file (repeatable; beats inventory).")
]
_Port = Annotated[int | None, typer.Option("--port", help="SSH port (beats inventory).")]
_SshConfig = Annotated[
    Path | None,
    typer.Option("-F", "--ssh-config", help="ssh_config to honour (default ~/.ssh/config)."),
]
_NoSshConfig = Annotated[
    bool, typer.Option("--no-ssh-config", help="Ignore every ssh_config file.")
]
_KnownHosts = Annotated[
    Path | None,
    typer.Option("--known-hosts", help="known_hosts file (default ~/.ssh/known_hosts)."),
]
_Policy = Annotated[
    str | None,
    typer.Option(
        "--host-key-policy",
        help=(
            "strict: refuse unknown keys; accept-new: record them. A changed key is "
            "always refused. Default: ssh_config's StrictHostKeyChecking "
            "(accept-new or no: accept-new), else strict."
        ),
    ),
]
_ConnectTimeout = Annotated[
    float | None,
    typer.Option(
        "--connect-timeout",
        help="Per-host deadline to resolve, connect and log in, seconds (10).",
    ),
]
_Timeout = Annotated[
    float | None,
    typer.Option(
        "-t",
        "--timeout",
        help="Per-host command deadline, seconds; then the command's processes get TERM, "
        "then KILL, and the result says whether the host confirmed they are gone.",
    ),
]
_Json = Annotated[
    bool,
    typer.Option(
        "--json", help="JSON Lines on stdout (fields: docs/json.md, or remoteops help json)."
    ),
]
_Quiet = Annotated[
    bool,
    typer.Option(
        "-q",
        "--quiet",
        help="For cron: print nothing at all when the exit code is 0. Otherwise print "
        "only what failed: the failed hosts' output, warnings, and the summary (one "
        "line per problem). --json lines are still written.",
    ),
]


def _go_quiet(quiet: bool) -> None:
    """``-q``: from now on hold stderr's log messages; ``_finish`` shows them only on failure."""
    if quiet:
        hold_stderr()


_Retries = Annotated[
    int, typer.Option("--retries", help="Retry connection failures (never auth or host keys).")
]
_PassphraseFile = Annotated[
    Path | None,
    typer.Option("--key-passphrase-file", help="File holding the passphrase of encrypted keys."),
]
_RetryFile = Annotated[
    Path | None,
    typer.Option("--retry-file", help="Write the hosts that did not succeed (use as -l @FILE)."),
]
_AskPass = Annotated[
    bool, typer.Option("--ask-pass", "-k", help="Prompt once for an SSH password (terminal only).")
]
_BecomeUser = Annotated[
    str | None, typer.Option("--become-user", help="sudo to this user (default root).")
]
_BecomePasswordFile = Annotated[
    Path | None,
    typer.Option("--become-password-file", help="File holding the sudo password (sent on stdin)."),
]


@dataclass(slots=True)
class _Targeting:
    inventory: list[str] | None
    limit: str | None
    forks: int | None
    user: str | None
    key: list[Path] | None
    port: int | None
    ssh_config: Path | None
    no_ssh_config: bool
    known_hosts: Path | None
    host_key_policy: str | None
    connect_timeout: float | None
    retries: int
    key_passphrase_file: Path | None
    ask_pass: bool
    retry_file: Path | None = None

    def fleet_options(self, **more: Any) -> FleetOptions:
        """The library's options for these (``more``: the command's timeouts)."""
        from remoteops.fleet import FleetOptions

        return FleetOptions(
            inventory=tuple(self.inventory or ()),
            limit=self.limit,
            forks=self.forks,
            user=self.user,
            port=self.port,
            key_files=tuple(self.key or ()),
            ssh_config=self.ssh_config,
            use_ssh_config=not self.no_ssh_config,
            known_hosts=self.known_hosts,
            host_key_policy=self.host_key_policy,
            connect_timeout=self.connect_timeout,
            retries=self.retries,
            key_passphrase_file=self.key_passphrase_file,
            **more,
        )


def _targeting(params: dict[str, Any]) -> _Targeting:
    """The shared targeting options out of a command's parameters (give it ``locals()``)."""
    fields = dataclasses.fields(_Targeting)
    return _Targeting(**{f.name: params[f.name] for f in fields if f.name in params})


def _become_password(path: Path | None) -> str | None:
    """The sudo password from ``--become-password-file``, checked before any host is contacted."""
    from remoteops.fleet import read_secret_file

    return read_secret_file(path, "--become-password-file") if path else None


def _check_connection_options(
    *,
    inventory: Sequence[str] | None,
    key: Sequence[Path] | None,
    port: int | None,
    ssh_config: Path | None,
    known_hosts: Path | None,
    connect_timeout: float | None = None,
) -> None:
    """The options every host-facing command shares, checked before any host is contacted."""
    import stat

    from remoteops.argcheck import check_input_file, check_stat, shown

    for source in inventory or ():
        if "," not in source:  # 'a,b,c' is a host list; anything else names a file
            check_stat(Path(source), "-i/--inventory")
    for path in key or ():
        check_input_file(path, "--key", empty_ok=False)
    if ssh_config is not None:
        check_input_file(ssh_config, "-F/--ssh-config")
    if known_hosts is not None:
        found = check_stat(known_hosts, "--known-hosts")  # missing: no key known yet, as ssh
        if found is not None and stat.S_ISDIR(found.st_mode):
            raise UsageError(f"--known-hosts {shown(known_hosts)}: is a directory; give a file")
    if port is not None and not 1 <= port <= 65535:
        raise UsageError(f"--port {port}: give a TCP port from 1 to 65535")
    if connect_timeout is not None and connect_timeout <= 0:
        raise UsageError("--connect-timeout must be more than 0 seconds")


def _prompt_secret(prompt: str, what: str) -> str:
    if not sys.stdin.isatty():
        raise UsageError(f"{what} needs a terminal to prompt on; none is attached")
    import getpass

    return getpass.getpass(prompt)


def _passphrase_prompt(path: str) -> str | None:
    """Ask for a key's passphrase on the terminal (once per run)."""
    import getpass

    try:
        return getpass.getpass(f"Passphrase for {path}: ")
    except (EOFError, KeyboardInterrupt):
        return None


def _resolve(
    pattern: str,
    opts: _Targeting,
    *,
    command_timeout: float | None = None,
    keepalive_interval: float | None = None,
    keepalive_count: int | None = None,
    inventory: Any = None,
    names: Sequence[str] | None = None,
) -> tuple[list[Any], Any]:
    """Check the targeting options, then :func:`remoteops.fleet.resolve_fleet`.

    ``inventory`` (already loaded) and ``names`` (hosts already selected, in
    inventory order) spare a caller that has both doing it twice.
    """
    from remoteops.fleet import resolve_fleet

    if opts.host_key_policy not in (None, "strict", "accept-new"):
        raise UsageError(f"--host-key-policy {opts.host_key_policy!r}: use strict or accept-new")
    if opts.forks is not None and opts.forks < 1:
        raise UsageError("--forks must be 1 or more")
    if opts.retries < 0:
        raise UsageError("--retries must be 0 or more")
    _check_connection_options(
        inventory=opts.inventory,
        key=opts.key,
        port=opts.port,
        ssh_config=opts.ssh_config,
        known_hosts=opts.known_hosts,
        connect_timeout=opts.connect_timeout,
    )
    if opts.retry_file is not None:
        from remoteops.argcheck import check_output_file

        check_output_file(opts.retry_file, "--retry-file")
    fleet = resolve_fleet(
        pattern,
        opts.fleet_options(
            command_timeout=command_timeout,
            keepalive_interval=keepalive_interval,
            keepalive_count=keepalive_count,
        ),
        inventory=inventory,
        names=names,
        ask_password=(
            functools.partial(_prompt_secret, "SSH password: ", "--ask-pass")
            if opts.ask_pass
            else None
        ),
        passphrase_prompt=_passphrase_prompt if sys.stdin.isatty() else None,
    )
    targets, executor = fleet.targets, fleet.executor
    # A closed output pipe (`| head`): start no more hosts; those started finish.
    watch().on_close(lambda _name: executor.drain(watch().reason or "output closed"))
    return targets, executor


def _hidden_after_broken_pipe(result: HostResult) -> bool:
    """True for a host not started because an output pipe closed: the summary's one
    folded line names them all, instead of one line per host."""
    return result.status == "skipped" and bool(watch().closed)


class _Interrupts:
    """First SIGINT/SIGTERM: cancel the run; a second SIGINT: exit at once.

    Each says so in one line naming what is being stopped (``stopping``); only
    after Ctrl-C does it offer a second Ctrl-C (a SIGTERM comes from a program,
    which is told nothing it could type). While :meth:`prompting` is active
    (``play --step`` waiting for an answer) a signal also raises
    KeyboardInterrupt, which ends the prompt: a blocking read would otherwise
    just resume.
    """

    def __init__(self, cancel: Any, *, stopping: str = "remote commands") -> None:
        self._cancel = cancel
        self._stopping = stopping
        self.code: int | None = None
        self._previous: dict[int, Any] = {}
        self._prompting = False

    def __enter__(self) -> _Interrupts:
        import signal

        def handler(signum: int, frame: object) -> None:
            if self.code is not None and signum == signal.SIGINT:
                _restore_terminal()
                os._exit(EXIT_SIGINT)
            self.code = EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM
            if signum == signal.SIGINT:
                said = f"interrupted; stopping {self._stopping} (Ctrl-C again to quit now)"
            else:
                said = f"terminated (SIGTERM); stopping {self._stopping}"
            _say(("\n" if self._prompting else "") + f"remoteops: {said}")  # off a prompt's line
            self._cancel()
            if self._prompting:
                raise KeyboardInterrupt

        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, handler)
        return self

    @contextlib.contextmanager
    def prompting(self) -> Iterator[None]:
        """Within this block an interruption raises KeyboardInterrupt after cancelling;
        so does entering it after one (Ctrl-C typed as the question was being asked)."""
        self._prompting = True
        try:
            if self.code is not None:
                raise KeyboardInterrupt
            yield
        finally:
            self._prompting = False

    def __exit__(self, *exc: object) -> None:
        import signal

        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


def _say(message: str) -> None:
    """One line on stderr from a signal handler: above a progress display if one is up,
    straight to the descriptor if stderr was in the middle of a write, or rich in the
    middle of importing what printing needs (the handler runs inside that import)."""
    try:
        stderr.print(message, markup=False)
    except (RuntimeError, ImportError):  # a reentrant write or a half-done import
        with contextlib.suppress(OSError):
            os.write(2, f"{message}\n".encode())


def _restore_terminal() -> None:
    """Before an immediate exit: erase a progress display still up and show the cursor.

    Written straight to the descriptor, taking no lock: it runs in a signal
    handler, possibly while the display's own thread is drawing.
    """
    if _state.live is None:
        return
    _state.live = None
    with contextlib.suppress(OSError):
        os.write(2, b"\r\x1b[2K\x1b[?25h")


class _ProgressDisplay:
    """A rich progress display on stderr, only when stderr is a terminal (never in cron or pipes).

    While it is up the cursor is hidden, and what the command writes to stderr
    (and to stdout when that is a terminal too) is printed above it instead of
    tearing it. It is always taken down, cursor shown: on leaving the ``with``
    block, whatever the way out, and by :func:`_restore_terminal` before an
    immediate exit (a second Ctrl-C). Subclasses give the columns and the task.
    """

    def __init__(self, *, enabled: bool) -> None:
        self._enabled = enabled and sys.stderr.isatty()
        self._progress: Any = None
        self._task: Any = None

    def _columns(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def _first_task(self) -> tuple[str, float | None]:
        """The description and total of the one task shown."""
        raise NotImplementedError

    def __enter__(self) -> Any:
        if not self._enabled:
            return self
        from rich.progress import Progress

        progress = Progress(
            *self._columns(),
            console=stderr.get(),
            transient=True,
            redirect_stdout=sys.stdout.isatty(),
            redirect_stderr=True,
        )
        _state.live = progress
        try:
            progress.start()
            description, total = self._first_task()
            self._task = progress.add_task(description, total=total)
        except BaseException:
            progress.stop()
            _state.live = None
            raise
        self._progress = progress
        return self

    def _update(self, **fields: Any) -> None:
        progress = self._progress
        if progress is not None:
            progress.update(self._task, **fields)

    @property
    def shown(self) -> bool:
        """Whether the display is up."""
        return self._progress is not None

    def __exit__(self, *exc: object) -> None:
        progress, self._progress = self._progress, None
        if progress is not None:
            try:
                progress.stop()
            finally:
                _state.live = None


class _StderrBytes:
    """stderr as a byte stream for :class:`~remoteops.report.LivePrinter`.

    Bytes go to the real stream; while a progress display is up (rich's proxy
    stands in sys.stderr) lines go through the proxy, printed above the display.
    """

    def write(self, data: bytes) -> int:
        stream = sys.stderr
        if hasattr(stream, "rich_proxied_file"):
            stream.write(data.decode("utf-8", errors="replace"))
            return len(data)
        return stream.buffer.write(data)

    def flush(self) -> None:
        sys.stderr.flush()


class _HostProgress(_ProgressDisplay):
    """Hosts done out of all, with the failures so far."""

    def __init__(self, total: int, *, enabled: bool) -> None:
        super().__init__(enabled=enabled)
        self._total = total
        self._done = 0
        self._failed = 0

    def _columns(self) -> tuple[Any, ...]:
        from rich.progress import BarColumn, MofNCompleteColumn, TimeElapsedColumn

        return (
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )

    def _first_task(self) -> tuple[str, float | None]:
        return "hosts", self._total

    def advance(self, is_ok: bool) -> None:
        """Count one finished host."""
        self._done += 1
        self._failed += 0 if is_ok else 1
        label = f"hosts ({self._failed} failed)" if self._failed else "hosts"
        self._update(advance=1, description=label)


def _drive(
    results: Iterable[HostResult],
    *,
    cancel: Callable[[], None],
    on_result: Callable[[HostResult], None],
    progress: AbstractContextManager[Any] | None = None,
) -> RunResult:
    """Consume a run's results as they come, under Ctrl-C/SIGTERM handling.

    ``on_result`` renders each host; the returned RunResult carries the
    duration and, if the run was interrupted, the signal's exit code.
    """
    from remoteops.results import RunResult

    # What start-up made (modules, the inventory, the targets) lives until exit:
    # frozen, it is out of the cyclic collector's way, and the full collections
    # a run of many hosts triggers do not walk it again (~25 ms of CPU on 200).
    gc.freeze()
    run = RunResult()
    start = time.monotonic()
    with _Interrupts(cancel) as interrupts, progress or contextlib.nullcontext():
        for result in results:
            run.add(result)
            on_result(result)
    run.duration_s = time.monotonic() - start
    run.interrupted_by = interrupts.code
    return run


def _write_retry_file(path: Path, hosts: list[str]) -> None:
    # A short temporary name of its own: a retry file whose name is near the file
    # system's limit must not fail on a longer temporary one.
    tmp = path.parent / f".remoteops-retry.{os.getpid()}.tmp"
    try:
        tmp.write_text("".join(f"{h}\n" for h in hosts), encoding="utf-8")
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _finish(
    run: Any,
    *,
    as_json: bool,
    json_writer: Any,
    retry_file: Path | None,
    analysis: Any = None,
    fail_on_findings: bool = False,
    quiet: bool = False,
) -> NoReturn:
    """End a command that talked to hosts: analysis, JSON summary, retry file, the
    summary on stderr, the log's outcome, and the exit code.

    The summary goes to stderr unless the exit code is 0 and ``--json`` or ``-q``
    was given; with ``-q`` nothing at all is printed on success (held warnings
    are dropped; they are in the log), and on failure the warnings come first.
    """
    from remoteops.report import render_summary

    if watch().closed and run.interrupted_by is None:
        run.interrupted_by = EXIT_BROKEN_PIPE
    code = run.exit_code
    summary_more: tuple[str, list[str]] = ("", [])
    if analysis is not None:
        from remoteops.cli_analyze import analysis_exit_code, analysis_summary

        code = analysis_exit_code(code, analysis, fail_on_findings=fail_on_findings)
        summary_more = analysis_summary(analysis, fail_on_findings=fail_on_findings)
    release_stderr(show=code != EXIT_OK)
    if analysis is not None:
        from remoteops.cli_analyze import emit_analysis

        emit_analysis(analysis, as_json=as_json, json_writer=json_writer, tables=not quiet)
        if as_json:
            json_writer.summary(run, exit_code=code, findings=len(analysis.findings))
    elif as_json:
        json_writer.summary(run)
    if retry_file is not None:
        try:
            _write_retry_file(retry_file, sorted(run.failed_hosts))
        except OSError as exc:  # checked before the run; the disk may still fill up
            from remoteops.argcheck import shown

            failure = f"--retry-file {shown(retry_file)}: {exc.strerror}"
            sys.stderr.write(f"remoteops: error: {failure}\n")
            logger.error("%s", failure)
    first, *problems = render_summary(run).splitlines()
    suffix, more_problems = summary_more
    summary = "\n".join([first + suffix, *problems, *more_problems]) + "\n"
    if code != EXIT_OK or not (as_json or quiet):
        sys.stderr.write(summary)
        sys.stderr.flush()
    if watch().closed and code not in (EXIT_SIGINT, EXIT_SIGTERM):
        code = EXIT_BROKEN_PIPE  # also when the pipe closed under the lines just written
        skipped = run.counts()["skipped"]
        watch().announce(
            f"{watch().reason}: no host was started after that; {len(run) - skipped} "
            f"finished, {skipped} not started (exit code {code})"
        )
    # The log keeps what cron's mail may not: the outcome and every failure.
    first, *failures = summary.splitlines()
    logger.info("%s; exit code %d", first, code)
    for line in failures:
        logger.info("%s", line.strip())
    raise typer.Exit(code)


def _parse_env(values: list[str] | None) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in values or []:
        name, sep, value = item.partition("=")
        if not sep or not name or not name.replace("_", "a").isalnum() or name[0].isdigit():
            raise UsageError(f"--env {item!r}: write it as NAME=VALUE")
        env[name] = value
    return env


_AnalyzeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--analyze",
        "-a",
        help="Analyse results locally as hosts finish, in a process pool: NAME[:ARGS] "
        "(group, grep, count, extract, threshold, drift, logscan, module:function). Repeatable.",
    ),
]
_RulesOpt = Annotated[
    Path | None,
    typer.Option("--rules", help="YAML file of analysis rules ('- threshold: df.use% > 90')."),
]
_FailOnFindingsOpt = Annotated[
    bool,
    typer.Option(
        "--fail-on-findings", help="Exit 5 when an analyzer reports a finding (unless 3 or 4)."
    ),
]


@app.command("run")
def run_cmd(
    pattern: Annotated[str, typer.Argument(help="Host pattern, e.g. web:&eu or 'db*'.")],
    command: Annotated[list[str], typer.Argument(help="The command (after --).")],
    inventory: _Inventory = None,
    limit: _Limit = None,
    forks: _Forks = None,
    user: _User = None,
    key: _Key = None,
    port: _Port = None,
    ssh_config: _SshConfig = None,
    no_ssh_config: _NoSshConfig = False,
    known_hosts: _KnownHosts = None,
    host_key_policy: _Policy = None,
    connect_timeout: _ConnectTimeout = None,
    timeout: _Timeout = None,
    as_json: _Json = False,
    quiet: _Quiet = False,
    retries: _Retries = 0,
    key_passphrase_file: _PassphraseFile = None,
    ask_pass: _AskPass = False,
    gather_output: Annotated[
        bool,
        typer.Option("-g", "--gather", help="Fold hosts with identical output into one block."),
    ] = False,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out-dir",
            help="Write DIR/<host>.out, .err and .exit with the exact bytes. DIR holds one "
            "run: the files the previous run wrote there are removed first (only those).",
        ),
    ] = None,
    retry_file: _RetryFile = None,
    become: Annotated[
        bool, typer.Option("--become", "-b", help="Run the command with sudo.")
    ] = False,
    become_user: _BecomeUser = None,
    become_password_file: _BecomePasswordFile = None,
    pty: Annotated[
        bool,
        typer.Option(
            "--pty",
            help="Run the command on a pseudo-terminal (no echo of what --stdin or sudo's "
            "password sends).",
        ),
    ] = False,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", help="NAME=VALUE for the remote command (repeatable)."),
    ] = None,
    stdin_file: Annotated[
        Path | None,
        typer.Option(
            "--stdin", help="Send this file to every host's stdin ('-': this stdin, read once)."
        ),
    ] = None,
    max_output: Annotated[
        int, typer.Option("--max-output", help="Bytes of each stream kept per host (1 MiB).")
    ] = 1024 * 1024,
    keepalive_interval: Annotated[
        float | None,
        typer.Option(
            "--keepalive-interval",
            help="Probe a silent host after this many seconds (ssh_config ServerAliveInterval, "
            "else 15; 0 turns probing off).",
        ),
    ] = None,
    keepalive_count: Annotated[
        int | None,
        typer.Option(
            "--keepalive-count",
            help="Unanswered probes before the host counts as frozen (ServerAliveCountMax, 3).",
        ),
    ] = None,
    analyze: _AnalyzeOpt = None,
    rules: _RulesOpt = None,
    fail_on_findings: _FailOnFindingsOpt = False,
) -> None:
    """Run COMMAND on every host PATTERN matches, all at once (up to --forks).

    Output lines are prefixed by host as they arrive; --gather folds identical
    outputs; --json prints JSON Lines. Control characters hosts send are shown
    escaped (\\x1b, \\r) so they cannot drive the terminal; --out-dir keeps the
    exact bytes. The exit code says what happened (0 ok, 3 timeout, 4
    unreachable or host key, 5 command failed, 141 stdout closed: the hosts
    already started finished, no other host started).

    Example: remoteops run 'web:&eu' -i inventories/hosts.yml -- uptime
    """
    from remoteops.argcheck import (
        check_output_dir,
        file_names_for_hosts,
        host_column_width,
        read_stdin_option,
    )
    from remoteops.execution import CommandSpec
    from remoteops.report import (
        JsonLinesWriter,
        LivePrinter,
        failure_line,
        render_gathered,
        use_color,
    )

    _go_quiet(quiet)
    if not command:
        raise UsageError("no command given: remoteops run PATTERN -- COMMAND")
    if max_output < 0:
        raise UsageError("--max-output must be 0 or more")
    if pty and stdin_file is not None and become and become_password_file is not None:
        raise UsageError(
            "--stdin with --pty and a sudo password: on a terminal sudo discards input typed "
            "ahead of its prompt, so the command would never get it; drop --pty"
        )
    opts = _targeting(locals())
    spec = CommandSpec(
        command=" ".join(command),
        pty=pty,
        env=_parse_env(env),
        stdin=read_stdin_option(stdin_file, "--stdin") if stdin_file else None,
        become=become,
        become_user=become_user,
        become_password=_become_password(become_password_file),
        max_output=max_output,
    )
    if timeout is not None and timeout <= 0:
        raise UsageError("--timeout must be more than 0 seconds")
    if keepalive_interval is not None and keepalive_interval < 0:
        raise UsageError("--keepalive-interval must be 0 or more seconds")
    if keepalive_count is not None and keepalive_count < 1:
        raise UsageError("--keepalive-count must be 1 or more")
    from remoteops.cli_analyze import feed, finish_stage, open_stage

    stage = open_stage(analyze, rules)
    targets, executor = _resolve(
        pattern,
        opts,
        command_timeout=timeout,
        keepalive_interval=keepalive_interval,
        keepalive_count=keepalive_count,
    )
    if out_dir is not None:
        # DIR/.HOST.exit.part is the longest name written there.
        file_names_for_hosts((t.name for t in targets), out_dir, "--out-dir", extra=11)
        check_output_dir(out_dir, "--out-dir", create=True)
    width = host_column_width(t.name for t in targets)
    live = not as_json and not gather_output
    printer = LivePrinter(
        sys.stdout.buffer,
        _StderrBytes(),
        color=use_color(sys.stdout),
        width=width,
        quiet=quiet,
    )
    json_writer = JsonLinesWriter()  # sys.stdout at each write: above the progress display
    # Live lines on a terminal are progress enough; a bar would be torn by them.
    show_bar = not quiet and not (live and sys.stdout.isatty())
    progress = _HostProgress(len(targets), enabled=show_bar)

    def show(result: HostResult) -> None:
        progress.advance(result.is_ok)
        if as_json:
            json_writer.host(result)
        elif live and not _hidden_after_broken_pipe(result):
            printer.host_done(result)  # with -q: a failed host's held-back output
            # With -q the summary names each failure, once.
            unexplained = not (result.stdout or result.stderr) or result.error
            if not quiet and not result.is_ok and unexplained:
                sys.stderr.write(failure_line(result))
                sys.stderr.flush()

    results = executor.run_command(spec, on_line=printer.line if live else None, out_dir=out_dir)

    def out_file(result: HostResult) -> dict[str, Path] | None:
        # The file this run wrote (never one an earlier run left for a host not reached).
        path = result.extra.get("_stdout_file")
        return {"stdout": path} if isinstance(path, Path) and path.is_file() else None

    with stage if stage is not None else contextlib.nullcontext():
        run = _drive(
            feed(stage, results, out_file) if stage else results,
            cancel=executor.cancel if stage is None else stage.cancel_with(executor.cancel),
            on_result=show,
            progress=progress,
        )
        if gather_output and not as_json:
            shown = [r for r in run.values() if not (quiet and r.is_ok)]
            sys.stdout.write(render_gathered(shown, color=use_color(sys.stdout)))
            sys.stdout.flush()
        _finish(
            run,
            as_json=as_json,
            json_writer=json_writer,
            retry_file=retry_file,
            analysis=finish_stage(stage, run) if stage else None,
            fail_on_findings=fail_on_findings,
            quiet=quiet,
        )


@app.command("ping")
def ping_cmd(
    pattern: Annotated[str, typer.Argument(help="Host pattern.")] = "all",
    inventory: _Inventory = None,
    limit: _Limit = None,
    forks: _Forks = None,
    user: _User = None,
    key: _Key = None,
    port: _Port = None,
    ssh_config: _SshConfig = None,
    no_ssh_config: _NoSshConfig = False,
    known_hosts: _KnownHosts = None,
    host_key_policy: _Policy = None,
    connect_timeout: _ConnectTimeout = None,
    as_json: _Json = False,
    quiet: _Quiet = False,
    retries: _Retries = 0,
    key_passphrase_file: _PassphraseFile = None,
    ask_pass: _AskPass = False,
    retry_file: _RetryFile = None,
) -> None:
    """Connect and authenticate to every matched host; report round-trip time and server version.

    Example: remoteops ping all --json
    """
    from remoteops.argcheck import host_column_width
    from remoteops.printable import printable
    from remoteops.report import JsonLinesWriter, failure_line

    _go_quiet(quiet)
    opts = _targeting(locals())
    targets, executor = _resolve(pattern, opts)
    width = host_column_width(t.name for t in targets)
    json_writer = JsonLinesWriter(sys.stdout)

    def show(result: HostResult) -> None:
        if as_json:
            json_writer.host(result)
        elif _hidden_after_broken_pipe(result) or quiet:
            pass  # with -q the summary names the failures, once
        elif not result.is_ok:
            sys.stderr.write(failure_line(result, width=width))
            sys.stderr.flush()
        else:
            sys.stdout.write(
                f"{result.host.ljust(width)}: ok  rtt {result.extra['rtt_ms']:.1f} ms  "
                f"connect {result.extra['connect_ms']:.0f} ms  "
                f"{printable(result.extra['server_version'])}\n"
            )
            sys.stdout.flush()

    run = _drive(executor.ping(), cancel=executor.cancel, on_result=show)
    _finish(run, as_json=as_json, json_writer=json_writer, retry_file=retry_file, quiet=quiet)


# --------------------------------------------------------------------------- inventory

inventory_app = typer.Typer(
    help=(
        "Show what inventories resolve to: hosts, groups, variables, connections.\n\n"
        "Example: remoteops inventory list 'web:&eu' -i inventories/hosts.yml"
    ),
    no_args_is_help=True,
    context_settings=_CONTEXT,
    rich_markup_mode=None,
)
app.add_typer(inventory_app, name="inventory")


def _load(inventory: list[str] | None) -> Any:
    from remoteops.fleet import load_fleet_inventory

    _check_connection_options(
        inventory=inventory, key=None, port=None, ssh_config=None, known_hosts=None
    )
    return load_fleet_inventory(inventory)


@inventory_app.command("list")
def inventory_list_cmd(
    pattern: Annotated[str, typer.Argument(help="Host pattern.")] = "all",
    inventory: _Inventory = None,
    limit: _Limit = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="The JSON `ansible-inventory --list` prints.")
    ] = False,
) -> None:
    """List the hosts PATTERN matches (or the whole inventory as JSON).

    Example: remoteops inventory list 'web:!db' --json
    """
    from remoteops.fleet import select_or_explain
    from remoteops.nodeset import fold

    inv = _load(inventory)
    hosts = select_or_explain(inv, pattern, limit, see="remoteops inventory graph")
    if as_json:
        data = inv.to_ansible_list()
        if pattern != "all" or limit:
            keep = {h.name for h in hosts}
            data["_meta"]["hostvars"] = {
                k: v for k, v in data["_meta"]["hostvars"].items() if k in keep
            }
            for name, group in list(data.items()):
                if name != "_meta" and isinstance(group, dict) and "hosts" in group:
                    group["hosts"] = [h for h in group["hosts"] if h in keep]
        sys.stdout.write(json.dumps(data, indent=4, sort_keys=True) + "\n")
        return
    sys.stdout.write(f"  hosts ({len(hosts)}): {fold(h.name for h in hosts)}\n")
    for host in hosts:
        sys.stdout.write(f"    {host.name}\n")


@inventory_app.command("graph")
def inventory_graph_cmd(
    group: Annotated[str, typer.Argument(help="Group at the top of the tree.")] = "all",
    inventory: _Inventory = None,
    show_vars: Annotated[bool, typer.Option("--vars", help="Show variables too.")] = False,
) -> None:
    """Print the group tree, as `ansible-inventory --graph` does.

    Example: remoteops inventory graph web
    """
    inv = _load(inventory)
    sys.stdout.write(inv.graph(group, show_vars=show_vars).rstrip("\n") + "\n")


@inventory_app.command("host")
def inventory_host_cmd(
    name: Annotated[str, typer.Argument(help="Inventory host name.")],
    inventory: _Inventory = None,
    user: _User = None,
    key: _Key = None,
    port: _Port = None,
    ssh_config: _SshConfig = None,
    no_ssh_config: _NoSshConfig = False,
    known_hosts: _KnownHosts = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Show a host's merged variables and the connection remoteops would make, with sources.

    Example: remoteops inventory host web01
    """
    from remoteops.fleet import FleetOptions, choose_ssh_config
    from remoteops.inventory import to_json_value
    from remoteops.target import resolve_targets

    _check_connection_options(
        inventory=inventory, key=key, port=port, ssh_config=ssh_config, known_hosts=known_hosts
    )
    inv = _load(inventory)
    inv.get_host(name)
    config = choose_ssh_config(ssh_config, use_ssh_config=not no_ssh_config)
    options = FleetOptions(
        user=user, port=port, key_files=tuple(key or ()), known_hosts=known_hosts
    )
    (target,) = resolve_targets(inv, [name], ssh_config=config, overrides=options.overrides())
    secret = {
        "ansible_password",
        "ansible_ssh_pass",
        "ansible_ssh_password",
        "ansible_become_password",
        "ansible_become_pass",
        "ansible_sudo_pass",
    }
    variables = {
        k: ("(hidden)" if k in secret else v) for k, v in to_json_value(inv.host_vars(name)).items()
    }
    connection = {
        "address": target.address,
        "port": target.port,
        "user": target.user,
        "identity_files": list(target.identity_files),
        "identities_only": target.identities_only,
        "proxy_jump": [str(h) for h in target.proxy_jump],
        "proxy_command": target.proxy_command,
        "known_hosts_files": list(target.known_hosts_files),
        "host_key_alias": target.host_key_alias,
        "connect_timeout": target.connect_timeout,
        "become": target.become,
        "become_user": target.become_user,
    }
    source_keys = {
        "address": "hostname",
        "port": "port",
        "user": "user",
        "identity_files": "identityfile",
        "proxy_jump": "proxyjump",
        "proxy_command": "proxycommand",
        "known_hosts_files": "userknownhostsfile",
        "connect_timeout": "connecttimeout",
    }
    sources = {k: target.sources.get(v, "default") for k, v in source_keys.items()}
    if as_json:
        data = {
            "host": name,
            "groups": inv.groups_of(name),
            "vars": variables,
            "connection": connection,
            "sources": sources,
        }
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    sys.stdout.write(f"{name}  (groups: {', '.join(inv.groups_of(name)) or '-'})\n")
    sys.stdout.write("connection:\n")
    for key_name, value in connection.items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        where = f"   [{sources[key_name]}]" if key_name in sources else ""
        sys.stdout.write(f"  {key_name:18} {shown}{where}\n")
    sys.stdout.write("variables:\n")
    for key_name, value in sorted(variables.items()):
        sys.stdout.write(f"  {key_name}: {json.dumps(value)}\n")


# --------------------------------------------------------------------------- help


@app.command("help")
def help_cmd(
    topic: Annotated[
        str | None,
        typer.Argument(help="A topic (or the start of one's name); none: list them."),
    ] = None,
) -> None:
    """Print a document of the reference: patterns, inventories, exit-codes, json, ...

    Without TOPIC, list the topics. The text is that of docs/TOPIC.md, shipped
    inside the package; `man remoteops` is the manual page.

    Example: remoteops help exit-codes
    """
    from remoteops.helptopics import read_topic, topics

    if topic is not None:
        sys.stdout.write(read_topic(topic))
        return
    known = topics()
    width = max(map(len, known))
    sys.stdout.write("Topics (remoteops help TOPIC):\n")
    for name, title in known.items():
        sys.stdout.write(f"  {name.ljust(width)}  {title}\n")
    sys.stdout.write("Commands: remoteops COMMAND -h. Manual page: man remoteops.\n")


# --------------------------------------------------------------------------- entry point


def _fail(message: str, code: int) -> NoReturn:
    release_stderr(show=True)
    sys.stderr.write(f"remoteops: error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(code)


def _flush_stdout_quietly() -> None:
    """Flush stdout; if its reader is gone (`| head`), send the rest to /dev/null."""
    if sys.stdout is None:  # closed when the process started (`>&-`)
        return
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def main(argv: list[str] | None = None) -> NoReturn:
    """Run the command line and exit with the exit codes of docs/exit-codes.md.

    stdout and stderr are guarded for the command (``remoteops.outputs``): a
    reader that goes away (``| head -1``) never ends it half-way; the command
    finishes what it started, starts nothing new, says so once (on stderr if
    that is still open, and in the log) and exits 141.
    """
    code: int
    with guard_streams() as outputs:
        try:
            _main(sys.argv[1:] if argv is None else argv)
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or EXIT_OK
            else:
                _fail(str(exc.code), EXIT_BUG)
        release_stderr(show=code != EXIT_OK)  # what -q held, if the command ended early
        if outputs.closed and code in (EXIT_OK, 3, 4, 5):
            code = EXIT_BROKEN_PIPE
            outputs.announce(
                f"{outputs.reason}: the output was cut short (exit code {EXIT_BROKEN_PIPE})"
            )
    raise SystemExit(code)


@functools.cache
def _click_command() -> Any:
    """The click command typer builds from the functions' signatures (built once).

    Its parameters convert plain values without pydantic (``remoteops.cliparams``).
    """
    cliparams.install()
    return typer.main.get_command(app)


def _main(args: list[str]) -> NoReturn:
    # paramiko.config imports invoke (and unittest.mock) only for ssh_config's
    # Match exec, which remoteops resolves itself: ~45 ms of every run's start.
    # Only the command line does this; a script importing remoteops is unaffected.
    sys.modules.setdefault("invoke", None)  # type: ignore[arg-type]
    if "--debug" in args or os.environ.get("REMOTEOPS_DEBUG"):
        _state.debug = True
    # A name that is not UTF-8 (a file name from the command line) goes to stdout
    # as the bytes it came as, like ls prints it; stderr shows it escaped.
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        with contextlib.suppress(ValueError, OSError):
            reconfigure(errors="surrogateescape")
    try:
        result = _click_command()(args=args, prog_name="remoteops", standalone_mode=False)
    except typer.Exit as exc:
        _flush_stdout_quietly()
        raise SystemExit(exc.exit_code) from None
    except typer.TyperException as exc:
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # type: ignore[attr-defined]  # the help text, as asked for
            raise SystemExit(EXIT_USAGE) from None
        message = " ".join(exc.format_message().split()).rstrip(".")
        if ctx is not None and message == "Missing command":
            # `remoteops -v` or `remoteops lab`: no command given, so the help says which.
            sys.stderr.write(ctx.get_help() + "\n")
            raise SystemExit(EXIT_USAGE) from None
        # Usage errors (a bad value, an unknown option): one line, like every other error.
        hint = f"; see '{ctx.command_path} -h'" if ctx is not None else ""
        _fail(f"{message}{hint}", EXIT_USAGE)
    except BrokenPipeError:
        _flush_stdout_quietly()
        raise SystemExit(EXIT_OK) from None
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("remoteops: interrupted\n")
        raise SystemExit(EXIT_SIGINT) from None
    except UsageError as exc:
        _fail(str(exc), exc.exit_code)
    except RemoteOpsError as exc:
        if _state.debug:
            traceback.print_exc()
        _fail(str(exc), exc.exit_code)
    except Exception as exc:
        if _state.debug:
            traceback.print_exc()
            _fail(f"internal error: {type(exc).__name__}: {exc}", EXIT_BUG)
        _fail(
            f"internal error: {type(exc).__name__}: {exc} (run again with --debug for "
            "the traceback, and report it)",
            EXIT_BUG,
        )
    raise SystemExit(result if isinstance(result, int) else EXIT_OK)


def console_main() -> NoReturn:
    """The ``remoteops`` command: :func:`main`, then an exit without the interpreter's teardown.

    Once the command is done, every thread has ended and every exit handler
    has run (log files flushed and closed, analysis processes reaped,
    temporary files removed), what is left of interpreter shutdown is freeing
    each object and module one by one: 50-80 ms after a run over a few
    hundred hosts that nobody can see the result of. Scripts that call
    :func:`main` themselves get the usual ``SystemExit``.
    """
    import atexit
    import threading

    try:
        main()
    except SystemExit as exc:
        code = exc.code
    status = code if isinstance(code, int) else (0 if code is None else EXIT_BUG)
    if code is not None and not isinstance(code, int):
        sys.stderr.write(f"{code}\n")
    _flush_stdout_quietly()
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is None:  # not CPython: leave it to the interpreter
        raise SystemExit(status)
    try:
        shutdown()  # joins non-daemon threads, as interpreter exit would
        atexit._run_exitfuncs()
    except KeyboardInterrupt:  # Ctrl-C while exiting: leave now, as a second Ctrl-C does
        os._exit(EXIT_SIGINT)
    _flush_stdout_quietly()
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    os._exit(status)


from remoteops.cli_analyze import register as _register_analyze  # noqa: E402
from remoteops.cli_play import register as _register_play  # noqa: E402
from remoteops.cli_transfer import register as _register_transfer  # noqa: E402

_register_transfer(app)
_register_play(app)
_register_analyze(app)
