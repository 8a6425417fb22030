"""Starting what a lab runs: each host's private directories, keys, configuration and
sample app, its sshd (in its own namespaces as root), and the latency proxy.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from remoteops.errors import LabError
from remoteops.lab.app import app_files
from remoteops.lab.keys import ed25519_keypair
from remoteops.lab.model import Lab, LabHost, write_lab_file
from remoteops.lab.namespaces import enter_host_namespaces, mount_order
from remoteops.lab.processes import spawn
from remoteops.lab.render import (
    known_hosts_name,
    render_client_ssh_config,
    render_etc_hosts,
    render_inventory,
    render_sshd_config,
)

__all__ = ["LAB_ENV", "check_ports_free", "lab_env", "start_hosts", "start_proxy"]

LAB_ENV = "REMOTEOPS_LAB_DIR"


def check_ports_free(layout: Sequence[LabHost], *, latency_ms: int) -> None:
    """Refuse to start when another server already listens where a lab host would."""
    ports = (0, 1) if latency_ms else (0,)
    for host in layout:
        for offset in ports:
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((host.address, host.port + offset))
                except OSError as exc:
                    raise LabError(
                        f"{host.address}:{host.port + offset} (lab host {host.name}) is taken "
                        f"({exc.strerror}): another lab or server listens there; stop it "
                        "(`remoteops lab down --dir DIR`) or pick another --port"
                    ) from None


def start_hosts(
    lab: Lab, layout: Sequence[LabHost], *, sshd: str, password: str, latency_ms: int
) -> list[LabHost]:
    """Write the client key and each host's directories, keys, sshd_config (and, isolated,
    its /etc files and sample app); start its sshd; then write known_hosts, the inventory
    and the ssh_config. Return the hosts with their PIDs, saving the lab as it goes."""
    import pwd

    client_private, client_public = ed25519_keypair()
    write_lab_file(lab.client_key, client_private, 0o600)
    write_lab_file(lab.dir / "client_key.pub", client_public + "\n", 0o644)
    if password:
        write_lab_file(lab.become_password_file, password + "\n", 0o600)

    entry = pwd.getpwnam(lab.user)
    known_lines: list[str] = []
    started: list[LabHost] = []
    (lab.dir / "hosts").mkdir(exist_ok=True)
    lab.save()
    for index, host in enumerate(layout):
        sshd_port = host.port + 1 if latency_ms else host.port
        root = lab.host_root(host.name)
        etc = root / "etc-ssh"
        for sub in ("tmp", "srv", "home", "root-home", "etc-ssh", "etc-ssh/authorized_keys"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        host_private, host_public = ed25519_keypair()
        write_lab_file(etc / "ssh_host_ed25519_key", host_private, 0o600)
        write_lab_file(etc / "ssh_host_ed25519_key.pub", host_public + "\n")
        write_lab_file(etc / "authorized_keys" / lab.user, client_public + "\n", 0o644)
        if lab.is_root_mode:  # root logs in with the same key, as on most real fleets
            write_lab_file(etc / "authorized_keys" / "root", client_public + "\n", 0o644)
        etc_in_host = "/etc/ssh" if lab.is_root_mode else str(etc)
        config = render_sshd_config(
            address=host.address,
            port=sshd_port,
            etc=etc_in_host,
            is_root_mode=lab.is_root_mode,
        )
        write_lab_file(etc / "sshd_config", config)
        known_lines.append(f"{known_hosts_name(host.address, host.port)} {host_public}")
        preexec: Callable[[], None] | None = None
        if lab.is_root_mode:
            os.chmod(root / "tmp", 0o1777)  # noqa: S103 - a host's /tmp
            os.chown(root / "srv", entry.pw_uid, entry.pw_gid)
            os.chown(root / "home", entry.pw_uid, entry.pw_gid)
            os.chmod(root / "home", 0o700)
            os.chown(root / "root-home", 0, 0)
            os.chmod(root / "root-home", 0o700)
            write_lab_file(root / "etc-hosts", render_etc_hosts(host))
            write_lab_file(root / "etc-hostname", host.name + "\n")
            _write_app_files(lab, host.name, index, entry.pw_uid, entry.pw_gid)
            home = entry.pw_dir
            Path("/srv").mkdir(exist_ok=True)
            binds = [
                (str(root / "srv"), "/srv"),
                (str(root / "home"), home),
                (str(root / "etc-hosts"), "/etc/hosts"),
                (str(root / "etc-hostname"), "/etc/hostname"),
                (str(etc), "/etc/ssh"),
                (str(root / "tmp"), "/tmp"),  # noqa: S108 - the host's own /tmp
                (str(root / "root-home"), pwd.getpwuid(0).pw_dir),
            ]
            preexec = enter_host_namespaces(host.name, mount_order(binds, lab.dir))
        # -r: no re-exec per connection. Re-exec re-randomises a production
        # sshd's address space; in a lab whose servers share this machine's CPUs
        # with the client under test it only costs ~5 ms of CPU per connection.
        argv = [
            sshd,
            "-D",
            "-r",
            "-f",
            f"{etc_in_host}/sshd_config",
            "-E",
            f"{etc_in_host}/sshd.log",
        ]
        if lab.is_root_mode:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privsep directory
        pid = spawn(argv, env=lab_env(lab), setup=preexec)
        lab.remember(pid)
        started.append(
            LabHost(
                name=host.name,
                address=host.address,
                port=host.port,
                groups=host.groups,
                pid=pid,
                sshd_port=sshd_port,
            )
        )
        lab.hosts = started
    write_lab_file(lab.known_hosts, "\n".join(known_lines) + "\n", 0o644)
    write_lab_file(lab.inventory, render_inventory(lab))
    write_lab_file(lab.ssh_config, render_client_ssh_config(lab))
    return started


def _write_app_files(lab: Lab, name: str, index: int, uid: int, gid: int) -> None:
    """Write the sample app (``remoteops.lab.app``) into a host's private /srv, owned by
    the login user."""
    srv = lab.host_root(name) / "srv"
    for remote, text in app_files(name, index, lab.created).items():
        local = lab.host_path(name, remote)
        for directory in reversed(local.relative_to(srv).parents[:-1]):
            (srv / directory).mkdir(mode=0o755, exist_ok=True)
            os.chown(srv / directory, uid, gid)
        write_lab_file(local, text)
        os.chown(local, uid, gid)


def lab_env(lab: Lab) -> dict[str, str]:
    """The environment of the lab's processes: minimal, plus the marker ``lab down`` checks."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", LAB_ENV: str(lab.dir)}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def start_proxy(lab: Lab, latency_ms: int) -> int:
    """Start the latency proxy in front of every host; return its PID."""
    routes = [
        {"listen": [h.address, h.port], "target": [h.address, h.sshd_port]} for h in lab.hosts
    ]
    config = lab.dir / "proxy.json"
    write_lab_file(config, json.dumps({"latency_ms": latency_ms, "routes": routes}))
    return spawn(
        [sys.executable, "-m", "remoteops.lab.proxy", str(config)],
        env=lab_env(lab),
        output=lab.dir / "proxy.log",
    )
