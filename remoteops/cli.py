"""The ``remoteops`` command line: a thin Typer layer over the library.

This is the only module that prints or exits. Commands parse their arguments,
call the library, render what comes back and map errors to the exit codes of
CONTRACT.md. Tracebacks never show local variables (they may hold secrets) and
appear only with ``--debug``.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from remoteops import __version__
from remoteops.errors import RemoteOpsError, UsageError
from remoteops.logconfig import LogSettings, default_log_path, setup_logging

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


_state = _State()
stderr = Console(stderr=True, highlight=False)
stdout = Console(highlight=False, soft_wrap=True)

_CONTEXT = {"help_option_names": ["-h", "--help"]}

app = typer.Typer(
    name="remoteops",
    help=(
        "Run commands and move files across a fleet over SSH, with verified host keys, "
        "exit codes cron can use, and local analysis of what comes back.\n\n"
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
        'Example: remoteops lab up --hosts 20 && remoteops -i "$(remoteops lab status '
        '--inventory-path)" run all -- hostname'
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
) -> None:
    """Global options; they go before the command."""
    _state.debug = debug or _state.debug
    _state.verbosity = verbose
    handler = RichHandler(
        console=stderr, show_time=False, show_path=False, rich_tracebacks=False, markup=False
    )
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
    port: Annotated[int, typer.Option("--port", help="SSH port of every lab host.")] = 2222,
    install: Annotated[
        bool, typer.Option("--install", help="Install openssh-server with apt-get if missing.")
    ] = False,
) -> None:
    """Start HOSTS real sshd servers, each with its own address, host key, hostname and files.

    Writes an Ansible YAML inventory, a known_hosts and a client key into the
    lab directory, so commands against the lab work with strict host key
    checking. As root each host gets its own mount and UTS namespace.

    Example: remoteops lab up --hosts 50 --latency 100
    """
    from remoteops.lab import lab_up

    report = lab_up(_lab_dir(lab_dir), hosts=hosts, port=port, latency_ms=latency, install=install)
    lab = report.lab
    if report.was_running:
        stderr.print(f"A lab of {len(lab.hosts)} hosts is already running in {lab.dir}.")
    else:
        stderr.print(
            f"Lab of {len(lab.hosts)} hosts up in {report.elapsed_s:.1f}s in {lab.dir}"
            + (f" (latency {lab.latency_ms} ms)" if lab.latency_ms else "")
        )
    for what in report.not_isolated:
        stderr.print(f"not isolated without root: {what}")
    stderr.print(f"inventory:   {lab.inventory}")
    stderr.print(f"known_hosts: {lab.known_hosts}")
    stderr.print(f"try:         remoteops -i {lab.inventory} run all -- hostname")


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
        stdout.print(str(lab.inventory))
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
    stdout.print(f"{answering}/{len(statuses)} hosts answer; lab directory {lab.dir}")
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
    stderr.print(f"Lab in {lab.dir} is down ({len(lab.hosts)} hosts stopped).")


# --------------------------------------------------------------------------- entry point


def _fail(message: str, code: int) -> NoReturn:
    stderr.print(f"remoteops: error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> NoReturn:
    """Run the command line and exit with CONTRACT.md's exit codes."""
    args = sys.argv[1:] if argv is None else argv
    if "--debug" in args or os.environ.get("REMOTEOPS_DEBUG"):
        _state.debug = True
    try:
        result = app(args=args, prog_name="remoteops", standalone_mode=False)
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except typer.TyperException as exc:
        # Usage errors: Typer prints the usage line and the message itself.
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            _fail(exc.format_message(), EXIT_USAGE)
        raise SystemExit(EXIT_USAGE) from None
    except (typer.Abort, KeyboardInterrupt):
        stderr.print("remoteops: interrupted")
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
