"""Run a checked playbook: one connection per host for the whole run, steps in lockstep.

Each step goes to the live hosts of the current batch at once (up to the
executor's forks) and finishes on all of them before the next step starts, as
Ansible's linear strategy does. A host that fails a step drops out of the rest
of the playbook. After each step the batch's failures are weighed against the
play's policy (``any_errors_fatal``, ``max_fail_percentage``, or: every host of
the batch failed); past it the rollout stops and later batches never start.

When the executor is drained (the CLI's output pipe closed), the batch in
flight runs to its end, every step on every host, and the rollout stops
before the next batch or play: no host is left with a step done and the
steps that complete it (a restart after a config upload) not done.

Every step's per-host work goes to the executor, the one engine
(``Executor.fan_out`` on the live hosts of the batch): its thread pool, its
failure guard, its deadlines and cancellation, and its session pool, where
each host's connection is opened by the first step that needs it and reused
by every later step, batch and play (put and get steps included), and closed
with the executor at the end.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from jinja2 import TemplateError

from remoteops.errors import RemoteOpsError, UsageError
from remoteops.execution import host_result
from remoteops.playbook.model import Play, Playbook, Step
from remoteops.playbook.recap import HostCounts, PlaybookResult, fold_hosts
from remoteops.playbook.remote import (
    GetWork,
    PingWork,
    PutWork,
    RunWork,
    StepWork,
    for_cluster,
    run_step,
)
from remoteops.playbook.template import Template
from remoteops.results import HostResult
from remoteops.shards import operate
from remoteops.wording import plural, span

if TYPE_CHECKING:
    from remoteops.clusterrun import ClusterExecutor
    from remoteops.execution import Executor
    from remoteops.session import LineSink
    from remoteops.target import Target
    from remoteops.transfer import SourceSet, TransferOptions

__all__ = ["Answer", "PlaybookRunner", "Reporter", "StepOutcome"]

Answer = Literal["yes", "no", "all", "quit"]
"""What ``--step`` asks before a step: run it, skip it, run all the rest, stop."""

logger = logging.getLogger(__name__)

_LOCAL_ACTIONS = ("fail", "assert", "analyze")


@dataclass(frozen=True, slots=True)
class StepOutcome:
    """One step on one host: its result (JSON fields added) and what it counted as."""

    host: str
    step: Step
    result: HostResult
    changed: bool = False
    ignored: bool = False


class Reporter(Protocol):
    """Where a run's progress goes (the CLI renders it)."""

    def play_started(self, play: Play, hosts: Sequence[str]) -> None:
        """A play begins on ``hosts``."""

    def batch_started(self, play: Play, number: int, total: int, hosts: Sequence[str]) -> None:
        """Batch ``number`` of ``total`` begins."""

    def step_started(self, step: Step, hosts: Sequence[str]) -> None:
        """A step begins on ``hosts`` (before ``when`` is weighed)."""

    def line(self, host: str, stream: str, data: bytes) -> None:
        """One line of a command's output (called from worker threads)."""

    def host_done(self, outcome: StepOutcome) -> None:
        """A step finished on one host."""

    def step_planned(self, step: Step, plan: Sequence[tuple[str, Sequence[str]]]) -> None:
        """``--check``: what the step would do, as (what, hosts) pairs."""

    def analysis(self, step: Step, text: str, objects: Sequence[Mapping[str, Any]]) -> None:
        """An analyze step's report: text tables and its JSON Lines objects."""

    def step_finished(self, step: Step, outcomes: Sequence[StepOutcome]) -> None:
        """A step finished on every host of the batch."""

    def stopped(self, message: str) -> None:
        """The rollout stopped early; ``message`` says where and why."""


class _NotRun(dict[str, Any]):
    """A result registered in ``--check`` by a step that did not run."""


@dataclass(slots=True)
class _HostState:
    target: Target
    counts: HostCounts = field(default_factory=HostCounts)
    registered: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, HostResult] = field(default_factory=dict)  # registered results, for analyze
    play_vars: dict[str, Any] = field(default_factory=dict)
    failure: HostResult | None = None
    started: float = 0.0
    finished: float = 0.0


@dataclass(slots=True)
class _Work:
    """A prepared step for one host: ``remote`` runs on its session, else ``local`` already ran."""

    remote: StepWork | None = None
    local: HostResult | None = None
    plan: str | None = None  # --check: what would be done instead
    analyze: bool = False  # an analyze step: run once for all its hosts


class _HostVars(Mapping[str, Mapping[str, Any]]):
    """``hostvars``: every host's variables, built when a template reads them."""

    def __init__(self, runner: PlaybookRunner, play: Play) -> None:
        self._runner = runner
        self._play = play

    def __getitem__(self, host: str) -> Mapping[str, Any]:
        if host not in self._runner.states:
            raise KeyError(host)
        return self._runner.context(host, self._play)

    def __iter__(self) -> Iterator[str]:
        return iter(self._runner.states)

    def __len__(self) -> int:
        return len(self._runner.states)


class PlaybookRunner:
    """Runs a checked ``Playbook`` with one ``Executor`` (its credentials, deadlines, cancel)."""

    def __init__(
        self,
        playbook: Playbook,
        *,
        executor: Executor | ClusterExecutor,
        targets: Mapping[str, Target],
        play_hosts: Mapping[int, Sequence[str]],
        groups: Mapping[str, Sequence[str]],
        group_names: Callable[[str], Sequence[str]],
        extra_vars: Mapping[str, Any],
        reporter: Reporter,
        check: bool = False,
        start_at: int | None = None,
        confirm: Callable[[Step, Sequence[str]], Answer] | None = None,
        become_password: str | None = None,
    ) -> None:
        self.playbook = playbook
        self.executor = executor
        self.play_hosts = play_hosts
        self.groups = groups
        self.group_names = group_names
        self.extra_vars = dict(extra_vars)
        self.reporter = reporter
        self.check = check
        self.start_at = start_at
        self.confirm = confirm
        self.become_password = become_password
        self.states: dict[str, _HostState] = {}
        for play in playbook.plays:
            for host in play_hosts.get(play.index, ()):
                self.states.setdefault(host, _HostState(targets[host]))
        self._sources: dict[tuple[Any, ...], SourceSet] = {}
        self._batch: list[str] = []
        self._live: list[str] = []
        self._stopped: str | None = None

    # ------------------------------------------------------------------ run

    def run(self) -> PlaybookResult:
        """Run every play; the result holds each host's outcome and the recap."""
        start = time.monotonic()
        self.executor.hold_sessions(len(self.states))  # one connection per host, for every step
        try:
            for index, play in enumerate(self.playbook.plays):
                hosts = [h for h in self.play_hosts.get(play.index, ()) if self._is_live(h)]
                if not hosts:
                    continue
                if self.executor.drain_event.is_set():
                    later = self.playbook.plays[index:]
                    not_done = [self.play_hosts.get(p.index, ()) for p in later]
                    count = len({h for hosts in not_done for h in hosts if self._is_live(h)})
                    self._stop(
                        f"{self.executor.drain_reason}: stopped before play {play.index} "
                        f"[{play.name}]; {plural(count, 'host')} did not run the rest of it",
                        not_done,
                        why=self.executor.drain_reason,
                    )
                    break
                self._run_play(play, hosts)
                if self._stopped:
                    break
        finally:
            self.executor.close()
        return self._result(time.monotonic() - start)

    def _is_live(self, host: str) -> bool:
        return self.states[host].failure is None

    def _run_play(self, play: Play, hosts: list[str]) -> None:
        self.reporter.play_started(play, hosts)
        self._live = hosts
        for host in hosts:
            self._set_play_vars(host, play)
        batches = play.batches([h for h in hosts if self._is_live(h)])
        for number, batch in enumerate(batches, start=1):
            if self.executor.drain_event.is_set():
                rest = batches[number - 1 :]
                done = f"batch {number - 1}/{len(batches)} finished, " if number > 1 else ""
                self._stop(
                    f"{self.executor.drain_reason}: rollout stopped at a batch boundary; "
                    f"{done}{_not_started(batches, number)}",
                    rest,
                    why=self.executor.drain_reason,
                )
                return
            self._batch = batch
            self.reporter.batch_started(play, number, len(batches), batch)
            self._run_batch(play, batch, number, batches)
            if self._stopped:
                return

    def _run_batch(
        self,
        play: Play,
        batch: list[str],
        number: int,
        batches: list[list[str]],
    ) -> None:
        for step in play.steps:
            if self.start_at is not None and step.number < self.start_at:
                continue
            live = [h for h in batch if self._is_live(h)]
            if not live:
                break
            if self.executor.cancel_event.is_set():
                self._stop(
                    f"interrupted before step {step.number} {step.name!r}"
                    + _batch_of(batches, number)
                    + _later(batches, number + 1),
                    batches[number - 1 :],
                    why="the run was interrupted",
                )
                return
            if self.confirm is not None:
                answer = self.confirm(step, live)
                if answer == "quit":
                    self._stop(
                        f"stopped at the --step prompt before step {step.number}",
                        [live, *batches[number:]],
                    )
                    return
                if answer == "no":
                    continue
                if answer == "all":
                    self.confirm = None
            outcomes = self._run_step(play, step, live)
            if self.executor.cancel_event.is_set():
                self._stop(
                    f"interrupted during step {step.number} {step.name!r}"
                    + _batch_of(batches, number)
                    + _later(batches, number + 1),
                    [[h for h in batch if self._is_live(h)], *batches[number:]],
                    why="the run was interrupted",
                )
                return
            failed = [o.host for o in outcomes if not o.result.is_ok and not o.ignored]
            if failed and play.any_errors_fatal:
                self._stop(
                    f"step {step.number} {step.name!r} failed on {fold_hosts(failed)} and the play "
                    "has any_errors_fatal",
                    [[h for h in batch if self._is_live(h)], *batches[number:]],
                )
                return
            reason = self._over_threshold(play, batch)
            if reason:
                where = (
                    f"rollout stopped in batch {number}/{len(batches)}, {fold_hosts(batch)}, at"
                    if len(batches) > 1
                    else f"play {play.index} [{play.name}] stopped at"
                )
                self._stop(
                    f"{where} step {step.number} {step.name!r}: {reason}"
                    + _later(batches, number + 1),
                    [[h for h in batch if self._is_live(h)], *batches[number:]],
                )
                return

    def _over_threshold(self, play: Play, batch: list[str]) -> str | None:
        failed = sum(1 for h in batch if not self._is_live(h))
        if not failed:
            return None
        if play.max_fail_percentage is not None:
            percent = 100.0 * failed / len(batch)
            if percent > play.max_fail_percentage:
                return (
                    f"{failed} of {plural(len(batch), 'host')} failed ({percent:.0f}%), above "
                    f"max_fail_percentage {play.max_fail_percentage:g}%"
                )
            return None
        if failed == len(batch):
            return "the batch's only host failed" if failed == 1 else f"all {failed} hosts failed"
        return None

    def _stop(
        self, reason: str, not_done: Sequence[Sequence[str]], *, why: str | None = None
    ) -> None:
        """Stop the run; the live hosts of ``not_done`` end ``skipped`` with
        "not finished: WHY" (default: the whole ``reason``)."""
        self._stopped = reason
        self.reporter.stopped(reason)
        for hosts in not_done:
            for host in hosts:
                state = self.states[host]
                if state.failure is None:
                    state.failure = host_result(
                        state.target, "skipped", error=f"not finished: {why or reason}"
                    )

    # ------------------------------------------------------------------ one step

    def _run_step(self, play: Play, step: Step, hosts: list[str]) -> list[StepOutcome]:
        self.reporter.step_started(step, hosts)
        outcomes: list[StepOutcome] = []
        remote: dict[str, StepWork] = {}  # by target name
        plans: dict[str, list[str]] = {}
        to_analyze: list[str] = []
        for host in hosts:
            state = self.states[host]
            if not state.started:
                state.started = time.monotonic()
            work = self._prepare(play, step, host)
            if work.plan is not None:
                plans.setdefault(work.plan, []).append(host)
                state.registered.update({step.register: _NotRun()} if step.register else {})
                result = host_result(state.target, "skipped", error="--check: not run")
                outcomes.append(self._finish(play, step, host, result, check_plan=work.plan))
            elif work.local is not None:
                outcomes.append(self._finish(play, step, host, work.local))
            elif work.analyze:
                to_analyze.append(host)
            elif work.remote is not None:
                remote[state.target.name] = work.remote
        if plans:
            self.reporter.step_planned(step, [(what, hs) for what, hs in plans.items()])
        if to_analyze:
            for host, result in self._analyze(step, to_analyze).items():
                outcomes.append(self._finish(play, step, host, result))
        if remote:
            hosts_of = {self.states[h].target.name: h for h in hosts}
            # The whole batch runs the step, even once the executor is drained.
            for result in self._remote(remote):
                outcomes.append(self._finish(play, step, hosts_of[result.host], result))
        self.reporter.step_finished(step, outcomes)
        return outcomes

    def _remote(self, works: dict[str, StepWork]) -> Iterator[HostResult]:
        """Each host's result of ``works`` (by target name), run by the engine: this
        process's, or a cluster's shards (``--cluster``), to which a put's sources
        travel packed and from which a get's files come back before each result."""
        from remoteops.clusterrun import ClusterExecutor

        executor = self.executor
        if not isinstance(executor, ClusterExecutor):

            def op(one: Executor, line: LineSink | None, _: object) -> Iterator[HostResult]:
                results = run_step(one, works, line)
                return (r for r in results if isinstance(r, HostResult))  # no files travel

            yield from operate(executor, op, on_line=self.reporter.line)
            return
        from remoteops.transfer.clustered import ClientFiles

        sent = for_cluster(works)
        receivers: dict[Path, ClientFiles] = {}
        files_of: dict[str, ClientFiles] = {}
        for name, work in sent.items():
            if isinstance(work, GetWork):
                if work.local_dir not in receivers:
                    hosts = [
                        n
                        for n, w in sent.items()
                        if getattr(w, "local_dir", None) == work.local_dir
                    ]
                    receivers[work.local_dir] = ClientFiles(
                        work.local_dir, hosts, preserve=work.options.preserve
                    )
                files_of[name] = receivers[work.local_dir]

        def on_data(message: Any) -> None:
            files = files_of.get(getattr(message, "host", ""))
            if files is None:
                logger.warning("a cluster worker sent files of a host that fetched none; ignored")
            else:
                files.receive(message)

        try:
            for result in executor.operate(
                lambda one, line, _progress: run_step(one, sent, line),
                on_line=self.reporter.line,
                on_data=on_data,
            ):
                files = files_of.get(result.host)
                yield files.settle(result) if files is not None else result
        finally:
            for files in receivers.values():
                files.close()

    def _finish(
        self,
        play: Play,
        step: Step,
        host: str,
        result: HostResult,
        *,
        check_plan: str | None = None,
    ) -> StepOutcome:
        """Weigh changed_when/failed_when, register, count, and drop a failed host."""
        state = self.states[host]
        changed = bool(result.extra.get("changed", step.action in ("run", "script")))
        changed = changed and result.is_ok
        registered = _registered(step, result, changed)
        if (
            check_plan is None
            and result.status in ("ok", "failed")
            and (step.changed_when or step.failed_when)
        ):
            context = dict(self.context(host, play))
            context["result"] = registered
            if step.register:
                context[step.register] = registered
            try:
                if step.changed_when is not None:
                    changed = bool(step.changed_when.evaluate(context)) and result.is_ok
                if step.failed_when is not None:
                    is_failed = bool(step.failed_when.evaluate(context))
                    result = dataclasses.replace(
                        result,
                        status="failed" if is_failed else "ok",
                        error=f"failed_when: {step.failed_when.source}" if is_failed else None,
                    )
            except (TemplateError, RemoteOpsError) as exc:
                result = dataclasses.replace(result, status="failed", error=_template_error(exc))
            registered = _registered(step, result, changed)
        if step.register and check_plan is None:
            state.registered[step.register] = registered
            state.raw[step.register] = result
        ignored = not result.is_ok and step.ignore_errors and result.status == "failed"
        counts = state.counts
        if result.status == "skipped":
            counts.skipped += 1
        elif result.is_ok:
            counts.ok += 1
            counts.changed += int(changed)
        elif ignored:
            counts.ignored += 1
        elif result.status in ("unreachable", "hostkey"):
            counts.unreachable += 1
        elif result.status == "interrupted":
            counts.interrupted += 1
        else:
            counts.failed += 1
        if not result.is_ok and not ignored and result.status != "skipped":
            state.failure = dataclasses.replace(
                result, error=f"step {step.number} {step.name!r}: {result.error}"
            )
        state.finished = time.monotonic()
        extra: dict[str, Any] = {
            **result.extra,
            "play": play.index,
            "step": step.number,
            "step_name": step.name,
            "action": step.action,
            "changed": changed,
        }
        if ignored:
            extra["ignored"] = True
        if check_plan is not None:
            extra["check_mode"] = True
            extra["would"] = check_plan
        outcome = StepOutcome(
            host, step, dataclasses.replace(result, extra=extra), changed=changed, ignored=ignored
        )
        self.reporter.host_done(outcome)
        return outcome

    # ------------------------------------------------------------------ preparing

    def context(self, host: str, play: Play) -> dict[str, Any]:
        """The variables a template sees on ``host``, lowest precedence first."""
        state = self.states[host]
        return {
            **state.target.vars,
            **state.play_vars,
            **state.registered,
            **self.extra_vars,
            "inventory_hostname": host,
            "inventory_hostname_short": host.split(".")[0],
            "groups": self.groups,
            "group_names": list(self.group_names(host)),
            "hostvars": _HostVars(self, play),
            "play_hosts": [h for h in self._live if self._is_live(h)],
            "play_batch": [h for h in self._batch if self._is_live(h)],
            "check_mode": self.check,
            "playbook_dir": str(self.playbook.path.parent.absolute()),
        }

    def _set_play_vars(self, host: str, play: Play) -> None:
        state = self.states[host]
        state.play_vars = {}
        for name, value in play.vars.items():
            templates = {t.source: t for t in play.var_templates.get(name, ())}
            if templates:
                context = self.context(host, play)
                try:
                    value = _render_value(value, templates, context)
                except (TemplateError, RemoteOpsError) as exc:
                    state.failure = host_result(
                        state.target,
                        "failed",
                        error=f"play {play.index} vars: {name}: {_template_error(exc)}",
                    )
                    state.counts.failed += 1
                    return
            state.play_vars[name] = value

    def _prepare(self, play: Play, step: Step, host: str) -> _Work:
        state = self.states[host]
        context = self.context(host, play)
        try:
            for condition in step.when:
                if self._not_run_in(condition, context):
                    return _Work(plan=f"run if {condition.source} (depends on --check results)")
                if not condition.evaluate(context):
                    return _Work(
                        local=host_result(
                            state.target, "skipped", error=f"when: {condition.source} is false"
                        )
                    )
            return self._prepare_action(play, step, host, context)
        except (TemplateError, RemoteOpsError) as exc:
            return _Work(local=host_result(state.target, "failed", error=_template_error(exc)))

    def _not_run_in(self, template: Template, context: Mapping[str, Any]) -> bool:
        return self.check and any(isinstance(context.get(n), _NotRun) for n in template.names)

    def _prepare_action(
        self, play: Play, step: Step, host: str, context: Mapping[str, Any]
    ) -> _Work:
        from remoteops.operations import CommandSpec

        target = self.states[host].target
        args = step.args
        timeout = step.timeout or play.timeout
        runs_in_check = step.check_safe or step.action in ("ping", "fail", "assert")
        if step.action in ("fail", "assert"):
            pending = [t for t in args.get("that", ()) if self._not_run_in(t, context)]
            if pending:
                return _Work(plan=f"check {pending[0].source} (depends on --check results)")
            return _Work(local=self._check_local(step, target, context))
        if step.action == "analyze":
            if isinstance(context.get(args["src"]), _NotRun):
                return _Work(plan=f"analyze {args['src']} (depends on --check results)")
            return _Work(analyze=True)
        if step.action == "ping":
            return _Work(remote=PingWork(timeout))
        if step.action in ("run", "script"):
            if step.action == "run":
                command = args["command"].render(context)
                stdin = None
                shown = command
            else:
                path = self._local_path(args["path"].render(context))
                script = self._read_script(path)
                command = _script_command(script, args["args"].render(context))
                stdin = script
                shown = f"{path} {args['args'].render(context)}".strip()
            become, become_user = self._become(play, step, context)
            spec = CommandSpec(
                command=command,
                pty=step.pty,
                env={k: t.render(context) for k, t in step.env.items()},
                stdin=stdin,
                become=become,
                become_user=become_user,
                become_password=self.become_password,
            )
            if self.check and not runs_in_check:
                sudo = " (with sudo)" if become or target.become else ""
                return _Work(plan=f"run{sudo}: {shown}")

            return _Work(remote=RunWork(spec, timeout))
        if step.action == "put":
            return self._prepare_put(play, step, target, context, timeout, runs_in_check)
        return self._prepare_get(play, step, target, context, timeout, runs_in_check)

    def _become(
        self, play: Play, step: Step, context: Mapping[str, Any]
    ) -> tuple[bool, str | None]:
        """The step's ``become`` and ``become_user``, else the play's."""
        become = step.become if step.become is not None else play.become
        become_user = step.become_user.render(context) if step.become_user else play.become_user
        return become, become_user

    def _transfer_options(
        self, play: Play, step: Step, context: Mapping[str, Any]
    ) -> TransferOptions:
        from remoteops.transfer import TransferOptions

        args = step.args
        become, become_user = self._become(play, step, context)
        return TransferOptions(
            preserve=args["preserve"],
            checksum=args["checksum"],
            verify=args["verify"],
            become=become,
            become_user=become_user,
            become_password=self.become_password,
        )

    def _prepare_put(
        self,
        play: Play,
        step: Step,
        target: Target,
        context: Mapping[str, Any],
        timeout: float | None,
        runs: bool,
    ) -> _Work:
        from remoteops.transfer import SourceSet

        args = step.args
        rendered = [t.render(context) for t in args["src"]]
        # DIR/ sends DIR's contents, as on the command line: keep the slash Path drops.
        sources = tuple(
            str(self._local_path(r)) + ("/" if r.endswith("/") and r.strip("/") else "")
            for r in rendered
        )
        dest = args["dest"].render(context)
        options = self._transfer_options(play, step, context)
        key = (sources, args.get("mode"), options.checksum or options.verify)
        source_set = self._sources.get(key)
        if source_set is None:
            source_set = SourceSet.scan(
                list(sources), mode=args.get("mode"), need_hash=bool(key[2])
            )
            self._sources[key] = source_set
        if self.check and not runs:
            files = len(source_set.files)
            sudo = " (with sudo)" if options.run_as(target) else ""
            return _Work(
                plan=f"put{sudo} {', '.join(sources)} -> {dest} ({plural(files, 'file')}, "
                f"{plural(source_set.total_bytes, 'byte')})"
            )
        return _Work(remote=PutWork(source_set, dest, options, timeout))

    def _prepare_get(
        self,
        play: Play,
        step: Step,
        target: Target,
        context: Mapping[str, Any],
        timeout: float | None,
        runs: bool,
    ) -> _Work:
        args = step.args
        remotes = [t.render(context) for t in args["src"]]
        local_dir = Path(args["dest"].render(context))
        if local_dir.exists() and not local_dir.is_dir():
            raise RemoteOpsError(f"get dest {local_dir}: not a directory")
        host = context.get("inventory_hostname")
        if isinstance(host, str):
            from remoteops.argcheck import file_names_for_hosts

            try:  # a templated dest: checked per host (``play`` checks static ones up front)
                file_names_for_hosts([host], local_dir, "get dest")
            except UsageError as exc:
                raise RemoteOpsError(str(exc)) from None
        options = self._transfer_options(play, step, context)
        if self.check and not runs:
            sudo = " (with sudo)" if options.run_as(target) else ""
            return _Work(plan=f"get{sudo} {', '.join(remotes)} -> {local_dir}/<host>/")

        return _Work(remote=GetWork(tuple(remotes), local_dir, options, timeout))

    def _check_local(self, step: Step, target: Target, context: Mapping[str, Any]) -> HostResult:
        msg_template: Template | None = step.args.get("msg")
        if step.action == "fail":
            assert msg_template is not None
            message = msg_template.render(context)
            return host_result(target, "failed", error=message, extra={"msg": message})
        for condition in step.args["that"]:
            if not condition.evaluate(context):
                message = (
                    msg_template.render(context)
                    if msg_template is not None
                    else f"assertion failed: {condition.source}"
                )
                return host_result(target, "failed", error=message, extra={"msg": message})
        return host_result(target, "ok", extra={"msg": "all assertions passed"})

    def _analyze(self, step: Step, hosts: list[str]) -> dict[str, HostResult]:
        """Run the step's analyzers over ``src`` of every host at once; a result per host.

        A run or script result is analysed by its stdout, a get result by the
        files it downloaded. With ``fail_on_findings`` (the default) a host with
        findings fails the step.
        """
        from remoteops.analysis import AnalysisStage
        from remoteops.analysis.sources import downloaded_files

        src = step.args["src"]
        start = time.monotonic()
        try:
            with AnalysisStage(step.args["specs"]) as stage:
                for host in hosts:
                    raw = self.states[host].raw.get(src)
                    if raw is None or raw.status == "skipped":
                        continue
                    if "dest" in raw.extra:
                        paths = downloaded_files(Path(raw.extra["dest"]), raw)
                        if paths:
                            stage.submit(raw, paths=paths)
                    else:
                        stage.submit(raw)
                report = stage.finish()
        except RemoteOpsError as exc:
            return {
                h: host_result(self.states[h].target, "failed", error=f"analyze: {exc}")
                for h in hosts
            }
        text = report.render_text()
        self.reporter.analysis(step, text, report.to_json())
        duration = time.monotonic() - start
        results: dict[str, HostResult] = {}
        for host in hosts:
            found = [f.message for f in report.findings if f.host == host]
            failed = bool(found) and step.args["fail_on_findings"]
            error = None
            if failed:
                error = found[0] if len(found) == 1 else f"{len(found)} findings; first: {found[0]}"
            results[host] = host_result(
                self.states[host].target,
                "failed" if failed else "ok",
                error=error,
                duration=duration,
                extra={"findings": found, "count": len(found), "report": text},
            )
        return results

    def _local_path(self, path: str) -> Path:
        local = Path(path)
        return local if local.is_absolute() else self.playbook.path.parent / local

    def _read_script(self, path: Path) -> bytes:
        key = ("script", str(path))
        cached = self._sources.get(key)
        if cached is not None:
            return cached.files[0].data or b""
        from remoteops.transfer import SourceSet

        source = SourceSet.scan([str(path)])
        if not source.is_single_file:
            raise RemoteOpsError(f"script {path}: not a single file")
        self._sources[key] = source
        return source.files[0].data or b""

    # ------------------------------------------------------------------ result

    def _result(self, duration: float) -> PlaybookResult:
        result = PlaybookResult(stopped=self._stopped, duration_s=duration)
        for host, state in self.states.items():
            if state.failure is not None:
                final = state.failure
            elif not state.started:
                final = host_result(state.target, "skipped", error="not started")
            else:
                final = host_result(state.target, "ok")
            if state.started:
                final = dataclasses.replace(final, duration_s=state.finished - state.started)
            result.add(final)
            result.recap[host] = state.counts
        return result


# --------------------------------------------------------------------------- helpers


def _batch_of(batches: Sequence[Sequence[str]], number: int) -> str:
    """`` (batch 2/5)`` in a rollout of several batches; nothing otherwise."""
    return f" (batch {number}/{len(batches)})" if len(batches) > 1 else ""


def _not_started(batches: Sequence[Sequence[str]], first: int) -> str:
    """``batches 3-5 (12 hosts) not started``: batches ``first`` to the last (numbered from 1)."""
    hosts = sum(len(b) for b in batches[first - 1 :])
    which = span(first, len(batches), "batch", "batches")
    return f"{which} ({plural(hosts, 'host')}) not started"


def _later(batches: Sequence[Sequence[str]], first: int) -> str:
    """``; batch 3 (4 hosts) not started`` when batches from ``first`` on remain; else nothing."""
    return f"; {_not_started(batches, first)}" if first <= len(batches) else ""


def _template_error(exc: Exception) -> str:
    if isinstance(exc, RemoteOpsError):
        return exc.message
    return f"template error: {exc}"


def _render_value(value: Any, templates: Mapping[str, Template], context: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        template = templates.get(value)
        return template.render(context) if template is not None else value
    if isinstance(value, Mapping):
        return {k: _render_value(v, templates, context) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_value(v, templates, context) for v in value]
    return value


def _registered(step: Step, result: HostResult, changed: bool) -> dict[str, Any]:
    """What ``register:`` stores: the result as plain data (``RESULT_FIELDS``)."""
    data: dict[str, Any] = {
        "status": result.status,
        "failed": result.status not in ("ok", "skipped"),
        "changed": changed,
        "skipped": result.status == "skipped",
        "error": result.error,
        "duration_s": round(result.duration_s, 3),
    }
    extra = result.extra
    if step.action in ("run", "script"):
        stdout = result.stdout.decode("utf-8", errors="replace")
        stderr = result.stderr.decode("utf-8", errors="replace")
        data.update(
            rc=result.exit_code,
            stdout=stdout.rstrip("\n"),
            stderr=stderr.rstrip("\n"),
            stdout_lines=stdout.splitlines(),
            stderr_lines=stderr.splitlines(),
        )
    elif step.action in ("put", "get"):
        for key in ("files", "unchanged", "failed_files", "bytes"):
            data[key] = extra.get(key, 0)
        if step.action == "get":
            data["dest"] = extra.get("dest", "")
    elif step.action == "ping":
        data.update(rtt_ms=extra.get("rtt_ms"), server_version=extra.get("server_version"))
    elif step.action == "analyze":
        data.update(
            findings=extra.get("findings", []),
            report=extra.get("report", ""),
            count=extra.get("count", 0),
        )
    else:
        data["msg"] = extra.get("msg", result.error or "")
    return data


_SHELLS = ("sh", "bash", "dash", "ksh", "zsh")


def _script_command(script: bytes, args: str) -> str:
    """The command that runs ``script`` sent on stdin: its ``#!`` interpreter, else ``sh``."""
    first = script.split(b"\n", 1)[0]
    interpreter = "sh"
    if first.startswith(b"#!"):
        interpreter = first[2:].decode("utf-8", errors="replace").strip() or "sh"
    name = interpreter.split()[0].rsplit("/", 1)[-1]
    words = interpreter.split()
    is_shell = name in _SHELLS or (name == "env" and len(words) > 1 and words[1] in _SHELLS)
    tail = f" {args}" if args else ""
    if is_shell:
        return f"{interpreter} -s --{tail}"
    return f"{interpreter} /dev/stdin{tail}"
