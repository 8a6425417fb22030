"""The lab's life cycle: ``lab_up`` (check, start, wait until every host answers),
``lab_status`` (which hosts answer now) and ``lab_down`` (stop what the lab started,
by PID, and remove what it wrote).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from remoteops.errors import LabError
from remoteops.lab.machine import LAB_USER, ensure_lab_user, find_sshd, install_sshd
from remoteops.lab.model import STATE_FILE, Lab, LabHost, host_layout
from remoteops.lab.processes import is_alive, stop_processes
from remoteops.lab.readiness import answering, wait_all
from remoteops.lab.start import check_ports_free, start_hosts, start_proxy
from remoteops.nodeset import hosts_label
from remoteops.wording import plural

__all__ = ["HostStatus", "LabReport", "lab_down", "lab_status", "lab_up"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LabReport:
    """What ``lab_up`` did, for the CLI to show."""

    lab: Lab
    elapsed_s: float
    was_running: bool = False
    not_isolated: tuple[str, ...] = ()


def lab_up(
    lab_dir: Path,
    *,
    hosts: int = 4,
    port: int = 2222,
    latency_ms: int = 0,
    install: bool = False,
    isolate: bool | None = None,
    timeout: float = 60.0,
) -> LabReport:
    """Start ``hosts`` sshd servers and write the lab's inventory and keys into ``lab_dir``.

    ``isolate`` defaults to namespaces when running as root. Raises LabError when
    sshd is missing (unless ``install``), a lab already runs there with other
    settings, or a host does not answer within ``timeout``.
    """
    started = time.monotonic()
    lab_dir = lab_dir.absolute()
    if (lab_dir / STATE_FILE).exists():
        existing = Lab.load(lab_dir)
        if existing.is_running():
            if len(existing.hosts) != hosts or existing.latency_ms != latency_ms:
                raise LabError(
                    f"a lab of {plural(len(existing.hosts), 'host')} "
                    f"(latency {existing.latency_ms} ms) "
                    f"already runs in {lab_dir}; run `remoteops lab down --dir {lab_dir}` first"
                )
            _check_all_up(existing)
            return LabReport(lab=existing, elapsed_s=0.0, was_running=True)
        logger.info("lab: %s holds a stopped lab; cleaning it up first", lab_dir)
        lab_down(lab_dir)

    sshd = find_sshd()
    if sshd is None:
        if not install:
            raise LabError(
                "OpenSSH's sshd is not installed: run `apt-get install openssh-server` "
                "or `remoteops lab up --install`"
            )
        install_sshd()
        sshd = find_sshd()
        if sshd is None:
            raise LabError("openssh-server was installed but sshd is still not found")
    if not 1 <= port <= 65534:
        raise LabError(f"--port must be between 1 and 65534, not {port}")
    if latency_ms < 0:
        raise LabError(f"--latency must be 0 or more milliseconds, not {latency_ms}")

    is_root = os.geteuid() == 0
    isolate = is_root if isolate is None else isolate
    if isolate and not is_root:
        raise LabError("namespaces need root; run as root or without --isolate")
    import pwd

    layout = host_layout(hosts, port)
    check_ports_free(layout, latency_ms=latency_ms)
    if isolate:
        password = ensure_lab_user()
        user = LAB_USER
    else:
        password = ""
        user = pwd.getpwuid(os.geteuid()).pw_name

    created_dir = not lab_dir.exists()
    lab_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
    os.chmod(lab_dir, 0o755)  # noqa: S103 - sshd must traverse it
    lab = Lab(
        dir=lab_dir,
        user=user,
        is_root_mode=isolate,
        latency_ms=latency_ms,
        created=time.time(),
        created_paths=[str(lab_dir)] if created_dir else [],
    )
    try:
        lab.hosts = start_hosts(lab, layout, sshd=sshd, password=password, latency_ms=latency_ms)
        if latency_ms:
            lab.proxy_pid = start_proxy(lab, latency_ms)
            lab.remember(lab.proxy_pid)
        lab.save()
        missing = wait_all(lab.hosts, timeout)
        if missing:
            raise LabError(
                f"{plural(len(missing), 'lab host')} did not answer within {timeout:.0f}s "
                f"({', '.join(missing[:5])}...); see {lab.sshd_log(missing[0])}"
            )
        # An answer can come from someone else's server on the same address
        # if ours lost a race for it: every sshd we started must still run.
        dead = [h for h in lab.hosts if not is_alive(h.pid)]
        if dead:
            raise LabError(
                f"{plural(len(dead), 'lab sshd')} exited after starting ({dead[0].name}: "
                f"{_last_line(lab.sshd_log(dead[0].name))}); see {lab.sshd_log(dead[0].name)}"
            )
    except BaseException:
        lab.save()
        with contextlib.suppress(Exception):
            lab_down(lab_dir)
        raise
    not_isolated: tuple[str, ...] = ()
    if not isolate:
        not_isolated = (
            "hostname (every host prints this machine's name)",
            "file system (/tmp, /srv and the home directory are shared by all hosts)",
            f"login user (every host logs in as {user}; no sudo rule)",
        )
    return LabReport(lab=lab, elapsed_s=time.monotonic() - started, not_isolated=not_isolated)


def _check_all_up(lab: Lab) -> None:
    """Raise LabError naming the hosts of a running lab whose sshd is gone or silent, with
    the commands that bring the whole lab back."""
    live = set(lab.live_pids())
    answers = answering(lab.hosts, 2.0)
    down = [h for h, ok in zip(lab.hosts, answers, strict=True) if h.pid not in live or not ok]
    if not down:
        return
    first = down[0]
    if first.pid in live:
        why = f"{first.name} does not answer on {first.address}:{first.port}"
    else:
        why = f"{first.name}'s sshd exited: {_last_line(lab.sshd_log(first.name))}"
    latency = f" --latency {lab.latency_ms}" if lab.latency_ms else ""
    where = shlex.quote(str(lab.dir))
    raise LabError(
        f"the lab in {lab.dir} runs, but {len(down)} of its {plural(len(lab.hosts), 'host')} "
        f"{'is' if len(down) == 1 else 'are'} down: {hosts_label([h.name for h in down])} "
        f"({why}); restart the lab: remoteops lab down --dir {where} && remoteops lab up "
        f"--dir {where} --hosts {len(lab.hosts)} --port {first.port}{latency}"
    )


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return lines[-1] if lines else "empty log"


def lab_down(lab_dir: Path) -> Lab:
    """Stop every process the lab in ``lab_dir`` started and remove what it created."""
    lab_dir = lab_dir.absolute()
    lab = Lab.load(lab_dir)
    ours = lab.live_pids()
    stop_processes(ours)
    _remove_lab_files(lab)
    return lab


def _remove_lab_files(lab: Lab) -> None:
    for name in (
        "hosts",
        "inventory.yml",
        "known_hosts",
        "client_key",
        "client_key.pub",
        "ssh_config",
        "become_password",
        "proxy.json",
        "proxy.log",
        STATE_FILE,
    ):
        path = lab.dir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    if str(lab.dir) in lab.created_paths:
        with contextlib.suppress(OSError):
            lab.dir.rmdir()


@dataclass(frozen=True, slots=True)
class HostStatus:
    """One lab host and whether it answers now."""

    host: LabHost
    is_answering: bool


def lab_status(lab_dir: Path, *, timeout: float = 2.0) -> tuple[Lab, list[HostStatus]]:
    """Load the lab in ``lab_dir`` and check which hosts answer with an SSH banner."""
    lab = Lab.load(lab_dir.absolute())
    answers = answering(lab.hosts, timeout)
    return lab, [HostStatus(h, ok) for h, ok in zip(lab.hosts, answers, strict=True)]
