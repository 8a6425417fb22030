"""remoteops: run commands and move files across a fleet over SSH.

The command line (``remoteops``) is a thin layer over this package; scripts can
import the same pieces. The layout, from the bottom up:

- hosts: ``inventory`` (with ``inventory_ini``, ``yamlsafe``), ``patterns``,
  ``sshconfig``, ``target`` (a host resolved into everything needed to connect),
  ``hostkeys``;
- connections: ``session`` (one paramiko transport per host: connect, credentials,
  the exec channel, the watchdog of deadlines), ``become``, ``fastio``;
- the engine: ``execution`` (the ``Executor``: one thread pool, one session pool,
  one failure guard, deadlines and cancellation for every operation), ``shards``
  (``--procs``: the hosts split over forked processes, each running the engine on
  its share), ``fleet`` (from options to a ready ``Executor``);
- the operations, each a function of one host's session returning its result:
  ``operations`` (run, ping), ``transfer`` (put, get; ``bulk`` for tar streams),
  ``playbook`` (steps submitted to the engine, batch by batch);
- what comes back: ``results``, ``analysis`` (CPU-bound analyzers in a process
  pool, fed while hosts answer), ``report``, ``outdir``, ``history``, ``metrics``,
  ``htmlreport``;
- ``cli``: the ``remoteops`` command on top; ``lab``: real sshd servers for the
  demo, the tests and the benchmarks.
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
