"""remoteops: run commands and move files across a fleet over SSH.

The command line (``remoteops``) is a thin layer over this package; scripts can
import the same pieces.
"""

from __future__ import annotations

from remoteops.errors import (
    AnalysisError,
    AuthenticationError,
    CommandTimeoutError,
    ConnectError,
    HostError,
    HostKeyError,
    InventoryError,
    LabError,
    RemoteOpsError,
    RunFailedError,
    TransferError,
    UnknownHostError,
    UsageError,
)

__version__ = "0.1.0"

__all__ = [
    "AnalysisError",
    "AuthenticationError",
    "CommandTimeoutError",
    "ConnectError",
    "HostError",
    "HostKeyError",
    "InventoryError",
    "LabError",
    "RemoteOpsError",
    "RunFailedError",
    "TransferError",
    "UnknownHostError",
    "UsageError",
    "__version__",
]
