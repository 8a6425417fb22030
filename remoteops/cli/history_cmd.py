"""The ``history`` commands and ``report``: what the run history holds (docs/history.md,
docs/reports.md).

They only read the history (``history prune`` deletes old runs): nothing is contacted.
A RUN that names no run, or a bad option value, is a usage error (exit 2); a history
file that cannot be read, or a report that cannot be written, exits 1. Output to a
closed pipe is handled by :func:`remoteops.cli.app.main` (exit 141).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from remoteops.argcheck import shown
from remoteops.cli.options import CONTEXT
from remoteops.errors import RemoteOpsError, UsageError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

    from remoteops.history import HistoryStore, RunDetail

__all__ = [
    "history_app",
    "history_diff_cmd",
    "history_hosts_cmd",
    "history_list_cmd",
    "history_prune_cmd",
    "history_show_cmd",
    "report_cmd",
]


history_app = typer.Typer(
    help=(
        "What the run history holds: past runs, their hosts, what changed between two "
        "runs; pruning old runs. Every run, ping, put, get and play is recorded in "
        "$XDG_STATE_HOME/remoteops/history.sqlite3 (docs/history.md).\n\n"
        "Example: remoteops history list -n 5"
    ),
    no_args_is_help=True,
    context_settings=CONTEXT,
    rich_markup_mode=None,
)

RunArg = Annotated[
    str, typer.Argument(metavar="RUN", help="A run id, last, or last~N (N runs before the last).")
]
HistoryJsonOpt = Annotated[
    bool,
    typer.Option(
        "--json", help="JSON Lines on stdout (records: docs/history.md and docs/json.md)."
    ),
]
CommandOpt = Annotated[
    str | None,
    typer.Option(
        "--command", metavar="CMD", help="Only runs of this command (run, ping, put, get, play)."
    ),
]
PatternOpt = Annotated[
    str | None, typer.Option("--pattern", metavar="PAT", help="Only runs on this host pattern.")
]
ScopeCommandOpt = Annotated[
    str | None,
    typer.Option(
        "--command", metavar="CMD", help="Count last and last~N among this command's runs only."
    ),
]
ScopePatternOpt = Annotated[
    str | None,
    typer.Option(
        "--pattern", metavar="PAT", help="Count last and last~N among the runs on PAT only."
    ),
]
NormalizeOpt = Annotated[
    bool,
    typer.Option(
        "--normalize",
        help="Compare outputs masked as group:normalize does (times, numbers, ids, the "
        "host's name), so that only real changes count.",
    ),
]


def _store() -> HistoryStore:
    from remoteops.history import HistoryStore

    return HistoryStore()


def _statuses(text: str | None) -> list[str]:
    """``--status failed,unreachable`` as a list (empty: any)."""
    return [s.strip() for s in (text or "").split(",") if s.strip()]


def _resolve(
    store: HistoryStore, ref: str, *, command: str | None = None, pattern: str | None = None
) -> int:
    """The run RUN names; a usage error (exit 2) when it names none, also with no history."""
    if not store.path.exists():
        raise UsageError(
            f"run {ref!r}: the history has no runs yet ({store.path}); runs are recorded "
            "unless --no-history"
        )
    return store.resolve(ref, command=command, pattern=pattern)


def _write_json(records: Iterable[Mapping[str, Any]]) -> None:
    from remoteops.report import JsonLinesWriter

    writer = JsonLinesWriter()
    for record in records:
        writer.record(record)


@history_app.command("list")
def history_list_cmd(
    as_json: HistoryJsonOpt = False,
    number: Annotated[
        int, typer.Option("-n", "--number", metavar="N", help="At most N runs (0: all).")
    ] = 20,
    command: CommandOpt = None,
    pattern: PatternOpt = None,
    job: Annotated[
        str | None, typer.Option("--job", metavar="NAME", help="Only runs of this job name.")
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            metavar="STATUS,...",
            help="Only runs in these states: ok, failed, running, incomplete.",
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="WHEN",
            help="Only runs started since WHEN: an age (2d, 12h) or a date (2026-12-01).",
        ),
    ] = None,
) -> None:
    """List recorded runs, newest first: id, start, status, exit code, hosts, job.

    Example: remoteops history list --command run --status failed --since 7d
    """
    from remoteops.history import RUN_STATUSES, parse_since, render_runs

    if number < 0:
        raise UsageError(f"-n {number}: give a number of runs, 0 for all")
    store = _store()
    wanted = _statuses(status)
    unknown = sorted(set(wanted) - set(RUN_STATUSES))
    if unknown:
        raise UsageError(f"--status {','.join(unknown)}: use {', '.join(RUN_STATUSES)}")
    after = None if since is None else parse_since(since)
    if not store.path.exists():
        sys.stderr.write(f"remoteops: no runs recorded yet ({store.path})\n")
        return
    runs = store.list_runs(
        command=command,
        pattern=pattern,
        job=job,
        status=wanted,
        since=after,
        limit=number or None,
    )
    if as_json:
        _write_json(r.to_json() for r in runs)
    elif runs:
        from remoteops.printable import printable

        sys.stdout.write(printable(render_runs(runs), keep_newlines=True))
    else:
        sys.stderr.write("remoteops: no run matches\n")


def _render_detail(detail: RunDetail) -> str:
    """``history show`` on a terminal: the run, a line per host record, then the outputs
    folded as ``--gather`` folds them (per playbook step)."""
    from datetime import datetime

    from remoteops.htmlreport import document_name, record_result
    from remoteops.report import outcome, render_gathered
    from remoteops.reporting import report_run

    run = detail.run
    when = datetime.fromtimestamp(run.started).strftime("%Y-%m-%d %H:%M:%S")
    ended = "-" if run.ended is None else datetime.fromtimestamp(run.ended).strftime("%H:%M:%S")
    code = "-" if run.exit_code is None else str(run.exit_code)
    seconds = "-" if run.duration_s is None else f"{run.duration_s:.1f}"
    lines = [
        f"run {run.id}: {run.job}",
        f"command:   {report_run(run).command_line}",
        f"status:    {run.status}, exit code {code}, {seconds} s",
        f"started:   {when} (ended {ended}) by {run.user}",
        f"inventory: {run.inventory or '-'}",
        "",
    ]
    rows = [("HOST", "STEP", "STATUS", "EXIT", "SECONDS", "ERROR")]
    by_document: dict[str, list[Any]] = {}
    for record in detail.hosts:
        result = record_result(record)
        document = document_name(record)
        by_document.setdefault(document, []).append(result)
        rows.append(
            (
                result.host,
                "" if document == "output" else document,
                str(record.get("status")),  # as recorded (an ignored failure too)
                "-" if result.exit_code is None else str(result.exit_code),
                f"{result.duration_s:.2f}",
                outcome(result) if result.error else "",
            )
        )
    if len(rows) == 1:
        lines.append("no host recorded")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in rows
        if len(rows) > 1
    ]
    lines += _render_analysis(detail.analysis)
    parts = ["\n".join(line.rstrip() for line in lines) + "\n"]
    for document, results in by_document.items():
        parts += [f"\n{document}:\n" if document != "output" else "\n", render_gathered(results)]
    return "".join(parts)


def _render_analysis(records: list[dict[str, Any]]) -> list[str]:
    """The findings and errors of the run's analysis records, a line each, per analyzer."""
    lines: list[str] = []
    for record in records:
        name = str(record.get("analyzer") or "?")
        if record.get("args"):
            name += f":{record['args']}"
        lines += ["", f"{name}: {record.get('title') or ''}"]
        for key, text in (("findings", "message"), ("errors", "error")):
            entries = record.get(key)
            for entry in entries if isinstance(entries, list) else []:
                if isinstance(entry, dict):
                    what = "" if key == "findings" else "error: "
                    lines.append(f"  {entry.get('host', '?')}: {what}{entry.get(text, '')}")
    return lines


@history_app.command("show")
def history_show_cmd(
    run: RunArg,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="JSON Lines: the run record, the host records as --json printed them, "
            "the summary.",
        ),
    ] = False,
    command: ScopeCommandOpt = None,
    pattern: ScopePatternOpt = None,
) -> None:
    """Show one run and every host's result (outputs as kept, up to --max-output).

    Example: remoteops history show last --json
    """
    store = _store()
    detail = store.show(_resolve(store, run, command=command, pattern=pattern))
    if as_json:
        _write_json(detail.to_json_lines())
        return
    from remoteops.printable import printable

    sys.stdout.write(printable(_render_detail(detail), keep_newlines=True))


@history_app.command("diff")
def history_diff_cmd(
    run_a: Annotated[
        str | None,
        typer.Argument(
            metavar="[RUN_A]",
            help="The run before (default: the run before RUN_B of the same command and pattern).",
        ),
    ] = None,
    run_b: Annotated[
        str | None,
        typer.Argument(metavar="[RUN_B]", help="The run after (default: RUN_A, else last)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One diff record (JSON).")] = False,
    normalize: NormalizeOpt = False,
    command: ScopeCommandOpt = None,
    pattern: ScopePatternOpt = None,
) -> None:
    """Show what changed between two runs: hosts whose status or output changed, hosts
    added or gone.

    Without RUN, the last run against the one before it of the same command and
    pattern; with one RUN, that run against the one before it.

    Example: remoteops history diff --normalize
    """
    store = _store()
    refs = [r for r in (run_a, run_b) if r is not None]
    if not refs:
        refs = ["last"]
    ids = [_resolve(store, r, command=command, pattern=pattern) for r in refs]
    diff = store.diff(*ids, normalize=normalize)
    if as_json:
        _write_json([diff.to_json()])
        return
    from remoteops.printable import printable

    sys.stdout.write(printable(diff.render_text(), keep_newlines=True))


@history_app.command("hosts")
def history_hosts_cmd(
    run: RunArg,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            metavar="STATUS,...",
            help="Only hosts with these statuses: ok, failed, unreachable, hostkey, "
            "timeout, interrupted, skipped.",
        ),
    ] = None,
    command: ScopeCommandOpt = None,
    pattern: ScopePatternOpt = None,
) -> None:
    """Print a run's hosts, one per line, for -l @FILE (a playbook's host once, if any of
    its steps matches).

    Example: remoteops history hosts last --status failed,unreachable
    """
    store = _store()
    wanted = _statuses(status)
    run_id = _resolve(store, run, command=command, pattern=pattern)
    names = store.hosts(run_id, wanted)
    sys.stdout.write("".join(f"{name}\n" for name in names))


@history_app.command("prune")
def history_prune_cmd(
    ctx: typer.Context,
    max_age: Annotated[
        str | None,
        typer.Option(
            "--max-age",
            metavar="AGE",
            help="Delete runs started longer ago (90d, 12h, 2w; a bare number is days). "
            "Default: the config's [history] max-age, else 90d.",
        ),
    ] = None,
    max_size: Annotated[
        str | None,
        typer.Option(
            "--max-size",
            metavar="SIZE",
            help="Then delete the oldest runs until the data fits (256M, 1G, 500k). "
            "Default: the config's [history] max-size, else 256M.",
        ),
    ] = None,
) -> None:
    """Delete old runs now and compact the file (runs still running are kept).

    Example: remoteops history prune --max-age 30d
    """
    from remoteops.config import config_from_context
    from remoteops.history import parse_age, parse_size
    from remoteops.wording import plural

    config = config_from_context(ctx)
    age = config.section_value("history", "max-age") if max_age is None else parse_age(max_age)
    size = config.section_value("history", "max-size") if max_size is None else parse_size(max_size)
    store = _store()
    done = store.prune(max_age_s=float(age), max_size=int(size), vacuum=True)
    line = f"deleted {plural(done.runs_deleted, 'run')}"
    if done.bytes_before:
        line += f"; {store.path}: {_size(done.bytes_before)} -> {_size(done.bytes_after)}"
    if done.vacuumed:
        line += " (compacted)"
    sys.stdout.write(line + "\n")


def _size(count: int) -> str:
    """``512 bytes``, ``4.0 KiB``, ``1.5 MiB``."""
    if count < 1024:
        return f"{count} bytes"
    value = float(count)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


def report_cmd(
    run: RunArg,
    output: Annotated[
        Path,
        typer.Option("-o", "--output", metavar="FILE.html", help="The report file to write."),
    ],
    normalize: NormalizeOpt = False,
    command: ScopeCommandOpt = None,
    pattern: ScopePatternOpt = None,
) -> None:
    """Write the HTML report of a recorded run: status, host map, durations, outputs, and
    what changed since the previous run of the same command and pattern.

    One self-contained file (no script, nothing loaded from the network), written
    atomically; docs/reports.md.

    Example: remoteops report last -o report.html
    """
    from remoteops.argcheck import check_output_file
    from remoteops.reporting import write_history_report

    check_output_file(output, "-o")
    store = _store()
    run_id = _resolve(store, run, command=command, pattern=pattern)
    try:
        write_history_report(store, run_id, output, normalize=normalize)
    except OSError as exc:
        raise RemoteOpsError(
            f"-o {shown(output)}: cannot write the report ({exc.strerror or exc})"
        ) from None
