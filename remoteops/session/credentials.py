"""Credentials of one run: private keys parsed once, their passphrase asked once,
the ssh-agent's keys asked once, passwords; shared by every host.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import paramiko

__all__ = ["Credentials"]


class Credentials:
    """Keys, passphrases and passwords of one run, loaded once and shared by all hosts.

    Parsing a private key costs milliseconds; a fleet of 1,000 hosts sharing one
    key file must not pay it 1,000 times.
    """

    def __init__(
        self,
        *,
        passphrase: str | None = None,
        password: str | None = None,
        use_agent: bool = True,
        passphrase_prompt: Callable[[str], str | None] | None = None,
    ) -> None:
        self._passphrase = passphrase
        self._prompt = passphrase_prompt
        self._has_prompted = False
        self._password = password
        self._use_agent = use_agent
        self._keys: dict[str, paramiko.PKey | None] = {}
        self._errors: dict[str, str] = {}
        self._needs_passphrase: set[str] = set()
        self._agent_keys: tuple[paramiko.AgentKey, ...] | None = None
        self._agent: paramiko.Agent | None = None
        self._lock = threading.Lock()
        self._agent_lock = threading.Lock()

    def __repr__(self) -> str:  # never show secrets
        return f"Credentials(keys={sorted(self._keys)!r})"

    @property
    def password(self) -> str | None:
        """The password for password authentication (``--ask-pass``), if any."""
        return self._password

    def key(self, path: str) -> paramiko.PKey | None:
        """The private key at ``path``, parsed once; None if missing or unreadable."""
        with self._lock:
            if path in self._keys:
                return self._keys[path]
            key = self._load(path)
            if key is None and path in self._needs_passphrase and self._may_prompt():
                # One prompt per run, under the lock: other workers wait for it.
                self._has_prompted = True
                assert self._prompt is not None
                self._passphrase = self._prompt(path)
                del self._errors[path]
                self._needs_passphrase.discard(path)
                key = self._load(path)
            self._keys[path] = key
            return key

    def _may_prompt(self) -> bool:
        return self._prompt is not None and self._passphrase is None and not self._has_prompted

    def _load(self, path: str) -> paramiko.PKey | None:
        try:
            secret = self._passphrase.encode() if self._passphrase is not None else None
            # paramiko wants bytes here whatever its stubs say
            return paramiko.PKey.from_path(path, password=secret)  # type: ignore[arg-type]
        except FileNotFoundError:
            return None
        except (paramiko.PasswordRequiredException, TypeError):
            # PKey.from_path lets cryptography's TypeError ("Key is password-protected")
            # through instead of PasswordRequiredException.
            self._needs_passphrase.add(path)
            self._errors[path] = (
                f"{path} is encrypted; give its passphrase with --key-passphrase-file "
                "(or run on a terminal to be asked)"
            )
        except (paramiko.SSHException, ValueError) as exc:
            if self._passphrase is not None:
                self._errors[path] = f"{path}: wrong passphrase or unreadable key ({exc})"
            else:
                self._errors[path] = f"{path}: unreadable key ({exc})"
        except OSError as exc:
            self._errors[path] = f"{path}: {exc.strerror}"
        return None

    def key_error(self, path: str) -> str | None:
        """Why ``path`` could not be used, if it could not."""
        return self._errors.get(path)

    def agent_keys(self) -> tuple[paramiko.AgentKey, ...]:
        """Keys offered by ssh-agent (``$SSH_AUTH_SOCK``), asked once per run."""
        if not self._use_agent or not os.environ.get("SSH_AUTH_SOCK"):
            return ()
        with self._lock:
            if self._agent_keys is None:
                try:
                    self._agent = paramiko.Agent()
                    keys = tuple(self._agent.get_keys())
                except (paramiko.SSHException, OSError):
                    keys = ()
                for key in keys:
                    _serialise_signing(key, self._agent_lock)
                self._agent_keys = keys
            return self._agent_keys

    def close(self) -> None:
        """Close the agent connection."""
        if self._agent is not None:
            self._agent.close()


def _serialise_signing(key: paramiko.AgentKey, lock: threading.Lock) -> None:
    """Let one thread at a time ask the agent to sign.

    All agent keys share one agent socket, and paramiko writes a request and
    reads its answer without a lock: two hosts signing at once would read each
    other's answers.
    """
    sign = key.sign_ssh_data

    def locked_sign(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return sign(*args, **kwargs)

    key.sign_ssh_data = locked_sign  # type: ignore[method-assign]
