"""The ``help`` command: the documents of the reference, shipped inside the package."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

__all__ = ["help_cmd"]


def help_cmd(
    topic: Annotated[
        str | None,
        typer.Argument(help="A topic (or the start of one's name); none: list them."),
    ] = None,
) -> None:
    """Print a document of the reference: patterns, inventories, exit-codes, json, ...

    Without TOPIC, list the topics. The text is that of docs/TOPIC.md, shipped
    inside the package; `man remoteops` is the manual page.

    Example: remoteops help exit-codes
    """
    from remoteops.helptopics import read_topic, topics

    if topic is not None:
        sys.stdout.write(read_topic(topic))
        return
    known = topics()
    width = max(map(len, known))
    sys.stdout.write("Topics (remoteops help TOPIC):\n")
    for name, title in known.items():
        sys.stdout.write(f"  {name.ljust(width)}  {title}\n")
    sys.stdout.write("Commands: remoteops COMMAND -h. Manual page: man remoteops.\n")
