"""The per-host operations: functions of one host's open session returning its result.

``remoteops.execution.Executor`` is the engine: it owns the thread pool, the
session pool (one connection per host), the failure guard, deadlines and
cancellation, and fans an operation out over the hosts. An operation only
talks to one host over the session it is handed, and leaves it open:

* ``command``: ``run_on`` runs a ``CommandSpec`` (``run``, a playbook's
  ``run`` and ``script`` steps);
* ``ping``: ``ping_on`` measures keepalive round trips (``ping`` and the
  ``ping`` step);
* ``put`` and ``get`` live in ``remoteops.transfer`` (``Put``, ``Get``),
  with the SFTP machinery they share.
"""

from __future__ import annotations

from remoteops.operations.command import CommandSpec, run_on, sudo_refusal
from remoteops.operations.ping import ping_on

__all__ = ["CommandSpec", "ping_on", "run_on", "sudo_refusal"]
