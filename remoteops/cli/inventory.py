"""The ``inventory`` commands: what inventories resolve to."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from remoteops.cli.completion import complete_group, complete_host
from remoteops.cli.options import (
    CONTEXT,
    InventoryOpt,
    KeyOpt,
    KnownHostsOpt,
    LimitOpt,
    NoSshConfigOpt,
    PatternArg,
    PortOpt,
    SshConfigOpt,
    UserOpt,
    check_connection_options,
)

__all__ = ["inventory_app", "inventory_graph_cmd", "inventory_host_cmd", "inventory_list_cmd"]


inventory_app = typer.Typer(
    help=(
        "Show what inventories resolve to: hosts, groups, variables, connections.\n\n"
        "Example: remoteops inventory list 'web:&eu' -i inventories/hosts.yml"
    ),
    no_args_is_help=True,
    context_settings=CONTEXT,
    rich_markup_mode=None,
)


def _load(inventory: list[str] | None) -> Any:
    from remoteops.fleet import load_fleet_inventory

    check_connection_options(
        inventory=inventory, key=None, port=None, ssh_config=None, known_hosts=None
    )
    return load_fleet_inventory(inventory)


@inventory_app.command("list")
def inventory_list_cmd(
    pattern: PatternArg = "all",
    inventory: InventoryOpt = None,
    limit: LimitOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="The JSON `ansible-inventory --list` prints.")
    ] = False,
) -> None:
    """List the hosts PATTERN matches (or the whole inventory as JSON).

    Example: remoteops inventory list 'web:!db' --json
    """
    from remoteops.fleet import select_or_explain
    from remoteops.nodeset import fold

    inv = _load(inventory)
    hosts = select_or_explain(inv, pattern, limit, see="remoteops inventory graph")
    if as_json:
        data = inv.to_ansible_list()
        if pattern != "all" or limit:
            keep = {h.name for h in hosts}
            data["_meta"]["hostvars"] = {
                k: v for k, v in data["_meta"]["hostvars"].items() if k in keep
            }
            for name, group in list(data.items()):
                if name != "_meta" and isinstance(group, dict) and "hosts" in group:
                    group["hosts"] = [h for h in group["hosts"] if h in keep]
        sys.stdout.write(json.dumps(data, indent=4, sort_keys=True) + "\n")
        return
    sys.stdout.write(f"  hosts ({len(hosts)}): {fold(h.name for h in hosts)}\n")
    for host in hosts:
        sys.stdout.write(f"    {host.name}\n")


@inventory_app.command("graph")
def inventory_graph_cmd(
    group: Annotated[
        str,
        typer.Argument(help="Group at the top of the tree.", autocompletion=complete_group),
    ] = "all",
    inventory: InventoryOpt = None,
    show_vars: Annotated[bool, typer.Option("--vars", help="Show variables too.")] = False,
) -> None:
    """Print the group tree, as `ansible-inventory --graph` does.

    Example: remoteops inventory graph web
    """
    inv = _load(inventory)
    sys.stdout.write(inv.graph(group, show_vars=show_vars).rstrip("\n") + "\n")


@inventory_app.command("host")
def inventory_host_cmd(
    name: Annotated[str, typer.Argument(help="Inventory host name.", autocompletion=complete_host)],
    inventory: InventoryOpt = None,
    user: UserOpt = None,
    key: KeyOpt = None,
    port: PortOpt = None,
    ssh_config: SshConfigOpt = None,
    no_ssh_config: NoSshConfigOpt = False,
    known_hosts: KnownHostsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """Show a host's merged variables and the connection remoteops would make, with sources.

    Example: remoteops inventory host web01
    """
    from remoteops.fleet import FleetOptions, choose_ssh_config
    from remoteops.inventory import to_json_value
    from remoteops.target import resolve_targets

    check_connection_options(
        inventory=inventory, key=key, port=port, ssh_config=ssh_config, known_hosts=known_hosts
    )
    inv = _load(inventory)
    inv.get_host(name)
    config = choose_ssh_config(ssh_config, use_ssh_config=not no_ssh_config)
    options = FleetOptions(
        user=user, port=port, key_files=tuple(key or ()), known_hosts=known_hosts
    )
    (target,) = resolve_targets(inv, [name], ssh_config=config, overrides=options.overrides())
    secret = {
        "ansible_password",
        "ansible_ssh_pass",
        "ansible_ssh_password",
        "ansible_become_password",
        "ansible_become_pass",
        "ansible_sudo_pass",
    }
    variables = {
        k: ("(hidden)" if k in secret else v) for k, v in to_json_value(inv.host_vars(name)).items()
    }
    connection = {
        "address": target.address,
        "port": target.port,
        "user": target.user,
        "identity_files": list(target.identity_files),
        "identities_only": target.identities_only,
        "proxy_jump": [str(h) for h in target.proxy_jump],
        "proxy_command": target.proxy_command,
        "known_hosts_files": list(target.known_hosts_files),
        "host_key_alias": target.host_key_alias,
        "connect_timeout": target.connect_timeout,
        "become": target.become,
        "become_user": target.become_user,
    }
    source_keys = {
        "address": "hostname",
        "port": "port",
        "user": "user",
        "identity_files": "identityfile",
        "proxy_jump": "proxyjump",
        "proxy_command": "proxycommand",
        "known_hosts_files": "userknownhostsfile",
        "connect_timeout": "connecttimeout",
    }
    sources = {k: target.sources.get(v, "default") for k, v in source_keys.items()}
    if as_json:
        data = {
            "host": name,
            "groups": inv.groups_of(name),
            "vars": variables,
            "connection": connection,
            "sources": sources,
        }
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    sys.stdout.write(f"{name}  (groups: {', '.join(inv.groups_of(name)) or '-'})\n")
    sys.stdout.write("connection:\n")
    for key_name, value in connection.items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        where = f"   [{sources[key_name]}]" if key_name in sources else ""
        sys.stdout.write(f"  {key_name:18} {shown}{where}\n")
    sys.stdout.write("variables:\n")
    for key_name, value in sorted(variables.items()):
        sys.stdout.write(f"  {key_name}: {json.dumps(value)}\n")
