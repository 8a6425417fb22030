"""Parsers for the output of common commands: pure functions from text to records.

Each parser finds its own lines anywhere in the output, so one command such as
``uptime; nproc; df -P`` feeds several parsers. A parser returns a list of
records (dicts); an empty list means "not in this output". Sizes such as
``20G`` become bytes and percentages such as ``93%`` become numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Final

__all__ = ["FIELDS", "PARSERS", "parse_all", "parse_number"]

Record = dict[str, Any]

_UNITS: Final = {
    "": 1,
    "b": 1,
    "k": 1024,
    "m": 1024**2,
    "g": 1024**3,
    "t": 1024**4,
    "p": 1024**5,
    "ki": 1024,
    "mi": 1024**2,
    "gi": 1024**3,
    "ti": 1024**4,
    "pi": 1024**5,
}
_NUMBER = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(%|[kmgtpKMGTP]i?[bB]?|[bB])?\s*$")


def parse_number(text: str) -> float | None:
    """``93%`` -> 93, ``1.5G`` -> bytes, ``42`` -> 42; None when not a number."""
    match = _NUMBER.match(text)
    if match is None:
        return None
    value = float(match.group(1))
    unit = (match.group(2) or "").lower().rstrip("b")
    if unit == "%":
        return value
    return value * _UNITS[unit]


def _df(text: str) -> list[Record]:
    records: list[Record] = []
    lines = text.splitlines()
    in_table = False
    pending = ""
    for line in lines:
        if re.match(r"^Filesystem\s", line) and "Mounted on" in line:
            in_table = True
            continue
        if not in_table:
            continue
        parts = (pending + " " + line).split() if pending else line.split()
        if len(parts) == 1:  # a long device name wraps onto its own line
            pending = parts[0]
            continue
        pending = ""
        if len(parts) < 6 or not parts[-2].endswith("%"):
            in_table = False
            continue
        filesystem, size, used, avail, use, mounted = (
            " ".join(parts[: len(parts) - 5]),
            *parts[-5:-1],
            parts[-1],
        )
        records.append(
            {
                "filesystem": filesystem,
                "size": _size(size),
                "used": _size(used),
                "avail": _size(avail),
                "use%": parse_number(use),
                "mounted": mounted,
            }
        )
    return records


def _size(text: str) -> float | None:
    """df prints 1K blocks without -h; with -h, units."""
    value = parse_number(text)
    if value is None:
        return None
    return value * 1024 if text.isdigit() else value


_FREE = re.compile(r"^(Mem|Swap):\s+(.*)$", re.MULTILINE)


def _free(text: str) -> list[Record]:
    header_match = re.search(r"^\s+total\s+used\s+free.*$", text, re.MULTILINE)
    header = header_match.group(0).split() if header_match else []
    record: Record = {}
    for kind, rest in _FREE.findall(text):
        values = rest.split()
        names = header or ["total", "used", "free", "shared", "buff/cache", "available"]
        for name, value in zip(names, values, strict=False):
            record[f"{kind.lower()}.{name}"] = _size(value)
    return [record] if record else []


_UPTIME = re.compile(
    r"up\s+(?P<up>.*?),\s+(?:(?P<users>\d+)\s+users?,\s+)?"
    r"load averages?:\s+(?P<l1>[\d.]+),?\s+(?P<l5>[\d.]+),?\s+(?P<l15>[\d.]+)"
)


def _uptime(text: str) -> list[Record]:
    match = _UPTIME.search(text)
    if match is None:
        return []
    return [
        {
            "load1": float(match.group("l1")),
            "load5": float(match.group("l5")),
            "load15": float(match.group("l15")),
            "users": int(match.group("users")) if match.group("users") else None,
            "up": match.group("up").strip(),
        }
    ]


_OS_RELEASE = re.compile(r"^([A-Z][A-Z0-9_]*)=(.*)$", re.MULTILINE)


def _os_release(text: str) -> list[Record]:
    values = {k: v.strip().strip("\"'") for k, v in _OS_RELEASE.findall(text)}
    if "ID" not in values:
        return []
    return [{k.lower(): v for k, v in values.items()}]


_STATES: Final = (
    "active",
    "inactive",
    "failed",
    "activating",
    "deactivating",
    "reloading",
    "unknown",
)


def _systemctl(text: str) -> list[Record]:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    states = [line for line in lines if line in _STATES]
    if not states or len(states) != len(lines):
        return []
    return [{"unit": i, "state": s} for i, s in enumerate(states)]


_NPROC = re.compile(r"^\s*(\d+)\s*$", re.MULTILINE)


def _nproc(text: str) -> list[Record]:
    match = _NPROC.search(text)
    return [{"nproc": int(match.group(1))}] if match else []


PARSERS: Final[dict[str, Callable[[str], list[Record]]]] = {
    "df": _df,
    "free": _free,
    "uptime": _uptime,
    "os-release": _os_release,
    "systemctl": _systemctl,
    "nproc": _nproc,
}

# Field names a threshold rule can use: PARSER.FIELD, and the bare names listed here.
FIELDS: Final[dict[str, tuple[str, str]]] = {
    "load1": ("uptime", "load1"),
    "load5": ("uptime", "load5"),
    "load15": ("uptime", "load15"),
    "users": ("uptime", "users"),
    "nproc": ("nproc", "nproc"),
}


def parse_all(text: str, only: set[str] | None = None) -> dict[str, list[Record]]:
    """Every parser's records for ``text`` (parsers that find nothing are left out)."""
    found: dict[str, list[Record]] = {}
    for name, parser in PARSERS.items():
        if only is not None and name not in only:
            continue
        records = parser(text)
        if records:
            found[name] = records
    return found
