"""The built-in analyzers: a *map* step per document (in a worker) and a *reduce* step.

``configure`` runs in the parent and checks the arguments (``UsageError`` for
bad ones); its result is a small picklable config. ``map`` runs in a worker
process over one ``Document`` (or one byte range of a big file, when the
analyzer is ``splittable``) and returns a small picklable partial result;
``reduce`` runs in the parent over every partial and builds the ``Section``.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import operator
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import compress, starmap
from typing import Any, ClassVar, Final, TypeVar

from remoteops.analysis import prefilter
from remoteops.analysis.model import (
    AnalyzerSpec,
    Document,
    Finding,
    Section,
    iter_line_blocks,
    iter_line_buffers,
    show_number,
)
from remoteops.analysis.parsers import FIELDS, PARSERS, parse_all, parse_number
from remoteops.analysis.textscan import (
    DEFAULT_KEYWORDS,
    LineMatcher,
    normalise,
    normalise_lines,
    split_timestamps,
)
from remoteops.errors import UsageError
from remoteops.nodeset import fold, fold_hosts
from remoteops.wording import plural

__all__ = ["BUILTINS", "Analyzer", "Partials"]

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

# (document without its bytes, partial result) for every document analysed.
Partials = Sequence[tuple[Document, Any]]

SAMPLE_BYTES: Final = 1024 * 1024
MAX_LINES_SHOWN: Final = 20


class Analyzer:
    """Base class of the built-ins; plugins are wrapped in ``PluginAnalyzer``."""

    name: ClassVar[str] = ""
    splittable: ClassVar[bool] = False
    summary: ClassVar[str] = ""

    def configure(self, spec: AnalyzerSpec) -> Any:
        """Check ``spec.args`` in the parent; return a picklable config."""
        return spec.args

    def map(self, config: Any, doc: Document) -> Any:
        """Analyse one document (or byte range) in a worker process."""
        raise NotImplementedError

    def reduce(self, spec: AnalyzerSpec, config: Any, partials: Partials) -> Section:
        """Merge the partial results into the section shown to the user."""
        raise NotImplementedError


def _compile(spec: AnalyzerSpec, pattern: str) -> re.Pattern[str]:
    if not pattern:
        raise UsageError(f"{spec.where}: {spec.name} needs a regex: {spec.name}:REGEX")
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise UsageError(f"{spec.where}: {spec}: bad regex: {exc}") from None


def _hosts_of(partials: Partials) -> int:
    return len({doc.host for doc, _ in partials})


def _of_hosts(count: int, partials: Partials) -> str:
    """``3 of 6 hosts``, ``1 of 1 host``: ``count`` of the hosts analysed."""
    return f"{count} of {plural(_hosts_of(partials), 'host')}"


# --------------------------------------------------------------------------- group / drift


def _digest(doc: Document, *, normalised: bool) -> tuple[str, bytes, int]:
    """sha256 of the (normalised) document, its first SAMPLE_BYTES, and its size."""
    hasher = hashlib.sha256()
    sample = b""
    size = 0
    for block in iter_line_blocks(doc):
        data = normalise(block, host=doc.host) if normalised else block
        hasher.update(data)
        if len(sample) < SAMPLE_BYTES:
            sample += data[: SAMPLE_BYTES - len(sample)]
        size += len(block)
    return hasher.hexdigest(), sample, size


def _groups(partials: Partials) -> dict[str, list[tuple[str, list[str], bytes]]]:
    """Per document name: (key, hosts, sample) groups, largest first."""
    by_doc: dict[str, dict[str, tuple[list[str], bytes]]] = {}
    for doc, (digest, sample, _size) in partials:
        key = f"{digest}:{doc.exit_code}"
        hosts, _ = by_doc.setdefault(doc.name, {}).setdefault(key, ([], sample))
        hosts.append(doc.host)
    return {
        name: sorted(
            ((k, sorted(h), s) for k, (h, s) in groups.items()),
            key=lambda g: (-len(g[1]), g[1][0]),
        )
        for name, groups in sorted(by_doc.items())
    }


class Group(Analyzer):
    """Hosts with identical output, largest group first; ``group:normalize`` masks numbers,
    times and hex ids first. Hosts outside a majority group are outliers."""

    name = "group"
    summary = "hosts with identical (optionally normalised) output, outliers flagged"

    def configure(self, spec: AnalyzerSpec) -> bool:
        if spec.args not in ("", "normalize", "normalise", "exact"):
            raise UsageError(f"{spec.where}: {spec}: use group or group:normalize")
        return spec.args in ("normalize", "normalise")

    def map(self, config: bool, doc: Document) -> tuple[str, bytes, int]:
        digest, sample, size = _digest(doc, normalised=config)
        return digest, sample[:4096], size

    def reduce(self, spec: AnalyzerSpec, config: bool, partials: Partials) -> Section:
        rows: list[dict[str, Any]] = []
        outliers: list[str] = []
        for name, groups in _groups(partials).items():
            total = sum(len(h) for _, h, _ in groups)
            majority = len(groups[0][1]) * 2 > total and len(groups) > 1
            for index, (_key, hosts, sample) in enumerate(groups):
                is_outlier = majority and index > 0
                if is_outlier:
                    outliers.extend(hosts)
                first = sample.decode("utf-8", "replace").strip().splitlines()
                rows.append(
                    {
                        "document": name,
                        "count": len(hosts),
                        "hosts": fold(hosts),
                        "outlier": is_outlier,
                        "sample": (first[0][:60] if first else "")
                        + (" ..." if len(first) > 1 else ""),
                    }
                )
        section = Section(
            spec,
            f"{plural(len(rows), 'distinct output')} over "
            f"{plural(_hosts_of(partials), 'host')}"
            + (f"; outliers: {fold(outliers)}" if outliers else ""),
            ("count", "hosts", "outlier", "sample"),
            rows,
        )
        if len({r["document"] for r in rows}) > 1:
            section.columns = ("document", *section.columns)
        section.data["outliers"] = sorted(outliers)
        return section


class Drift(Analyzer):
    """Hosts whose output or file differs from the majority, with a unified diff against it."""

    name = "drift"
    summary = "hosts differing from the majority, with a unified diff"

    def configure(self, spec: AnalyzerSpec) -> bool:
        if spec.args not in ("", "normalize", "normalise", "exact"):
            raise UsageError(f"{spec.where}: {spec}: use drift or drift:normalize")
        return spec.args in ("normalize", "normalise")

    def map(self, config: bool, doc: Document) -> tuple[str, bytes, int]:
        return _digest(doc, normalised=config)

    def reduce(self, spec: AnalyzerSpec, config: bool, partials: Partials) -> Section:
        rows: list[dict[str, Any]] = []
        findings: list[Finding] = []
        notes: list[str] = []
        for name, groups in _groups(partials).items():
            total = sum(len(h) for _, h, _ in groups)
            if len(groups) == 1:
                continue
            if len(groups[0][1]) * 2 <= total:
                notes.append(
                    f"{name}: no majority ({plural(len(groups), 'version')} over "
                    f"{plural(total, 'host')})"
                )
                continue
            baseline = groups[0][2].decode("utf-8", "replace").splitlines(keepends=True)
            for _key, hosts, sample in groups[1:]:
                mine = sample.decode("utf-8", "replace").splitlines(keepends=True)
                diff = list(
                    difflib.unified_diff(
                        baseline,
                        mine,
                        f"majority ({plural(len(groups[0][1]), 'host')})",
                        fold(hosts),
                        n=1,
                    )
                )
                text = "".join(diff[:60]) + ("...\n" if len(diff) > 60 else "")
                changed = sum(1 for d in diff[2:] if d[:1] in "+-")
                for host in hosts:
                    findings.append(
                        Finding(
                            self.name,
                            host,
                            f"differs from the majority ({plural(changed, 'line')})",
                            name,
                        )
                    )
                rows.append(
                    {"document": name, "hosts": fold(hosts), "lines": changed, "diff": text}
                )
        section = Section(
            spec,
            f"{_of_hosts(len(findings), partials)} "
            f"{'differs' if len(findings) == 1 else 'differ'} from the majority",
            ("document", "hosts", "lines"),
            rows,
            findings,
            notes=notes
            + [f"{r['hosts']}:\n    " + r["diff"].replace("\n", "\n    ").rstrip() for r in rows],
        )
        return section


# --------------------------------------------------------------------------- grep / count


@dataclass(frozen=True, slots=True)
class _Pattern:
    regex: str


class _RegexAnalyzer(Analyzer):
    """An analyzer whose argument is one regex, run over byte ranges of big files."""

    splittable = True

    def configure(self, spec: AnalyzerSpec) -> _Pattern:
        _compile(spec, spec.args)
        return _Pattern(spec.args)


@dataclass(frozen=True, slots=True)
class _GrepConfig:
    regex: str
    every_host: bool = False


_EVERY_HOST = "hosts=all:"


class Grep(Analyzer):
    """Lines matching a regex, per host and in total (the first lines are shown).

    The table lists the hosts with matches; ``grep:hosts=all:REGEX`` lists
    every host, with 0 for those without.
    """

    name = "grep"
    splittable = True
    summary = "matching lines per host and in total (findings: hosts with matches)"

    def configure(self, spec: AnalyzerSpec) -> _GrepConfig:
        every_host = spec.args.startswith(_EVERY_HOST)
        regex = spec.args.removeprefix(_EVERY_HOST) if every_host else spec.args
        if every_host and not regex:
            raise UsageError(f"{spec.where}: {spec}: give the regex after it: grep:hosts=all:REGEX")
        _compile(spec, regex)
        return _GrepConfig(regex, every_host)

    def map(self, config: _GrepConfig, doc: Document) -> tuple[int, list[str]]:
        matcher = LineMatcher(pattern=config.regex)

        def scan(blocks: Iterable[bytes]) -> tuple[int, list[str]]:
            count = 0
            shown: list[str] = []
            for block in blocks:
                starts, ends = matcher.spans(block)
                count += len(starts)
                for start, end in zip(starts, ends[: MAX_LINES_SHOWN - len(shown)], strict=False):
                    shown.append(block[start:end].decode("utf-8", "replace"))
            return count, shown

        done = _prefiltered(matcher, doc, scan)
        return scan(iter_line_blocks(doc)) if done is None else done

    def reduce(self, spec: AnalyzerSpec, config: _GrepConfig, partials: Partials) -> Section:
        per: dict[tuple[str, str], list[Any]] = {}
        for doc, (count, shown) in sorted(
            partials, key=lambda p: (p[0].host, p[0].name, p[0].start)
        ):
            entry = per.setdefault((doc.host, doc.name), [0, []])
            entry[0] += count
            entry[1].extend(shown[: MAX_LINES_SHOWN - len(entry[1])])
        rows = [
            {"host": h, "document": d, "lines": c, "first": s[0] if s else ""}
            for (h, d), (c, s) in sorted(per.items())
        ]
        total = sum(r["lines"] for r in rows)
        matched = [r for r in rows if r["lines"]]
        findings = [
            Finding(
                self.name,
                r["host"],
                f"{plural(r['lines'], 'line')} {'matches' if r['lines'] == 1 else 'match'} "
                f"{config.regex!r}",
                r["document"],
            )
            for r in matched
        ]
        with_matches = {r["host"] for r in matched}
        section = Section(
            spec,
            f"{plural(total, 'line')} {'matches' if total == 1 else 'match'} on "
            f"{_of_hosts(len(with_matches), partials)}",
            ("host", "lines", "first"),
            rows if config.every_host else matched,
            findings,
        )
        without = sorted({doc.host for doc, _ in partials} - with_matches)
        if without and not config.every_host:
            section.notes.append(
                f"no match on {fold_hosts(without)} (grep:hosts=all:REGEX lists them)"
            )
        section.data["total"] = total
        section.data["lines"] = {f"{h}:{d}": s for (h, d), (_c, s) in per.items() if s}
        return section


class Count(_RegexAnalyzer):
    """Regex matches per host and in total."""

    name = "count"
    summary = "regex matches per host and in total"

    def map(self, config: _Pattern, doc: Document) -> int:
        matcher = LineMatcher(pattern=config.regex)

        def scan(blocks: Iterable[bytes]) -> int:
            return sum(map(matcher.count, blocks))

        done = _prefiltered(matcher, doc, scan)
        return scan(iter_line_blocks(doc)) if done is None else done

    def reduce(self, spec: AnalyzerSpec, config: _Pattern, partials: Partials) -> Section:
        per: Counter[tuple[str, str]] = Counter()
        for doc, count in partials:
            per[(doc.host, doc.name)] += count
        rows = [{"host": h, "document": d, "matches": c} for (h, d), c in sorted(per.items())]
        total = sum(per.values())
        section = Section(
            spec,
            f"{plural(total, 'match', 'matches')} over {plural(_hosts_of(partials), 'host')}",
            ("host", "matches"),
            rows,
        )
        section.data["total"] = total
        return section


# --------------------------------------------------------------------------- extract / threshold


class Extract(Analyzer):
    """Named groups of a regex, or a parser (df, free, uptime, os-release, systemctl, nproc),
    into one table; ``extract`` alone tries every parser."""

    name = "extract"
    summary = "regex named groups or command parsers (df, free, uptime, ...) into a table"

    def configure(self, spec: AnalyzerSpec) -> tuple[str, str]:
        if spec.args in ("", "auto"):
            return "auto", ""
        if spec.args in PARSERS:
            return "parser", spec.args
        regex = _compile(spec, spec.args)
        if not regex.groupindex:
            raise UsageError(
                f"{spec.where}: {spec}: give a parser ({', '.join(PARSERS)}) or a regex "
                "with named groups, e.g. extract:'load average: (?P<load1>[\\d.]+)'"
            )
        return "regex", spec.args

    def map(self, config: tuple[str, str], doc: Document) -> list[dict[str, Any]]:
        kind, arg = config
        text = doc.text()
        if kind == "regex":
            return [
                {k: _value(v) for k, v in m.groupdict().items()}
                for m in re.finditer(arg, text, re.MULTILINE)
            ]
        found = parse_all(text, None if kind == "auto" else {arg})
        return [{"parser": name, **rec} for name, recs in found.items() for rec in recs]

    def reduce(self, spec: AnalyzerSpec, config: tuple[str, str], partials: Partials) -> Section:
        rows: list[dict[str, Any]] = []
        for doc, records in sorted(partials, key=lambda p: (p[0].host, p[0].name)):
            for rec in records:
                rows.append({"host": doc.host, "document": doc.name, **rec})
        columns: list[str] = ["host"]
        for row in rows:
            for key in row:
                if key not in columns and key != "document":
                    columns.append(key)
        hosts = {r["host"] for r in rows}
        return Section(
            spec,
            f"{plural(len(rows), 'record')} from {_of_hosts(len(hosts), partials)}",
            tuple(columns),
            rows,
        )


def _value(text: str | None) -> Any:
    if text is None:
        return None
    number = parse_number(text)
    if number is not None and re.fullmatch(r"-?\d+(\.\d+)?", text.strip()):
        return int(number) if number.is_integer() else number
    return text


_OPS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_RULE = re.compile(r"^\s*(\S+?)\s*(>=|<=|==|!=|>|<)\s*(\S+)\s*$")
_SPECIAL_FIELDS: Final = ("exit_code",)


@dataclass(frozen=True, slots=True)
class Rule:
    """``LEFT OP RIGHT``; each side a number (``90``, ``2G``) or a field (``df.use%``)."""

    text: str
    left: tuple[str, str] | float | str
    op: str
    right: tuple[str, str] | float | str


def _operand(spec: AnalyzerSpec, text: str) -> tuple[str, str] | float | str:
    number = parse_number(text)
    if number is not None:
        return number
    if text in FIELDS:
        return FIELDS[text]
    if text in _SPECIAL_FIELDS:
        return ("", text)
    parser, dot, field_name = text.partition(".")
    if dot and parser in PARSERS:
        return (parser, field_name)
    if text.startswith(("'", '"')) and text.endswith(text[0]) and len(text) > 1:
        return text[1:-1]
    if re.fullmatch(r"[A-Za-z][\w-]*", text) and "." not in text:
        # A bare word compares as a string (systemctl.state != active).
        return text
    raise UsageError(
        f"{spec.where}: {spec}: {text!r} is neither a number nor a field; fields are "
        f"PARSER.FIELD ({', '.join(PARSERS)}), {', '.join([*FIELDS, *_SPECIAL_FIELDS])}"
    )


def parse_rule(spec: AnalyzerSpec) -> Rule:
    """Parse ``threshold:RULE`` (e.g. ``df.use% > 90``, ``load1 > nproc``)."""
    match = _RULE.match(spec.args)
    if match is None:
        raise UsageError(
            f"{spec.where}: {spec}: write a rule as FIELD OP VALUE, e.g. 'df.use% > 90' "
            "or 'load1 > nproc'"
        )
    left, op, right = match.groups()
    rule = Rule(spec.args.strip(), _operand(spec, left), op, _operand(spec, right))
    if not any(isinstance(side, tuple) for side in (rule.left, rule.right)):
        raise UsageError(f"{spec.where}: {spec}: a rule needs at least one field")
    return rule


def _resolve(side: Any, doc: Document, found: dict[str, list[dict[str, Any]]]) -> list[Any]:
    """The values a rule side takes on a host: one per record of its parser."""
    if not isinstance(side, tuple):
        return [side]
    parser, field_name = side
    if parser == "":
        return [doc.exit_code]
    values = [rec.get(field_name) for rec in found.get(parser, [])]
    # Text that reads as a number compares as one (os-release.version_id >= 12).
    return [
        parse_number(v) if isinstance(v, str) and parse_number(v) is not None else v for v in values
    ]


class Threshold(Analyzer):
    """Rules such as ``df.use% > 90`` or ``load1 > nproc``; findings: the hosts in breach."""

    name = "threshold"
    summary = "rules like 'df.use% > 90' or 'load1 > nproc'; findings: hosts in breach"

    def configure(self, spec: AnalyzerSpec) -> Rule:
        return parse_rule(spec)

    def map(self, config: Rule, doc: Document) -> tuple[list[str], list[dict[str, Any]]]:
        parsers = {s[0] for s in (config.left, config.right) if isinstance(s, tuple) and s[0]}
        found = parse_all(doc.text(), parsers) if parsers else {}
        lefts = _resolve(config.left, doc, found)
        rights = _resolve(config.right, doc, found)
        pairs = (
            list(zip(lefts, rights, strict=False))
            if len(lefts) == len(rights)
            else [(x, y) for x in lefts for y in rights]
        )
        records = next((found[p] for p in parsers if len(found.get(p, [])) > 1), None)
        breaches: list[str] = []
        rows: list[dict[str, Any]] = []
        for index, (left, right) in enumerate(pairs):
            where = _record_label(records[index]) if records and index < len(records) else ""
            if left is None or right is None:
                continue
            try:
                breached = _OPS[config.op](left, right)
            except TypeError:
                breached = _OPS[config.op](str(left), str(right))
            rows.append({"where": where, "left": left, "right": right, "breach": breached})
            if breached:
                breaches.append(
                    f"{where + ': ' if where else ''}{_show(left)} {config.op} {_show(right)}"
                )
        return breaches, rows

    def reduce(self, spec: AnalyzerSpec, config: Rule, partials: Partials) -> Section:
        rows: list[dict[str, Any]] = []
        findings: list[Finding] = []
        no_data: dict[str, list[str]] = {}  # per document: a step of play may have no value
        for doc, (breaches, values) in sorted(partials, key=lambda p: (p[0].host, p[0].name)):
            if not values:
                no_data.setdefault(doc.name, []).append(doc.host)
            for value in values:
                rows.append({"host": doc.host, "document": doc.name, **value})
            for breach in breaches:
                findings.append(Finding(self.name, doc.host, f"{config.text}: {breach}", doc.name))
        breached = sorted({f.host for f in findings})
        section = Section(
            spec,
            f"{_of_hosts(len(breached), partials)} in breach of {config.text!r}"
            + (f": {fold(breached)}" if breached else ""),
            ("host", "where", "left", "right", "breach"),
            [r for r in rows if r["breach"]],
            findings,
        )
        for name, hosts in sorted(no_data.items()):
            where = "" if name == "stdout" else f" in {name}"
            section.notes.append(f"no value for the rule on {fold(sorted(set(hosts)))}{where}")
        section.data["values"] = rows
        return section


def _record_label(record: dict[str, Any]) -> str:
    for key in ("mounted", "unit", "filesystem"):
        if key in record:
            return str(record[key])
    return ""


def _show(value: Any) -> str:
    if isinstance(value, float):
        return show_number(value)
    return str(value)


# --------------------------------------------------------------------------- logscan


@dataclass(frozen=True, slots=True)
class LogscanConfig:
    """What logscan looks for and how many messages it lists."""

    top: int = 10
    pattern: str | None = None


@dataclass(slots=True)
class _Message:
    count: int
    hosts: set[str]
    first: tuple[str, str, str]  # (sort key, time as written, host)
    last: tuple[str, str, str]
    sample: str


class Logscan(Analyzer):
    """Error lines of (big) log files: counts per host and per normalised message, top N,
    first and last seen. ``logscan[:top=N][:REGEX]``; the default matches the words
    error, fatal, crit, panic and emerg in any case."""

    name = "logscan"
    splittable = True
    summary = "error lines per host and per normalised message, top N, first/last seen"

    def configure(self, spec: AnalyzerSpec) -> LogscanConfig:
        args = spec.args
        top = 10
        match = re.match(r"^top=(\d+)(?::|$)", args)
        if match:
            top = int(match.group(1))
            args = args[match.end() :]
        if args:
            _compile(spec, args)
        return LogscanConfig(top=top, pattern=args or None)

    def map(self, config: LogscanConfig, doc: Document) -> tuple[int, dict[bytes, list[Any]]]:
        matcher = (
            LineMatcher(pattern=config.pattern)
            if config.pattern
            else LineMatcher(keywords=DEFAULT_KEYWORDS)
        )
        found: Iterable[list[bytes]]
        done = _prefiltered(
            matcher, doc, lambda blocks: _scan_lines(map(matcher.matching_lines, blocks), doc.host)
        )
        if done is not None:
            return done
        if matcher.reads_buffers:  # a literal: only the lines around its matches are copied
            found = starmap(matcher.buffer_lines, iter_line_buffers(doc))
        else:
            found = map(matcher.matching_lines, iter_line_blocks(doc))
        return _scan_lines(found, doc.host)

    def reduce(self, spec: AnalyzerSpec, config: LogscanConfig, partials: Partials) -> Section:
        per_host: Counter[str] = Counter()
        messages: dict[bytes, _Message] = {}
        for doc, (total, found) in partials:
            per_host[doc.host] += total
            for key, (count, first, last, sample) in found.items():
                first3 = (first[0], first[1], doc.host)
                last3 = (last[0], last[1], doc.host)
                msg = messages.get(key)
                if msg is None:
                    messages[key] = _Message(
                        count, {doc.host}, first3, last3, sample.decode("utf-8", "replace")
                    )
                    continue
                msg.count += count
                msg.hosts.add(doc.host)
                if first3[0] and (not msg.first[0] or first3 < msg.first):
                    msg.first = first3
                if last3 > msg.last:
                    msg.last = last3
        total = sum(per_host.values())
        top = sorted(messages.items(), key=lambda kv: (-kv[1].count, kv[0]))[: config.top]
        rows = [
            {
                "count": m.count,
                "hosts": len(m.hosts),
                "first": f"{m.first[1]} {m.first[2]}".strip() if m.first[0] else "-",
                "last": f"{m.last[1]} {m.last[2]}".strip() if m.last[0] else "-",
                "message": key.decode("utf-8", "replace")[:120],
            }
            for key, m in top
        ]
        hosts_with = sorted(h for h, c in per_host.items() if c)
        findings = [Finding(self.name, h, plural(per_host[h], "error line")) for h in hosts_with]
        section = Section(
            spec,
            f"{plural(total, 'error line')} on {_of_hosts(len(hosts_with), partials)}, "
            f"{plural(len(messages), 'distinct message')} (top {config.top})",
            ("count", "hosts", "first", "last", "message"),
            rows,
            findings,
        )
        section.data["total"] = total
        section.data["by_host"] = dict(sorted(per_host.items()))
        section.notes.append(
            "by host: "
            + ", ".join(
                f"{h} {per_host[h]}" for h in sorted(per_host, key=lambda h: (-per_host[h], h))[:20]
            )
        )
        return section


def _prefiltered(
    matcher: LineMatcher, doc: Document, scan: Callable[[Iterable[bytes]], _T]
) -> _T | None:
    """``scan`` over the blocks of grep's candidate lines of ``doc``
    (:mod:`remoteops.analysis.prefilter`): the result of ``scan`` over the
    file's own blocks, when ``scan`` works line by line. None when the prefilter
    does not apply (not a whole local file, a regex, no grep, switched off) or
    could not finish: the caller reads the file itself."""
    if doc.path is None or doc.data is not None or doc.start != 0 or doc.end is not None:
        return None  # in memory, or a byte range: grep would read the whole file
    needles = matcher.grep_needles()
    if needles is None or not prefilter.usable():
        return None
    blocks = prefilter.candidate_blocks(doc.path, needles, ignore_case=matcher.pattern is None)
    try:
        return scan(blocks)
    except prefilter.Unavailable as exc:  # the file read in Python, as without grep
        logger.debug("Host %r: %s: no grep prefilter: %s", doc.host, doc.name, exc)
        return None
    finally:
        blocks.close()


def _scan_lines(found: Iterable[list[bytes]], host: str) -> tuple[int, dict[bytes, list[Any]]]:
    """logscan's partial result from the matching lines, a list per block, in file order."""
    messages: dict[bytes, list[Any]] = {}
    total = 0
    for lines in found:
        if lines:
            total += len(lines)
            _count_messages(lines, host, messages)
    return total, messages


_NO_TIME: Final = ("", "")


def _count_messages(lines: list[bytes], host: str, messages: dict[bytes, list[Any]]) -> None:
    """Add ``lines`` (in file order) to ``messages``: {normalised message: [count, first,
    last, first line]}, first and last being (sort key, time as written) or ("", "").

    As if each line were added in turn: first is the earliest time (the earlier
    line on a tie), last the latest (the later line on a tie); lines without a
    leading time count but do not move them. Done for all lines at once: one
    regex pass splits off the times, one ``normalise`` over the distinct rest,
    ``Counter`` counts, and a stable sort by time finds first and last.
    """
    keys_by_time, times, rests = split_timestamps(lines)
    joined = b"\n".join(rests)
    if joined.count(b"\n") == len(rests) - 1:
        keys = list(map(bytes.strip, normalise_lines(joined, host=host)))
    else:  # a "line" of several lines (a regex match across lines)
        keys = [normalise(rest, host=host).strip() for rest in rests]
    timed = list(compress(range(len(lines)), keys_by_time))
    timed.sort(key=keys_by_time.__getitem__)
    in_order = list(map(keys.__getitem__, timed))
    last = dict(zip(in_order, timed, strict=True))
    first = dict(zip(reversed(in_order), reversed(timed), strict=True))
    first_line = dict(zip(reversed(keys), range(len(keys) - 1, -1, -1), strict=True))

    def when(index: int | None) -> tuple[str, str]:
        if index is None:
            return _NO_TIME
        return keys_by_time[index].decode(), times[index].decode()

    for key, count in Counter(keys).items():
        earliest = when(first.get(key))
        latest = when(last.get(key))
        entry = messages.get(key)
        if entry is None:
            messages[key] = [count, earliest, latest, lines[first_line[key]][:300]]
            continue
        entry[0] += count
        if earliest[0] and (not entry[1][0] or earliest[0] < entry[1][0]):
            entry[1] = earliest
        if latest[0] >= entry[2][0]:
            entry[2] = latest


BUILTINS: Final[dict[str, Analyzer]] = {
    a.name: a for a in (Group(), Grep(), Count(), Extract(), Threshold(), Drift(), Logscan())
}
