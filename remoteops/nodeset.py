"""ClusterShell-style node sets: ``web[01-20,25],db1`` <-> a list of host names.

``expand()`` turns a node set into names, ``fold()`` does the reverse.  Zero padding
is kept (``web[01-03]`` gives ``web01``), several ranges in one name form a cartesian
product (``r[1-2]n[1-3]`` gives six names) and ``a-b/step`` steps are accepted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from itertools import product

from remoteops.errors import InventoryError

__all__ = ["expand", "fold", "fold_hosts", "hosts_label", "natural_key"]

_DIGITS = re.compile(r"(\d+)")
_RANGE_ITEM = re.compile(r"^(\d+)(?:-(\d+)(?:/(\d+))?)?$")
_EXPAND_LIMIT = 1_000_000


def natural_key(text: str) -> tuple[tuple[int, int | str, str], ...]:
    """Sort key that orders ``web2`` before ``web10`` (numbers compare as numbers)."""
    key: list[tuple[int, int | str, str]] = []
    for index, part in enumerate(_DIGITS.split(text)):
        if index % 2:
            key.append((0, int(part), part))
        elif part:
            key.append((1, part, part))
    return tuple(key)


def _split_top_level(spec: str) -> list[str]:
    """Split on commas that are not inside brackets."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in spec:
        if char == "[":
            depth += 1
            if depth > 1:
                raise InventoryError(f"node set {spec!r}: nested '[' is not allowed")
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise InventoryError(f"node set {spec!r}: ']' without '['")
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth:
        raise InventoryError(f"node set {spec!r}: '[' without ']'")
    parts.append("".join(current))
    return parts


def _expand_ranges(body: str, spec: str) -> list[str]:
    """Expand the inside of one bracket, e.g. ``01-03,7``."""
    values: list[str] = []
    for item in body.split(","):
        item = item.strip()
        match = _RANGE_ITEM.match(item)
        if not match:
            raise InventoryError(
                f"node set {spec!r}: bad range {item!r}; "
                "write N, N-M or N-M/STEP, e.g. web[01-05,9]"
            )
        start_text, end_text, step_text = match.groups()
        if end_text is None:
            values.append(start_text)
            continue
        start, end = int(start_text), int(end_text)
        step = int(step_text) if step_text else 1
        if start > end:
            raise InventoryError(f"node set {spec!r}: range {item!r} ends before it starts")
        if step < 1:
            raise InventoryError(f"node set {spec!r}: step in {item!r} must be at least 1")
        if (end - start) // step > _EXPAND_LIMIT:
            raise InventoryError(f"node set {spec!r}: range {item!r} is too large")
        width = len(start_text) if start_text.startswith("0") and len(start_text) > 1 else 0
        values.extend(str(n).zfill(width) for n in range(start, end + 1, step))
    return values


def _expand_one(element: str, spec: str) -> list[str]:
    """Expand one comma-free element with any number of bracket groups."""
    pieces: list[list[str]] = []
    rest = element
    while rest:
        open_at = rest.find("[")
        if open_at < 0:
            pieces.append([rest])
            break
        close_at = rest.find("]", open_at)
        if open_at:
            pieces.append([rest[:open_at]])
        pieces.append(_expand_ranges(rest[open_at + 1 : close_at], spec))
        rest = rest[close_at + 1 :]
    total = 1
    for piece in pieces:
        total *= len(piece)
        if total > _EXPAND_LIMIT:
            raise InventoryError(f"node set {spec!r} expands to too many names")
    return ["".join(parts) for parts in product(*pieces)]


def expand(spec: str) -> list[str]:
    """Expand a node set such as ``web[01-20,25],db1`` into host names.

    Names keep the order written and duplicates are dropped.  Raises
    ``InventoryError`` for a malformed spec (unbalanced brackets, bad or reversed
    ranges, empty elements).
    """
    if not spec or not spec.strip():
        raise InventoryError("empty node set; give names such as web[01-03],db1")
    names: list[str] = []
    seen: set[str] = set()
    for element in _split_top_level(spec.strip()):
        element = element.strip()
        if not element:
            raise InventoryError(f"node set {spec!r}: empty element between commas")
        for name in _expand_one(element, spec):
            if name not in seen:
                seen.add(name)
                names.append(name)
    return names


# A folded item is a tuple of parts: literal strings and frozensets of digit strings.
_Part = str | frozenset[str]
_Item = tuple[_Part, ...]


def _width_of(digits: str) -> int:
    return len(digits) if digits.startswith("0") and len(digits) > 1 else 0


def _render_numbers(numbers: frozenset[str]) -> str:
    """Render digit strings as ``1-3,7`` grouped by zero padding."""
    padded: dict[int, set[int]] = {}
    plain: list[str] = []
    for digits in numbers:
        width = _width_of(digits)
        if width:
            padded.setdefault(width, set()).add(int(digits))
        else:
            plain.append(digits)
    classes: dict[int, set[int]] = {w: set(v) for w, v in padded.items()}
    for digits in plain:
        # "10" sits happily in a width-2 padded class ("09", "10").
        fits = [w for w in classes if w and w <= len(digits)]
        width = max(fits) if fits else 0
        classes.setdefault(width, set()).add(int(digits))
    chunks: list[tuple[int, int, str]] = []
    for width, values in classes.items():
        ordered = sorted(values)
        start = prev = ordered[0]
        for value in [*ordered[1:], None]:
            if value is not None and value == prev + 1:
                prev = value
                continue
            text = str(start).zfill(width)
            if prev != start:
                text += "-" + str(prev).zfill(width)
            chunks.append((start, width, text))
            if value is not None:
                start = prev = value
    chunks.sort()
    return ",".join(text for _, _, text in chunks)


def _render(item: _Item) -> str:
    out: list[str] = []
    for part in item:
        if isinstance(part, str):
            out.append(part)
        elif len(part) == 1:
            out.append(next(iter(part)))
        else:
            out.append("[" + _render_numbers(part) + "]")
    return "".join(out)


def _first_name(item: _Item) -> str:
    """The smallest name an item stands for; used to sort folded items."""
    return "".join(
        part if isinstance(part, str) else min(part, key=lambda d: (int(d), d)) for part in item
    )


def fold(names: Iterable[str]) -> str:
    """Fold host names into a compact node set, e.g. ``db[01-03],web[01-20,25]``.

    Names are grouped by their text around the numbers; several numeric positions
    fold into several brackets when they form a full grid.  ``expand(fold(x))``
    gives the same set of names as ``x``.  Names holding ``:`` (``10.0.0.1:2205``) are
    kept whole.  Raises ``InventoryError`` for names that contain ``,``, or ``[`` or
    ``]`` without a ``:``.
    """
    items: set[_Item] = set()
    for name in names:
        if not name or "," in name or (":" not in name and any(c in name for c in "[]")):
            raise InventoryError(f"cannot fold host name {name!r} into a node set")
        if ":" in name:
            # host:port names (a host list's same address on two ports) stay whole:
            # pasted back as a pattern, each is one term that names its host
            items.add((name,))
            continue
        parts = _DIGITS.split(name)
        items.add(tuple(frozenset([p]) if i % 2 else p for i, p in enumerate(parts) if p or i % 2))
    if not items:
        return ""
    max_len = max(len(item) for item in items)
    for position in range(max_len - 1, -1, -1):
        groups: dict[tuple[object, ...], set[str]] = {}
        untouched: set[_Item] = set()
        for item in items:
            if position >= len(item) or isinstance(item[position], str):
                untouched.add(item)
                continue
            key = (len(item), item[:position], item[position + 1 :])
            part = item[position]
            assert isinstance(part, frozenset)
            groups.setdefault(key, set()).update(part)
        merged: set[_Item] = set(untouched)
        for (_, head, tail), numbers in groups.items():
            assert isinstance(head, tuple)
            assert isinstance(tail, tuple)
            merged.add((*head, frozenset(numbers), *tail))
        items = merged
    ordered = sorted(items, key=lambda it: (natural_key(_first_name(it)), _render(it)))
    return ",".join(_render(item) for item in ordered)


def fold_hosts(names: Sequence[str]) -> str:
    """``web[01-10] (10)``: host names as a node set, with how many there are.

    Names a node set cannot hold (brackets, commas) are listed as they are.
    """
    try:
        text = fold(names)
    except InventoryError:
        text = ",".join(names)
    return f"{text} ({len(names)})"


def hosts_label(names: Sequence[str]) -> str:
    """One host's name as it is (``web01``); several folded, with their count (``fold_hosts``)."""
    return names[0] if len(names) == 1 else fold_hosts(names)
