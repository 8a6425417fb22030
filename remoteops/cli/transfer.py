"""The ``put`` and ``get`` commands.

They share ``run``'s targeting options (:mod:`remoteops.cli.options`) and its
run-time machinery (:mod:`remoteops.cli.runtime`), so exit codes and JSON Lines
are those of ``run`` (docs/exit-codes.md, docs/json.md).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

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
    UserOpt,
    become_password,
    refuse_cluster_become,
    resolve,
    targeting,
)
from remoteops.cli.record import RunRecord, recording
from remoteops.cli.runtime import (
    ProgressDisplay,
    cluster_outcome,
    drive,
    finish,
    go_quiet,
    hidden_after_broken_pipe,
)
from remoteops.errors import UsageError
from remoteops.results import HostResult

if TYPE_CHECKING:
    from collections.abc import Iterator

    from remoteops.transfer import TransferOptions

__all__ = ["get_cmd", "put_cmd", "report_host"]

# Log files name the transfer commands' warnings as before the package.
logger = logging.getLogger("remoteops.cli_transfer")


_TransferTimeout = Annotated[
    float | None,
    typer.Option("-t", "--timeout", help="Per-host transfer deadline, seconds."),
]

_Preserve = Annotated[
    bool,
    typer.Option(
        "-p",
        "--preserve",
        help="Keep access times too, as scp -p does (modification times are always kept).",
    ),
]

_Checksum = Annotated[
    bool,
    typer.Option(
        "--checksum",
        help="Decide what is unchanged by sha256 instead of size and modification time.",
    ),
]

_Verify = Annotated[
    bool,
    typer.Option(
        "--verify",
        help="Check each file's sha256 on the far side before renaming it into place "
        "(and decide what is unchanged by sha256, as --checksum).",
    ),
]

_Become = Annotated[
    bool,
    typer.Option(
        "--become",
        "-b",
        help="Read and write the remote files as another user (--become-user, default root) "
        "through sudo.",
    ),
]

_Resume = Annotated[
    bool,
    typer.Option(
        "--resume",
        help="Keep partial files of a failed run (.NAME.remoteops.part) and continue them "
        "when their prefix matches.",
    ),
]


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


class _TransferProgress(ProgressDisplay):
    """Bytes/s, files and hosts on stderr, only when stderr is a terminal."""

    def __init__(self, hosts: int, total_bytes: int | None, *, enabled: bool) -> None:
        super().__init__(enabled=enabled)
        self._hosts = hosts
        self._total = total_bytes
        self._files = 0
        self._done = 0
        self._lock = threading.Lock()

    def _columns(self) -> tuple[Any, ...]:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )

        return (
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
        )

    def _first_task(self) -> tuple[str, float | None]:
        return self._label(), self._total

    def _label(self) -> str:
        return f"hosts {self._done}/{self._hosts}  files {self._files}"

    def moved(self, host: str, nbytes: int, files: int) -> None:
        """The library's progress callback (called from worker threads)."""
        del host
        if not self.shown:
            return
        with self._lock:
            self._files += files
            self._update(advance=nbytes, description=self._label())

    def host_done(self) -> None:
        """Count one finished host."""
        if not self.shown:
            return
        with self._lock:
            self._done += 1
            self._update(description=self._label())


def report_host(result: HostResult, *, width: int, quiet: bool, verb: str) -> None:
    if hidden_after_broken_pipe(result):
        return
    extra = result.extra
    counts = (
        f"{extra.get('files', 0)} {verb}, {extra.get('unchanged', 0)} unchanged"
        + (f", {extra['failed_files']} failed" if extra.get("failed_files") else "")
        + (f", {extra['skipped']} skipped" if extra.get("skipped") else "")
        + f", {_size(extra.get('bytes', 0))} in {result.duration_s:.1f}s"
    )
    if quiet:
        return  # the summary names each failure, once
    if result.is_ok:
        sys.stdout.write(f"{result.host.ljust(width)}: ok  {counts}\n")
        sys.stdout.flush()
        return
    from remoteops.report import failure_line

    sys.stderr.write(failure_line(result, width=width))
    sys.stderr.flush()


def _parse_mode(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        mode = int(value, 8)
    except ValueError:
        raise UsageError(f"--mode {value!r}: give octal permission bits, e.g. 0644") from None
    if not 0 <= mode <= 0o7777:
        raise UsageError(f"--mode {value!r}: give octal permission bits, e.g. 0644")
    return mode


def _options(params: dict[str, Any]) -> TransferOptions:
    """The transfer options out of a command's parameters (give it ``locals()``).

    The sudo password file is read here, before any host is contacted.
    """
    from remoteops.transfer import TransferOptions

    return TransferOptions(
        preserve=params["preserve"],
        checksum=params["checksum"],
        verify=params["verify"],
        resume=params["resume"],
        become=params["become"],
        become_user=params["become_user"],
        become_password=become_password(params["become_password_file"]),
    )


def _run_transfer(
    targets: list[Any],
    executor: Any,
    results: Any,
    progress: _TransferProgress,
    record: RunRecord,
    *,
    as_json: bool,
    quiet: bool,
    retry_file: Path | None,
    stage: Any = None,
    fail_on_findings: bool = False,
    verb: str = "sent",
) -> None:
    from remoteops.argcheck import host_column_width
    from remoteops.cli.analyze import finish_stage
    from remoteops.report import JsonLinesWriter

    width = host_column_width(t.name for t in targets)
    json_writer = JsonLinesWriter()  # sys.stdout at each write: above the progress display

    def show(result: HostResult) -> None:
        progress.host_done()
        if as_json:
            json_writer.host(result)
        else:
            report_host(result, width=width, quiet=quiet, verb=verb)

    cancel = executor.cancel if stage is None else stage.cancel_with(executor.cancel)
    record.start([t.name for t in targets])
    with executor:
        run = drive(results, cancel=cancel, on_result=record.shown(show), progress=progress)
        cluster_outcome(executor, run)

    finish(
        run,
        as_json=as_json,
        json_writer=json_writer,
        retry_file=retry_file,
        analysis=finish_stage(stage, run) if stage is not None else None,
        fail_on_findings=fail_on_findings,
        quiet=quiet,
        record=record,
    )


def put_cmd(
    ctx: typer.Context,
    pattern: PatternArg,
    paths: Annotated[list[str], typer.Argument(help="SRC... DEST")],
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
    timeout: _TransferTimeout = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    retries: RetriesOpt = 0,
    key_passphrase_file: PassphraseFileOpt = None,
    ask_pass: AskPassOpt = False,
    retry_file: RetryFileOpt = None,
    preserve: _Preserve = False,
    mode: Annotated[
        str | None, typer.Option("--mode", help="Permission bits of every file sent (octal).")
    ] = None,
    checksum: _Checksum = False,
    verify: _Verify = False,
    resume: _Resume = False,
    become: _Become = False,
    become_user: BecomeUserOpt = None,
    become_password_file: BecomePasswordFileOpt = None,
    no_history: NoHistoryOpt = False,
    job: JobOpt = None,
    metrics: MetricsOpt = None,
    report: ReportOpt = None,
    rerun_failed: RerunFailedOpt = False,
) -> None:
    """Upload files, directories and local globs to every matched host (atomic, verified).

    A directory SRC lands as DEST/SRC/...; SRC/ (trailing slash) sends its
    contents into DEST. One file and a DEST that is not an existing remote
    directory (and does not end in /) is written as DEST itself. Files are
    written to a temporary name and renamed into place. A copy with exactly
    the source's size and modification time (whole seconds) is left alone, so
    a second run sends nothing; an older or newer copy (a rollback, an edit)
    is replaced. Every copy gets its source's modification time.
    Symlinks named on the command line are followed; inside a directory a
    symlink is sent as the file it points to only if that file is inside the
    same directory, else it is skipped with a warning.
    --become writes as another user through sudo (sftp-server run under sudo;
    the password only on stdin): a new file belongs to that user, a replaced
    file keeps its owner and group where that user may set them (root can).
    A failure names the destination, never the temporary file.

    Example: remoteops put web ./site /srv/www -p --verify
    """
    from remoteops.shards import operate
    from remoteops.transfer import SourceSet, put

    go_quiet(quiet)
    if len(paths) < 2:
        raise UsageError("put needs SRC... DEST: remoteops put PATTERN SRC... DEST")
    if timeout is not None and timeout <= 0:
        raise UsageError("--timeout must be more than 0 seconds")
    *sources, dest = paths
    if not dest:
        raise UsageError("put: DEST is empty")
    file_mode = _parse_mode(mode)
    refuse_cluster_become(cluster, become_password_file)
    options = _options(locals())
    opts = targeting(locals())
    record = recording("put", pattern, locals())
    targets, executor = resolve(pattern, opts, command_timeout=timeout, only=record.rerun_hosts())
    source_set = SourceSet.scan(sources, mode=file_mode, need_hash=checksum or verify or resume)
    for warning in source_set.warnings:
        logger.warning("%s", warning)
    progress = _TransferProgress(
        len(targets), source_set.total_bytes * len(targets), enabled=not quiet
    )
    if cluster is not None:
        from remoteops.transfer.clustered import ClusterPut
        from remoteops.transfer.staging import pack

        # The sources travel once per worker; each worker's shard sends them on.
        results = executor.operate(
            ClusterPut(pack(source_set), dest, options), progress=progress.moved
        )
    else:
        results = operate(
            executor,
            lambda one, _lines, moved: put(one, source_set, dest, options=options, progress=moved),
            progress=progress.moved,
        )
    _run_transfer(
        targets,
        executor,
        results,
        progress,
        record,
        as_json=as_json,
        quiet=quiet,
        retry_file=retry_file,
    )


def get_cmd(
    ctx: typer.Context,
    pattern: PatternArg,
    paths: Annotated[list[str], typer.Argument(help="REMOTE... LOCAL_DIR")],
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
    timeout: _TransferTimeout = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    retries: RetriesOpt = 0,
    key_passphrase_file: PassphraseFileOpt = None,
    ask_pass: AskPassOpt = False,
    retry_file: RetryFileOpt = None,
    preserve: _Preserve = False,
    checksum: _Checksum = False,
    verify: _Verify = False,
    resume: _Resume = False,
    become: _Become = False,
    become_user: BecomeUserOpt = None,
    become_password_file: BecomePasswordFileOpt = None,
    analyze: AnalyzeOpt = None,
    rules: RulesOpt = None,
    fail_on_findings: FailOnFindingsOpt = False,
    no_history: NoHistoryOpt = False,
    job: JobOpt = None,
    metrics: MetricsOpt = None,
    report: ReportOpt = None,
    rerun_failed: RerunFailedOpt = False,
) -> None:
    """Download remote files, directories and globs into LOCAL_DIR/<host>/<remote path>.

    /var/log/syslog from web01 lands as LOCAL_DIR/web01/var/log/syslog. Remote
    globs ('/var/log/*.log', quoted) are expanded on each host. Names a server
    sends that could leave LOCAL_DIR/<host> are refused; remote symlinks inside
    a tree are skipped, never followed; symlinks under LOCAL_DIR/<host> are
    never written through; setuid and setgid bits are dropped. A local copy
    with exactly the remote file's size and modification time (whole seconds)
    is left alone; every copy gets the remote file's modification time.
    --become reads the remote files as another user through sudo (the local
    copies are yours). --analyze runs
    analyzers over each host's files under LOCAL_DIR/<host> as soon as that
    host's download ends (e.g. --analyze logscan).

    Example: remoteops get all /etc/os-release ./facts -a drift
    """
    from remoteops.analysis.sources import downloaded_files
    from remoteops.argcheck import check_output_dir, file_names_for_hosts
    from remoteops.cli.analyze import feed, open_stage
    from remoteops.shards import operate
    from remoteops.transfer import get

    go_quiet(quiet)
    if len(paths) < 2:
        raise UsageError("get needs REMOTE... LOCAL_DIR: remoteops get PATTERN REMOTE... LOCAL_DIR")
    if timeout is not None and timeout <= 0:
        raise UsageError("--timeout must be more than 0 seconds")
    *remotes, local = paths
    if any(not r for r in remotes):
        raise UsageError("get: an empty REMOTE path was given")
    local_dir = Path(local)
    check_output_dir(local_dir, "LOCAL_DIR", create=False)
    refuse_cluster_become(cluster, become_password_file)
    options = _options(locals())
    stage = open_stage(analyze, rules)
    opts = targeting(locals())
    record = recording("get", pattern, locals())
    targets, executor = resolve(pattern, opts, command_timeout=timeout, only=record.rerun_hosts())
    # Each host's files land in LOCAL_DIR/HOST/.
    file_names_for_hosts((t.name for t in targets), local_dir, "LOCAL_DIR")
    check_output_dir(local_dir, "LOCAL_DIR", create=True)
    progress = _TransferProgress(len(targets), None, enabled=not quiet)
    if cluster is not None:
        results = _get_on_cluster(executor, targets, remotes, local_dir, options, progress)
    else:
        results = operate(
            executor,
            lambda one, _lines, moved: get(
                one, remotes, local_dir, options=options, progress=moved
            ),
            progress=progress.moved,
        )

    def files_of(result: HostResult) -> dict[str, Path]:
        return downloaded_files(local_dir / result.host, result)

    with stage if stage is not None else contextlib.nullcontext():
        _run_transfer(
            targets,
            executor,
            feed(stage, results, files_of) if stage else results,
            progress,
            record,
            as_json=as_json,
            quiet=quiet,
            retry_file=retry_file,
            stage=stage,
            fail_on_findings=fail_on_findings,
            verb="fetched",
        )


def _get_on_cluster(
    executor: Any,
    targets: list[Any],
    remotes: list[str],
    local_dir: Path,
    options: TransferOptions,
    progress: _TransferProgress,
) -> Iterator[HostResult]:
    """``get`` over a cluster: each worker downloads into a private directory and sends
    each host's files back, written here under LOCAL_DIR/<host>/ with a local get's
    checks before that host's result is shown."""
    from remoteops.transfer.clustered import ClientFiles, ClusterGet

    files = ClientFiles(local_dir, [t.name for t in targets], preserve=options.preserve)
    try:
        for result in executor.operate(
            ClusterGet(tuple(remotes), options), progress=progress.moved, on_data=files.receive
        ):
            yield files.settle(result)
    finally:
        files.close()
