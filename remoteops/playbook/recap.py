"""The end of a playbook run: per-host counts (Ansible's PLAY RECAP) and the result."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from remoteops.errors import InventoryError
from remoteops.nodeset import fold
from remoteops.results import RunResult

__all__ = ["HostCounts", "PlaybookResult", "fold_hosts", "render_recap"]


def fold_hosts(hosts: Sequence[str]) -> str:
    """``web[01-10] (10)``: hosts as a node set with their count."""
    try:
        text = fold(hosts)
    except InventoryError:  # names a node set cannot hold (brackets, commas)
        text = ",".join(hosts)
    return f"{text} ({len(hosts)})"


@dataclass(slots=True)
class HostCounts:
    """How a host's steps ended: ``ok`` counts ``changed`` ones too."""

    ok: int = 0
    changed: int = 0
    failed: int = 0
    skipped: int = 0
    unreachable: int = 0
    ignored: int = 0


@dataclass(slots=True)
class PlaybookResult(RunResult):
    """Each host's outcome of the whole playbook (the first failure, else ok), plus the recap.

    ``stopped`` says why a rollout stopped early (None when it ran to the end).
    """

    recap: dict[str, HostCounts] = field(default_factory=dict)
    stopped: str | None = None

    def summary_json(self) -> dict[str, Any]:
        """The summary line of docs/json.md, with ``recap`` and ``stopped`` added."""
        data = RunResult.summary_json(self)
        data["recap"] = {host: asdict(counts) for host, counts in self.recap.items()}
        data["stopped"] = self.stopped
        return data


def render_recap(result: PlaybookResult) -> str:
    """``RECAP`` and one line per host: ``web01  ok=5 changed=2 failed=0 ...``."""
    if not result.recap:
        return ""
    width = max(len(h) for h in result.recap)
    lines = ["RECAP"]
    for host, counts in result.recap.items():
        parts = " ".join(f"{k}={v}" for k, v in asdict(counts).items())
        lines.append(f"{host.ljust(width)}  {parts}")
    return "\n".join(lines) + "\n"
