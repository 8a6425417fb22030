"""The ``play`` command, registered on the main Typer app by ``cli.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from remoteops.cli import _Inventory
from remoteops.errors import UsageError

__all__ = ["register"]


def play_cmd(
    playbook: Annotated[Path, typer.Argument(help="Playbook YAML file.")],
    check: Annotated[bool, typer.Option("--check", help="Show what would run.")] = False,
    inventory: _Inventory = None,
) -> None:
    """Run a playbook: ordered steps over the inventory, with rolling batches.

    Example: remoteops play playbooks/rolling-update.yml --check
    """
    raise UsageError("`remoteops play` is not built yet (issue #7); nothing was contacted")


def register(app: typer.Typer) -> None:
    app.command("play")(play_cmd)
