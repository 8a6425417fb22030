"""Whether lab hosts are up: each one is polled until its server sends an SSH banner."""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from remoteops.lab.model import LabHost

__all__ = ["answering", "wait_all", "wait_for_banner"]


def wait_for_banner(address: str, port: int, *, timeout: float = 10.0) -> bool:
    """Poll ``address:port`` until it sends an ``SSH-2.0-`` banner; False on timeout."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while time.monotonic() < deadline:
        remaining = max(0.05, deadline - time.monotonic())
        try:
            with socket.create_connection((address, port), timeout=min(2.0, remaining)) as sock:
                sock.settimeout(min(5.0, remaining))
                data = b""
                while b"\n" not in data and len(data) < 256:
                    chunk = sock.recv(256)
                    if not chunk:
                        break
                    data += chunk
                if data.startswith(b"SSH-2.0-"):
                    return True
        except OSError:
            pass
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    return False


def answering(hosts: Sequence[LabHost], timeout: float) -> list[bool]:
    """For each host, whether it sends an SSH banner within ``timeout`` (checked at once)."""
    if not hosts:
        return []
    with ThreadPoolExecutor(max_workers=min(64, len(hosts))) as pool:
        return list(pool.map(lambda h: wait_for_banner(h.address, h.port, timeout=timeout), hosts))


def wait_all(hosts: Sequence[LabHost], timeout: float) -> list[str]:
    """Return the names of hosts that did not answer within ``timeout``."""
    answers = answering(hosts, timeout)
    return [h.name for h, ok in zip(hosts, answers, strict=True) if not ok]
