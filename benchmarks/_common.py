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


def ensure_bytecode(*checkouts: str) -> None:
    """Compile remoteops' sources in the checkouts benchmarked (this one, and any
    ``--other``), as ``pip install`` does for an installed package: with
    PYTHONDONTWRITEBYTECODE set (CI sets it) an editable checkout is otherwise
    compiled again in every process started, ~100 ms of CPU each that no user pays.
    parallel-ssh and the other references come from site-packages, already compiled."""
    import compileall
    from pathlib import Path

    here = Path(__file__).resolve().parent.parent
    for root in (str(here), *checkouts):
        compileall.compile_dir(str(Path(root) / "remoteops"), quiet=1)
