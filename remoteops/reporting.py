"""The bridge between the run history and the HTML report (docs/reports.md).

:mod:`remoteops.history` keeps runs; :mod:`remoteops.htmlreport` draws one. This
module turns the first's records into the second's input:

- :func:`report_run`: a :class:`~remoteops.history.RunInfo` as the report's
  :class:`~remoteops.htmlreport.ReportRun`;
- :func:`report_diff`: a :class:`~remoteops.history.RunDiff` as the report's
  :class:`~remoteops.htmlreport.ReportDiff`, with a unified diff of each changed
  output;
- :func:`previous_diff`: what changed since the previous run of the same command
  and pattern, or None (never an error: a report without it is still a report);
- :func:`write_history_report`: ``remoteops report RUN -o FILE.html``.

At the end of a live run the command line calls :func:`report_run`,
:func:`previous_diff` and :func:`write_report` itself, with the results it holds.
"""

from __future__ import annotations

import difflib
import logging
import os
import shlex
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from remoteops.errors import RemoteOpsError
from remoteops.history import HistoryStore, HostDiff, RunDiff, RunInfo, status_words
from remoteops.htmlreport import (
    OutputChange,
    ReportDiff,
    ReportRun,
    StatusChange,
    document_name,
    write_report,
)

__all__ = [
    "DIFF_BUDGET",
    "MAX_DIFF",
    "output_diff",
    "previous_diff",
    "report_diff",
    "report_run",
    "write_history_report",
]

log = logging.getLogger(__name__)

MAX_DIFF: Final = 4000
"""Characters of one host's output diff kept; the rest is counted, not kept."""
DIFF_BUDGET: Final = 1_000_000
"""Characters of output diffs kept over all hosts; hosts past it are listed without one."""
DIFF_LINES: Final = 2000
"""Lines of each output compared (a diff of huge outputs would take too long)."""
NOT_RUN: Final = "not run"
"""The state of a playbook step one of the two runs has no record of."""


def _local(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC).astimezone()


def _command_line(info: RunInfo) -> str:
    """The recorded (redacted) command line, its program shown as ``remoteops``."""
    argv = list(info.argv)
    if not argv:
        return shlex.join(["remoteops", info.command])
    if os.path.basename(argv[0]) in ("remoteops", "__main__.py"):
        argv[0] = "remoteops"
    return shlex.join(argv)


def report_run(info: RunInfo) -> ReportRun:
    """The report's view of a recorded run: its command line as recorded (secrets already
    hidden), times as local datetimes (``ended`` None for a run that did not finish)."""
    return ReportRun(
        command=info.command,
        command_line=_command_line(info),
        pattern=info.pattern or "",
        inventory=info.inventory,
        started=_local(info.started),
        ended=None if info.ended is None else _local(info.ended),
        exit_code=info.exit_code,
        run_id=str(info.id),
    )


def _decoded_lines(data: bytes, host: str, normalize: bool) -> tuple[list[str], bool]:
    """The first :data:`DIFF_LINES` lines of an output (masked as ``group:normalize``
    does when ``normalize``), and whether there were more."""
    if normalize:
        from remoteops.analysis.textscan import normalise

        data = normalise(data, host=host)
    lines = data.decode("utf-8", errors="replace").splitlines()
    return lines[:DIFF_LINES], len(lines) > DIFF_LINES


def output_diff(
    stream: str,
    before: bytes,
    after: bytes,
    *,
    labels: tuple[str, str] = ("before", "after"),
    host: str = "",
    normalize: bool = False,
    limit: int = MAX_DIFF,
) -> str:
    """A unified diff of one stream of two runs (``--- stdout (run 41)``), its first
    ``limit`` characters. ``normalize`` masks both sides first, as ``group:normalize``
    does (``host``'s name too), so that the diff shows only what made them differ."""
    old, old_cut = _decoded_lines(before, host, normalize)
    new, new_cut = _decoded_lines(after, host, normalize)
    lines = list(
        difflib.unified_diff(
            old,
            new,
            f"{stream} ({labels[0]})",
            f"{stream} ({labels[1]})",
            n=2,
            lineterm="",
        )
    )
    if old_cut or new_cut:
        lines.append(f"(only the first {DIFF_LINES} lines of each were compared)")
    text = "\n".join(lines) + "\n" if lines else ""
    if len(text) > limit:
        text = text[:limit] + f"\n... ({len(text) - limit} more characters)\n"
    return text


def _step(d: HostDiff) -> str:
    if d.step is None:
        return ""
    return document_name({"play": d.step[0], "step": d.step[1], "step_name": d.step_name})


def report_diff(
    diff: RunDiff, *, max_diff: int = MAX_DIFF, budget: int = DIFF_BUDGET
) -> ReportDiff:
    """The report's view of what changed from ``diff.a`` to ``diff.b``.

    Status changes read ``failed (exit 2)``; an output change carries a unified diff
    of each changed stream (normalised when the diff was), at most ``max_diff``
    characters each and ``budget`` in all (identical pairs of outputs are diffed
    once). In a playbook run a step that only one run has is a status change from or
    to ``not run``, unless the whole host is new or gone.
    """
    status: list[StatusChange] = []
    output: list[OutputChange] = []
    added: list[str] = []
    gone: list[str] = []
    labels = (f"run {diff.a.id}", f"run {diff.b.id}")
    done: dict[tuple[str, bytes, bytes], str] = {}
    for d in diff.hosts:
        step = _step(d)
        if d.change == "status":
            status.append(StatusChange(d.host, status_words(d.before), status_words(d.after), step))
        elif d.change == "output":
            parts = []
            for stream in d.streams:
                pair = d.outputs.get(stream)
                if pair is None or budget <= 0:
                    continue
                key = (stream, *pair) if not diff.normalized else (f"{d.host}\0{stream}", *pair)
                if key not in done:
                    done[key] = output_diff(
                        stream,
                        *pair,
                        labels=labels,
                        host=d.host,
                        normalize=diff.normalized,
                        limit=min(max_diff, budget),
                    )
                    budget -= len(done[key])
                parts.append(done[key])
            output.append(OutputChange(d.host, "".join(parts), step))
        elif d.step is not None and d.host in (
            diff.hosts_a if d.change == "added" else diff.hosts_b
        ):
            # A step of a host both runs have: the step ran in one run only.
            before = NOT_RUN if d.change == "added" else status_words(d.before)
            after = NOT_RUN if d.change == "gone" else status_words(d.after)
            status.append(StatusChange(d.host, before, after, step))
        else:
            (added if d.change == "added" else gone).append(d.host)
    how = ", outputs normalised" if diff.normalized else ""
    when = _local(diff.a.started).strftime("%Y-%m-%d %H:%M")
    return ReportDiff(
        previous=f"run {diff.a.id}, {when}{how}",
        status_changed=status,
        output_changed=output,
        added=list(dict.fromkeys(added)),
        gone=list(dict.fromkeys(gone)),
    )


def previous_diff(
    store: HistoryStore, run_id: int, *, normalize: bool = False
) -> ReportDiff | None:
    """What changed from the previous run of the same command and pattern to run
    ``run_id``, or None when there is no previous run, no such run, or the history
    cannot be read (a report without a diff is still a report: never raises for those)."""
    try:
        diff = store.diff(None, run_id, normalize=normalize)
    except (RemoteOpsError, OSError, sqlite3.Error) as exc:
        log.debug("no diff against the previous run of run %s: %s", run_id, exc)
        return None
    return report_diff(diff)


def write_history_report(
    store: HistoryStore,
    run_id: int,
    path: str | os.PathLike[str],
    *,
    order: Sequence[str] | None = None,
    normalize: bool = False,
) -> Path:
    """Write the HTML report of recorded run ``run_id`` to ``path`` (atomically, as
    :func:`~remoteops.htmlreport.write_report`): its host records as kept, and what
    changed since the previous run of the same command and pattern, and the analysis
    findings the run kept (:meth:`~remoteops.history.Recorder.analysis`).

    Raises :class:`~remoteops.errors.UsageError` for no such run,
    :class:`~remoteops.history.HistoryError` when the history cannot be read, OSError
    when the file cannot be written (nothing is left behind).
    """
    detail = store.show(run_id)
    return write_report(
        path,
        report_run(detail.run),
        detail.hosts,
        analysis=detail.analysis,
        diff=previous_diff(store, run_id, normalize=normalize),
        order=order,
    )
