"""The lab's model: a lab directory (:class:`Lab`), its hosts (:class:`LabHost`), their
names, groups and addresses (:func:`host_layout`), and the ``DIR/lab.json`` file that
remembers what the lab started.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from remoteops.errors import LabError
from remoteops.lab.processes import is_lab_process, start_time

__all__ = [
    "MAX_HOSTS",
    "STATE_FILE",
    "Lab",
    "LabHost",
    "default_lab_dir",
    "host_layout",
    "write_lab_file",
]

STATE_FILE = "lab.json"


_ADDRESS_PREFIX = "127.66"
MAX_HOSTS = 250 * 200


@dataclass(frozen=True, slots=True)
class LabHost:
    """One lab host as clients see it."""

    name: str
    address: str
    port: int
    groups: tuple[str, ...]
    pid: int = 0
    sshd_port: int = 0


@dataclass(slots=True)
class Lab:
    """The state of one lab directory, as saved in ``DIR/lab.json``."""

    dir: Path
    user: str
    is_root_mode: bool
    latency_ms: int
    hosts: list[LabHost] = field(default_factory=list)
    proxy_pid: int = 0
    created: float = 0.0
    created_paths: list[str] = field(default_factory=list)
    process_starts: dict[str, int] = field(default_factory=dict)

    @property
    def inventory(self) -> Path:
        """The lab's inventory, in Ansible's YAML format."""
        return self.dir / "inventory.yml"

    @property
    def known_hosts(self) -> Path:
        """A known_hosts file holding every lab host key."""
        return self.dir / "known_hosts"

    @property
    def client_key(self) -> Path:
        """The private key that logs in to every lab host."""
        return self.dir / "client_key"

    @property
    def ssh_config(self) -> Path:
        """An ssh_config for OpenSSH's own client: ``ssh -F DIR/ssh_config web01``."""
        return self.dir / "ssh_config"

    @property
    def become_password_file(self) -> Path:
        """The sudo password of the lab user (root mode only)."""
        return self.dir / "become_password"

    def host_root(self, name: str) -> Path:
        """The directory holding a host's private file system areas."""
        return self.dir / "hosts" / name

    def host_path(self, name: str, remote_path: str) -> Path:
        """Where ``remote_path`` on lab host ``name`` lives on this machine (root mode)."""
        if not self.is_root_mode:
            return Path(remote_path)
        root = self.host_root(name)
        home = f"/home/{self.user}"
        parts: list[tuple[str, Path]] = [
            ("/tmp", root / "tmp"),  # noqa: S108 - the host's own /tmp
            ("/srv", root / "srv"),
            (home, root / "home"),
            ("/root", root / "root-home"),
            ("/etc/ssh", root / "etc-ssh"),
        ]
        for prefix, local in parts:
            if remote_path == prefix or remote_path.startswith(prefix + "/"):
                return local / remote_path[len(prefix) :].lstrip("/")
        raise LabError(
            f"{remote_path}: not inside a lab host's private areas (/tmp, /srv, {home}, /root)"
        )

    def sshd_log(self, name: str) -> Path:
        """The sshd log of one host (LogLevel VERBOSE: one line per connection)."""
        return self.host_root(name) / "etc-ssh" / "sshd.log"

    def to_json(self) -> dict[str, Any]:
        """The saved form of this lab."""
        data = asdict(self)
        data["dir"] = str(self.dir)
        data["version"] = 1
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Lab:
        """Rebuild a lab from ``lab.json``."""
        hosts = [
            LabHost(
                name=h["name"],
                address=h["address"],
                port=int(h["port"]),
                groups=tuple(h["groups"]),
                pid=int(h.get("pid", 0)),
                sshd_port=int(h.get("sshd_port", 0)),
            )
            for h in data["hosts"]
        ]
        return cls(
            dir=Path(data["dir"]),
            user=data["user"],
            is_root_mode=bool(data["is_root_mode"]),
            latency_ms=int(data.get("latency_ms", 0)),
            hosts=hosts,
            proxy_pid=int(data.get("proxy_pid", 0)),
            created=float(data.get("created", 0.0)),
            created_paths=list(data.get("created_paths", [])),
            process_starts={str(k): int(v) for k, v in data.get("process_starts", {}).items()},
        )

    @classmethod
    def load(cls, lab_dir: Path) -> Lab:
        """Load the lab saved in ``lab_dir``; raise LabError if there is none."""
        state = lab_dir / STATE_FILE
        try:
            data = json.loads(state.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LabError(
                f"{lab_dir}: no lab here; start one with `remoteops lab up --dir {lab_dir}`"
            ) from None
        except (OSError, ValueError) as exc:
            raise LabError(f"{state}: unreadable lab state ({exc}); remove the directory") from exc
        return cls.from_json(data)

    def save(self) -> None:
        """Write ``lab.json`` atomically."""
        write_lab_file(self.dir / STATE_FILE, json.dumps(self.to_json(), indent=1) + "\n")

    def pids(self) -> list[int]:
        """Every PID this lab started."""
        pids = [h.pid for h in self.hosts if h.pid]
        if self.proxy_pid:
            pids.append(self.proxy_pid)
        return pids

    def is_running(self) -> bool:
        """True if any process the lab started is still alive."""
        return bool(self.live_pids())

    def remember(self, pid: int) -> None:
        """Record the start time of a process the lab just started."""
        started = start_time(pid)
        if started is not None:
            self.process_starts[str(pid)] = started

    def live_pids(self) -> list[int]:
        """The PIDs this lab started that are still running (and not reused)."""
        return [
            pid for pid in self.pids() if is_lab_process(pid, self.process_starts.get(str(pid)))
        ]


def default_lab_dir() -> Path:
    """``$REMOTEOPS_LAB_DIR``, else ``$XDG_STATE_HOME/remoteops/lab``."""
    env = os.environ.get("REMOTEOPS_LAB_DIR")
    if env:
        return Path(env)
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "remoteops" / "lab"


def host_layout(count: int, port: int) -> list[LabHost]:
    """Name, address and groups of ``count`` lab hosts.

    Half are ``webNN``, half ``dbNN``; they alternate between ``eu`` and ``us``.
    """
    if not 1 <= count <= MAX_HOSTS:
        raise LabError(f"--hosts must be between 1 and {MAX_HOSTS}, not {count}")
    n_web = (count + 1) // 2
    n_db = count - n_web
    width = max(2, len(str(max(n_web, n_db, 1))))
    names = [f"web{i:0{width}d}" for i in range(1, n_web + 1)]
    names += [f"db{i:0{width}d}" for i in range(1, n_db + 1)]
    hosts = []
    for index, name in enumerate(names):
        role = "web" if name.startswith("web") else "db"
        number = int(name[len(role) :])
        region = "eu" if number % 2 == 1 else "us"
        address = f"{_ADDRESS_PREFIX}.{index // 250}.{index % 250 + 1}"
        hosts.append(LabHost(name=name, address=address, port=port, groups=(role, region)))
    return hosts


def write_lab_file(path: Path, text: str | bytes, mode: int = 0o644) -> None:
    """Write one of the lab's files atomically, with permission bits ``mode``."""
    from remoteops.fileops import write_atomic

    write_atomic(path, text.encode() if isinstance(text, str) else text, mode=mode)
