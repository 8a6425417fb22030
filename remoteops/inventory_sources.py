"""Which inventories are in effect: the ``-i`` list, else ``$REMOTEOPS_INVENTORY``, else
./inventories/hosts.yml.

Kept apart from :mod:`remoteops.inventory` (YAML, patterns, the loader) so that shell
completion, which starts a process on every Tab, can tell without importing them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["DEFAULT_INVENTORY", "default_inventory_sources", "inventory_sources"]

#: The inventory used when neither -i nor $REMOTEOPS_INVENTORY names one.
DEFAULT_INVENTORY = "./inventories/hosts.yml"


def default_inventory_sources(env: Mapping[str, str] | None = None) -> list[str]:
    """``$REMOTEOPS_INVENTORY`` split on ``os.pathsep``, else ``./inventories/hosts.yml``."""
    env = os.environ if env is None else env
    value = env.get("REMOTEOPS_INVENTORY", "")
    sources = [part for part in value.split(os.pathsep) if part.strip()]
    return sources or [DEFAULT_INVENTORY]


def inventory_sources(given: Sequence[str] | None) -> list[str]:
    """The inventory sources in effect: ``given``, else the default ones."""
    return list(given) if given else default_inventory_sources()
