"""The watchdog: one thread that runs callbacks when deadlines pass (no thread per host).

Per-host deadlines are enforced with it: a callback closes the socket of a
host whose deadline passed, which unblocks paramiko wherever it waits (a
server that never sends a banner, drips one byte at a time, or freezes
mid-command).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator

logger = logging.getLogger(__name__)

__all__ = ["Watchdog"]


class Watchdog:
    """One thread that runs callbacks when deadlines pass (no thread per host)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._cancelled: set[int] = set()
        self._cond = threading.Condition()
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="watchdog", daemon=True)
            self._thread.start()

    def schedule(self, deadline: float, callback: Callable[[], None]) -> int:
        """Run ``callback`` at ``deadline`` (time.monotonic()) unless cancelled first.

        Raises RuntimeError once the watchdog is stopped: a deadline nobody
        would enforce must not pass for one that will.
        """
        with self._cond:
            if self._stopped:
                raise RuntimeError("the watchdog is stopped (its Executor was closed)")
            token = next(self._ids)
            heapq.heappush(self._heap, (deadline, token, callback))
            self._ensure_thread()
            if self._heap[0][1] == token:
                # Sooner than what the thread sleeps until; otherwise it wakes in
                # time anyway, and a run of many hosts spares it one wake-up each.
                self._cond.notify()
            return token

    def cancel(self, token: int) -> None:
        """Forget a scheduled callback."""
        with self._cond:
            self._cancelled.add(token)

    def stop(self) -> None:
        """End the watchdog thread, for good."""
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    now = time.monotonic()
                    while self._heap and self._heap[0][1] in self._cancelled:
                        self._cancelled.discard(heapq.heappop(self._heap)[1])
                    if self._heap and self._heap[0][0] <= now:
                        _, _token, callback = heapq.heappop(self._heap)
                        break
                    timeout = (self._heap[0][0] - now) if self._heap else None
                    self._cond.wait(timeout)
                else:
                    return
            try:
                callback()
            except Exception:  # a watchdog callback must never kill the watchdog
                logger.debug("watchdog callback failed", exc_info=True)

    @contextlib.contextmanager
    def deadline(self, seconds: float | None, callback: Callable[[], None]) -> Iterator[None]:
        """Within the block, run ``callback`` if ``seconds`` pass."""
        if seconds is None:
            yield
            return
        token = self.schedule(time.monotonic() + seconds, callback)
        try:
            yield
        finally:
            self.cancel(token)
