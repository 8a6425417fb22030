"""The ``analyze`` command, registered on the main Typer app by ``cli.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from remoteops.errors import UsageError

__all__ = ["register"]


def analyze_cmd(
    analyzer: Annotated[str, typer.Argument(help="ANALYZER[:ARGS]")],
    sources: Annotated[list[Path], typer.Argument(help="JSON Lines runs, --out-dir or get dirs.")],
) -> None:
    """Analyse saved results locally in a process pool (group, grep, drift, logscan, ...).

    Example: remoteops analyze group run.jsonl
    """
    raise UsageError("`remoteops analyze` is not built yet (issue #6); nothing was contacted")


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze_cmd)
