"""The ``run`` and ``ping`` commands."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from remoteops.cli.completion import complete_pattern
from remoteops.cli.options import (
    AnalyzeOpt,
    AskPassOpt,
    BecomePasswordFileOpt,
    BecomeUserOpt,
    ClusterHostsOpt,
    ClusterTimeoutOpt,
    ConnectTimeoutOpt,
    FailOnFindingsOpt,
    ForksOpt,
    InventoryOpt,
    JobOpt,
    JsonOpt,
    KeyOpt,
    KnownHostsOpt,
    LimitOpt,
    MetricsOpt,
    NoHistoryOpt,
    NoSshConfigOpt,
    PassphraseFileOpt,
    PatternArg,
    PolicyOpt,
    PortOpt,
    ProcsOpt,
    QuietOpt,
    ReportOpt,
    RerunFailedOpt,
    RetriesOpt,
    RetryFileOpt,
    RulesOpt,
    SshConfigOpt,
    TimeoutOpt,
    UserOpt,
    become_password,
    refuse_cluster_become,
    resolve,
    targeting,
)
from remoteops.cli.record import recording
from remoteops.cli.runtime import (
    HostProgress,
    StderrBytes,
    cluster_outcome,
    drive,
    finish,
    go_quiet,
    hidden_after_broken_pipe,
)
from remoteops.errors import UsageError

if TYPE_CHECKING:
    from remoteops.results import HostResult

__all__ = ["ping_cmd", "run_cmd"]


def _parse_env(values: list[str] | None) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in values or []:
        name, sep, value = item.partition("=")
        if not sep or not name or not name.replace("_", "a").isalnum() or name[0].isdigit():
            raise UsageError(f"--env {item!r}: write it as NAME=VALUE")
        env[name] = value
    return env


def run_cmd(
    ctx: typer.Context,
    pattern: Annotated[
        str,
        typer.Argument(
            help="Host pattern, e.g. web:&eu or 'db*'.", autocompletion=complete_pattern
        ),
    ],
    command: Annotated[list[str], typer.Argument(help="The command (after --).")],
    inventory: InventoryOpt = None,
    limit: LimitOpt = None,
    forks: ForksOpt = None,
    procs: ProcsOpt = None,
    cluster: ClusterHostsOpt = None,
    cluster_timeout: ClusterTimeoutOpt = 10.0,
    user: UserOpt = None,
    key: KeyOpt = None,
    port: PortOpt = None,
    ssh_config: SshConfigOpt = None,
    no_ssh_config: NoSshConfigOpt = False,
    known_hosts: KnownHostsOpt = None,
    host_key_policy: PolicyOpt = None,
    connect_timeout: ConnectTimeoutOpt = None,
    timeout: TimeoutOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    retries: RetriesOpt = 0,
    key_passphrase_file: PassphraseFileOpt = None,
    ask_pass: AskPassOpt = False,
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
    retry_file: RetryFileOpt = None,
    become: Annotated[
        bool, typer.Option("--become", "-b", help="Run the command with sudo.")
    ] = False,
    become_user: BecomeUserOpt = None,
    become_password_file: BecomePasswordFileOpt = None,
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
    analyze: AnalyzeOpt = None,
    rules: RulesOpt = None,
    fail_on_findings: FailOnFindingsOpt = False,
    no_history: NoHistoryOpt = False,
    job: JobOpt = None,
    metrics: MetricsOpt = None,
    report: ReportOpt = None,
    rerun_failed: RerunFailedOpt = False,
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

    go_quiet(quiet)
    if not command:
        raise UsageError("no command given: remoteops run PATTERN -- COMMAND")
    if max_output < 0:
        raise UsageError("--max-output must be 0 or more")
    refuse_cluster_become(cluster, become_password_file)
    if pty and stdin_file is not None and become and become_password_file is not None:
        raise UsageError(
            "--stdin with --pty and a sudo password: on a terminal sudo discards input typed "
            "ahead of its prompt, so the command would never get it; drop --pty"
        )
    opts = targeting(locals())
    spec = CommandSpec(
        command=" ".join(command),
        pty=pty,
        env=_parse_env(env),
        stdin=read_stdin_option(stdin_file, "--stdin") if stdin_file else None,
        become=become,
        become_user=become_user,
        become_password=become_password(become_password_file),
        max_output=max_output,
    )
    if timeout is not None and timeout <= 0:
        raise UsageError("--timeout must be more than 0 seconds")
    if keepalive_interval is not None and keepalive_interval < 0:
        raise UsageError("--keepalive-interval must be 0 or more seconds")
    if keepalive_count is not None and keepalive_count < 1:
        raise UsageError("--keepalive-count must be 1 or more")
    from remoteops.cli.analyze import feed, finish_stage, open_stage

    record = recording("run", pattern, locals(), max_output=max_output)
    stage = open_stage(analyze, rules)
    targets, executor = resolve(
        pattern,
        opts,
        command_timeout=timeout,
        keepalive_interval=keepalive_interval,
        keepalive_count=keepalive_count,
        only=record.rerun_hosts(),
    )
    if out_dir is not None:
        # DIR/.HOST.exit.part is the longest name written there.
        file_names_for_hosts((t.name for t in targets), out_dir, "--out-dir", extra=11)
        check_output_dir(out_dir, "--out-dir", create=True)
    width = host_column_width(t.name for t in targets)
    live = not as_json and not gather_output
    printer = LivePrinter(
        sys.stdout.buffer,
        StderrBytes(),
        color=use_color(sys.stdout),
        width=width,
        quiet=quiet,
    )
    json_writer = JsonLinesWriter()  # sys.stdout at each write: above the progress display
    # Live lines on a terminal are progress enough; a bar would be torn by them.
    show_bar = not quiet and not (live and sys.stdout.isatty())
    progress = HostProgress(len(targets), enabled=show_bar)

    def show(result: HostResult) -> None:
        progress.advance(result.is_ok)
        if as_json:
            json_writer.host(result)
        elif live and not hidden_after_broken_pipe(result):
            printer.host_done(result)  # with -q: a failed host's held-back output
            # With -q the summary names each failure, once.
            unexplained = not (result.stdout or result.stderr) or result.error
            if not quiet and not result.is_ok and unexplained:
                sys.stderr.write(failure_line(result))
                sys.stderr.flush()

    record.start([t.name for t in targets])
    results = executor.run_command(spec, on_line=printer.line if live else None, out_dir=out_dir)

    def out_file(result: HostResult) -> dict[str, Path] | None:
        # The file this run wrote (never one an earlier run left for a host not reached).
        path = result.extra.get("_stdout_file")
        return {"stdout": path} if isinstance(path, Path) and path.is_file() else None

    if stage is not None and cluster is not None:
        stage.on_cluster(executor.client)  # the analysis runs on the same workers
    with executor, stage if stage is not None else contextlib.nullcontext():
        run = drive(
            feed(stage, results, out_file) if stage else results,
            cancel=executor.cancel if stage is None else stage.cancel_with(executor.cancel),
            on_result=record.shown(show),
            progress=progress,
        )
        cluster_outcome(executor, run)
        if gather_output and not as_json:
            shown = [r for r in run.values() if not (quiet and r.is_ok)]
            sys.stdout.write(render_gathered(shown, color=use_color(sys.stdout)))
            sys.stdout.flush()
        finish(
            run,
            as_json=as_json,
            json_writer=json_writer,
            retry_file=retry_file,
            analysis=finish_stage(stage, run) if stage else None,
            fail_on_findings=fail_on_findings,
            quiet=quiet,
            record=record,
        )


def ping_cmd(
    ctx: typer.Context,
    pattern: PatternArg = "all",
    inventory: InventoryOpt = None,
    limit: LimitOpt = None,
    forks: ForksOpt = None,
    procs: ProcsOpt = None,
    cluster: ClusterHostsOpt = None,
    cluster_timeout: ClusterTimeoutOpt = 10.0,
    user: UserOpt = None,
    key: KeyOpt = None,
    port: PortOpt = None,
    ssh_config: SshConfigOpt = None,
    no_ssh_config: NoSshConfigOpt = False,
    known_hosts: KnownHostsOpt = None,
    host_key_policy: PolicyOpt = None,
    connect_timeout: ConnectTimeoutOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    retries: RetriesOpt = 0,
    key_passphrase_file: PassphraseFileOpt = None,
    ask_pass: AskPassOpt = False,
    retry_file: RetryFileOpt = None,
    no_history: NoHistoryOpt = False,
    job: JobOpt = None,
    metrics: MetricsOpt = None,
    report: ReportOpt = None,
    rerun_failed: RerunFailedOpt = False,
) -> None:
    """Connect and authenticate to every matched host; report round-trip time and server version.

    Example: remoteops ping all --json
    """
    from remoteops.argcheck import host_column_width
    from remoteops.printable import printable
    from remoteops.report import JsonLinesWriter, failure_line

    go_quiet(quiet)
    opts = targeting(locals())
    record = recording("ping", pattern, locals())
    targets, executor = resolve(pattern, opts, only=record.rerun_hosts())
    record.start([t.name for t in targets])
    width = host_column_width(t.name for t in targets)
    json_writer = JsonLinesWriter(sys.stdout)

    def show(result: HostResult) -> None:
        if as_json:
            json_writer.host(result)
        elif hidden_after_broken_pipe(result) or quiet:
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

    with executor:
        run = drive(executor.ping(), cancel=executor.cancel, on_result=record.shown(show))
        cluster_outcome(executor, run)
    finish(
        run,
        as_json=as_json,
        json_writer=json_writer,
        retry_file=retry_file,
        quiet=quiet,
        record=record,
    )
