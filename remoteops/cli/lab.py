"""The ``lab`` commands: a local fleet of real OpenSSH servers."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from remoteops.cli.options import CONTEXT
from remoteops.cli.runtime import stderr, stdout
from remoteops.errors import UsageError
from remoteops.exitcodes import ExitCode
from remoteops.wording import plural

__all__ = ["lab_app", "lab_down_cmd", "lab_status_cmd", "lab_up_cmd"]


lab_app = typer.Typer(
    help=(
        "A local fleet of real OpenSSH servers to try remoteops on.\n\n"
        'Example: remoteops lab up && remoteops run all -i "$(remoteops lab status '
        '--inventory-path)" -- hostname'
    ),
    no_args_is_help=True,
    context_settings=CONTEXT,
    rich_markup_mode=None,
)

_LabDir = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        help="Lab directory; default $REMOTEOPS_LAB_DIR, else $XDG_STATE_HOME/remoteops/lab.",
    ),
]


def _lab_dir(value: Path | None) -> Path:
    from remoteops.lab import default_lab_dir

    return (value or default_lab_dir()).absolute()


@lab_app.command("up")
def lab_up_cmd(
    hosts: Annotated[int, typer.Option("--hosts", "-n", help="How many hosts.")] = 10,
    lab_dir: _LabDir = None,
    latency: Annotated[
        int,
        typer.Option("--latency", help="Round-trip delay in ms added by a TCP proxy per host."),
    ] = 0,
    port: Annotated[
        int,
        typer.Option("--port", envvar="REMOTEOPS_LAB_PORT", help="SSH port of every lab host."),
    ] = 2222,
    install: Annotated[
        bool, typer.Option("--install", help="Install openssh-server with apt-get if missing.")
    ] = False,
) -> None:
    """Start HOSTS real sshd servers, each with its own address, host key, hostname and files.

    Writes an Ansible YAML inventory, a known_hosts and a client key into the
    lab directory, so commands against the lab work with strict host key
    checking. As root each host gets its own mount and UTS namespace, and a
    sample app for playbooks/: /srv/app/VERSION (db01 drifts) and a log with
    a few ERROR lines in /srv/app/log/.

    Example: remoteops lab up --hosts 20 --latency 100
    """
    from remoteops.argcheck import check_output_dir, shown
    from remoteops.lab import lab_up

    if lab_dir is not None:
        if shown(lab_dir) != str(lab_dir):
            raise UsageError(
                f"--dir {shown(lab_dir)}: the lab writes its paths into sshd_config and YAML; "
                "give a directory name in UTF-8"
            )
        check_output_dir(lab_dir, "--dir", create=False)
    report = lab_up(_lab_dir(lab_dir), hosts=hosts, port=port, latency_ms=latency, install=install)
    lab = report.lab
    if report.was_running:
        stderr.print(f"A lab of {plural(len(lab.hosts), 'host')} is already running in {lab.dir}.")
    else:
        stderr.print(
            f"Lab of {plural(len(lab.hosts), 'host')} up in {report.elapsed_s:.1f}s in {lab.dir}"
            + (f" (latency {lab.latency_ms} ms)" if lab.latency_ms else "")
        )
    for what in report.not_isolated:
        stderr.print(f"not isolated without root: {what}")
    stderr.print(f"inventory:   {lab.inventory}")
    stderr.print(f"known_hosts: {lab.known_hosts}")
    stderr.print(f"try:         remoteops run all -i {lab.inventory} -- hostname")


@lab_app.command("status")
def lab_status_cmd(
    lab_dir: _LabDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
    inventory_path: Annotated[
        bool, typer.Option("--inventory-path", help="Print only the inventory's path.")
    ] = False,
) -> None:
    """Show the lab's files and which hosts answer.

    Example: remoteops lab status --json
    """
    from remoteops.lab import lab_status

    lab, statuses = lab_status(_lab_dir(lab_dir))
    if inventory_path:
        sys.stdout.write(f"{lab.inventory}\n")
        return
    answering = sum(1 for s in statuses if s.is_answering)
    if as_json:
        data: dict[str, Any] = {
            "dir": str(lab.dir),
            "inventory": str(lab.inventory),
            "known_hosts": str(lab.known_hosts),
            "client_key": str(lab.client_key),
            "ssh_config": str(lab.ssh_config),
            "user": lab.user,
            "become_password_file": str(lab.become_password_file) if lab.is_root_mode else None,
            "isolated": lab.is_root_mode,
            "latency_ms": lab.latency_ms,
            "running": lab.is_running(),
            "hosts": [
                {
                    "name": s.host.name,
                    "address": s.host.address,
                    "port": s.host.port,
                    "groups": list(s.host.groups),
                    "answers": s.is_answering,
                }
                for s in statuses
            ],
        }
        sys.stdout.write(json.dumps(data) + "\n")
        return
    from rich.table import Table

    table = Table("host", "address", "port", "groups", "answers", box=None)
    for s in statuses:
        table.add_row(
            s.host.name,
            s.host.address,
            str(s.host.port),
            ",".join(s.host.groups),
            "yes" if s.is_answering else "NO",
        )
    stdout.print(table)
    stdout.print(
        f"{answering}/{plural(len(statuses), 'host')} "
        f"{'answers' if answering == 1 else 'answer'}; lab directory {lab.dir}"
    )
    stdout.print(f"inventory {lab.inventory}")
    if answering < len(statuses):
        raise typer.Exit(ExitCode.UNREACHABLE)


@lab_app.command("down")
def lab_down_cmd(lab_dir: _LabDir = None) -> None:
    """Stop every process the lab started (by PID) and remove the files it created.

    Example: remoteops lab down
    """
    from remoteops.lab import lab_down

    lab = lab_down(_lab_dir(lab_dir))
    stderr.print(f"Lab in {lab.dir} is down ({plural(len(lab.hosts), 'host')} stopped).")
