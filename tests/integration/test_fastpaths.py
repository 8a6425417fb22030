"""The fast paths' fences against the lab's real sshd: a paramiko that renamed an
internal, and ``REMOTEOPS_NO_FAST_PATHS``.

The transfer tests run with and without the fast paths (tests/conftest.py); these
check what the switch and a missing internal do to a connection itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import paramiko
import pytest

from remoteops import fastio, fastpaths
from remoteops.lab import Lab
from remoteops.session.transport import _PipelinedAuthHandler
from tests.integration.test_transfer_fastpath import _session

pytestmark = pytest.mark.integration

# paramiko as a release that renamed the packetizer's counters of received bytes and
# packets would be: paramiko/packet.py compiled from its own source with the names changed.
_RENAMED_PARAMIKO = r"""
import importlib.machinery, re, sys

class Renamed(importlib.machinery.SourceFileLoader):
    def get_code(self, fullname):
        source = self.get_data(self.path).decode()
        source = re.sub(r"__received_(bytes|packets)\b", r"__received_\1_count", source)
        return compile(source, self.path, "exec")

class Finder:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name != "paramiko.packet":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        spec.loader = Renamed(name, spec.origin)
        return spec

sys.meta_path.insert(0, Finder)
from remoteops.cli import console_main
sys.argv[0] = "remoteops"
console_main()
"""


def test_a_renamed_paramiko_internal_turns_the_fast_paths_off_and_keepalives_still_work(
    lab: Lab, tmp_path: Path
) -> None:
    """A missing internal is said once in the debug log, never a silent failure: the
    keepalive check still sees the server's answers, so a quiet command that outlasts
    several probes is not taken for a frozen host."""
    host = lab.hosts[2].name
    log = tmp_path / "remoteops.log"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _RENAMED_PARAMIKO,
            "--log-file",
            str(log),
            "--debug",
            "run",
            host,
            "-i",
            str(lab.inventory),
            "--json",
            "--keepalive-interval",
            "0.5",
            "--keepalive-count",
            "2",
            "--",
            "sleep 3; echo done",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (record,) = [r for r in map(json.loads, done.stdout.splitlines()) if r["type"] == "host"]
    assert (record["status"], record["stdout"]) == ("ok", "done\n")
    said = [line for line in log.read_text().splitlines() if "every fast path is off" in line]
    assert len(said) == 1, said
    assert "Packetizer._Packetizer__received_bytes " in said[0]
    assert "Packetizer._Packetizer__received_packets " in said[0]


def _connect(lab: Lab) -> paramiko.Transport:
    session, watchdog = _session(lab, 3, [])
    try:
        assert session.exec("echo ok").stdout == b"ok\n"
        return session.transport
    finally:
        session.close()
        watchdog.stop()


@pytest.mark.parametrize("switch", ["", "1"], ids=["default", "REMOTEOPS_NO_FAST_PATHS=1"])
def test_the_switch_gives_paramikos_own_packetizer_and_authentication(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, switch: str
) -> None:
    monkeypatch.setenv(fastpaths.ENV_SWITCH, switch)
    transport = _connect(lab)
    fast = not switch
    assert isinstance(transport.packetizer, fastio.CountingPacketizer)
    assert isinstance(transport.packetizer, fastio.FastPacketizer) is fast
    assert isinstance(transport.auth_handler, _PipelinedAuthHandler) is fast
