"""Resolve inventory hosts into frozen ``Target``s: everything needed to connect.

Precedence, highest first: command line (``-u``, ``--port``, ``--key``,
``--known-hosts``) > inventory variables (``ansible_*``, including ``-o`` options
in ``ansible_ssh_common_args``) > ssh_config > defaults. As Ansible does, the
name given to ssh_config is ``ansible_host`` if set, else the inventory name.
"""

from __future__ import annotations

import functools
import getpass
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from remoteops.errors import InventoryError, UsageError
from remoteops.inventory import Inventory, connection_vars
from remoteops.sshconfig import JumpHost, SSHConfig, SSHHostConfig, parse_proxy_jump

__all__ = ["ConnectOverrides", "Target", "resolve_targets"]

DEFAULT_CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class ConnectOverrides:
    """Connection settings given on the command line; they beat everything else."""

    user: str | None = None
    port: int | None = None
    key_files: tuple[str, ...] = ()
    known_hosts: str | None = None
    connect_timeout: float | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """A resolved host: where it is, who to log in as, how to check its key."""

    name: str
    address: str
    port: int
    user: str
    identity_files: tuple[str, ...] = ()
    identities_only: bool = False
    password: str | None = field(default=None, repr=False)
    proxy_jump: tuple[JumpHost, ...] = ()
    proxy_command: str | None = None
    known_hosts_files: tuple[str, ...] = ()
    host_key_alias: str | None = None
    strict_host_key_checking: str = "ask"
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    server_alive_interval: int = 0
    server_alive_count_max: int = 3
    become: bool = False
    become_user: str | None = None
    become_password: str | None = field(default=None, repr=False)
    vars: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)


def _first(*values: Any) -> Any:
    for value in values:
        if value is not None:
            return value
    return None


def _bool_option(value: str | None) -> bool | None:
    if value is None:
        return None
    return value.strip().lower() in ("yes", "true", "1", "on")


@functools.lru_cache(maxsize=256)
def _known_hosts_files(value: str) -> tuple[str, ...]:
    """UserKnownHostsFile's paths; thousands of hosts share one value."""
    return tuple(os.path.expanduser(p) for p in shlex.split(value))


def resolve_target(
    inventory: Inventory,
    name: str,
    ssh_config: SSHConfig,
    overrides: ConnectOverrides,
) -> Target:
    """Resolve one inventory host; raise InventoryError naming the host on bad values."""
    host_vars = inventory.host_vars(name)
    conn = connection_vars(host_vars, host=name)
    options = dict(conn.ssh_options)
    ssh_name = conn.address or name
    user = _first(overrides.user, conn.user, options.get("user"))
    port = _first(overrides.port, conn.port, _int_option(options.get("port"), name, "Port"))
    resolved: SSHHostConfig = ssh_config.resolve(ssh_name, user=user, port=port)
    sources = dict(resolved.sources)

    def source(key: str, cli: object, inv: object) -> None:
        if cli is not None:
            sources[key] = "command line"
        elif inv is not None:
            sources[key] = "inventory"

    source("user", overrides.user, conn.user)
    source("port", overrides.port, conn.port)
    address = options.get("hostname") or resolved.hostname
    if conn.address and "hostname" not in resolved.sources:
        sources["hostname"] = "inventory"

    keys = tuple(os.path.expanduser(k) for k in overrides.key_files) or tuple(
        os.path.expanduser(k) for k in conn.private_key_files
    )
    identity_files: tuple[str, ...]
    if keys:
        # As ssh with -i: the defaults (id_rsa, id_ed25519, ...) are tried only when no
        # identity file is configured anywhere.
        from_config = (
            resolved.identity_files
            if resolved.sources.get("identityfile", "default") != "default"
            else ()
        )
        identity_files = keys + tuple(f for f in from_config if f not in keys)
        source("identityfile", overrides.key_files or None, conn.private_key_files or None)
    else:
        identity_files = resolved.identity_files

    jump: tuple[JumpHost, ...] = resolved.proxy_jump
    proxy_command = resolved.proxy_command
    if conn.proxy_jump is not None:
        jump = parse_proxy_jump(conn.proxy_jump, where=f"host {name!r} ansible_ssh_common_args")
        proxy_command = None
        sources["proxyjump"] = "inventory"
    if conn.proxy_command is not None:
        proxy_command = None if conn.proxy_command.lower() == "none" else conn.proxy_command
        jump = ()
        sources["proxycommand"] = "inventory"

    known_hosts: tuple[str, ...]
    if overrides.known_hosts is not None:
        known_hosts = (os.path.expanduser(overrides.known_hosts),)
        sources["userknownhostsfile"] = "command line"
    elif "userknownhostsfile" in options:
        known_hosts = _known_hosts_files(options["userknownhostsfile"])
        sources["userknownhostsfile"] = "inventory"
    else:
        known_hosts = resolved.user_known_hosts_files
    known_hosts = known_hosts + tuple(
        p for p in resolved.global_known_hosts_files if p not in known_hosts
    )

    connect_timeout = _first(
        overrides.connect_timeout,
        _float_option(options.get("connecttimeout"), name, "ConnectTimeout"),
        resolved.connect_timeout,
        DEFAULT_CONNECT_TIMEOUT,
    )
    identities_only = _first(_bool_option(options.get("identitiesonly")), resolved.identities_only)
    strict = options.get("stricthostkeychecking", resolved.strict_host_key_checking)
    return Target(
        name=name,
        address=address,
        port=int(resolved.port),
        user=resolved.user or getpass.getuser(),
        identity_files=identity_files,
        identities_only=bool(identities_only),
        password=conn.password,
        proxy_jump=jump,
        proxy_command=proxy_command,
        known_hosts_files=known_hosts,
        host_key_alias=options.get("hostkeyalias", resolved.host_key_alias),
        strict_host_key_checking=strict,
        connect_timeout=float(connect_timeout),
        server_alive_interval=int(
            _first(
                _int_option(options.get("serveraliveinterval"), name, "ServerAliveInterval"),
                resolved.server_alive_interval,
            )
        ),
        server_alive_count_max=int(
            _first(
                _int_option(options.get("serveralivecountmax"), name, "ServerAliveCountMax"),
                resolved.server_alive_count_max,
            )
        ),
        become=conn.become,
        become_user=conn.become_user,
        become_password=conn.become_password,
        vars=host_vars,
        sources=sources,
    )


def _int_option(value: str | None, host: str, key: str) -> int | None:
    number = _float_option(value, host, key)
    if number is None:
        return None
    if number != int(number):
        raise InventoryError(
            f"host {host!r}: -o {key}={value!r} in ansible_ssh_common_args is not a whole number"
        )
    return int(number)


def _float_option(value: str | None, host: str, key: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise InventoryError(
            f"host {host!r}: -o {key}={value!r} in ansible_ssh_common_args is not a number"
        ) from None


def resolve_targets(
    inventory: Inventory,
    names: Sequence[str],
    *,
    ssh_config: SSHConfig | None = None,
    overrides: ConnectOverrides | None = None,
) -> list[Target]:
    """Resolve every named host; errors name the host and stop before any connection."""
    config = ssh_config if ssh_config is not None else SSHConfig.empty()
    over = overrides or ConnectOverrides()
    if over.port is not None and not 0 < over.port < 65536:
        raise UsageError(f"--port {over.port} is out of range 1-65535")
    return [resolve_target(inventory, name, config, over) for name in names]
