"""Headless Chromium (Debian's `chromium`) driven over the DevTools protocol on a pipe.

`--remote-debugging-pipe` makes Chromium read protocol messages (JSON, each ended by a NUL
byte) on its fd 3 and write its answers and events on fd 4: no port, no extra Python
package. A page is loaded with the Network, Log and Runtime domains on, so a test sees
every request the page attempted and every console message or uncaught exception.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Headless, as root in a container (no sandbox), and nothing Chromium would fetch for
# itself (updates, sync, field trials), so that any request seen is the page's own.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",  # a container's /dev/shm is small
    "--remote-debugging-pipe",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-field-trial-config",
    "--mute-audio",
    "--hide-scrollbars",
    "--enable-logging=stderr",
)


def find_chromium() -> str | None:
    """The Chromium binary on PATH (Debian names it `chromium`)."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _above_9(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


@dataclass
class PageLoad:
    """What happened while a page loaded."""

    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    blocked: dict[str, str] = field(default_factory=dict)  # URL: why Chromium refused it
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, CSP refusals
    load_ms: float = 0.0  # navigation start to the end of the load event, by the page's clock
    paint_ms: float = 0.0  # navigation start to the first paint with content
    wall_ms: float = 0.0  # Page.navigate sent to loadEventFired received


class Chromium:
    """One headless Chromium process with one page; use as a context manager."""

    def __init__(self, profile: Path, *, width: int = 1200, height: int = 900) -> None:
        binary = find_chromium()
        if binary is None:
            raise RuntimeError("chromium is missing: run scripts/setup (apt-get install chromium)")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # The child's ends above fd 9, so that moving them to fds 3 and 4 clobbers neither.
        to_child_r, from_child_w = (_above_9(to_child_r), _above_9(from_child_w))
        argv = [binary, *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"]
        fds = f"3<&{to_child_r} 4>&{from_child_w} {to_child_r}<&- {from_child_w}>&-"
        self.log = profile.with_suffix(".log")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    "bash",  # dash takes fds 0 to 9 only in redirections
                    "-c",
                    f'exec "$@" {fds}',
                    "bash",
                    *argv,
                    "about:blank",
                ],
                pass_fds=(to_child_r, from_child_w),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        self._session = ""

    def __enter__(self) -> Chromium:
        try:
            targets = self.call("Target.getTargets")["targetInfos"]
            page = next(t for t in targets if t["type"] == "page")
            attached = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)
            self._session = attached["sessionId"]
            for domain in ("Page", "Network", "Runtime", "Log"):
                self.call(f"{domain}.enable")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Ask Chromium to quit; kill it (by its pid) if it has not within 10 s."""
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):
            self._send("Browser.close", {}, session=False)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for fd in (self._to_child, self._from_child):
            with contextlib.suppress(OSError):
                os.close(fd)

    # ----------------------------------------------------------------- protocol

    def _send(self, method: str, params: dict[str, Any], *, session: bool) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session and self._session:
            message["sessionId"] = self._session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        return self._next_id

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"chromium did not answer; see {self.log}")
            ready, _, _ = select.select([self._from_child], [], [], left)
            if ready:
                chunk = os.read(self._from_child, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium exited; see {self.log}")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def call(self, method: str, timeout: float = 60, **params: Any) -> dict[str, Any]:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        wanted = self._send(method, params, session=not method.startswith(("Target.", "Browser.")))
        deadline = time.monotonic() + timeout
        while True:
            message = self._receive(deadline)
            if message.get("id") == wanted:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            if "method" in message:
                self._events.append(message)

    def wait_for(self, event: str, timeout: float = 60) -> dict[str, Any]:
        """The first kept or coming event named ``event``."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self._events:
                if message["method"] == event:
                    return message
            self._events.append(self._receive(deadline))

    # ----------------------------------------------------------------- pages

    def load(self, path: Path, timeout: float = 60) -> PageLoad:
        """Open a local file and wait for its load event (then for pending messages)."""
        self._events.clear()
        start = time.monotonic()
        self.call("Page.navigate", url=path.resolve().as_uri())
        self.wait_for("Page.loadEventFired", timeout)
        wall_ms = (time.monotonic() - start) * 1000
        # A round trip after the load event: messages logged during the load arrive first.
        load_ms, paint_ms = self.evaluate(
            "[performance.getEntriesByType('navigation')[0].loadEventEnd,"
            " (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime || 0]",
            timeout=timeout,
        )
        load = PageLoad(load_ms=float(load_ms), paint_ms=float(paint_ms), wall_ms=wall_ms)
        urls: dict[str, str] = {}
        for message in self._events:
            method, params = message["method"], message.get("params", {})
            if method == "Network.requestWillBeSent":
                load.requests.append(params["request"]["url"])
                urls[params["requestId"]] = params["request"]["url"]
            elif method == "Network.loadingFailed" and params.get("blockedReason"):
                load.blocked[urls.get(params["requestId"], "?")] = params["blockedReason"]
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                load.errors.append(params["entry"]["text"])
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                load.errors.append(json.dumps(params["args"]))
            elif method == "Runtime.exceptionThrown":
                load.errors.append(json.dumps(params["exceptionDetails"]))
        return load

    def evaluate(self, expression: str, timeout: float = 60) -> Any:
        """The value of a JavaScript expression in the page (DevTools runs it, not the page:
        the page's own Content-Security-Policy does not apply)."""
        result = self.call("Runtime.evaluate", timeout, expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path, *, height: int = 0, scale: float = 1.0) -> bytes:
        """A PNG of the page as shown, or of its top ``height`` pixels (beyond the window)
        scaled by ``scale``, written to ``path``."""
        params: dict[str, Any] = {"format": "png"}
        if height:
            width = self.evaluate("document.documentElement.clientWidth")
            clip = {"x": 0, "y": 0, "width": width, "height": height, "scale": scale}
            params.update(captureBeyondViewport=True, clip=clip)
        data = base64.b64decode(self.call("Page.captureScreenshot", **params)["data"])
        path.write_bytes(data)
        return data


def png_colours(data: bytes) -> int:
    """How many different byte values a PNG's pixel data holds: a blank page gives one or
    two (the white and the row filters), a page with text and colours many."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, pixels = 8, b""
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            pixels += data[pos + 8 : pos + 8 + length]
        pos += 12 + length
    return len(set(zlib.decompress(pixels)))
