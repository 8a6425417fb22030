"""Counts in messages, worded as a person writes them: ``1 host``, ``3 hosts``, ``batch 3``.

Every message that puts a number before a noun goes through :func:`plural`, so
none reads ``1 hosts`` or hedges with ``host(s)``.
"""

from __future__ import annotations

__all__ = ["plural", "span"]


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``count`` and ``noun`` in agreement: ``1 host``, ``0 hosts``, ``2 hosts``.

    ``many`` is the plural of a noun that does not just take an ``s``
    (``plural(n, "match", "matches")``, ``plural(n, "process", "processes")``).
    """
    return f"{count} {noun if count == 1 else many or noun + 's'}"


def span(first: int, last: int, noun: str, many: str | None = None) -> str:
    """A numbered range: ``batch 3`` when it holds one, ``batches 3-5`` otherwise."""
    if first == last:
        return f"{noun} {first}"
    return f"{many or noun + 's'} {first}-{last}"
