"""One self-contained HTML file about one run: for a browser, or a mail attachment.

:func:`render_report` turns a run's data into the page; :func:`write_report` writes it
atomically. The data is what the rest of remoteops already has: the run (:class:`ReportRun`),
the host records of ``--json`` (docs/json.md; :class:`~remoteops.results.HostResult` objects
are taken too), the ``analysis`` records, and optionally what changed since the previous run
of the same command (:class:`ReportDiff`). docs/reports.md describes the page.

The page loads nothing: no script, font, image or stylesheet from anywhere, and a
Content-Security-Policy that forbids every load but its own ``<style>`` (allowed by its
hash, so no other style or script would run even if one got in). It needs no JavaScript.
Everything a host sent (output, errors, analysis text) is shown through
:func:`~remoteops.printable.printable` and HTML-escaped by Jinja's autoescaping, so a host
cannot add markup to the page. Large fleets stay small: identical outputs are shown once
(the groups of ``--gather``), each output is cut at ``max_output`` characters and all
outputs together at ``output_budget``.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, TypedDict, Unpack

import jinja2
from markupsafe import Markup

from remoteops import __version__
from remoteops.fileops import write_atomic
from remoteops.nodeset import fold_hosts, hosts_label, natural_key
from remoteops.printable import printable
from remoteops.report import gathered_blocks, outcome
from remoteops.results import STATUSES, HostResult

__all__ = [
    "OutputChange",
    "ReportDiff",
    "ReportOptions",
    "ReportRun",
    "StatusChange",
    "document_name",
    "record_result",
    "render_report",
    "write_report",
]

MAX_OUTPUT = 4096
"""Characters of one output group shown; the rest is counted, not shown."""
OUTPUT_BUDGET = 1_500_000
"""Characters of output shown in all, so that a report of 5,000 distinct outputs stays small."""
_SLOWEST = 25
_BINS = 40
_ROWS = 100  # rows of an analysis table shown
# The order a host's records of a play fold into one status: the worst first.
_SEVERITY = ("timeout", "unreachable", "hostkey", "failed", "interrupted", "skipped", "ok")


@dataclass(frozen=True, slots=True)
class ReportRun:
    """The run a report is about.

    ``command_line`` must already have its secrets redacted (it is shown as given).
    ``ended`` and ``exit_code`` are None for a run that never finished (the history
    keeps such runs, marked incomplete).
    """

    command: str
    command_line: str
    pattern: str
    inventory: str | None
    started: datetime
    ended: datetime | None
    exit_code: int | None
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A host whose status differs from the previous run's: ``ok``, ``failed`` ... (more
    words may follow the status: ``failed (exit 2)``). ``step`` names a playbook's step
    (``step 2 'restart'``), when the change is in one."""

    host: str
    before: str
    after: str
    step: str = ""


@dataclass(frozen=True, slots=True)
class OutputChange:
    """A host whose output differs from the previous run's; ``diff`` is an optional unified
    diff of the two outputs (hosts with the same diff are shown together); ``step`` as for
    :class:`StatusChange`."""

    host: str
    diff: str = ""
    step: str = ""


@dataclass(frozen=True, slots=True)
class ReportDiff:
    """What changed since the previous run of the same command and pattern.

    ``previous`` names that run for people (``run 41, 2026-12-05 03:00``).
    """

    previous: str
    status_changed: Sequence[StatusChange] = ()
    output_changed: Sequence[OutputChange] = ()
    added: Sequence[str] = ()
    gone: Sequence[str] = ()

    @property
    def hosts(self) -> set[str]:
        """Every host the diff names."""
        return {
            *(c.host for c in self.status_changed),
            *(c.host for c in self.output_changed),
            *self.added,
        }


# --------------------------------------------------------------------------- model


@dataclass(slots=True)
class _Host:
    """One host's row: its records folded into one (several for a play's steps)."""

    index: int
    name: str
    address: str = ""
    status: str = "ok"
    exit_code: int | None = None
    duration_s: float = 0.0
    error: str = ""
    outputs: list[tuple[str, int]] = field(default_factory=list)  # (document, group id)
    changed: bool = False


@dataclass(slots=True)
class _Group:
    """Hosts with identical output (a block of ``--gather``)."""

    id: int
    document: str
    hosts: list[str]
    label: str
    status: str
    text: str
    cut: int  # characters not shown


def _record(item: HostResult | Mapping[str, Any]) -> dict[str, Any] | None:
    """A host record of docs/json.md, or None for other records (summary, analysis)."""
    if isinstance(item, HostResult):
        return item.to_json()
    if item.get("type", "host") != "host" or not isinstance(item.get("host"), str):
        return None
    return dict(item)


def record_result(record: Mapping[str, Any]) -> HostResult:
    """The :class:`HostResult` a ``host`` record describes, enough of it for ``--gather``'s
    groups (a failure under ``ignore_errors`` is ``ok``)."""
    status = record.get("status")
    if record.get("ignored"):
        status = "ok"
    exit_code = record.get("exit_code")
    attempts = record.get("attempts")
    return HostResult(
        host=record["host"],
        address=str(record.get("address") or ""),
        port=_int(record.get("port")) or 0,
        status=status if status in STATUSES else "failed",
        exit_code=_int(exit_code),
        stdout=str(record.get("stdout") or "").encode(),
        stderr=str(record.get("stderr") or "").encode(),
        duration_s=_float(record.get("duration_s")),
        error=str(record["error"]) if record.get("error") else None,
        extra={"attempts": attempts} if isinstance(attempts, int) else {},
    )


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def document_name(record: Mapping[str, Any]) -> str:
    """Which output a record is: ``output``, or a play's ``step N 'NAME'`` (``play P step N
    'NAME'`` after the first play): the name the page gives its outputs and changes."""
    step = record.get("step")
    if _int(step) is None:
        return "output"
    play = _int(record.get("play"))
    where = f"play {play} " if play and play > 1 else ""
    return f"{where}step {step} {printable(str(record.get('step_name') or ''))!r}"


def _hosts(
    records: list[dict[str, Any]], order: Sequence[str] | None, diff: ReportDiff | None
) -> dict[str, _Host]:
    """Every host once, in inventory order (``order``; names it lacks in natural order)."""
    names = dict.fromkeys(r["host"] for r in records)
    ordered = [n for n in (order or ()) if n in names]
    known = set(ordered)
    ordered += sorted((n for n in names if n not in known), key=natural_key)
    changed = diff.hosts if diff else set()
    hosts = {n: _Host(i, printable(n), changed=n in changed) for i, n in enumerate(ordered)}
    for record in records:
        host = hosts[record["host"]]
        result = record_result(record)
        host.address = f"{result.address}:{result.port}" if result.address else host.address
        host.duration_s += result.duration_s
        if not host.outputs or _SEVERITY.index(result.status) < _SEVERITY.index(host.status):
            host.status = result.status
            host.exit_code = result.exit_code
            host.error = outcome(result) if result.status != "ok" else ""
        host.outputs.append((document_name(record), -1))
    return hosts


def _groups(
    records: list[dict[str, Any]], hosts: dict[str, _Host], max_output: int, budget: int
) -> list[_Group]:
    """The ``--gather`` groups of each document, and each host's links to its groups."""
    by_document: dict[str, list[HostResult]] = {}
    for record in records:
        by_document.setdefault(document_name(record), []).append(record_result(record))
    groups: list[_Group] = []
    for document, results in by_document.items():
        status = {r.host: r.status for r in results}
        for names, text in gathered_blocks(results):
            shown = min(max_output, budget, len(text))
            budget -= shown
            group = _Group(
                len(groups),
                document,
                names,
                printable(fold_hosts(names)),
                status[names[0]],
                text[:shown],
                len(text) - shown,
            )
            groups.append(group)
            for name in names:
                host = hosts[name]
                host.outputs = [
                    (doc, group.id if doc == document and gid < 0 else gid)
                    for doc, gid in host.outputs
                ]
    return groups


# --------------------------------------------------------------------------- durations


@dataclass(frozen=True, slots=True)
class _Bar:
    label: str
    index: int
    value: float
    width: float
    slow: bool


def _durations(hosts: Sequence[_Host]) -> dict[str, Any]:
    """A histogram of every host's duration, and bars for the slowest hosts."""
    values = sorted(h.duration_s for h in hosts)
    if not values:
        return {"bins": [], "slowest": [], "median": 0.0, "p95": 0.0, "max": 0.0}
    top = values[-1] or 1.0
    median = values[len(values) // 2]
    p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
    # A straggler: far slower than most hosts (and not just noise on a fast run).
    slow_from = max(2 * median, p95, median + 1.0)
    edges = [top * (i + 1) / _BINS for i in range(_BINS)]
    counts = [0] * _BINS
    for value in values:
        counts[min(bisect.bisect_left(edges, value), _BINS - 1)] += 1
    peak = max(counts)
    bins = [
        {
            "x": i * 15,
            "height": 0 if not c else max(2.0, 60.0 * c / peak),
            "count": c,
            "low": top * i / _BINS,
            "high": top * (i + 1) / _BINS,
            "slow": top * (i + 1) / _BINS > slow_from,
        }
        for i, c in enumerate(counts)
    ]
    by_time = sorted(hosts, key=lambda h: (-h.duration_s, h.index))[:_SLOWEST]
    slowest = [
        _Bar(h.name, h.index, h.duration_s, 380 * h.duration_s / top, h.duration_s > slow_from)
        for h in by_time
    ]
    return {"bins": bins, "slowest": slowest, "median": median, "p95": p95, "max": values[-1]}


# --------------------------------------------------------------------------- analysis


def _folded(items: Iterable[tuple[str, str | None, str]]) -> list[dict[str, str]]:
    """Items sharing document and message once, with their hosts folded (as the terminal)."""
    hosts: dict[tuple[str | None, str], list[str]] = {}
    for host, document, message in items:
        hosts.setdefault((document, message), []).append(host)
    return [
        {
            "hosts": printable(hosts_label(names)),
            "document": printable(document) if document not in (None, "stdout") else "",
            "message": printable(message),
        }
        for (document, message), names in hosts.items()
    ]


def _analysis(record: Mapping[str, Any]) -> dict[str, Any]:
    """One ``analysis`` record as a section: its title, findings, errors and table."""

    def entries(key: str, text: str) -> list[tuple[str, str | None, str]]:
        items = record.get(key)
        return [
            (str(e.get("host", "")), e.get("document"), str(e.get(text, "")))
            for e in (items if isinstance(items, list) else [])
            if isinstance(e, Mapping)
        ]

    name = str(record.get("analyzer") or "?")
    if record.get("args"):
        name += f":{record['args']}"
    columns = [str(c) for c in record.get("columns") or []]
    rows = [r for r in record.get("rows") or [] if isinstance(r, Mapping)]
    return {
        "name": printable(name),
        "label": printable(str(record.get("label") or "")),
        "title": printable(str(record.get("title") or "")),
        "findings": _folded(entries("findings", "message")),
        "errors": _folded(entries("errors", "error")),
        "columns": [printable(c) for c in columns],
        "rows": [[_cell(row.get(c)) for c in columns] for row in rows[:_ROWS]],
        "more_rows": max(0, len(rows) - _ROWS),
        "interrupted": bool(record.get("interrupted")),
    }


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        value = ",".join(map(str, value))
    return printable(str(value))[:500]


# --------------------------------------------------------------------------- diff


def _diff(diff: ReportDiff, index: Mapping[str, _Host], max_output: int) -> dict[str, Any]:
    by_text: dict[tuple[str, str], list[str]] = {}
    for change in diff.output_changed:
        by_text.setdefault((change.step, change.diff), []).append(change.host)
    return {
        "previous": printable(diff.previous),
        "status": [
            (
                printable(c.host),
                index[c.host].index if c.host in index else None,
                printable(c.step),
                printable(c.before),
                printable(c.after),
            )
            for c in diff.status_changed
        ],
        "output": [
            (
                printable(fold_hosts(names)),
                printable(step),
                printable(text, keep_newlines=True)[:max_output],
            )
            for (step, text), names in by_text.items()
        ],
        "added": printable(fold_hosts(list(diff.added))) if diff.added else "",
        "gone": printable(fold_hosts(list(diff.gone))) if diff.gone else "",
        "empty": not (diff.status_changed or diff.output_changed or diff.added or diff.gone),
    }


# --------------------------------------------------------------------------- page


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("remoteops", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["printable"] = printable
    return env


@cache
def _style() -> tuple[Markup, str]:
    """The page's CSS, and its CSP hash (the only style the page may use)."""
    css = resources.files("remoteops").joinpath("templates/report.css").read_text("utf-8")
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    return Markup(css), f"'sha256-{digest}'"  # noqa: S704 - our own stylesheet


def render_report(
    run: ReportRun,
    hosts: Iterable[HostResult | Mapping[str, Any]],
    *,
    analysis: Iterable[Mapping[str, Any]] = (),
    diff: ReportDiff | None = None,
    order: Sequence[str] | None = None,
    max_output: int = MAX_OUTPUT,
    output_budget: int = OUTPUT_BUDGET,
) -> str:
    """The HTML page about ``run``.

    ``hosts``: the host records of ``--json`` (dicts as docs/json.md, or HostResult
    objects; records of other types are ignored; a play's records, one per host and step,
    show as one host each, its worst status and its summed duration). ``analysis``: the
    ``analysis`` records. ``diff``: what changed since the previous run. ``order``: the
    hosts in inventory order, for the host map and table (hosts not in it come after it, in
    natural order). ``max_output``: characters shown of one output group;
    ``output_budget``: of all outputs together.
    """
    records = [r for r in map(_record, hosts) if r is not None]
    index = _hosts(records, order, diff)
    groups = _groups(records, index, max_output, output_budget)
    rows = sorted(index.values(), key=lambda h: h.index)
    counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
    for host in rows:
        counts[host.status] += 1
    css, style_hash = _style()
    template = _environment().get_template("report.html")
    return template.render(
        run=run,
        duration_s=max(0.0, (run.ended - run.started).total_seconds()) if run.ended else None,
        counts=[(s, n) for s, n in counts.items() if n or s in ("ok", "failed")],
        hosts=rows,
        groups=groups,
        cut_groups=sum(1 for g in groups if g.cut),
        durations=_durations(rows),
        analysis=[_analysis(a) for a in analysis if a.get("type", "analysis") == "analysis"],
        diff=_diff(diff, index, max_output) if diff else None,
        css=css,
        csp=f"default-src 'none'; style-src {style_hash}; base-uri 'none'; form-action 'none'",
        status_class=_status_class,
        version=__version__,
    )


def _status_class(status: str) -> str:
    """The CSS class of a status, by its first word (a fixed set: never text a record chose)."""
    word = status.split(maxsplit=1)[0] if status.strip() else ""
    return f"s-{word}" if word in STATUSES else "s-other"


class ReportOptions(TypedDict, total=False):
    """The keyword arguments of :func:`render_report`, for :func:`write_report`."""

    analysis: Iterable[Mapping[str, Any]]
    diff: ReportDiff | None
    order: Sequence[str] | None
    max_output: int
    output_budget: int


def write_report(
    path: str | os.PathLike[str],
    run: ReportRun,
    hosts: Iterable[HostResult | Mapping[str, Any]],
    **options: Unpack[ReportOptions],
) -> Path:
    """Write :func:`render_report`'s page (same arguments) to ``path`` atomically: a
    temporary file beside it, then a rename, so that a reader sees the old report or the
    new one, never half of one. Raises OSError (nothing is left behind); returns the path."""
    page = render_report(run, hosts, **options)
    target = Path(path)
    # Mode 0666 less the umask, as a new file gets; text hosts sent that is not UTF-8 escaped.
    write_atomic(target, page.encode("utf-8", "backslashreplace"), mode=None)
    return target
