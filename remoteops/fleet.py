"""From options to a ready Executor: what every host-facing command does before a run.

The command line and scripts share these steps: load the inventories in
effect, select hosts (and a playbook's hosts, play by play), choose the
ssh_config, resolve targets, read secret files, build the Credentials and the
:class:`~remoteops.execution.Executor`. Prompting on a terminal stays with the
caller (the CLI passes callables); nothing here prints.

Example::

    from remoteops.fleet import FleetOptions, resolve_fleet

    fleet = resolve_fleet("web:&eu", FleetOptions(inventory=("inventories/hosts.yml",)))
    with fleet.executor as executor:
        for result in executor.ping():
            print(result.host, result.status)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from remoteops.errors import InventoryError, UsageError
from remoteops.inventory_sources import inventory_sources

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Sequence

    from remoteops.execution import Executor
    from remoteops.inventory import Host, Inventory
    from remoteops.playbook import Playbook
    from remoteops.session import Credentials
    from remoteops.sshconfig import SSHConfig
    from remoteops.target import ConnectOverrides, Target

__all__ = [
    "Fleet",
    "FleetOptions",
    "build_credentials",
    "build_executor",
    "choose_ssh_config",
    "inventory_sources",
    "keep_only",
    "load_fleet_inventory",
    "read_secret_file",
    "resolve_fleet",
    "select_or_explain",
    "select_play_hosts",
]

# The logger the play command's warnings were written under before this module
# existed: log files keep their names.
_play_logger = logging.getLogger("remoteops.cli_play")


@dataclass(frozen=True, slots=True)
class FleetOptions:
    """The targeting and connection options of a run (the CLI's shared options).

    ``inventory`` empty: ``$REMOTEOPS_INVENTORY``, else ./inventories/hosts.yml.
    ``ssh_config`` None: ~/.ssh/config (and the system file); ``use_ssh_config``
    False ignores every ssh_config file. None elsewhere: the inventory's,
    ssh_config's or the built-in default.
    """

    inventory: Sequence[str] = ()
    limit: str | None = None
    forks: int | None = None
    user: str | None = None
    port: int | None = None
    key_files: Sequence[Path] = ()
    ssh_config: Path | None = None
    use_ssh_config: bool = True
    known_hosts: Path | None = None
    host_key_policy: str | None = None
    connect_timeout: float | None = None
    retries: int = 0
    key_passphrase_file: Path | None = None
    command_timeout: float | None = None
    keepalive_interval: float | None = None
    keepalive_count: int | None = None

    def overrides(self) -> ConnectOverrides:
        """What these options make beat the inventory and ssh_config."""
        from remoteops.target import ConnectOverrides

        return ConnectOverrides(
            user=self.user,
            port=self.port,
            key_files=tuple(str(k) for k in self.key_files),
            known_hosts=str(self.known_hosts) if self.known_hosts else None,
            connect_timeout=self.connect_timeout,
        )


@dataclass(frozen=True, slots=True)
class Fleet:
    """The resolved targets (inventory order) and the Executor that will work on them."""

    targets: list[Target]
    executor: Executor


def load_fleet_inventory(given: Sequence[str] | None) -> Inventory:
    """Load the inventories in effect (:func:`inventory_sources`)."""
    from remoteops.inventory import load_inventory

    return load_inventory(inventory_sources(given))


def choose_ssh_config(path: Path | None, *, use_ssh_config: bool = True) -> SSHConfig:
    """The ssh_config to honour: none at all, the file ``path`` alone, or ~/.ssh/config
    with the system one (as ssh chooses with and without ``-F``)."""
    from remoteops.sshconfig import SSHConfig

    if not use_ssh_config:
        return SSHConfig.empty()
    if path is not None:
        return SSHConfig.from_file(path, system_path=None, allow_exec=True)
    return SSHConfig.from_default(allow_exec=True)


def read_secret_file(path: Path, what: str) -> str:
    """A passphrase or password from ``path``, its final newlines dropped; a UsageError
    naming ``what`` (the option that gave the file) when it cannot be read or is empty."""
    from remoteops.argcheck import check_input_file, shown

    check_input_file(path, what, empty_ok=False)
    try:
        secret = path.read_text(encoding="utf-8").rstrip("\n")
    except OSError as exc:
        raise UsageError(f"{what} {shown(path)}: {exc.strerror}; check the path") from None
    except UnicodeDecodeError:
        raise UsageError(f"{what} {shown(path)}: not UTF-8 text") from None
    if not secret:
        raise UsageError(f"{what} {shown(path)}: the file is empty; put the secret in it")
    return secret


def build_credentials(
    *,
    passphrase_file: Path | None = None,
    ask_password: Callable[[], str] | None = None,
    passphrase_prompt: Callable[[str], str | None] | None = None,
) -> Credentials:
    """The run's Credentials: the key passphrase read from ``passphrase_file`` (first, so a
    bad file is reported before anyone is asked anything), then the SSH password from
    ``ask_password``; ``passphrase_prompt(path)`` is asked for an encrypted key's
    passphrase when no file gave one."""
    from remoteops.session import Credentials

    passphrase = (
        read_secret_file(passphrase_file, "--key-passphrase-file") if passphrase_file else None
    )
    password = ask_password() if ask_password is not None else None
    return Credentials(
        passphrase=passphrase, password=password, passphrase_prompt=passphrase_prompt
    )


def build_executor(
    targets: Sequence[Target], options: FleetOptions, credentials: Credentials
) -> Executor:
    """An Executor for ``targets`` with the session settings, timeouts and limits of
    ``options``."""
    from remoteops.execution import Executor, Limits, Timeouts
    from remoteops.session import SessionSettings

    return Executor(
        targets,
        credentials=credentials,
        settings=SessionSettings(
            host_key_policy=options.host_key_policy,
            connect_timeout=options.connect_timeout,
            keepalive_interval=options.keepalive_interval,
            keepalive_count_max=options.keepalive_count,
        ),
        timeouts=Timeouts(connect=options.connect_timeout, command=options.command_timeout),
        limits=Limits(max_workers=options.forks, retries=options.retries),
    )


def select_or_explain(
    inventory: Inventory,
    pattern: str,
    limit: str | None,
    *,
    where: str | None = None,
    see: str = "remoteops inventory list",
) -> list[Host]:
    """The hosts ``pattern`` and ``--limit`` select; a UsageError when there are none, in one
    line naming the term that matched nothing and the names it may have meant
    (``no host matches 'wbe'; did you mean web?``). Terms that matched nothing while
    others matched are warned about, one line each."""
    from remoteops.patterns import Unmatched, no_match_message, warn_unmatched

    unmatched: list[Unmatched] = []
    hosts = inventory.select(pattern, limit=limit, unmatched=unmatched)
    if hosts:
        warn_unmatched(unmatched)
        return hosts
    message, suggests = no_match_message(pattern, limit, unmatched)
    if suggests:
        raise UsageError(message + (f" (inventory {where})" if where else ""))
    raise UsageError(message + (f" in {where}" if where else "") + f"; see `{see}`")


def select_play_hosts(
    playbook: Playbook, inventory: Inventory, limit: str | None
) -> dict[int, list[str]]:
    """Each play's hosts (inventory order), ``--limit`` applied; bad patterns name their line.

    A play that selects no host is skipped, with one line saying why (the term
    that matched nothing, and the names it may have meant); when no play
    selects any, that line is the error.
    """
    from remoteops.logconfig import NOTICE
    from remoteops.patterns import Unmatched, no_match_message, warn_unmatched

    selected: dict[int, list[str]] = {}
    empty: list[tuple[str, str]] = []  # (FILE:LINE: play NAME, why it selects no host)
    suggests = False
    for play in playbook.plays:
        unmatched: list[Unmatched] = []
        line = play.lines.get("hosts", play.line)
        try:
            hosts = inventory.select(play.hosts, limit=limit, unmatched=unmatched)
        except InventoryError as exc:
            raise playbook.error(line, f"hosts: {exc}") from None
        selected[play.index] = [h.name for h in hosts]
        if hosts:
            warn_unmatched(unmatched)
            continue
        message, suggestion = no_match_message(play.hosts, limit, unmatched)
        suggests = suggests or suggestion
        empty.append((f"{playbook.shown}:{line}: play {play.name!r}", message))
    if not any(selected.values()):
        see = "" if suggests else "; see `remoteops inventory list`"
        raise UsageError("; ".join(f"{which}: {why}" for which, why in empty) + see)
    for which, why in empty:
        _play_logger.warning("%s is skipped: %s", which, why, extra=NOTICE)
    return selected


def keep_only(names: Sequence[str], only: Collection[str], pattern: str) -> list[str]:
    """The selected ``names`` (in their order) that are in ``only``; none is an error
    naming the hosts asked for."""
    wanted = set(only)
    kept = [name for name in names if name in wanted]
    if not kept:
        from remoteops.nodeset import fold

        raise UsageError(
            f"none of the hosts to rerun ({fold(sorted(wanted))}) is among the hosts "
            f"{pattern} selects now; check the inventory and --limit"
        )
    return kept


def resolve_fleet(
    pattern: str,
    options: FleetOptions,
    *,
    inventory: Inventory | None = None,
    names: Sequence[str] | None = None,
    only: Collection[str] | None = None,
    ask_password: Callable[[], str] | None = None,
    passphrase_prompt: Callable[[str], str | None] | None = None,
) -> Fleet:
    """Load the inventories and ssh_config, select hosts, resolve targets, read the
    passphrase file, ask for the password (``ask_password``), build the Executor.

    ``inventory`` (already loaded) and ``names`` (hosts already selected, in
    inventory order) spare a caller that has both doing it twice. ``only`` keeps
    just those of the selected hosts (``--rerun-failed``). Errors (a pattern
    matching nothing, a bad host entry) are raised before any host is contacted.
    """
    from remoteops.target import resolve_targets

    sources = inventory_sources(options.inventory)
    if inventory is None:
        from remoteops.inventory import load_inventory

        inventory = load_inventory(sources)
    if names is None:
        where = ", ".join(map(str, sources))
        names = [h.name for h in select_or_explain(inventory, pattern, options.limit, where=where)]
    if only is not None:
        names = keep_only(names, only, pattern)
    ssh_config = choose_ssh_config(options.ssh_config, use_ssh_config=options.use_ssh_config)
    targets = resolve_targets(
        inventory, list(names), ssh_config=ssh_config, overrides=options.overrides()
    )
    credentials = build_credentials(
        passphrase_file=options.key_passphrase_file,
        ask_password=ask_password,
        passphrase_prompt=passphrase_prompt,
    )
    return Fleet(targets=targets, executor=build_executor(targets, options, credentials))
