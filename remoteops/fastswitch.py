"""The switch that turns every fast path off: ``REMOTEOPS_NO_FAST_PATHS``.

Apart from :mod:`remoteops.fastpaths` (which imports paramiko, 0.1 s) so that
analysis worker processes can read it without importing paramiko.
"""

from __future__ import annotations

import os
from typing import Final

__all__ = ["ENV_SWITCH", "switched_off"]

ENV_SWITCH: Final = "REMOTEOPS_NO_FAST_PATHS"
_OFF_VALUES: Final = ("", "0", "false", "no", "off")


def switched_off() -> bool:
    """True when ``REMOTEOPS_NO_FAST_PATHS`` is set to anything but empty, ``0``,
    ``false``, ``no`` or ``off``. Read at each call."""
    return os.environ.get(ENV_SWITCH, "").strip().lower() not in _OFF_VALUES
