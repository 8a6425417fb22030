"""Helpers shared by the benchmark scripts (run as `python benchmarks/NAME.py`)."""

from __future__ import annotations

Row = tuple[str, str, str]


def print_table(rows: list[Row]) -> None:
    """Print (measure, result, target) rows as an aligned table on stdout."""
    width = max(len(r[0]) for r in rows)
    vwidth = max(28, min(70, max(len(r[1]) for r in rows)))
    print(f"{'measure'.ljust(width)}  {'result'.ljust(vwidth)}  target")
    for name, value, target in rows:
        print(f"{name.ljust(width)}  {value.ljust(vwidth)}  {target}")
