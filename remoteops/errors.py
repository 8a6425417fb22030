"""The exception tree of remoteops.

```
RemoteOpsError                 exit 1 unless a subclass says otherwise
  UsageError                   exit 2: bad arguments or configuration
    PlaybookError              a playbook that cannot run: FILE:LINE: ...
  InventoryError               exit 2: an inventory or pattern that cannot be used
    UnknownHostError           (also a KeyError)
  LabError                     exit 2: the local lab cannot be started or found
  LockHeldError                exit 75: another run holds the --lock file
  HostError (.host)            one host failed; the run goes on
    ConnectError               exit 4: TCP, DNS or banner failure
    AuthenticationError        exit 4
    HostKeyError               exit 4: unknown, changed or revoked host key
    CommandTimeoutError        exit 3
    InterruptedHostError       Ctrl-C or SIGTERM reached this host
    TransferError              exit 5
  AnalysisError                exit 5
  RunFailedError               wraps a RunResult; exit code from the result
```

Every class keeps all its constructor arguments in ``args`` so that instances
pickle (they travel between the analysis processes).
"""

from __future__ import annotations

from typing import Any, ClassVar

from remoteops.exitcodes import ExitCode

__all__ = [
    "AnalysisError",
    "AuthenticationError",
    "CommandTimeoutError",
    "ConnectError",
    "HostError",
    "HostKeyError",
    "InterruptedHostError",
    "InventoryError",
    "LabError",
    "LockHeldError",
    "PlaybookError",
    "RemoteOpsError",
    "RunFailedError",
    "TransferError",
    "UnknownHostError",
    "UsageError",
]


class RemoteOpsError(Exception):
    """Base class of every error remoteops raises on purpose."""

    exit_code: ClassVar[ExitCode] = ExitCode.INTERNAL

    def __init__(self, message: str, *args: Any) -> None:
        super().__init__(message, *args)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(RemoteOpsError):
    """Bad arguments or configuration; nothing was contacted."""

    exit_code = ExitCode.USAGE


class PlaybookError(UsageError):
    """A playbook that cannot run; the message starts with ``FILE:LINE:``."""


class InventoryError(RemoteOpsError):
    """An inventory, host pattern or ssh_config that cannot be used."""

    exit_code = ExitCode.USAGE


class UnknownHostError(InventoryError, KeyError):
    """A host name that no inventory defines."""

    def __str__(self) -> str:  # KeyError would add quotes
        return self.message


class LabError(RemoteOpsError):
    """The local lab cannot be started, found or stopped."""

    exit_code = ExitCode.USAGE


class LockHeldError(RemoteOpsError):
    """Another run holds the lock named by ``--lock``; nothing was contacted."""

    exit_code = ExitCode.LOCKED


class HostError(RemoteOpsError):
    """One host failed; the other hosts of the run carry on."""

    exit_code = ExitCode.FAILED
    status: ClassVar[str] = "failed"
    attempts: int = 1
    """How many times connecting was tried (``--retries``) before this error."""

    def __init__(self, host: str, message: str) -> None:
        super().__init__(message, host)
        self.host = host
        self.args = (host, message)


class ConnectError(HostError):
    """TCP, DNS, proxy or SSH banner failure."""

    exit_code = ExitCode.UNREACHABLE
    status = "unreachable"


class AuthenticationError(HostError):
    """The server refused every credential offered."""

    exit_code = ExitCode.UNREACHABLE
    status = "unreachable"


class HostKeyError(HostError):
    """The host key is unknown (strict policy), changed or revoked."""

    exit_code = ExitCode.UNREACHABLE
    status = "hostkey"


class CommandTimeoutError(HostError):
    """A connect, command or transfer deadline passed."""

    exit_code = ExitCode.TIMEOUT
    status = "timeout"


class InterruptedHostError(HostError):
    """The run was interrupted (Ctrl-C, SIGTERM) while this host was being worked on."""

    exit_code = ExitCode.FAILED
    status = "interrupted"


class TransferError(HostError):
    """A file transfer failed; the message names the path and the side."""

    exit_code = ExitCode.FAILED
    status = "failed"


class AnalysisError(RemoteOpsError):
    """An analyzer failed or was given input it cannot read."""

    exit_code = ExitCode.FAILED


class RunFailedError(RemoteOpsError):
    """Raised by ``RunResult.raise_on_error()`` when some host did not succeed."""

    def __init__(self, message: str, result: Any = None, exit_code: int = ExitCode.FAILED) -> None:
        super().__init__(message, result, exit_code)
        self.result = result
        self.run_exit_code = exit_code
        self.args = (message, result, exit_code)
