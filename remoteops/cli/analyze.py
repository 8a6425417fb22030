"""The ``analyze`` command, and the ``--analyze`` plumbing ``run`` and ``get`` share.

Analysis runs in a process pool (``remoteops.analysis``); exit codes follow
docs/exit-codes.md (:mod:`remoteops.cli.findings`).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from remoteops.cli.findings import analysis_exit_code, analysis_summary, counted, emit_analysis
from remoteops.cli.options import ClusterOpt, ClusterTimeoutOpt
from remoteops.cli.runtime import Interrupts, go_quiet, settle_heap
from remoteops.errors import UsageError
from remoteops.exitcodes import ExitCode

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping

    from distributed import Client

    from remoteops.analysis import AnalysisReport, AnalysisStage
    from remoteops.results import HostResult

__all__ = ["analyze_cmd", "feed", "finish_stage", "open_stage"]


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


@contextlib.contextmanager
def cluster_client(address: str | None, timeout: float) -> Iterator[Client | None]:
    """A client of the ``--cluster`` scheduler (None without one), closed at the end.

    A bad address, ``distributed`` missing, or a scheduler that does not answer
    within ``timeout`` is one ``UsageError`` line, exit 2 (remoteops.cluster).
    """
    if address is None:
        yield None
        return
    from remoteops import cluster

    client = cluster.connect(address, timeout=timeout)
    try:
        yield client
    finally:
        cluster.close(client)


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

    with Interrupts(stage.cancel, stopping="the analysis") as interrupts:
        report = stage.finish()
    if interrupts.code is not None and run.interrupted_by is None:
        run.interrupted_by = interrupts.code
    return report


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
            "-w",
            "--workers",
            help="Analysis processes (default: one per CPU; 0: this process; unused with "
            "--cluster).",
        ),
    ] = None,
    cluster: ClusterOpt = None,
    cluster_timeout: ClusterTimeoutOpt = 10.0,
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
    With --cluster the analyzers run on a Dask cluster's workers, the same tasks
    carrying their bytes; the results are the same.

    Example: remoteops analyze logscan:top=20 ./logs --json
    """
    from remoteops.analysis.sources import iter_source, source_kind
    from remoteops.argcheck import check_stat
    from remoteops.cluster import check_timeout
    from remoteops.logconfig import release_stderr

    go_quiet(quiet)
    check_timeout(cluster_timeout)  # with or without --cluster (it may come from a config)
    for source in sources:
        check_stat(source, "SOURCE")  # a name too long, not a directory, ...
        source_kind(source)  # a missing SOURCE is a usage error before any work starts
    stage = open_stage([analyzer, *(more or [])], rules, workers=workers)
    assert stage is not None
    start = time.monotonic()
    hosts: set[str] = set()
    settle_heap()
    with (
        cluster_client(cluster, cluster_timeout) as client,
        stage.on_cluster(client),
        Interrupts(stage.cancel, stopping="the analysis") as interrupts,
    ):
        for source in sources:
            for result, paths, name in iter_source(source):
                if interrupts.code is not None:
                    break
                hosts.add(result.host)
                stage.submit(result, paths=paths, name=name)
        report = stage.finish()
    code = interrupts.code or analysis_exit_code(
        ExitCode.OK, report, fail_on_findings=fail_on_findings
    )
    lost = None if interrupts.code or stage.cluster_lost is None else stage.cluster_lost
    if lost is not None:
        code = ExitCode.USAGE
    release_stderr(show=code != ExitCode.OK)
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
    if lost is not None:
        sys.stderr.write(
            f"remoteops: error: --cluster {cluster}: {lost}; the results above are partial\n"
        )
    elif code != ExitCode.OK:
        suffix, lines = analysis_summary(report, fail_on_findings=fail_on_findings)
        if interrupts.code is not None:
            suffix += "; interrupted"
        first = f"{counted(len(hosts), 'host')} analysed{suffix}"
        sys.stderr.write("\n".join([first, *lines]) + "\n")
    raise typer.Exit(code)
