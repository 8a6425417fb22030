"""Analyzer plugins used by the tests (named as ``plugins:FUNCTION`` with this directory
on PYTHONPATH). Each is a plain function ``fn(doc, args) -> dict | None``."""

from __future__ import annotations

import os
import signal
import time
from typing import Any


def stamp(doc: Any, args: str) -> dict[str, Any]:
    """When this document was analysed (wall clock), and by which process."""
    return {"analyzed_at": time.time(), "pid": os.getpid(), "bytes": len(doc.read())}


def crash(doc: Any, args: str) -> dict[str, Any]:
    """Kill the worker process outright on the host named in ``args``."""
    if doc.host == args:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"lines": doc.text().count("\n")}


def boom(doc: Any, args: str) -> dict[str, Any]:
    """Raise on the host named in ``args``."""
    if doc.host == args:
        raise ValueError(f"cannot read {doc.host}")
    return {"ok": True, "finding": "looked at it"}


def slow(doc: Any, args: str) -> dict[str, Any]:
    """Sleep ``args`` seconds (for Ctrl-C tests)."""
    time.sleep(float(args or 60))
    return {"slept": True}


def modules(doc: Any, args: str) -> dict[str, Any]:
    """Which of the modules named in ``args`` (comma-separated) the worker has imported."""
    import sys

    return {"imported": sorted(name for name in args.split(",") if name in sys.modules)}


def announce(doc: Any, args: str) -> dict[str, Any]:
    """``DIR:SECONDS``: create DIR/HOST (the task started), then sleep (for Ctrl-C tests)."""
    where, _, seconds = args.rpartition(":")
    with open(os.path.join(where, doc.host), "w"):
        pass
    time.sleep(float(seconds or 60))
    return {"slept": True}
