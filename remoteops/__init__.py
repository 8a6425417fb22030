"""remoteops: run commands and move files across a fleet over SSH.

The command line (``remoteops``) is a thin layer over this package; scripts can
import the same pieces.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from remoteops.errors import (
    AnalysisError,
    AuthenticationError,
    CommandTimeoutError,
    ConnectError,
    HostError,
    HostKeyError,
    InterruptedHostError,
    InventoryError,
    LabError,
    LockHeldError,
    PlaybookError,
    RemoteOpsError,
    RunFailedError,
    TransferError,
    UnknownHostError,
    UsageError,
)

__version__ = "0.1.0"

if TYPE_CHECKING:
    from remoteops.execution import CommandSpec, Executor, Limits, Timeouts
    from remoteops.inventory import Inventory, load_inventory
    from remoteops.results import HostResult, RunResult
    from remoteops.target import ConnectOverrides, Target, resolve_targets

# The engine pulls in paramiko; load it only when a script asks for it.
_LAZY = {
    "CommandSpec": "remoteops.execution",
    "Executor": "remoteops.execution",
    "Limits": "remoteops.execution",
    "Timeouts": "remoteops.execution",
    "Inventory": "remoteops.inventory",
    "load_inventory": "remoteops.inventory",
    "HostResult": "remoteops.results",
    "RunResult": "remoteops.results",
    "ConnectOverrides": "remoteops.target",
    "Target": "remoteops.target",
    "resolve_targets": "remoteops.target",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'remoteops' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "AnalysisError",
    "AuthenticationError",
    "CommandSpec",
    "CommandTimeoutError",
    "ConnectError",
    "ConnectOverrides",
    "Executor",
    "HostError",
    "HostKeyError",
    "HostResult",
    "InterruptedHostError",
    "Inventory",
    "InventoryError",
    "LabError",
    "Limits",
    "LockHeldError",
    "PlaybookError",
    "RemoteOpsError",
    "RunFailedError",
    "RunResult",
    "Target",
    "Timeouts",
    "TransferError",
    "UnknownHostError",
    "UsageError",
    "__version__",
    "load_inventory",
    "resolve_targets",
]
