"""The ``play`` command.

It reads and checks the playbook (``FILE:LINE: ...``, exit 2, nothing
contacted), resolves the hosts with the targeting options of ``run``, runs the
steps through ``remoteops.playbook`` and renders them as ``run`` does: live
lines, ``--gather`` blocks or JSON Lines, then a recap and the exit code
(docs/exit-codes.md).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from remoteops.cli.options import (
    AskPassOpt,
    ClusterHostsOpt,
    ClusterTimeoutOpt,
    ConnectTimeoutOpt,
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
    PolicyOpt,
    PortOpt,
    QuietOpt,
    ReportOpt,
    RerunFailedOpt,
    RetriesOpt,
    RetryFileOpt,
    SshConfigOpt,
    TimeoutOpt,
    UserOpt,
    check_connection_options,
    refuse_cluster_become,
    resolve,
    targeting,
)
from remoteops.cli.record import RunRecord, recording
from remoteops.cli.runtime import Interrupts, cluster_outcome, finish, go_quiet, settle_heap
from remoteops.errors import UsageError
from remoteops.printable import printable

if TYPE_CHECKING:
    from remoteops.playbook import Answer, Play, Playbook, Step, StepOutcome
    from remoteops.results import HostResult

__all__ = ["play_cmd"]


_OUTPUT_ACTIONS = ("run", "script")


class _Prompt:
    """``--step``: ask on the terminal before each step; Ctrl-C or end of input quits."""

    def __init__(self, interrupts: Interrupts) -> None:
        self._interrupts = interrupts

    def __call__(self, step: Step, hosts: Sequence[str]) -> Answer:
        from remoteops.playbook import fold_hosts

        question = printable(
            f"step {step.number} {step.name!r} ({step.action}) on {fold_hosts(list(hosts))}? "
            "[y]es/[n]o/[c]ontinue without asking/[q]uit: "
        )
        for _ in range(10):
            sys.stderr.write(question)
            sys.stderr.flush()
            try:
                with self._interrupts.prompting():
                    answer = sys.stdin.readline()
            except KeyboardInterrupt:  # the run is already cancelled
                return "quit"
            if not answer:
                return "quit"
            choice = answer.strip().lower()[:1]
            if choice in ("y", ""):
                return "yes"
            if choice == "n":
                return "no"
            if choice == "c":
                return "all"
            if choice == "q":
                return "quit"
        return "quit"


def _check_get_destinations(book: Playbook, play_hosts: Mapping[int, Sequence[str]]) -> None:
    """Every host of a play must name a directory under each static ``get`` dest of it,
    before any host is contacted (a templated dest is checked per host as it runs)."""
    from remoteops.argcheck import file_names_for_hosts

    for play in book.plays:
        for step in play.steps:
            dest = step.args.get("dest") if step.action == "get" else None
            if dest is None or not dest.is_static:
                continue
            where = f"{book.shown}:{step.lines.get('dest', step.line)}: get dest"
            file_names_for_hosts(play_hosts.get(play.index, ()), Path(dest.source), where)


class _TextReporter:
    """Renders a playbook run as ``run`` renders one command, with headers per step."""

    def __init__(
        self, *, as_json: bool, gather: bool, quiet: bool, width: int, record: RunRecord
    ) -> None:
        from remoteops.report import JsonLinesWriter, LivePrinter, use_color

        self.record = record
        self.as_json = as_json
        self.gather = gather
        self.quiet = quiet
        self.width = width
        self.color = use_color(sys.stdout)
        self.json_writer = JsonLinesWriter(sys.stdout)
        self.printer = LivePrinter(
            sys.stdout.buffer, sys.stderr.buffer, color=self.color, width=width, quiet=quiet
        )
        self._lock = threading.Lock()
        self._live_step: Step | None = None

    def _out(self, text: str) -> None:
        if self.as_json or self.quiet:
            return
        sys.stdout.write(printable(text) + "\n")
        sys.stdout.flush()

    def _err(self, text: str) -> None:
        # Errors quote what hosts sent (an assert's msg may hold a command's output).
        sys.stderr.write(printable(text) + "\n")
        sys.stderr.flush()

    def _failed(self, result: HostResult) -> None:
        from remoteops.report import failure_line

        sys.stderr.write(failure_line(result, width=self.width))
        sys.stderr.flush()

    def play_started(self, play: Play, hosts: Sequence[str]) -> None:
        from remoteops.playbook import fold_hosts

        serial = ""
        if play.serial:
            sizes = [f"{s * 100:g}%" if isinstance(s, float) else str(s) for s in play.serial]
            serial = f", serial [{', '.join(sizes)}]"
        self._out(f"PLAY {play.index} [{play.name}] on {fold_hosts(list(hosts))}{serial}")

    def batch_started(self, play: Play, number: int, total: int, hosts: Sequence[str]) -> None:
        from remoteops.playbook import fold_hosts

        if total > 1:
            self._out(f"BATCH {number}/{total}: {fold_hosts(list(hosts))}")

    def step_started(self, step: Step, hosts: Sequence[str]) -> None:
        self._out(f"STEP {step.number} [{step.name}] ({step.action})")
        live = not self.as_json and not self.gather and step.action in _OUTPUT_ACTIONS
        self._live_step = step if live else None

    def line(self, host: str, stream: str, data: bytes) -> None:
        if self._live_step is not None:
            self.printer.line(host, stream, data)

    def host_done(self, outcome: StepOutcome) -> None:
        result = outcome.result
        self.record.host(result)
        if self.as_json:
            self.json_writer.host(result)
            return
        action = outcome.step.action
        if action in _OUTPUT_ACTIONS and result.status != "skipped":
            self.printer.host_done(result)  # with -q: a failed host's held-back output
            has_output = bool(result.stdout or result.stderr) and not self.gather
            # With -q the summary names each failure, once.
            if not result.is_ok and not self.quiet and (not has_output or result.error):
                self._failed(result)
            return
        if result.status == "skipped":
            return
        if action in ("put", "get"):
            from remoteops.cli.transfer import report_host

            verb = "sent" if action == "put" else "fetched"
            report_host(result, width=self.width, quiet=self.quiet, verb=verb)
        elif not result.is_ok:
            if not self.quiet:
                self._failed(result)
        elif action == "ping":
            self._out(
                f"{result.host.ljust(self.width)}: ok  rtt {result.extra.get('rtt_ms', 0):.1f} ms"
            )

    def step_planned(self, step: Step, plan: Sequence[tuple[str, Sequence[str]]]) -> None:
        from remoteops.playbook import fold_hosts

        for what, hosts in plan:
            self._out(f"  would {what}  on {fold_hosts(list(hosts))}")

    def analysis(self, step: Step, text: str, objects: Sequence[Mapping[str, Any]]) -> None:
        records = [{**obj, "step": step.number, "step_name": step.name} for obj in objects]
        self.record.analysis(records)
        if self.as_json:
            for record in records:
                self.json_writer.record(record)
        elif not self.quiet:
            sys.stdout.write(printable(text, keep_newlines=True))
            sys.stdout.flush()

    def step_finished(self, step: Step, outcomes: Sequence[StepOutcome]) -> None:
        from remoteops.playbook import fold_hosts
        from remoteops.report import render_gathered

        if self.as_json:
            return
        if self.gather and step.action in _OUTPUT_ACTIONS:
            # With -q only the failed hosts' blocks.
            shown = [
                o.result
                for o in outcomes
                if o.result.status != "skipped" and not (self.quiet and o.result.is_ok)
            ]
            sys.stdout.write(render_gathered(shown, color=self.color))
        if self.quiet:
            return
        by_status: dict[str, list[str]] = {}
        for outcome in outcomes:
            status: str = outcome.result.status
            if outcome.result.extra.get("check_mode"):
                status = "not run (--check)"
            elif outcome.ignored:
                status = "failed (ignored)"
            elif outcome.changed:
                status = "changed"
            by_status.setdefault(status, []).append(outcome.host)
        parts = [f"{status}: {fold_hosts(hosts)}" for status, hosts in by_status.items()]
        self._out("  -> " + "; ".join(parts))

    def stopped(self, message: str) -> None:
        from remoteops.outputs import watch

        reason = watch().reason
        if reason is None:
            self._err(f"remoteops: {message}")
        else:  # the one line that says what the closed pipe did
            watch().announce(message if reason in message else f"{message}; {reason}")


def _one_process(ctx: typer.Context, procs: str | None) -> str:
    """A playbook runs in one process: each step waits for every host (serial batches,
    run_once, handlers, max_fail_percentage), which shards would have to agree on.
    ``--procs`` above 1 on the command line is refused; from the environment or a
    config file (meant for run, ping, put and get) it is passed over."""
    from remoteops.shards import parse_procs

    count = parse_procs(procs)
    if (
        count is not None
        and count > 1
        and getattr(ctx.get_parameter_source("procs"), "name", "") == "COMMANDLINE"
    ):
        raise UsageError(
            f"--procs {procs}: play runs in one process (each step waits for every host); "
            "drop --procs"
        )
    return "1"


def play_cmd(
    ctx: typer.Context,
    playbook: Annotated[Path, typer.Argument(help="Playbook YAML file.")],
    inventory: InventoryOpt = None,
    limit: LimitOpt = None,
    forks: ForksOpt = None,
    procs: Annotated[
        str | None,
        typer.Option(
            "--procs",
            metavar="N|auto",
            envvar="REMOTEOPS_PROCS",
            help="play runs in one process (each step waits for every host): only 1 or auto.",
        ),
    ] = None,
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
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Show what each step would do on which hosts; change nothing (run steps "
            "marked check_safe: true still run).",
        ),
    ] = False,
    start_at: Annotated[
        str | None,
        typer.Option("--start-at", help="Skip the steps before this one (its name or number)."),
    ] = None,
    step: Annotated[
        bool,
        typer.Option(
            "--step",
            help="Ask before each step (on a terminal only; Ctrl-C or Ctrl-D there stops).",
        ),
    ] = False,
    extra_vars: Annotated[
        list[str] | None,
        typer.Option(
            "-e",
            "--extra-vars",
            help="NAME=VALUE, @FILE.yml or a YAML mapping (repeatable; beats every other "
            "variable).",
        ),
    ] = None,
    gather_output: Annotated[
        bool,
        typer.Option("-g", "--gather", help="Fold hosts with identical output, per step."),
    ] = False,
    retry_file: RetryFileOpt = None,
    become_password_file: Annotated[
        Path | None,
        typer.Option(
            "--become-password-file",
            help="File holding the sudo password for become steps (sent on stdin).",
        ),
    ] = None,
    no_history: NoHistoryOpt = False,
    job: JobOpt = None,
    metrics: MetricsOpt = None,
    report: ReportOpt = None,
    rerun_failed: RerunFailedOpt = False,
) -> None:
    """Run a playbook: ordered steps over one connection per host, with rolling batches.

    A playbook is a YAML list of plays; each play has hosts (a pattern), vars
    and steps (run, script, put, get, ping, assert, fail, analyze), and may roll
    out in serial batches with max_fail_percentage or any_errors_fatal. The
    playbook is checked before any host is contacted (errors name FILE:LINE,
    exit 2). Values put into commands are shell-quoted unless written
    {{ x | raw }}. Ends with a recap per host and the exit code of run.

    Example: remoteops play playbooks/rolling-config.yml -i inventories/hosts.yml --check
    """
    from remoteops.argcheck import host_column_width
    from remoteops.fleet import load_fleet_inventory, read_secret_file, select_play_hosts
    from remoteops.playbook import (
        PlaybookRunner,
        check_playbook,
        load_playbook,
        parse_extra_vars,
        render_recap,
        resolve_start_at,
    )

    go_quiet(quiet)
    if step and not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise UsageError("--step asks before each step and needs a terminal; none is attached")
    if timeout is not None and timeout <= 0:
        raise UsageError("--timeout must be more than 0 seconds")
    opts = targeting(locals())
    opts.procs = _one_process(ctx, procs)
    check_connection_options(
        inventory=inventory,
        key=key,
        port=port,
        ssh_config=ssh_config,
        known_hosts=known_hosts,
        connect_timeout=connect_timeout,
    )
    book = load_playbook(playbook)
    extra = parse_extra_vars(extra_vars or [])
    first = resolve_start_at(book, start_at) if start_at is not None else None
    inv = load_fleet_inventory(opts.inventory)
    play_hosts = select_play_hosts(book, inv, opts.limit)
    record = recording("play", str(playbook), locals())
    only = record.rerun_hosts()
    if only is not None:
        play_hosts = _only(play_hosts, only, str(playbook))
    check_playbook(
        book,
        play_hosts=play_hosts,
        host_vars=lambda name: inv.hosts[name].vars,
        extra_vars=extra,
        start_at=first,
    )
    refuse_cluster_become(cluster, become_password_file)
    become_password = (
        read_secret_file(become_password_file, "--become-password-file")
        if become_password_file
        else None
    )
    plays_with_hosts = [p for p in book.plays if play_hosts[p.index]]
    pattern = plays_with_hosts[0].hosts if len(plays_with_hosts) == 1 else "all"
    wanted = {h for hosts in play_hosts.values() for h in hosts}
    names = [h for h in inv.hosts if h in wanted]  # only the plays' hosts, inventory order
    targets, executor = resolve(pattern, opts, command_timeout=timeout, inventory=inv, names=names)
    by_name = {t.name: t for t in targets}
    _check_get_destinations(book, play_hosts)
    width = host_column_width(t.name for t in targets)
    reporter = _TextReporter(
        as_json=as_json, gather=gather_output, quiet=quiet, width=width, record=record
    )
    interrupts = Interrupts(executor.cancel)
    runner = PlaybookRunner(
        book,
        executor=executor,
        targets=by_name,
        play_hosts={i: [h for h in hosts if h in by_name] for i, hosts in play_hosts.items()},
        groups=_Groups(inv),
        group_names=lambda name: [g for g in inv.groups_of(name) if g not in ("all", "ungrouped")],
        extra_vars=extra,
        reporter=reporter,
        check=check,
        start_at=first,
        confirm=_Prompt(interrupts) if step else None,
        become_password=become_password,
    )
    record.start(names)
    settle_heap()
    with interrupts:
        result = runner.run()
    result.interrupted_by = interrupts.code
    cluster_outcome(executor, result)
    if not (as_json or quiet):  # with -q the summary names the failed hosts
        recap = render_recap(result)
        if recap:
            sys.stdout.write(recap)
            sys.stdout.flush()
    finish(
        result,
        as_json=as_json,
        json_writer=reporter.json_writer,
        retry_file=retry_file,
        quiet=quiet,
        record=record,
    )


def _only(
    play_hosts: Mapping[int, Sequence[str]], only: Sequence[str], playbook: str
) -> dict[int, list[str]]:
    """``--rerun-failed``: each play's hosts that are among ``only``."""
    from remoteops.fleet import keep_only

    every = [h for hosts in play_hosts.values() for h in hosts]
    keep = set(keep_only(every, only, playbook))  # none left: one error naming them
    return {index: [h for h in hosts if h in keep] for index, hosts in play_hosts.items()}


class _Groups(dict[str, list[str]]):
    """``groups``: every group's hosts, computed when a template reads them."""

    def __init__(self, inventory: Any) -> None:
        super().__init__()
        self._inventory = inventory

    def __missing__(self, group: str) -> list[str]:
        if group not in self._inventory.groups:
            raise KeyError(group)
        hosts = list(self._inventory.hosts_of_group(group))
        self[group] = hosts
        return hosts
