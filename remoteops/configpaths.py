"""Where the config files are, and whether there is one to read: cheap, for every start.

:mod:`remoteops.config` reads and checks the files (docs/config.md); importing
it costs ~7 ms, which a command started with no config file and no profile
(the usual case, and every test) need not pay: :func:`nothing_to_read` says so
from the environment and two ``stat`` calls.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "BUILT_ONLY",
    "CONFIG_ENV",
    "PROFILE_ENV",
    "SYSTEM_CONFIG",
    "SYSTEM_CONFIG_ENV",
    "nothing_to_read",
    "system_config_path",
    "user_config_path",
]

CONFIG_ENV = "REMOTEOPS_CONFIG"
"""Names the user's config file instead of ``$XDG_CONFIG_HOME/remoteops/config.toml``."""
SYSTEM_CONFIG_ENV = "REMOTEOPS_SYSTEM_CONFIG"
"""Names the system-wide config file instead of :data:`SYSTEM_CONFIG`."""
BUILT_ONLY = "remoteops_built_only"
"""The attribute naming the commands of a command line built with only some of them
(``remoteops.cli.app``): the config files are still checked against every command."""
PROFILE_ENV = "REMOTEOPS_PROFILE"
"""Chooses a profile when ``--profile`` is not given (the option's ``envvar``)."""
SYSTEM_CONFIG = Path("/etc/remoteops/config.toml")


def user_config_path(env: Mapping[str, str] | None = None) -> Path:
    """``$REMOTEOPS_CONFIG``, else ``$XDG_CONFIG_HOME/remoteops/config.toml`` (an
    absolute ``XDG_CONFIG_HOME``, else ``~/.config``)."""
    env = os.environ if env is None else env
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    base = env.get("XDG_CONFIG_HOME", "")
    root = Path(base) if os.path.isabs(base) else Path.home() / ".config"
    return root / "remoteops" / "config.toml"


def system_config_path(env: Mapping[str, str] | None = None) -> Path:
    """``$REMOTEOPS_SYSTEM_CONFIG``, else ``/etc/remoteops/config.toml``."""
    env = os.environ if env is None else env
    return Path(env[SYSTEM_CONFIG_ENV]) if env.get(SYSTEM_CONFIG_ENV) else SYSTEM_CONFIG


def nothing_to_read(env: Mapping[str, str] | None = None) -> bool:
    """True when neither config file has anything to read: each is absent from its
    default place, or is the ``/dev/null`` a variable names. A file a variable names
    must exist, so any other named path is left to :func:`remoteops.config.load_config`
    (which says what is wrong with it)."""
    env = os.environ if env is None else env
    for path, variable in (
        (system_config_path(env), SYSTEM_CONFIG_ENV),
        (user_config_path(env), CONFIG_ENV),
    ):
        if env.get(variable):
            if str(path) != os.devnull:
                return False
        elif os.path.lexists(path):
            return False
    return True
