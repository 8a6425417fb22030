"""The ``config`` commands: the settings the config files and profiles give (docs/config.md)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from remoteops.cli.options import CONTEXT

__all__ = ["config_app", "config_show_cmd"]


config_app = typer.Typer(
    help=(
        "Show the settings the config files and profiles give the commands.\n\n"
        "Example: remoteops config show run -f 5"
    ),
    no_args_is_help=True,
    context_settings=CONTEXT,
    rich_markup_mode=None,
)


@config_app.command(
    "show",
    # `config show run -f 5`: what follows COMMAND is that command's, not show's.
    context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
)
def config_show_cmd(
    ctx: typer.Context,
    words: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[COMMAND [ARGS]...]",
            help="A command (and the arguments it would get): list every option of it.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="One JSON object: the profile, the files, the settings."),
    ] = False,
) -> None:
    """Print every effective setting and where it came from.

    Sources: command line, environment NAME, profile NAME in FILE:LINE,
    FILE:LINE, default. Without COMMAND: the global options, every setting
    a config file or the environment gives some command, and the [history]
    keys; with COMMAND (and after it the arguments that command would get),
    every option of that command. Options of config show go before COMMAND.

    Example: remoteops config show run all -t 60
    """
    from remoteops import config

    settings = config.effective_settings(ctx, words or [])
    found = config.config_from_context(ctx)
    if as_json:
        sys.stdout.write(json.dumps(config.settings_json(found, settings)) + "\n")
    else:
        sys.stdout.write(config.render_settings(found, settings))
