"""What an analysis adds to the end of a run: its output, its exit code, its summary lines.

Shared by ``run``, ``get`` and ``analyze`` (and :func:`remoteops.cli.runtime.finish`).
Exit codes follow docs/exit-codes.md: 5 when ``--fail-on-findings`` is given and an
analyzer reports a finding, or when an analyzer failed on some input, unless 3 or 4
already apply.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from remoteops.exitcodes import ExitCode
from remoteops.printable import printable

if TYPE_CHECKING:
    from remoteops.analysis import AnalysisReport
    from remoteops.report import JsonLinesWriter

__all__ = [
    "analysis_exit_code",
    "analysis_summary",
    "counted",
    "emit_analysis",
]


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
            if json_writer is None:
                # Imported here: every start (a shell's Tab too) imports this module.
                from remoteops.report import JsonLinesWriter

                json_writer = JsonLinesWriter(sys.stdout)
            writer = json_writer
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
    if report is None or code != ExitCode.OK:
        return code
    if report.errors or (fail_on_findings and report.findings):
        return ExitCode.FAILED
    return code


def counted(count: int, noun: str) -> str:
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
        parts.append(counted(len(report.errors), "analysis error"))
    lines: list[str] = []
    if fail_on_findings and report.findings:
        parts.append(f"{counted(len(report.findings), 'finding')} (--fail-on-findings)")
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
