"""What a run leaves besides its output: its record in the run history
(docs/history.md), the ``--metrics`` file (docs/metrics.md) and the ``--report``
page (docs/reports.md); and ``--rerun-failed``, which reads the history back.

Every host-facing command (``run``, ``ping``, ``put``, ``get``, ``play``) builds
one :class:`RunRecord` from its options before any host is contacted (bad
paths are refused then, exit 2), starts it once its hosts are known, hands it
each host's result as it finishes, and finishes it with the run's exit code.
Nothing here ever changes a run's outcome: a history, metrics file or report
that cannot be written is one warning line, and the exit code is kept.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from remoteops.exitcodes import ExitCode

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path

    from remoteops.history import HistoryStore, Recorder
    from remoteops.results import HostResult

__all__ = ["RunRecord", "recording"]

logger = logging.getLogger("remoteops.cli")


@dataclass(slots=True)
class RunRecord:
    """One run's history record, metrics and report (see the module's docstring)."""

    command: str
    pattern: str | None
    inventory: str | None
    job: str
    history: bool
    metrics: Path | None
    report: Path | None
    rerun_failed: bool
    quiet: bool = False
    max_output: int | None = None
    history_max_age_s: float | None = None
    history_max_size: int | None = None
    started: float = field(default_factory=time.time)
    _store: HistoryStore | None = None
    _recorder: Recorder | None = None
    _results: list[HostResult] = field(default_factory=list)
    _analysis: list[Mapping[str, Any]] = field(default_factory=list)
    _order: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ before the run

    @property
    def store(self) -> HistoryStore:
        """The history file (the default one; the tests give XDG_STATE_HOME)."""
        if self._store is None:
            from remoteops.history import HistoryStore

            self._store = HistoryStore()
        return self._store

    def check(self) -> None:
        """Refuse now, before any host is contacted, what could not be written at the end."""
        from remoteops.argcheck import check_output_file
        from remoteops.errors import UsageError

        if self.metrics is not None:
            from remoteops.metrics import check_metrics_path

            check_output_file(self.metrics, "--metrics")  # a name too long, a directory
            check_metrics_path(self.metrics)
        if self.report is not None:
            check_output_file(self.report, "--report")
        if self.rerun_failed and not self.history:
            raise UsageError(
                "--rerun-failed reads the run history, which --no-history (or the config's "
                "[history] enabled = false) turns off; drop one of them"
            )

    def rerun_hosts(self) -> list[str] | None:
        """With ``--rerun-failed``: the hosts of the last run of this command and pattern
        that did not succeed (None without the flag). With none, says so and exits 0:
        the command contacts nothing."""
        if not self.rerun_failed:
            return None
        import typer

        run_id, hosts = self.store.not_succeeded(self.command, self.pattern)
        if not hosts:
            what = f"`{self.command}` on {self.pattern}" if self.pattern else f"`{self.command}`"
            message = f"every host succeeded in run {run_id} ({what}); nothing to rerun"
            logger.info("--rerun-failed: %s", message)
            if not self.quiet:
                sys.stderr.write(f"remoteops: {message}\n")
                sys.stderr.flush()
            raise typer.Exit(ExitCode.OK)
        logger.info("--rerun-failed: %d host(s) that did not succeed in run %d", len(hosts), run_id)
        return hosts

    # ------------------------------------------------------------------ during the run

    def start(self, order: Sequence[str]) -> None:
        """The run starts on these hosts (inventory order): record it in the history."""
        self._order = list(order)
        if self.history:
            self._recorder = self.store.start_run(
                command=self.command,
                argv=_command_line(),
                pattern=self.pattern,
                inventory=self.inventory,
                job=self.job,
                max_output=self.max_output,
                started=self.started,
            )

    def host(self, result: HostResult) -> None:
        """One host's result (a playbook step's), as it finishes."""
        if self._recorder is not None:
            self._recorder.host(result)
        if self.report is not None:
            self._results.append(result)

    def shown(self, show: Callable[[HostResult], None]) -> Callable[[HostResult], None]:
        """``show`` that also records each result (for :func:`remoteops.cli.runtime.drive`)."""

        def both(result: HostResult) -> None:
            self.host(result)
            show(result)

        return both

    def analysis(self, records: Sequence[Mapping[str, Any]]) -> None:
        """The ``analysis`` records of ``--analyze``/``--rules``: kept in the history and
        shown in the report."""
        if self._recorder is not None:
            self._recorder.analysis(records)
        self._analysis.extend(records)

    # ------------------------------------------------------------------ after the run

    def finish(self, run: Any, exit_code: int) -> None:
        """The run ended with ``exit_code``: close its history record, then write the
        metrics file and the report. Failures are one warning each; nothing raises."""
        counts: dict[str, int] = run.counts()
        duration = float(run.duration_s or 0.0)
        ended = time.time()
        recorder = self._recorder
        run_id = recorder.run_id if recorder is not None and recorder.active else None
        if recorder is not None:
            recorder.finish(
                exit_code,
                duration,
                max_age_s=self.history_max_age_s,
                max_size=self.history_max_size,
            )
        if self.metrics is not None:
            self._write_metrics(counts, duration, exit_code, ended)
        if self.report is not None:
            self._write_report(exit_code, ended, run_id)

    def _write_metrics(
        self, counts: dict[str, int], duration: float, code: int, ended: float
    ) -> None:
        from remoteops.metrics import MetricsError, RunMetrics, write_metrics

        assert self.metrics is not None
        last_success = None
        if code != ExitCode.OK and self.history:
            last_success = self._last_success()
        metrics = RunMetrics.from_counts(
            self.job,
            counts,
            duration_s=duration,
            exit_code=code,
            finished=ended,
            last_success=last_success,
        )
        try:
            write_metrics(self.metrics, metrics)
        except MetricsError as exc:
            _warn(str(exc))

    def _last_success(self) -> float | None:
        from remoteops.errors import RemoteOpsError

        try:
            return self.store.last_success(self.job)
        except RemoteOpsError:
            return None  # no history yet, or unreadable: the metrics file's own is kept

    def _write_report(self, code: int, ended: float, run_id: int | None) -> None:
        from datetime import UTC, datetime

        from remoteops.argcheck import shown
        from remoteops.history import redact_argv
        from remoteops.htmlreport import ReportRun, write_report
        from remoteops.reporting import previous_diff

        assert self.report is not None
        argv = redact_argv(_command_line())
        run = ReportRun(
            command=self.command,
            command_line=" ".join(argv),
            pattern=self.pattern or "",
            inventory=self.inventory,
            started=datetime.fromtimestamp(self.started, UTC),
            ended=datetime.fromtimestamp(ended, UTC),
            exit_code=code,
            run_id=str(run_id) if run_id is not None else None,
        )
        diff = previous_diff(self.store, run_id) if run_id is not None else None
        try:
            write_report(
                self.report,
                run,
                self._results,
                analysis=self._analysis,
                diff=diff,
                order=self._order,
            )
        except OSError as exc:
            _warn(f"--report {shown(self.report)}: cannot write the report ({exc.strerror or exc})")


def _command_line() -> list[str]:
    """The command line as typed, under the program name people type."""
    return ["remoteops", *sys.argv[1:]]


def _warn(message: str) -> None:
    """One warning line (and in the log); the run's exit code is kept."""
    logger.warning("%s", message)


def recording(
    command: str,
    pattern: str | None,
    params: Mapping[str, Any],
    *,
    max_output: int | None = None,
) -> RunRecord:
    """The :class:`RunRecord` of a command from its parameters (give it ``locals()``):
    ``ctx`` (its click context), ``no_history``, ``job``, ``metrics``, ``report``,
    ``rerun_failed``, ``quiet``, ``inventory``;
    the config file's ``[history]`` table (docs/config.md) turns history off and sets
    its retention. Checked before any host is contacted."""
    from remoteops.history import default_job

    enabled, max_age, max_size = _history_settings(params.get("ctx"))
    inventory = params.get("inventory")
    record = RunRecord(
        command=command,
        pattern=pattern,
        inventory=",".join(inventory) if inventory else None,
        job=params.get("job") or default_job(command, pattern),
        history=enabled and not params.get("no_history", False),
        metrics=params.get("metrics"),
        report=params.get("report"),
        rerun_failed=bool(params.get("rerun_failed", False)),
        quiet=bool(params.get("quiet", False)),
        max_output=max_output,
        history_max_age_s=max_age,
        history_max_size=max_size,
    )
    record.check()
    return record


def _history_settings(ctx: Any) -> tuple[bool, float | None, int | None]:
    """``[history]`` enabled, max-age (s) and max-size (bytes) from the config files."""
    from remoteops.configpaths import nothing_to_read

    if ctx is None or nothing_to_read():  # no file: the defaults, without the reader's import
        from remoteops.history import DEFAULT_MAX_AGE_S, DEFAULT_MAX_SIZE

        return True, DEFAULT_MAX_AGE_S, DEFAULT_MAX_SIZE
    from remoteops.config import config_from_context

    section = config_from_context(ctx).section("history")
    return bool(section["enabled"]), section["max-age"], section["max-size"]
