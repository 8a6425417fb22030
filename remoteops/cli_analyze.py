"""The ``analyze`` command, and the ``--analyze`` plumbing ``run`` and ``get`` share.

Registered on the main Typer app by ``cli.py``. Analysis runs in a process
pool (``remoteops.analysis``); exit codes follow docs/exit-codes.md: 5 when
``--fail-on-findings`` is given and an analyzer reports a finding, or when an
analyzer failed on some input, unless 3 or 4 already apply.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from remoteops.errors import UsageError
from remoteops.printable import printable
from remoteops.report import JsonLinesWriter

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping

    from remoteops.analysis import AnalysisReport, AnalysisStage
    from remoteops.results import HostResult

__all__ = [
    "analysis_exit_code",
    "analysis_summary",
    "emit_analysis",
    "feed",
    "finish_stage",
    "open_stage",
    "register",
]

EXIT_FINDINGS = 5


def open_stage(
    specs: list[str] | None, rules: Path | None, *, workers: int | None = None
) -> AnalysisStage | None:
    """An ``AnalysisStage`` for ``--analyze``/``--rules``, or None when neither was given.

    Checked before any host is contacted: a bad spec or rules file is a
    ``UsageError`` (exit 2).
    """
    if not specs and rules is None:
        return None
    from remoteops.analysis import AnalysisStage, load_rules, parse_spec

    parsed = [parse_spec(s) for s in specs or []]
    if rules is not None:
        parsed.extend(load_rules(rules))
    if not parsed:
        raise UsageError(f"--rules {rules}: no rules in the file; nothing to analyse")
    if workers is not None and workers < 0:
        raise UsageError("--workers must be 0 (analyse in this process) or more")
    return AnalysisStage(parsed, workers=workers)


def feed(
    stage: AnalysisStage,
    results: Iterable[HostResult],
    paths: Callable[[HostResult], Mapping[str, Path] | None],
) -> Iterator[HostResult]:
    """Pass ``results`` through, handing each one to ``stage`` once it has been shown.

    ``paths(result)`` names the files to analyse for a host (an ``--out-dir``
    file, downloaded files), or None for its captured stdout.
    """
    for result in results:
        yield result
        stage.submit(result, paths=paths(result))


def finish_stage(stage: AnalysisStage, run: Any) -> AnalysisReport:
    """``stage.finish()`` with Ctrl-C and SIGTERM handled: they stop the workers, and the
    run's exit code becomes 130 or 143; the analysis done so far is still reported."""
    from remoteops.cli import _Interrupts

    with _Interrupts(stage.cancel, stopping="the analysis") as interrupts:
        report = stage.finish()
    if interrupts.code is not None and run.interrupted_by is None:
        run.interrupted_by = interrupts.code
    return report


def emit_analysis(
    report: AnalysisReport,
    *,
    as_json: bool,
    json_writer: JsonLinesWriter | None = None,
    tables: bool = True,
) -> None:
    """Print the report: JSON Lines objects (``type: analysis``) or, if ``tables``, text
    tables, on stdout; inputs an analyzer failed on, one line each on stderr."""
    try:
        if as_json:
            writer = json_writer or JsonLinesWriter(sys.stdout)
            for obj in report.to_json():
                writer.record(obj)
        elif tables:
            sys.stdout.write(printable(report.render_text(), keep_newlines=True))
        sys.stdout.flush()
    except BrokenPipeError:
        pass
    for error in report.errors:
        where = f" {error['document']}" if error.get("document") not in (None, "stdout") else ""
        sys.stderr.write(
            printable(
                f"remoteops: analysis {error['analyzer']}: {error['host']}{where}: {error['error']}"
            )
            + "\n"
        )
    sys.stderr.flush()


def analysis_exit_code(code: int, report: AnalysisReport | None, *, fail_on_findings: bool) -> int:
    """The run's exit code, made 5 by findings (with ``--fail-on-findings``) or analysis
    errors when nothing else (3, 4, interruption) already applies."""
    if report is None or code != 0:
        return code
    if report.errors or (fail_on_findings and report.findings):
        return EXIT_FINDINGS
    return code


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def analysis_summary(report: AnalysisReport, *, fail_on_findings: bool) -> tuple[str, list[str]]:
    """What the analysis adds to the run's summary, so that it agrees with the exit code.

    Returns the end of the summary's first line (``"; 3 findings
    (--fail-on-findings)"``, ``"; 1 analysis error"``: whatever made the exit
    code 5) and, with ``--fail-on-findings``, one line per finding, hosts with
    the same finding folded (``  web[01-03] (3): grep:ERROR: 2 lines match``).
    Inputs an analyzer failed on have their own lines (:func:`emit_analysis`).
    """
    from remoteops.nodeset import fold

    parts = []
    if report.errors:
        parts.append(_counted(len(report.errors), "analysis error"))
    lines: list[str] = []
    if fail_on_findings and report.findings:
        parts.append(f"{_counted(len(report.findings), 'finding')} (--fail-on-findings)")
        same: dict[tuple[str, str], list[str]] = {}
        for section in report.sections:
            what = section.spec.label or str(section.spec)
            for finding in section.findings:
                where = f"{finding.document}: " if finding.document not in (None, "stdout") else ""
                same.setdefault((what, where + finding.message), []).append(finding.host)
        for (what, message), hosts in sorted(same.items(), key=lambda kv: -len(kv[1])):
            shown = hosts[0] if len(hosts) == 1 else f"{fold(hosts)} ({len(hosts)})"
            lines.append(printable(f"  {shown}: {what}: {message}"))
    return ("; " + ", ".join(parts) if parts else ""), lines


_AnalyzeMore = Annotated[
    list[str] | None,
    typer.Option(
        "--analyze",
        "-a",
        help="Another analyzer NAME[:ARGS] to run (repeatable).",
    ),
]


def analyze_cmd(
    analyzer: Annotated[
        str,
        typer.Argument(
            help="ANALYZER[:ARGS]: group[:normalize], grep[:hosts=all]:REGEX, count:REGEX, "
            "extract[:PARSER|REGEX], threshold:RULE, drift[:normalize], "
            "logscan[:top=N][:REGEX], or module:function[:ARGS]."
        ),
    ],
    sources: Annotated[
        list[Path],
        typer.Argument(help="JSON Lines runs (--json output), --out-dir or get directories."),
    ],
    more: _AnalyzeMore = None,
    rules: Annotated[
        Path | None,
        typer.Option("--rules", help="YAML file of rules: '- threshold: df.use% > 90' ..."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON Lines: one analysis object each, then a summary.")
    ] = False,
    fail_on_findings: Annotated[
        bool, typer.Option("--fail-on-findings", help="Exit 5 when an analyzer reports a finding.")
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "-w", "--workers", help="Analysis processes (default: one per CPU; 0: this process)."
        ),
    ] = None,
    quiet: Annotated[
        bool,
        typer.Option(
            "-q",
            "--quiet",
            help="For cron: print nothing at all when the exit code is 0; otherwise only "
            "the summary (one line per finding or error), no tables. --json is still written.",
        ),
    ] = False,
) -> None:
    """Analyse saved results locally in a process pool (group, grep, drift, logscan, ...).

    Each SOURCE is the JSON Lines of a --json run, a run --out-dir directory
    (HOST.out files of the last run into it, read by path), or a get LOCAL_DIR
    (one directory per host, every file under it). The output of play --json is
    analysed per step: each run or script step is its own document, "step N
    'NAME'", so hosts are compared within a step. Big files are split into byte ranges at line
    boundaries, so every CPU shares them. Exit 0; 2 for bad arguments; 5 when an
    analyzer failed on some input, or with --fail-on-findings when there are
    findings; 130 on Ctrl-C. A summary on stderr says why the exit code is not 0.

    Example: remoteops analyze logscan:top=20 ./logs --json
    """
    from remoteops.analysis.sources import iter_source, source_kind
    from remoteops.argcheck import check_stat
    from remoteops.cli import _go_quiet, _Interrupts
    from remoteops.logconfig import release_stderr

    _go_quiet(quiet)
    for source in sources:
        check_stat(source, "SOURCE")  # a name too long, not a directory, ...
        source_kind(source)  # a missing SOURCE is a usage error before any work starts
    stage = open_stage([analyzer, *(more or [])], rules, workers=workers)
    assert stage is not None
    start = time.monotonic()
    hosts: set[str] = set()
    with stage, _Interrupts(stage.cancel, stopping="the analysis") as interrupts:
        for source in sources:
            for result, paths, name in iter_source(source):
                if interrupts.code is not None:
                    break
                hosts.add(result.host)
                stage.submit(result, paths=paths, name=name)
        report = stage.finish()
    code = interrupts.code or analysis_exit_code(0, report, fail_on_findings=fail_on_findings)
    release_stderr(show=code != 0)
    emit_analysis(report, as_json=as_json, tables=not quiet)
    if as_json:
        summary: dict[str, Any] = {
            "v": 1,
            "type": "summary",
            "hosts": len(hosts),
            "findings": len(report.findings),
            "errors": len(report.errors),
            "duration_s": round(time.monotonic() - start, 3),
            "exit_code": code,
        }
        sys.stdout.write(json.dumps(summary, separators=(", ", ": ")) + "\n")
    if code != 0:
        suffix, lines = analysis_summary(report, fail_on_findings=fail_on_findings)
        if interrupts.code is not None:
            suffix += "; interrupted"
        first = f"{_counted(len(hosts), 'host')} analysed{suffix}"
        sys.stderr.write("\n".join([first, *lines]) + "\n")
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add ``analyze`` to the main app."""
    app.command("analyze")(analyze_cmd)
