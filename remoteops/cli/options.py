"""The options commands share (typer ``Annotated`` definitions) and targeting: the
shared options checked, then hosts, targets and the Executor from
:mod:`remoteops.fleet`.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from remoteops.cli.completion import complete_pattern
from remoteops.errors import UsageError
from remoteops.outputs import watch

if TYPE_CHECKING:
    from collections.abc import Sequence

    from remoteops.fleet import FleetOptions

__all__ = [
    "CONTEXT",
    "AnalyzeOpt",
    "AskPassOpt",
    "BecomePasswordFileOpt",
    "BecomeUserOpt",
    "ClusterHostsOpt",
    "ClusterOpt",
    "ClusterTimeoutOpt",
    "ConnectTimeoutOpt",
    "FailOnFindingsOpt",
    "ForksOpt",
    "InventoryOpt",
    "JobOpt",
    "JsonOpt",
    "KeyOpt",
    "KnownHostsOpt",
    "LimitOpt",
    "MetricsOpt",
    "NoHistoryOpt",
    "NoSshConfigOpt",
    "PassphraseFileOpt",
    "PatternArg",
    "PolicyOpt",
    "PortOpt",
    "ProcsOpt",
    "QuietOpt",
    "ReportOpt",
    "RerunFailedOpt",
    "RetriesOpt",
    "RetryFileOpt",
    "RulesOpt",
    "SshConfigOpt",
    "Targeting",
    "TimeoutOpt",
    "UserOpt",
    "become_password",
    "check_connection_options",
    "refuse_cluster_become",
    "resolve",
    "targeting",
]


CONTEXT = {"help_option_names": ["-h", "--help"]}


InventoryOpt = Annotated[
    list[str] | None,
    typer.Option(
        "-i",
        "--inventory",
        help=(
            "Inventory: Ansible YAML or INI file or directory (read as ansible-core reads "
            "them), a host list ([user@]host[:port] lines; one address on two ports is two "
            "hosts, ADDRESS:PORT), ansible-inventory --list JSON, or 'a,b,c'. Repeatable. "
            "Default $REMOTEOPS_INVENTORY, else ./inventories/hosts.yml."
        ),
    ),
]

LimitOpt = Annotated[
    str | None,
    typer.Option(
        "-l",
        "--limit",
        autocompletion=complete_pattern,
        help=(
            "Further limit hosts (Ansible pattern). Numbers with - or , in brackets are a "
            "node set of names (web[01-03,07]); [x:y] and [x] pick a group's hosts by "
            "position (web[0:2]). @FILE: the names in FILE, one per line, # comments; a "
            "FILE naming no host selects none."
        ),
    ),
]

ForksOpt = Annotated[
    int | None,
    typer.Option(
        "-f",
        "--forks",
        help=(
            "Most hosts worked on at once. Default: all hosts, at most 256 and a quarter of "
            "the open-file limit."
        ),
    ),
]

ProcsOpt = Annotated[
    str | None,
    typer.Option(
        "--procs",
        metavar="N|auto",
        envvar="REMOTEOPS_PROCS",
        help=(
            "Worker processes to spread the hosts over, each running --forks/N of them "
            "(CPU-bound connections use every core). Default auto: one process below "
            "1,000 hosts, then one per core."
        ),
    ),
]

PatternArg = Annotated[str, typer.Argument(help="Host pattern.", autocompletion=complete_pattern)]
UserOpt = Annotated[str | None, typer.Option("-u", "--user", help="Login user (beats inventory).")]

KeyOpt = Annotated[
    list[Path] | None, typer.Option("--key", help="Private key file (repeatable; beats inventory).")
]

PortOpt = Annotated[int | None, typer.Option("--port", help="SSH port (beats inventory).")]

SshConfigOpt = Annotated[
    Path | None,
    typer.Option("-F", "--ssh-config", help="ssh_config to honour (default ~/.ssh/config)."),
]

NoSshConfigOpt = Annotated[
    bool, typer.Option("--no-ssh-config", help="Ignore every ssh_config file.")
]

KnownHostsOpt = Annotated[
    Path | None,
    typer.Option("--known-hosts", help="known_hosts file (default ~/.ssh/known_hosts)."),
]

PolicyOpt = Annotated[
    str | None,
    typer.Option(
        "--host-key-policy",
        help=(
            "strict: refuse unknown keys; accept-new: record them. A changed key is "
            "always refused. Default: ssh_config's StrictHostKeyChecking "
            "(accept-new or no: accept-new), else strict."
        ),
    ),
]

ConnectTimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--connect-timeout",
        help=(
            "Per-host deadline to resolve, connect and log in, and for the server to "
            "open each session channel, seconds (10)."
        ),
    ),
]

TimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "-t",
        "--timeout",
        help="Per-host command deadline, seconds; then the command's processes get TERM, "
        "then KILL, and the result says whether the host confirmed they are gone.",
    ),
]

JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json", help="JSON Lines on stdout (fields: docs/json.md, or remoteops help json)."
    ),
]

QuietOpt = Annotated[
    bool,
    typer.Option(
        "-q",
        "--quiet",
        help="For cron: print nothing at all when the exit code is 0. Otherwise print "
        "only what failed: the failed hosts' output, warnings, and the summary (one "
        "line per problem). --json lines are still written.",
    ),
]

RetriesOpt = Annotated[
    int, typer.Option("--retries", help="Retry connection failures (never auth or host keys).")
]

PassphraseFileOpt = Annotated[
    Path | None,
    typer.Option("--key-passphrase-file", help="File holding the passphrase of encrypted keys."),
]

RetryFileOpt = Annotated[
    Path | None,
    typer.Option("--retry-file", help="Write the hosts that did not succeed (use as -l @FILE)."),
]

NoHistoryOpt = Annotated[
    bool,
    typer.Option(
        "--no-history",
        envvar="REMOTEOPS_NO_HISTORY",
        help="Record nothing in the run history (docs/history.md).",
    ),
]

JobOpt = Annotated[
    str | None,
    typer.Option(
        "--job",
        metavar="NAME",
        help="The run's job name in the history and --metrics (default: the command and "
        "the pattern, 'run web').",
    ),
]

MetricsOpt = Annotated[
    Path | None,
    typer.Option(
        "--metrics",
        metavar="FILE",
        help="Write the outcome in Prometheus' text format, atomically, for "
        "node_exporter's textfile collector (docs/metrics.md).",
    ),
]

ReportOpt = Annotated[
    Path | None,
    typer.Option(
        "--report",
        metavar="FILE.html",
        help="Write a self-contained HTML report of the run (docs/reports.md).",
    ),
]

RerunFailedOpt = Annotated[
    bool,
    typer.Option(
        "--rerun-failed",
        help="Only the hosts that did not succeed in the last run of this command and "
        "pattern (from the history); none: say so, exit 0.",
    ),
]

AskPassOpt = Annotated[
    bool, typer.Option("--ask-pass", "-k", help="Prompt once for an SSH password (terminal only).")
]

BecomeUserOpt = Annotated[
    str | None, typer.Option("--become-user", help="sudo to this user (default root).")
]

BecomePasswordFileOpt = Annotated[
    Path | None,
    typer.Option("--become-password-file", help="File holding the sudo password (sent on stdin)."),
]

AnalyzeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--analyze",
        "-a",
        help="Analyse results locally as hosts finish, in a process pool: NAME[:ARGS] "
        "(group, grep, count, extract, threshold, drift, logscan, module:function). Repeatable. "
        "With run --cluster, on the cluster's workers.",
    ),
]

RulesOpt = Annotated[
    Path | None,
    typer.Option("--rules", help="YAML file of analysis rules ('- threshold: df.use% > 90')."),
]

# A Dask distributed cluster (remoteops.cluster; docs/cluster.md).
ClusterOpt = Annotated[
    str | None,
    typer.Option(
        "--cluster",
        metavar="ADDRESS",
        envvar="REMOTEOPS_CLUSTER",
        help="Run the analyzers on this Dask scheduler's workers (tcp://HOST:8786, "
        "tls://...) instead of local processes; needs pip install 'remoteops[dask]'. "
        "Each task carries its document's bytes; no secret travels (docs/cluster.md).",
    ),
]

# ``--cluster`` on the commands that talk to hosts (remoteops.clusterrun).
ClusterHostsOpt = Annotated[
    str | None,
    typer.Option(
        "--cluster",
        metavar="ADDRESS",
        envvar="REMOTEOPS_CLUSTER",
        help="Shard the hosts over this Dask scheduler's workers (tcp://HOST:8786, "
        "tls://...), each running its share; results come back as hosts finish. Needs pip "
        "install 'remoteops[dask]'. No key, passphrase or password is sent: the workers "
        "use key files at the same paths (docs/cluster.md).",
    ),
]

ClusterTimeoutOpt = Annotated[
    float,
    typer.Option(
        "--cluster-timeout",
        metavar="SECONDS",
        help="Give up on a --cluster scheduler that does not answer (or has no worker) "
        "within this many seconds, exit 2.",
    ),
]

FailOnFindingsOpt = Annotated[
    bool,
    typer.Option(
        "--fail-on-findings", help="Exit 5 when an analyzer reports a finding (unless 3 or 4)."
    ),
]


@dataclass(slots=True)
class Targeting:
    inventory: list[str] | None
    limit: str | None
    forks: int | None
    user: str | None
    key: list[Path] | None
    port: int | None
    ssh_config: Path | None
    no_ssh_config: bool
    known_hosts: Path | None
    host_key_policy: str | None
    connect_timeout: float | None
    retries: int
    key_passphrase_file: Path | None
    ask_pass: bool
    retry_file: Path | None = None
    procs: str | None = "1"
    cluster: str | None = None
    cluster_timeout: float = 10.0

    def fleet_options(self, **more: Any) -> FleetOptions:
        """The library's options for these (``more``: the command's timeouts)."""
        from remoteops.fleet import FleetOptions

        return FleetOptions(
            inventory=tuple(self.inventory or ()),
            limit=self.limit,
            forks=self.forks,
            user=self.user,
            port=self.port,
            key_files=tuple(self.key or ()),
            ssh_config=self.ssh_config,
            use_ssh_config=not self.no_ssh_config,
            known_hosts=self.known_hosts,
            host_key_policy=self.host_key_policy,
            connect_timeout=self.connect_timeout,
            retries=self.retries,
            key_passphrase_file=self.key_passphrase_file,
            **more,
        )


def targeting(params: dict[str, Any]) -> Targeting:
    """The shared targeting options out of a command's parameters (give it ``locals()``)."""
    fields = dataclasses.fields(Targeting)
    return Targeting(**{f.name: params[f.name] for f in fields if f.name in params})


def refuse_cluster_become(cluster: str | None, become_password_file: Path | None) -> None:
    """``--cluster`` with ``--become-password-file``: one usage line (a sudo password
    would have to be sent to the workers, and secrets never are)."""
    if cluster is not None and become_password_file is not None:
        raise UsageError(
            "--cluster: a sudo password (--become-password-file) would have to be sent to "
            "the workers, and secrets never are; use passwordless sudo there, or run without "
            "--cluster"
        )


def become_password(path: Path | None) -> str | None:
    """The sudo password from ``--become-password-file``, checked before any host is contacted."""
    from remoteops.fleet import read_secret_file

    return read_secret_file(path, "--become-password-file") if path else None


def check_connection_options(
    *,
    inventory: Sequence[str] | None,
    key: Sequence[Path] | None,
    port: int | None,
    ssh_config: Path | None,
    known_hosts: Path | None,
    connect_timeout: float | None = None,
) -> None:
    """The options every host-facing command shares, checked before any host is contacted."""
    import stat

    from remoteops.argcheck import check_input_file, check_stat, shown

    for source in inventory or ():
        if "," not in source:  # 'a,b,c' is a host list; anything else names a file
            check_stat(Path(source), "-i/--inventory")
    for path in key or ():
        check_input_file(path, "--key", empty_ok=False)
    if ssh_config is not None:
        check_input_file(ssh_config, "-F/--ssh-config")
    if known_hosts is not None:
        found = check_stat(known_hosts, "--known-hosts")  # missing: no key known yet, as ssh
        if found is not None and stat.S_ISDIR(found.st_mode):
            raise UsageError(f"--known-hosts {shown(known_hosts)}: is a directory; give a file")
    if port is not None and not 1 <= port <= 65535:
        raise UsageError(f"--port {port}: give a TCP port from 1 to 65535")
    if connect_timeout is not None and connect_timeout <= 0:
        raise UsageError("--connect-timeout must be more than 0 seconds")


def _prompt_secret(prompt: str, what: str) -> str:
    if not sys.stdin.isatty():
        raise UsageError(f"{what} needs a terminal to prompt on; none is attached")
    import getpass

    return getpass.getpass(prompt)


def _passphrase_prompt(path: str) -> str | None:
    """Ask for a key's passphrase on the terminal (once per run)."""
    import getpass

    try:
        return getpass.getpass(f"Passphrase for {path}: ")
    except (EOFError, KeyboardInterrupt):
        return None


def resolve(
    pattern: str,
    opts: Targeting,
    *,
    command_timeout: float | None = None,
    keepalive_interval: float | None = None,
    keepalive_count: int | None = None,
    inventory: Any = None,
    names: Sequence[str] | None = None,
    only: Sequence[str] | None = None,
) -> tuple[list[Any], Any]:
    """Check the targeting options, then :func:`remoteops.fleet.resolve_fleet`.

    ``inventory`` (already loaded) and ``names`` (hosts already selected, in
    inventory order) spare a caller that has both doing it twice; ``only``
    keeps just those hosts (``--rerun-failed``).
    """
    from remoteops.fleet import resolve_fleet

    if opts.host_key_policy not in (None, "strict", "accept-new"):
        raise UsageError(f"--host-key-policy {opts.host_key_policy!r}: use strict or accept-new")
    if opts.forks is not None and opts.forks < 1:
        raise UsageError("--forks must be 1 or more")
    if opts.retries < 0:
        raise UsageError("--retries must be 0 or more")
    from remoteops.shards import parse_procs, shard

    procs = parse_procs(opts.procs)
    from remoteops.cluster import check_address, check_timeout

    check_timeout(opts.cluster_timeout)  # with or without --cluster (it may come from a config)
    if opts.cluster is not None:
        from remoteops.clusterrun import refuse_secrets

        check_address(opts.cluster)
        refuse_secrets(
            [], ask_pass=opts.ask_pass, passphrase_file=opts.key_passphrase_file is not None
        )
    check_connection_options(
        inventory=opts.inventory,
        key=opts.key,
        port=opts.port,
        ssh_config=opts.ssh_config,
        known_hosts=opts.known_hosts,
        connect_timeout=opts.connect_timeout,
    )
    if opts.retry_file is not None:
        from remoteops.argcheck import check_output_file

        check_output_file(opts.retry_file, "--retry-file")
    fleet = resolve_fleet(
        pattern,
        opts.fleet_options(
            command_timeout=command_timeout,
            keepalive_interval=keepalive_interval,
            keepalive_count=keepalive_count,
        ),
        inventory=inventory,
        names=names,
        only=only,
        ask_password=(
            functools.partial(_prompt_secret, "SSH password: ", "--ask-pass")
            if opts.ask_pass
            else None
        ),
        passphrase_prompt=_passphrase_prompt if sys.stdin.isatty() else None,
    )
    targets = fleet.targets
    executor: Any
    if opts.cluster is not None:
        from remoteops.clusterrun import cluster_executor, refuse_secrets

        refuse_secrets(targets, ask_pass=False, passphrase_file=False)
        executor = cluster_executor(fleet.executor, opts.cluster, opts.cluster_timeout)
    else:
        executor = shard(fleet.executor, procs)
    # A closed output pipe (`| head`): start no more hosts; those started finish.
    watch().on_close(lambda _name: executor.drain(watch().reason or "output closed"))
    return targets, executor
