"""Playbooks: ordered steps in YAML over one connection per host, with rolling batches.

``load_playbook`` reads and checks a file (every problem is ``FILE:LINE: ...``,
exit 2, before any host is contacted); ``check_playbook`` checks the names its
templates read against the inventory; ``PlaybookRunner`` runs it and returns a
``PlaybookResult`` with each host's outcome and the recap.
"""

from __future__ import annotations

from remoteops.errors import PlaybookError  # with the other errors; public here too
from remoteops.playbook.model import Play, Playbook, Step, load_playbook
from remoteops.playbook.recap import HostCounts, PlaybookResult, fold_hosts, render_recap
from remoteops.playbook.runner import Answer, PlaybookRunner, Reporter, StepOutcome
from remoteops.playbook.validate import BUILTINS, check_playbook, resolve_start_at
from remoteops.playbook.variables import parse_extra_vars

__all__ = [
    "BUILTINS",
    "Answer",
    "HostCounts",
    "Play",
    "Playbook",
    "PlaybookError",
    "PlaybookResult",
    "PlaybookRunner",
    "Reporter",
    "Step",
    "StepOutcome",
    "check_playbook",
    "fold_hosts",
    "load_playbook",
    "parse_extra_vars",
    "render_recap",
    "resolve_start_at",
]
