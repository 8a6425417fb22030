"""Per-host results, the run's result, and their JSON Lines form (docs/json.md).

A non-zero exit is data, not an exception: ``HostResult.status`` says what
happened and ``RunResult.exit_code`` folds a run into one exit code, choosing
3 (timeout) over 4 (unreachable or host key) over 5 (failed), as pssh does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from remoteops.errors import RunFailedError
from remoteops.exitcodes import ExitCode
from remoteops.wording import plural

__all__ = [
    "STATUSES",
    "HostResult",
    "RunResult",
    "Status",
    "exit_code_for",
]

Status = Literal["ok", "failed", "unreachable", "hostkey", "timeout", "interrupted", "skipped"]
STATUSES: Final[tuple[Status, ...]] = (
    "ok",
    "failed",
    "unreachable",
    "hostkey",
    "timeout",
    "interrupted",
    "skipped",
)
JSON_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class HostResult:
    """What happened on one host. Plain data: it pickles into analysis workers."""

    host: str
    address: str
    port: int
    status: Status
    exit_code: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    duration_s: float = 0.0
    error: str | None = None
    stdout_truncated: int = 0
    stderr_truncated: int = 0
    signal: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_ok(self) -> bool:
        """True when the host succeeded."""
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        """The ``host`` line of the JSON Lines (docs/json.md).

        Output that is not valid UTF-8 is decoded with ``errors="replace"``.
        """
        data: dict[str, Any] = {
            "v": JSON_VERSION,
            "type": "host",
            "host": self.host,
            "address": self.address,
            "port": self.port,
            "status": self.status,
            "exit_code": self.exit_code,
            "stdout": self.stdout.decode("utf-8", errors="replace"),
            "stderr": self.stderr.decode("utf-8", errors="replace"),
            "duration_s": round(self.duration_s, 3),
            "error": self.error,
        }
        if self.signal:
            data["signal"] = self.signal
        if self.stdout_truncated or self.stderr_truncated:
            data["stdout_truncated_bytes"] = self.stdout_truncated
            data["stderr_truncated_bytes"] = self.stderr_truncated
        for key, value in self.extra.items():
            if not key.startswith("_"):  # "_name": for other stages in this process only
                data.setdefault(key, value)
        return data


def exit_code_for(statuses: Iterable[str], *, interrupted_by: int | None = None) -> int:
    """Fold host statuses into an exit code of docs/exit-codes.md (3 before 4 before 5)."""
    if interrupted_by is not None:
        return interrupted_by
    seen = set(statuses)
    if "timeout" in seen:
        return ExitCode.TIMEOUT
    if seen & {"unreachable", "hostkey"}:
        return ExitCode.UNREACHABLE
    if seen & {"failed", "interrupted", "skipped"}:
        return ExitCode.FAILED
    return ExitCode.OK


@dataclass(slots=True)
class RunResult(Mapping[str, HostResult]):
    """Every host's result of one run, in the order hosts finished."""

    results: dict[str, HostResult] = field(default_factory=dict)
    duration_s: float = 0.0
    interrupted_by: int | None = None

    def add(self, result: HostResult) -> None:
        """Record one host's result."""
        self.results[result.host] = result

    def __getitem__(self, host: str) -> HostResult:
        return self.results[host]

    def __iter__(self) -> Iterator[str]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    @property
    def failed_hosts(self) -> dict[str, HostResult]:
        """The hosts that did not succeed."""
        return {name: r for name, r in self.results.items() if not r.is_ok}

    @property
    def failed(self) -> bool:
        """True if any host did not succeed."""
        return bool(self.failed_hosts)

    def counts(self) -> dict[str, int]:
        """How many hosts ended in each status."""
        counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
        for r in self.results.values():
            counts[r.status] += 1
        return counts

    @property
    def exit_code(self) -> int:
        """The exit code for this run (docs/exit-codes.md)."""
        return exit_code_for(
            (r.status for r in self.results.values()), interrupted_by=self.interrupted_by
        )

    def summary_json(self) -> dict[str, Any]:
        """The ``summary`` line of the JSON Lines (docs/json.md)."""
        counts = self.counts()
        return {
            "v": JSON_VERSION,
            "type": "summary",
            "hosts": len(self.results),
            "ok": counts["ok"],
            "failed": counts["failed"],
            "unreachable": counts["unreachable"] + counts["hostkey"],
            "hostkey": counts["hostkey"],
            "timeout": counts["timeout"],
            "interrupted": counts["interrupted"],
            "skipped": counts["skipped"],
            "duration_s": round(self.duration_s, 3),
            "exit_code": self.exit_code,
        }

    def raise_on_error(self) -> None:
        """Raise RunFailedError if any host did not succeed."""
        if self.failed:
            failed = self.failed_hosts
            raise RunFailedError(
                f"{len(failed)} of {plural(len(self.results), 'host')} did not succeed: "
                + ", ".join(sorted(failed)[:10]),
                self,
                self.exit_code,
            )
