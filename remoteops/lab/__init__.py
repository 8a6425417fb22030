"""A local fleet of real OpenSSH servers, for the demo, the tests and the benchmarks.

As root, every lab host is one ``sshd -D`` process in its own mount and UTS
namespace: its own loopback address (``127.66.x.y``), its own ed25519 host key,
its own hostname, and its own ``/tmp``, ``/srv``, ``/etc/ssh``, ``/etc/hosts``,
login home and ``/root`` bind-mounted from ``DIR/hosts/NAME/``, so that a file
uploaded to one host is not visible on another. Logins use the unprivileged
user ``rolab``, who may ``sudo`` with the password in ``DIR/become_password``;
``root`` may log in with the same client key (``PermitRootLogin
prohibit-password``, as most real fleets), into a private ``/root``. Each
host's ``/srv`` starts with the sample app of ``remoteops.lab.app``, which the
example playbooks audit and collect.

Without root the lab falls back to plain ``sshd`` processes on loopback
addresses, logging in as the current user: addresses, host keys and ports are
distinct, the hostname and the file system are not (``lab up`` says so).

``--latency MS`` puts one userspace TCP proxy (``remoteops.lab.proxy``) in front
of every host; it delays each direction by half the round trip.

The lab remembers what it started in ``DIR/lab.json``; ``lab down`` stops those
PIDs (and their descendants) only, after checking each one is still the process
the lab started.

The package, one module per concern; the modules import each other, never this
``__init__``, which re-exports the public names:

* ``model``: :class:`Lab`, :class:`LabHost`, the host layout and ``lab.json``;
* ``render``: sshd_config, /etc/hosts, the inventory and the client ssh_config;
* ``keys``: ed25519 key pairs;
* ``machine``: finding or installing sshd, the lab user and its sudo rule;
* ``namespaces``: the mount and UTS namespaces of an isolated host (ctypes);
* ``processes``: spawning, recognising and stopping the lab's processes by PID;
* ``start``: each host's files and sshd, and the latency proxy;
* ``readiness``: waiting for SSH banners;
* ``lifecycle``: ``lab_up``, ``lab_status`` and ``lab_down``;
* ``app``: the sample application on every isolated host;
* ``proxy``: the latency proxy, run as its own process (not imported here).
"""

from __future__ import annotations

from remoteops.lab.lifecycle import HostStatus, LabReport, lab_down, lab_status, lab_up
from remoteops.lab.machine import LAB_USER, find_sshd, install_sshd
from remoteops.lab.model import MAX_HOSTS, Lab, LabHost, default_lab_dir, host_layout
from remoteops.lab.processes import descendants, is_alive
from remoteops.lab.readiness import wait_for_banner
from remoteops.lab.render import render_sshd_config

__all__ = [
    "LAB_USER",
    "MAX_HOSTS",
    "HostStatus",
    "Lab",
    "LabHost",
    "LabReport",
    "default_lab_dir",
    "descendants",
    "find_sshd",
    "host_layout",
    "install_sshd",
    "is_alive",
    "lab_down",
    "lab_status",
    "lab_up",
    "render_sshd_config",
    "wait_for_banner",
]
