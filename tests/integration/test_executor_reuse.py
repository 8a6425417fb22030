"""One ``Executor``, several operations in a row, against the lab's real sshd.

An executor's watchdog enforces connect deadlines and notices ``cancel()``
(Ctrl-C's path) while a host is still connecting. Every operation after the
first must keep both, and closing an executor whose operation is still under
way must stop that operation, not leave it running without them.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import remoteops
from remoteops.lab import Lab
from remoteops.results import HostResult
from tests.integration.test_faults import FaultServer, _mixed_inventory

pytestmark = pytest.mark.integration


class _MutedLater:
    """A fault host that refuses to speak SSH (says HTTP and hangs up) until ``mute()``,
    then accepts and never sends a banner. ``reached`` is set once a connection
    arrives while muted."""

    def __init__(self) -> None:
        self.muted = threading.Event()
        self.reached = threading.Event()

    def mute(self) -> None:
        self.muted.set()

    def __call__(self, conn: socket.socket, stop: threading.Event) -> None:
        if not self.muted.is_set():
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            conn.close()
            return
        self.reached.set()
        stop.wait(60)


Reused = Callable[[float], tuple[remoteops.Executor, _MutedLater]]


@pytest.fixture
def reused(lab: Lab, tmp_path: Path) -> Iterator[Reused]:
    """Makes an executor (connect deadline given) for one lab host and a fault host,
    that already ran one whole operation: the lab host ran the command, the fault
    host was unreachable. The fault host is silent from then on."""
    behave = _MutedLater()
    with FaultServer(behave) as server:
        inventory = _mixed_inventory(lab, tmp_path, {"fault": ("127.0.0.1", server.port)})
        loaded = remoteops.load_inventory([inventory])
        targets = remoteops.resolve_targets(loaded, [lab.hosts[0].name, "fault"])

        def make(connect: float) -> tuple[remoteops.Executor, _MutedLater]:
            executor = remoteops.Executor(targets, timeouts=remoteops.Timeouts(connect=connect))
            first = _by_host(executor.run_command(remoteops.CommandSpec(command="hostname")))
            assert first[lab.hosts[0].name].status == "ok", first[lab.hosts[0].name].error
            assert first[lab.hosts[0].name].stdout.decode().strip() == lab.hosts[0].name
            assert first["fault"].status == "unreachable", first["fault"].error
            behave.mute()
            return executor, behave

        yield make


def _by_host(results: Iterator[HostResult]) -> dict[str, HostResult]:
    return {r.host: r for r in results}


def test_a_second_operation_keeps_its_connect_deadline(lab: Lab, reused: Reused) -> None:
    executor, behave = reused(3)
    with executor:
        start = time.monotonic()
        second = _by_host(executor.ping())
        elapsed = time.monotonic() - start
        assert second[lab.hosts[0].name].status == "ok", second[lab.hosts[0].name].error
        # The watchdog's deadline ended it (status timeout, its message), not
        # paramiko's banner timeout failing the connection ("unreachable").
        assert second["fault"].status == "timeout", second["fault"].error
        assert "did not finish within the deadline" in (second["fault"].error or "")
        assert behave.reached.is_set()
        assert elapsed < 20  # generous: 3 s deadline
        # A third operation on the same executor still works.
        third = _by_host(executor.run_command(remoteops.CommandSpec(command="true")))
        assert third[lab.hosts[0].name].status == "ok"
        assert third["fault"].status == "timeout"
    assert executor.closed
    executor.close()  # closes once: a second close does nothing
    with pytest.raises(RuntimeError, match="closed"):
        executor.ping()


def test_cancel_stops_a_connect_in_a_second_operation(lab: Lab, reused: Reused) -> None:
    executor, behave = reused(40)
    with executor:
        results = executor.ping()
        first = next(results)  # the lab host; the fault host waits for a banner for 40 s
        assert first.host == lab.hosts[0].name
        assert first.status == "ok", first.error
        assert behave.reached.wait(20), "the fault host was never contacted"
        cancelled = time.monotonic()
        executor.cancel()  # what the CLI does on Ctrl-C
        last = next(results)
        waited = time.monotonic() - cancelled
        assert list(results) == []
    assert last.host == "fault"
    assert last.status == "interrupted", last.error
    assert "interrupted while connecting" in (last.error or "")
    assert waited < 10  # generous: the connect notices a cancel within 0.2 s


def test_closing_an_executor_under_way_stops_its_operation(lab: Lab, reused: Reused) -> None:
    executor, behave = reused(40)
    collected: list[HostResult] = []
    consumer = threading.Thread(target=lambda: collected.extend(executor.ping()), daemon=True)
    consumer.start()
    assert behave.reached.wait(20), "the fault host was never contacted"
    start = time.monotonic()
    executor.close()  # from another thread, while the fault host is connecting
    took = time.monotonic() - start
    consumer.join(10)
    assert not consumer.is_alive()
    assert took < 10  # generous: it stopped the connect, it did not wait out 40 s
    results = {r.host: r for r in collected}
    assert set(results) == {lab.hosts[0].name, "fault"}
    assert results["fault"].status == "interrupted", results["fault"].error
    with pytest.raises(RuntimeError, match="closed"):
        executor.run_command(remoteops.CommandSpec(command="true"))
