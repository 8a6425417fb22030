"""The Typer app, assembled from the command modules, and the entry points.

:func:`main` maps errors to the exit codes of docs/exit-codes.md; tracebacks
never show local variables (they may hold secrets) and appear only with
``--debug``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import gc
import logging
import os
import platform
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import typer.main

from remoteops import __version__, cliparams
from remoteops.cli.analyze import analyze_cmd
from remoteops.cli.completion import COMPLETE_VAR, command_in, command_on_line, completion_cmd
from remoteops.cli.completion import prepare as prepare_completion
from remoteops.cli.config_cmd import config_app
from remoteops.cli.help import help_cmd
from remoteops.cli.history_cmd import history_app, report_cmd
from remoteops.cli.inventory import inventory_app
from remoteops.cli.lab import lab_app
from remoteops.cli.options import CONTEXT
from remoteops.cli.play import play_cmd
from remoteops.cli.run import ping_cmd, run_cmd
from remoteops.cli.runtime import state, stderr
from remoteops.cli.transfer import get_cmd, put_cmd
from remoteops.configpaths import BUILT_ONLY, PROFILE_ENV, nothing_to_read
from remoteops.errors import RemoteOpsError, UsageError
from remoteops.exitcodes import HOST_OUTCOMES, ExitCode
from remoteops.logconfig import (
    LogSettings,
    PrintableFormatter,
    default_log_path,
    release_stderr,
    setup_logging,
)
from remoteops.outputs import guard_streams

__all__ = ["ProfileOpt", "app", "console_main", "every_command", "main"]

# The logger of the command line (log files name it remoteops.cli).
logger = logging.getLogger("remoteops.cli")


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
    add_completion=False,  # `remoteops completion SHELL` instead: an explicit shell
    context_settings=CONTEXT,
    rich_markup_mode=None,
)


app.add_typer(lab_app, name="lab")
app.command("run")(run_cmd)
app.command("ping")(ping_cmd)
app.add_typer(inventory_app, name="inventory")
app.command("help")(help_cmd)
app.command("put")(put_cmd)
app.command("get")(get_cmd)
app.command("play")(play_cmd)
app.command("analyze")(analyze_cmd)
app.command("completion")(completion_cmd)
app.add_typer(history_app, name="history")
app.command("report")(report_cmd)
app.add_typer(config_app, name="config")


def _profile_callback(ctx: typer.Context, param: Any, value: str | None) -> str | None:
    """``remoteops.config.profile_callback``, which reads the config files; with no file
    to read and no profile asked for, nothing is imported or read (~7 ms a start)."""
    if value is None and nothing_to_read():
        return None
    from remoteops import config

    return config.profile_callback(ctx, param, value)


#: The global option ``--profile`` (docs/config.md): eager, so the config files' default
#: map is in place before click resolves any other option.
ProfileOpt = Annotated[
    str | None,
    typer.Option(
        "--profile",
        envvar=PROFILE_ENV,
        is_eager=True,
        callback=_profile_callback,
        metavar="NAME",
        help=(
            "Take option defaults from profile NAME of the config files "
            "(~/.config/remoteops/config.toml, /etc/remoteops/config.toml; "
            "remoteops help config)."
        ),
    ),
]


def _version_callback(ctx: typer.Context, value: bool) -> None:
    if not value or ctx.resilient_parsing:  # resilient: a shell is completing the line
        return
    import cryptography
    import paramiko

    typer.echo(
        f"remoteops {__version__} (paramiko {paramiko.__version__}, "
        f"cryptography {cryptography.__version__}, "
        f"Python {platform.python_version()})"
    )
    raise typer.Exit(ExitCode.OK)


@app.callback()
def _root(
    profile: ProfileOpt = None,
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
    state.debug = debug or state.debug
    state.verbosity = verbose
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
        debug=state.debug,
    )
    try:
        setup_logging(settings, stderr_handler=handler)
    except OSError as exc:
        # A log file we cannot open must not stop the run; say so once.
        setup_logging(
            LogSettings(log_file=None, verbosity=verbose, debug=state.debug),
            stderr_handler=handler,
        )
        logger.warning("log file %s cannot be written (%s); logging to stderr only", log_file, exc)
    if lock_wait < 0:
        raise UsageError("--lock-wait must be 0 or more seconds")
    if lock is not None:
        from remoteops.runlock import acquire_run_lock

        # Held until the process exits, however it exits.
        state.lock_fd = acquire_run_lock(lock, wait=lock_wait)


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
    # Off while the command starts (click builds it, the modules it needs load):
    # back on once its work begins (runtime.settle_heap), at the latest here at the end.
    gc.disable()
    try:
        code = _guarded_main(argv)
    finally:
        gc.enable()
    raise SystemExit(code)


def _guarded_main(argv: list[str] | None) -> int:
    code: int
    with guard_streams() as outputs:
        try:
            _main(sys.argv[1:] if argv is None else argv)
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or ExitCode.OK
            else:
                _fail(str(exc.code), ExitCode.INTERNAL)
        release_stderr(show=code != ExitCode.OK)  # what -q held, if the command ended early
        if outputs.closed and code in HOST_OUTCOMES:
            code = ExitCode.BROKEN_PIPE
            outputs.announce(
                f"{outputs.reason}: the output was cut short (exit code {ExitCode.BROKEN_PIPE})"
            )
    return code


@functools.cache
def _click_command(only: frozenset[str] | None = None) -> Any:
    """The click command typer builds from the functions' signatures (built once), with
    typer's completion classes for bash, zsh and fish (``remoteops completion``).

    ``only``: the commands to build (the global options are always there); None:
    every command. Its parameters convert plain values without pydantic
    (``remoteops.cliparams``).
    """
    from typer._completion_classes import completion_init  # as add_completion=True does

    completion_init()
    cliparams.install()
    if only is None:
        return typer.main.get_command(app)
    part = copy.copy(app)  # the same callback and settings, fewer commands
    part.registered_commands = [c for c in app.registered_commands if c.name in only]
    part.registered_groups = [g for g in app.registered_groups if g.name in only]
    command = typer.main.get_command(part)
    setattr(command, BUILT_ONLY, only)  # remoteops.config checks keys against every command
    return command


def every_command() -> Any:
    """The click command with every command built (built once): what ``--help`` lists
    and what the config files' keys are checked against."""
    return _click_command()


def _completing_command() -> Any:
    """The click command that answers a shell's completion request: once the line names
    a command, only that command is built (a Tab is answered in well under 100 ms)."""
    prepare_completion()
    return _built_for(command_on_line(_click_command(frozenset())))


def _built_for(name: str | None) -> Any:
    """The click command with only the command ``name`` built, or every command when
    ``name`` is None or not a command (click's message then lists them all)."""
    known = {c.name for c in app.registered_commands} | {g.name for g in app.registered_groups}
    return _click_command(frozenset({name}) if name in known else None)


def _command_for(args: list[str]) -> Any:
    """The click command that runs ``args``: only the command they name is built (~20 ms
    of every start saved); every command for the root's help, no command or a name that
    is not one (click's message then lists the commands and suggests the closest)."""
    return _built_for(command_in(args, _click_command(frozenset())))


def _main(args: list[str]) -> NoReturn:
    # paramiko.config imports invoke (and unittest.mock) only for ssh_config's
    # Match exec, which remoteops resolves itself: ~45 ms of every run's start.
    # Only the command line does this; a script importing remoteops is unaffected.
    sys.modules.setdefault("invoke", None)  # type: ignore[arg-type]
    if "--debug" in args or os.environ.get("REMOTEOPS_DEBUG"):
        state.debug = True
    # A name that is not UTF-8 (a file name from the command line) goes to stdout
    # as the bytes it came as, like ls prints it; stderr shows it escaped.
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        with contextlib.suppress(ValueError, OSError):
            reconfigure(errors="surrogateescape")
    # A shell asks for completions (docs/cli.md), or a command runs.
    command = _completing_command() if os.environ.get(COMPLETE_VAR) else _command_for(args)
    try:
        result = command(args=args, prog_name="remoteops", standalone_mode=False)
    except typer.Exit as exc:
        _flush_stdout_quietly()
        raise SystemExit(exc.exit_code) from None
    except typer.TyperException as exc:
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError":
            exc.show()  # type: ignore[attr-defined]  # the help text, as asked for
            raise SystemExit(ExitCode.USAGE) from None
        message = " ".join(exc.format_message().split()).rstrip(".")
        if ctx is not None and message == "Missing command":
            # `remoteops -v` or `remoteops lab`: no command given, so the help says which.
            sys.stderr.write(ctx.get_help() + "\n")
            raise SystemExit(ExitCode.USAGE) from None
        # Usage errors (a bad value, an unknown option): one line, like every other error.
        hint = f"; see '{ctx.command_path} -h'" if ctx is not None else ""
        _fail(f"{message}{hint}", ExitCode.USAGE)
    except BrokenPipeError:
        _flush_stdout_quietly()
        raise SystemExit(ExitCode.OK) from None
    except (typer.Abort, KeyboardInterrupt):
        sys.stderr.write("remoteops: interrupted\n")
        raise SystemExit(ExitCode.SIGINT) from None
    except UsageError as exc:
        _fail(str(exc), exc.exit_code)
    except RemoteOpsError as exc:
        if state.debug:
            traceback.print_exc()
        _fail(str(exc), exc.exit_code)
    except Exception as exc:
        if state.debug:
            traceback.print_exc()
            _fail(f"internal error: {type(exc).__name__}: {exc}", ExitCode.INTERNAL)
        _fail(
            f"internal error: {type(exc).__name__}: {exc} (run again with --debug for "
            "the traceback, and report it)",
            ExitCode.INTERNAL,
        )
    raise SystemExit(result if isinstance(result, int) else ExitCode.OK)


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
    status = code if isinstance(code, int) else (ExitCode.OK if code is None else ExitCode.INTERNAL)
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
        os._exit(ExitCode.SIGINT)
    _flush_stdout_quietly()
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    os._exit(status)
