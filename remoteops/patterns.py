"""Ansible host patterns: ``web:&prod:!db``, ``~regex``, ``web*``, ``group[0:2]``, ``@file``.

The evaluation follows ansible-core's ``InventoryManager`` (2.19): the pattern is split
on ``,`` (or ``:`` when it is not an address), plain terms are applied first, then the
``&`` intersections, then the ``!`` exclusions, and the result keeps inventory order.

A term whose brackets hold numbers with ``-`` ranges or ``,`` lists is a ClusterShell node
set (``web[01-03]``, ``db[1-3,7]``), the form remoteops prints, whatever the name before
the bracket is; ``[x:y]`` and ``[x]`` are Ansible's subscripts; letters (``db-[a-c]``) are
globs. Ansible's deprecated ``GROUP[x-y]`` subscript is therefore not read.

A ``@FILE`` term stands for the names in FILE, one per line (``#`` starts a comment); a
file with no name selects no host, never the whole inventory.
"""

from __future__ import annotations

import difflib
import fnmatch
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from remoteops import nodeset
from remoteops.errors import InventoryError
from remoteops.logconfig import NOTICE
from remoteops.wording import plural

__all__ = [
    "Unmatched",
    "close_names",
    "did_you_mean",
    "is_address",
    "no_match_message",
    "parse_address",
    "select_hosts",
    "split_pattern",
    "split_subscript",
    "warn_unmatched",
]

logger = logging.getLogger(__name__)

# --- addresses (host keys and pattern splitting) --------------------------------------

_RANGE = r"\[(?:[a-zA-Z]:[a-zA-Z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]"
_NUM_RANGE = r"\[[0-9]+:[0-9]+(?::[0-9]+)?\]"
_LABEL = rf"(?:\w|{_RANGE})(?:[\w-]|{_RANGE})*(?<![_-])"
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$", re.UNICODE)
_IPV4_PART = rf"(?:25[0-5]|2[0-4][0-9]|[01]?[0-9]{{1,2}}|{_NUM_RANGE})"
_IPV4 = re.compile(rf"^(?:{_IPV4_PART}\.){{3}}{_IPV4_PART}$")
_IPV6 = re.compile(r"^[0-9a-fA-F:.]*:[0-9a-fA-F:.]*$")
_BRACKETED_PORT = re.compile(r"^\[(.+)\]:([0-9]+)$")
_HOST_PORT = re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$")


def _is_ipv6(text: str) -> bool:
    import ipaddress

    if not _IPV6.match(text):
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def parse_address(address: str, *, allow_ranges: bool = False) -> tuple[str, int | None]:
    """Split ``host[:port]`` or ``[v6]:port`` into ``(host, port)``.

    The host must be a hostname, IPv4 or IPv6 address; with ``allow_ranges`` it may
    hold Ansible ranges such as ``web[01:20]``.  Raises ``ValueError`` otherwise.
    """
    port: int | None = None
    for regex in (_BRACKETED_PORT, _HOST_PORT):
        match = regex.match(address)
        if match:
            address, port = match.group(1), int(match.group(2))
    if not (_IPV4.match(address) or _is_ipv6(address) or _HOSTNAME.match(address)):
        raise ValueError(f"not a valid network host name: {address}")
    if not allow_ranges and "[" in address:
        raise ValueError(f"range in host name where none is allowed: {address}")
    return address, port


def is_address(text: str) -> bool:
    """True when *text* parses as ``host[:port]`` (ranges allowed)."""
    try:
        parse_address(text, allow_ranges=True)
    except ValueError:
        return False
    return True


# --- splitting ------------------------------------------------------------------------

_COLON_TERMS = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")
_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+):([0-9]*))\]$")
_NODESET_BRACKET = re.compile(r"\[ *[0-9][0-9,/\- ]*[-,][0-9,/\- ]*\]")


def _split_commas(pattern: str) -> list[str]:
    """Split on commas outside brackets so that node sets such as ``web[1-3,5]`` survive."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in pattern:
        depth += (char == "[") - (char == "]")
        if char == "," and depth <= 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def split_pattern(pattern: str | Sequence[str]) -> list[str]:
    """Split a pattern into terms like Ansible's ``split_host_pattern``.

    ``'a,b[1], c[2:3] , d'`` gives ``['a', 'b[1]', 'c[2:3]', 'd']``; without commas,
    ``web:&db:!x`` splits on ``:`` unless the whole text is an address
    (``host:22``, ``web[1:3]``).
    """
    if not isinstance(pattern, str):
        return [term for item in pattern for term in split_pattern(item)]
    # Only a comma outside brackets makes a comma list: web[01,03]:db is two terms.
    by_comma = _split_commas(pattern)
    if len(by_comma) > 1:
        terms = by_comma
    elif is_address(pattern):
        terms = [pattern]
    else:
        terms = _COLON_TERMS.findall(pattern)
    return [term.strip() for term in terms if term.strip()]


def split_subscript(term: str) -> tuple[str, tuple[int, int | None] | None]:
    """Split ``web[0:2]`` into ``('web', (0, 2))``; ``web[-1]`` gives ``('web', (-1, None))``.

    ``web[1:]`` gives ``(1, -1)`` (to the end).  Regex terms (``~...``) have no subscript,
    and neither has ``web[1-2]``: that is a node set.
    """
    if term.startswith("~"):
        return term, None
    match = _SUBSCRIPT.match(term)
    if not match:
        return term, None
    expr, index, start, end = match.groups()
    if index:
        return expr, (int(index), None)
    return expr, (int(start), int(end) if end else -1)


def _apply_subscript(
    hosts: list[str], subscript: tuple[int, int | None] | None, term: str
) -> list[str]:
    if not hosts or not subscript:
        return hosts
    start, end = subscript
    if end:
        if end == -1:
            end = len(hosts) - 1
        return hosts[start : end + 1]
    try:
        return [hosts[start]]
    except IndexError:
        raise InventoryError(
            f"no hosts matched the subscripted pattern {term!r}: index out of range"
        ) from None


_COMMENT = re.compile(r"(?:^|\s)#.*$")


def _read_pattern_file(term: str) -> list[str]:
    path = Path(term[1:])
    if not path.exists():
        raise InventoryError(f"pattern file {str(path)!r} not found; check the path after '@'")
    if not path.is_file():
        raise InventoryError(f"pattern {term!r}: {str(path)!r} must be a file, not a directory")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(f"pattern file {str(path)!r} cannot be read: {exc}") from None
    names = [_COMMENT.sub("", line).strip() for line in text.splitlines()]
    names = [name for name in names if name]
    if not names:
        logger.warning(
            "pattern file %r names no host (it is empty or holds only comments): "
            "it selects no host",
            str(path),
            extra=NOTICE,
        )
    return names


def _expand_files(terms: list[str]) -> tuple[list[str], bool]:
    """Terms with each ``@FILE`` replaced by its names; True when a term selects hosts.

    A pattern of only ``!``/``&`` terms starts from ``all``, as in Ansible; a ``@FILE``
    that names nothing counts as a selecting term, so an empty retry file never widens
    a run to every host.
    """
    out: list[str] = []
    selects = False
    for term in terms:
        if term.startswith("@"):
            names = _read_pattern_file(term)
            out.extend(names)
            selects = selects or not names or any(n[0] not in "!&" for n in names)
        else:
            out.append(term)
            selects = selects or term[0] not in "!&"
    return out, selects


def _order(terms: list[str], *, selects: bool) -> list[str]:
    regular = [t for t in terms if t and t[0] not in "!&"]
    intersections = [t for t in terms if t and t[0] == "&"]
    exclusions = [t for t in terms if t and t[0] == "!"]
    start = regular if selects else ["all"]
    return start + intersections + exclusions


@dataclass(frozen=True, slots=True)
class Unmatched:
    """A pattern term that matches no host or group, and the names it may have meant."""

    term: str
    """The term as written, with its ``&`` or ``!``."""
    pattern: str
    """The whole pattern (or ``--limit``) it is part of."""
    suggestions: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The term without its ``&`` or ``!``."""
        return self.term[1:] if self.term[0] in "&!" else self.term

    def did_you_mean(self) -> str:
        """``did you mean web?``, or nothing without a close name."""
        return did_you_mean(self.suggestions)

    def warning(self) -> str:
        """The one line said when the rest of the pattern still selects hosts."""
        where = "" if self.term == self.pattern else f" (in {self.pattern!r})"
        effect = {
            "!": "it excludes nothing",
            "&": "the intersection leaves no host",
        }.get(self.term[0], "ignoring it")
        hint = self.did_you_mean()
        return f"no host or group matches {self.name!r}{where}; {effect}" + (
            f"; {hint}" if hint else ""
        )


def warn_unmatched(unmatched: Sequence[Unmatched]) -> None:
    """Log each term's :meth:`Unmatched.warning`, one line each (``extra=NOTICE``)."""
    for term in unmatched:
        logger.warning("%s", term.warning(), extra=NOTICE)


def no_match_message(
    pattern: str | Sequence[str], limit: str | None, unmatched: Sequence[Unmatched]
) -> tuple[str, bool]:
    """Why ``pattern`` (and ``limit``) select no host, in one line, and whether it suggests a
    name: ``no host matches 'wbe'; did you mean web?``, ``no host matches 'wbe:&eu': 'wbe'
    matches no host or group; did you mean web?``."""
    shown = pattern if isinstance(pattern, str) else ",".join(pattern)
    head = f"no host matches {shown!r}" + (f" with --limit {limit!r}" if limit else "")
    suggests = any(u.suggestions for u in unmatched)
    if len(unmatched) == 1 and unmatched[0].term == shown and not limit:
        hint = unmatched[0].did_you_mean()
        return (f"{head}; {hint}" if hint else head), suggests
    details = []
    for term in unmatched:
        hint = term.did_you_mean()
        details.append(f"{term.name!r} matches no host or group" + (f"; {hint}" if hint else ""))
    return (f"{head}: {'; '.join(details)}" if details else head), suggests


def did_you_mean(names: Sequence[str]) -> str:
    """``did you mean web?`` (``web, web01 or web02``); nothing when ``names`` is empty."""
    if not names:
        return ""
    *most, last = names
    return f"did you mean {', '.join(most) + ' or ' if most else ''}{last}?"


def close_names(name: str, names: Sequence[str]) -> tuple[str, ...]:
    """Of ``names``, those closest to a misspelled ``name`` (case aside; difflib's measure):
    the best ones only, at most three, in the order of ``names``."""
    if not name or any(c in name for c in "*?[]~"):  # a glob or regex: no near-miss to name
        return ()
    by_lower: dict[str, str] = {}
    for candidate in names:
        by_lower.setdefault(candidate.lower(), candidate)
    target = name.lower()
    close = difflib.get_close_matches(target, list(by_lower), n=3, cutoff=0.6)

    def score(candidate: str) -> float:
        return difflib.SequenceMatcher(None, target, candidate).ratio()

    best = max(map(score, close), default=0.0)
    order = {c: i for i, c in enumerate(by_lower)}
    return tuple(by_lower[c] for c in sorted(close, key=order.__getitem__) if score(c) == best)


class _Matcher:
    """Evaluates terms against one inventory's names (cached per term).

    Terms that match nothing go to ``unmatched`` when it is given (the caller
    says what to do), else they are logged as they are found.
    """

    def __init__(
        self,
        host_names: Sequence[str],
        group_names: Sequence[str],
        hosts_of_group: Callable[[str], Sequence[str]],
        unmatched: list[Unmatched] | None = None,
    ) -> None:
        self.host_names = list(host_names)
        self.host_set = set(host_names)
        self.group_names = list(group_names)
        self.group_set = set(group_names)
        self.hosts_of_group = hosts_of_group
        self.unmatched = unmatched
        self.cache: dict[str, list[str]] = {}

    def _match_list(self, items: list[str], expr: str) -> list[str]:
        try:
            regex = re.compile(expr[1:] if expr.startswith("~") else fnmatch.translate(expr))
        except re.error as exc:
            raise InventoryError(f"invalid host pattern {expr!r}: {exc}") from None
        return [item for item in items if regex.match(item)]

    @staticmethod
    def _nodeset_names(expr: str) -> list[str] | None:
        # Numbers with "-" or "," in brackets: a node set even after a group's name
        # (Ansible would read web[1-3] as a subscript of group web: other hosts).
        if expr.startswith("~") or not _NODESET_BRACKET.search(expr):
            return None
        try:
            return nodeset.expand(expr)
        except InventoryError as exc:
            raise InventoryError(
                f"{exc} (for Ansible's subscript of a group, write GROUP[x:y] or GROUP[x])"
            ) from None

    def _enumerate(self, expr: str) -> list[str]:
        results: list[str] = []
        groups = self._match_list(self.group_names, expr)
        for group in groups:
            results.extend(self.hosts_of_group(group))
        specials = (".", "?", "*", "[")
        if not groups or expr.startswith("~") or any(s in expr for s in specials):
            results.extend(self._match_list(self.host_names, expr))
        return results

    def _warn_unmatched(self, term: str, pattern: str) -> None:
        """Say once, in one line, that a term matches nothing (Ansible warns too), with the
        names it may have meant; or hand it to the caller's ``unmatched`` list."""
        bare = term[1:] if term[0] in "&!" else term
        found = Unmatched(term, pattern, close_names(bare, self.group_names + self.host_names))
        if self.unmatched is not None:
            self.unmatched.append(found)
        else:
            warn_unmatched([found])

    def match_one(self, term: str, pattern: str = "") -> list[str]:
        full = term
        if term[0] in "&!":
            term = term[1:]
        if term not in self.cache:
            names = self._nodeset_names(term)
            if names is not None:
                hosts = [n for n in names if n in self.host_set]
                missing = [n for n in names if n not in self.host_set]
                if missing and hosts:
                    logger.warning(
                        "node set %r: %s not in the inventory, ignoring: %s",
                        term,
                        plural(len(missing), "name"),
                        nodeset.fold(missing),
                        extra=NOTICE,
                    )
                elif missing:
                    self._warn_unmatched(full, pattern or full)
            else:
                expr, subscript = split_subscript(term)
                found = self._enumerate(expr)
                if not found and expr != "all":
                    self._warn_unmatched(full, pattern or full)
                hosts = _apply_subscript(found, subscript, term)
            self.cache[term] = hosts
        return self.cache[term]

    def evaluate(self, terms: list[str], *, selects: bool, pattern: str) -> list[str]:
        hosts: list[str] = []
        for term in _order(terms, selects=selects):
            if term in self.host_set:
                hosts.append(term)
                continue
            that = self.match_one(term, pattern)
            if term[0] == "!":
                drop = set(that)
                hosts = [h for h in hosts if h not in drop]
            elif term[0] == "&":
                keep = set(that)
                hosts = [h for h in hosts if h in keep]
            else:
                existing = set(hosts)
                hosts.extend(h for h in that if h not in existing)
        return hosts


def _evaluate(matcher: _Matcher, pattern: str | Sequence[str]) -> list[str]:
    terms, selects = _expand_files(split_pattern(pattern))
    shown = pattern if isinstance(pattern, str) else ",".join(pattern)
    return matcher.evaluate(terms, selects=selects, pattern=shown)


def select_hosts(
    pattern: str | Sequence[str],
    *,
    host_names: Sequence[str],
    group_names: Sequence[str],
    hosts_of_group: Callable[[str], Sequence[str]],
    limit: str | Sequence[str] | None = None,
    unmatched: list[Unmatched] | None = None,
) -> list[str]:
    """Names of the hosts that *pattern* (and *limit*, as ``--limit``) selects.

    *host_names* and *group_names* are in inventory order; *hosts_of_group* gives
    every host of a group and its descendants, in Ansible's order.  Terms that match
    nothing, and ``@file`` terms whose file names no host, are logged as warnings
    (one line each, ``extra=NOTICE``); given an *unmatched* list, the terms that
    match nothing go there instead, with the names they may have meant (see
    :func:`no_match_message`, :func:`warn_unmatched`). An empty result is returned
    as an empty list. Raises ``InventoryError`` for a bad regex, a missing ``@file``
    or a malformed node set.
    """
    matcher = _Matcher(host_names, group_names, hosts_of_group, unmatched)
    hosts = _evaluate(matcher, pattern)
    if limit is not None:
        subset = set(_evaluate(matcher, limit))
        hosts = [h for h in hosts if h in subset]
    seen: set[str] = set()
    unique: list[str] = []
    for host in hosts:
        if host not in seen:
            seen.add(host)
            unique.append(host)
    return unique
