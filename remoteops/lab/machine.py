"""What the lab needs from this machine: OpenSSH's ``sshd`` (found, or installed with
apt-get) and, for isolated hosts, the unprivileged login user ``rolab`` with its sudo
password and sudo rule.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

from remoteops.errors import LabError
from remoteops.lab.model import write_lab_file

__all__ = ["LAB_USER", "ensure_lab_user", "find_sshd", "install_sshd"]

LAB_USER = "rolab"
"""The unprivileged login user of every lab host (root mode)."""


_SUDOERS_FILE = Path("/etc/sudoers.d/remoteops-lab")
_MACHINE_STATE = Path("/var/lib/remoteops-lab")


def find_sshd() -> str | None:
    """Return the path of OpenSSH's ``sshd`` (``$REMOTEOPS_SSHD`` if set), or None."""
    override = os.environ.get("REMOTEOPS_SSHD")
    if override is not None:
        return override if os.access(override, os.X_OK) else None
    found = shutil.which("sshd")
    if found:
        return found
    for candidate in ("/usr/sbin/sshd", "/usr/local/sbin/sshd"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def install_sshd() -> None:
    """Install OpenSSH's server with apt-get (root only)."""
    if os.geteuid() != 0:
        raise LabError("installing openssh-server needs root: sudo apt-get install openssh-server")
    if shutil.which("apt-get") is None:
        raise LabError("no apt-get here: install OpenSSH's server (sshd) with your package manager")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "openssh-server", "openssh-client", "sudo"],
    ):
        if subprocess.run(cmd, env=env, check=False).returncode != 0:
            raise LabError(f"`{' '.join(cmd)}` failed; install openssh-server by hand")


def ensure_lab_user() -> str:
    """Create the lab login user and its sudo rule if missing; return the sudo password."""
    import pwd

    try:
        pwd.getpwnam(LAB_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--create-home", "--shell", "/bin/sh", LAB_USER],
            check=True,
            capture_output=True,
        )
    _MACHINE_STATE.mkdir(mode=0o700, parents=True, exist_ok=True)
    password_file = _MACHINE_STATE / "become_password"
    if not password_file.exists():
        password = secrets.token_urlsafe(18)
        subprocess.run(
            ["chpasswd"], input=f"{LAB_USER}:{password}\n", text=True, check=True
        )  # password goes through stdin, never argv
        write_lab_file(password_file, password + "\n", 0o600)
    if not _SUDOERS_FILE.exists() and _SUDOERS_FILE.parent.is_dir():
        write_lab_file(
            _SUDOERS_FILE,
            f"# remoteops lab: the lab user may become root with its password\n"
            f"{LAB_USER} ALL=(ALL:ALL) ALL\n",
            0o440,
        )
    return password_file.read_text(encoding="utf-8").strip()
