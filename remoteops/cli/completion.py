"""Shell completion: the ``completion`` command and what host arguments complete to.

Typer's own mechanism does the work: the script ``remoteops completion SHELL``
prints calls ``remoteops`` back with ``_REMOTEOPS_COMPLETE`` set, and click
answers with the commands and options that fit. Host patterns (and ``-l``,
``inventory host``, ``inventory graph``) complete to the names of the inventory
in effect: the ``-i`` given earlier on the line, else ``$REMOTEOPS_INVENTORY``,
else the config files' ``inventory`` (their profile's, with ``--profile``), else
./inventories/hosts.yml, read through :mod:`remoteops.namecache`. Once the line
names a command, only that command is built (:func:`command_on_line`).

A completion never prints an error or a traceback into the shell and never
waits long: whatever goes wrong (a broken inventory, a FIFO, a slow disk), it
answers nothing.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from remoteops.namecache import InventoryNames

__all__ = [
    "COMPLETE_VAR",
    "Shell",
    "command_in",
    "command_on_line",
    "complete_group",
    "complete_host",
    "complete_pattern",
    "completion_cmd",
    "prepare",
]

#: The variable click's protocol uses: set, ``remoteops`` answers a completion request.
COMPLETE_VAR = "_REMOTEOPS_COMPLETE"
#: Longest a completion may take to read an inventory before it gives up, seconds.
_DEADLINE_S = 5


class Shell(enum.StrEnum):
    """The shells a completion script is printed for."""

    bash = "bash"
    zsh = "zsh"
    fish = "fish"


def completion_cmd(
    shell: Annotated[Shell, typer.Argument(help="The shell: bash, zsh or fish.")],
) -> None:
    """Print the script that makes SHELL complete remoteops' commands, options and hosts.

    Host patterns (and -l, inventory host, inventory graph) complete to the
    group and host names of the inventory in effect: the -i given earlier on
    the line, else $REMOTEOPS_INVENTORY, else the config files' inventory
    (remoteops help config), else ./inventories/hosts.yml (the
    names are cached in $XDG_CACHE_HOME/remoteops while the inventory files
    are unchanged). Load it from the shell's start-up file: in ~/.bashrc,
    eval "$(remoteops completion bash)"; in ~/.zshrc after compinit, eval
    "$(remoteops completion zsh)"; for fish, write it to
    ~/.config/fish/completions/remoteops.fish.

    Example: remoteops completion bash
    """
    from typer._completion_shared import get_completion_script  # what --show-completion prints

    script = get_completion_script(prog_name="remoteops", complete_var=COMPLETE_VAR, shell=shell)
    sys.stdout.write(script + "\n")


@contextlib.contextmanager
def _answering() -> Iterator[None]:
    """While a completion is worked out: no log line reaches the terminal (there is no
    handler yet; Python's last resort would print warnings), and an inventory that takes
    longer than the deadline (a slow disk, a FIFO) raises TimeoutError."""
    import signal

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError

    logging.disable(logging.CRITICAL)
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(_DEADLINE_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        logging.disable(logging.NOTSET)


def _names(ctx: typer.Context) -> InventoryNames | None:
    """The names of the inventory in effect on the line being completed, or None."""
    from remoteops.inventory_sources import inventory_sources
    from remoteops.namecache import inventory_names

    given: Sequence[str] | None = ctx.params.get("inventory") or None
    try:
        with _answering():
            return inventory_names(inventory_sources(given))
    except Exception:  # a completion answers nothing rather than fail in the shell
        return None


def _completer(
    which: Callable[[InventoryNames], Sequence[str]], *, terms: bool = False
) -> Callable[..., list[str]]:
    def complete(ctx: typer.Context, incomplete: str) -> list[str]:
        from remoteops.namecache import complete_pattern as complete_names

        names = _names(ctx)
        return [] if names is None else complete_names(incomplete, which(names), terms=terms)

    return complete


def _groups_and_hosts(names: InventoryNames) -> Sequence[str]:
    return (*names.groups, *names.hosts)


def _hosts(names: InventoryNames) -> Sequence[str]:
    return names.hosts


def _groups(names: InventoryNames) -> Sequence[str]:
    return names.groups


#: A host pattern or ``--limit``: group and host names, each term of the pattern.
complete_pattern: Callable[..., Any] = _completer(_groups_and_hosts, terms=True)
#: One inventory host.
complete_host: Callable[..., Any] = _completer(_hosts)
#: One group.
complete_group: Callable[..., Any] = _completer(_groups)


def prepare() -> None:
    """Before click answers a completion request: parameter values stay as typed.

    Typer coerces every parameter's value through a pydantic adapter it builds on
    first use, ~70 ms of importing and building that a shell waits for on each
    Tab; completing needs only the ``-i`` strings. The conversion hook of
    :mod:`remoteops.cliparams` (the only one) keeps them as typed.
    """
    from remoteops import cliparams

    cliparams.keep_as_typed()


def command_on_line(root: Any) -> str | None:
    """The command named on the line a shell asks to complete (``run`` in ``remoteops
    --lock f run -i x w``), once it is typed in full; None if there is none yet or the
    request cannot be read. ``root`` is the click group of the global options: the
    words of those options (and their values) come before the command.

    Only that command need then be built: ~20 ms less on each Tab than building
    every command's parameters from their functions' signatures.
    """
    try:
        from typer._click.shell_completion import get_completion_class

        instruction = os.environ.get(COMPLETE_VAR, "")
        comp_cls = get_completion_class(instruction.partition("_")[2])
        if comp_cls is None:
            return None
        words, _incomplete = comp_cls(root, {}, "remoteops", COMPLETE_VAR).get_completion_args()
    except Exception:  # another typer: every command is built, as always
        return None
    return command_in(words, root)


def command_in(words: Sequence[str], root: Any) -> str | None:
    """The command ``words`` (the arguments after ``remoteops``) name: the first word
    that is not a global option or an option's value (``run`` in ``--lock f run -i
    x``); None if there is none or the options of ``root`` cannot be read."""
    try:
        takes_value = {
            name
            for param in root.params
            if param.param_type_name == "option" and not (param.is_flag or param.count)
            for name in param.opts
        }
    except Exception:  # another click: every command is built, as always
        return None
    pending = iter(words)
    for word in pending:
        if word == "--":
            return next(pending, None)
        if not word.startswith("-") or word == "-":
            return str(word)
        if word in takes_value:
            next(pending, None)  # its value
    return None
