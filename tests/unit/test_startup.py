"""What a command does once before it connects, to spend less CPU per host."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_start_up_objects_are_frozen_before_the_first_connection(tmp_path: Path) -> None:
    """gc.freeze(): the cyclic collector no longer walks what start-up made."""
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        "all:\n  hosts:\n    web1:\n"
        f"      ansible_host: 127.0.0.1\n      ansible_port: {_closed_port()}\n"
    )
    code = textwrap.dedent(
        f"""
        import gc, sys
        from remoteops.cli import main
        assert gc.get_freeze_count() == 0
        try:
            main(["--no-log-file", "run", "all", "-i", {str(inventory)!r}, "--json",
                  "--known-hosts", {str(tmp_path / "known_hosts")!r}, "--", "true"])
        except SystemExit as exc:
            print("exit", exc.code, "frozen", gc.get_freeze_count() > 1000)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.splitlines()[-1] == "exit 4 frozen True", done.stdout + done.stderr
