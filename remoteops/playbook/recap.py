"""The end of a playbook run: per-host counts (Ansible's PLAY RECAP) and the result."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from remoteops.nodeset import fold_hosts
from remoteops.results import RunResult

__all__ = ["HostCounts", "PlaybookResult", "fold_hosts", "render_recap"]


@dataclass(slots=True)
class HostCounts:
    """How a host's steps ended: ``ok`` counts ``changed`` ones too; ``interrupted``, a step
    stopped by Ctrl-C or SIGTERM."""

    ok: int = 0
    changed: int = 0
    failed: int = 0
    skipped: int = 0
    unreachable: int = 0
    ignored: int = 0
    interrupted: int = 0


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
    """``RECAP`` and one line per host: ``web01  ok=5 changed=2 failed=0 ...``.

    The ``interrupted=`` column shows only when some step was interrupted.
    """
    if not result.recap:
        return ""
    width = max(len(h) for h in result.recap)
    interrupted = any(counts.interrupted for counts in result.recap.values())
    lines = ["RECAP"]
    for host, counts in result.recap.items():
        shown = asdict(counts)
        if not interrupted:
            del shown["interrupted"]
        parts = " ".join(f"{k}={v}" for k, v in shown.items())
        lines.append(f"{host.ljust(width)}  {parts}")
    return "\n".join(lines) + "\n"
