"""Shell completion: the ``completion`` command and what host arguments complete to.

Typer's own mechanism does the work: the script ``remoteops completion SHELL``
prints calls ``remoteops`` back with ``_REMOTEOPS_COMPLETE`` set, and click
answers with the commands and options that fit. Host patterns (and ``-l``,
``inventory host``, ``inventory graph``) complete to the names of the inventory
in effect: the ``-i`` given earlier on the line, else ``$REMOTEOPS_INVENTORY``,
else ./inventories/hosts.yml, read through :mod:`remoteops.namecache`.

A completion never prints an error or a traceback into the shell and never
waits long: whatever goes wrong (a broken inventory, a FIFO, a slow disk), it
answers nothing.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from remoteops.namecache import InventoryNames

__all__ = [
    "COMPLETE_VAR",
    "Shell",
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
    the line, else $REMOTEOPS_INVENTORY, else ./inventories/hosts.yml (the
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


def prepare(command: Any) -> None:
    """Before click answers a completion request: parameter values stay as typed.

    Typer coerces every parameter's value through a pydantic adapter it builds on
    first use, ~70 ms of importing and building that a shell waits for on each
    Tab; completing needs only the ``-i`` strings. This leans on typer's internals
    (``_runtime_param``): where they differ, nothing is changed and completion is
    only slower.
    """
    try:
        from typer._coercion import RuntimeParam
        from typer.core import _TyperParameter
    except ImportError:
        return

    class AsTyped(RuntimeParam):  # the dataclass fields and __init__ of RuntimeParam
        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            return value

    help_names = command.context_settings.get("help_option_names", ["--help"])
    pending = [command]
    while pending:
        current = pending.pop()
        pending.extend(getattr(current, "commands", {}).values())
        try:
            # -h/--help is made on first use and kept: make it now, to prepare it too.
            context = typer.Context(current, help_option_names=help_names)
            for param in current.get_params(context):
                descriptor = getattr(param, "type_descriptor", None)
                if isinstance(param, _TyperParameter) and descriptor is not None:
                    param._runtime_param = AsTyped(
                        parameter_info=descriptor.parameter_info,
                        annotation=descriptor.annotation,
                    )
        except Exception:  # another typer: slower, still right
            return
