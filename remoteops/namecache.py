"""Host and group names of inventories, cached for shell completion.

A shell asks for completions on every Tab and waits for the answer: loading a
10,000-host inventory each time is too slow. :func:`inventory_names` keeps the
names in ``$XDG_CACHE_HOME/remoteops/names-HASH.json`` (mode 0600, written
atomically), one file per list of sources, valid while every file of those
sources keeps its path, modification time and size; on a miss, YAML files are read
for their names alone: their lines (:mod:`remoteops.inventory_lines`), else their
parser's events (:mod:`remoteops.inventory_names`). :func:`complete_pattern`
completes the last term of a host pattern (``web:&e`` -> ``web:&eu``).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from remoteops.errors import InventoryError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "InventoryNames",
    "complete_pattern",
    "default_cache_dir",
    "inventory_names",
    "sources_fingerprint",
]

#: Bumped when the cache file's layout changes: older files are then ignored.
_FORMAT = 1
#: Files of one directory inventory looked at for the fingerprint; past that, no cache.
_MAX_FILES = 10_000
#: Characters that end one term of a pattern and start the next (docs/patterns.md).
_TERM_SEPARATORS = ",:&!"


@dataclass(frozen=True, slots=True)
class InventoryNames:
    """The names of an inventory's groups and hosts, in inventory order."""

    groups: tuple[str, ...]
    hosts: tuple[str, ...]


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/remoteops``, else ``~/.cache/remoteops``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "remoteops"


def _stat_entry(path: str) -> list[Any]:
    st = os.stat(path)
    return [path, st.st_mtime_ns, st.st_size, st.st_ino]


def sources_fingerprint(sources: Sequence[str]) -> list[Any] | None:
    """What must be unchanged for cached names to hold: every source file's absolute
    path, modification time, size and inode (all files under a directory source); an
    inline ``a,b,c`` list as itself. None when a source cannot be looked at or is too
    large a tree; an InventoryError for one that is not a regular file or directory (a
    FIFO would block whoever reads it)."""
    found: list[Any] = []
    for source in sources:
        if "," in source and not os.path.exists(source):
            found.append(["inline", source])
            continue
        path = os.path.abspath(os.path.expanduser(source))
        try:
            if os.path.isfile(path):
                found.append(_stat_entry(path))
            elif os.path.isdir(path):
                entries: list[Any] = [_stat_entry(path)]
                for top, dirs, files in os.walk(path):
                    dirs.sort()
                    for name in [*sorted(files), *dirs]:
                        entries.append(_stat_entry(os.path.join(top, name)))
                    if len(entries) > _MAX_FILES:
                        return None
                found.append(entries)
            elif os.path.exists(path):
                raise InventoryError(f"inventory {source!r}: not a regular file or directory")
            else:
                return None
        except OSError:
            return None
    return found


def _cache_file(cache_dir: Path, sources: Sequence[str]) -> Path:
    """The cache file of ``sources``: its name only tells lists of sources apart, it
    vouches for nothing. The fingerprint inside (every path, time and size) is what
    makes cached names valid; two lists whose names collide only overwrite each
    other's file. So a CRC-32 does (``zlib``, imported anyway), not a cryptographic
    hash (``hashlib``: ~2.5 ms of every Tab to import)."""
    where = json.dumps([os.path.abspath(os.path.expanduser(s)) for s in sources])
    return cache_dir / f"names-{zlib.crc32(where.encode()):08x}.json"


def _read_cache(path: Path, fingerprint: list[Any]) -> InventoryNames | None:
    try:
        with path.open(encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        return None
    if data.get("fingerprint") != fingerprint:
        return None
    groups, hosts = data.get("groups"), data.get("hosts")
    if not isinstance(groups, list) or not isinstance(hosts, list):
        return None
    return InventoryNames(groups=tuple(map(str, groups)), hosts=tuple(map(str, hosts)))


def _write_cache(path: Path, fingerprint: list[Any], names: InventoryNames) -> None:
    """Replace ``path`` atomically (a reader sees the old file or the new one, whole);
    the file is the user's alone (0600) in a directory that is too (0700)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = {
        "format": _FORMAT,
        "fingerprint": fingerprint,
        "groups": list(names.groups),
        "hosts": list(names.hosts),
    }
    # A name of this process alone, created exclusively (0600): tempfile's random names
    # would import ``random``, milliseconds a first Tab waits for.
    tmp = str(path.parent / f".names-{os.getpid()}-{time.monotonic_ns()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(data, separators=(",", ":")))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def inventory_names(sources: Sequence[str], *, cache_dir: Path | None = None) -> InventoryNames:
    """The group and host names of the inventories ``sources``, from the cache when the
    files are unchanged, else read (:mod:`remoteops.inventory_lines`, then
    :mod:`remoteops.inventory_names` for YAML files they are sure of,
    ``remoteops.inventory`` for the rest) and cached.

    Errors of the inventory itself are raised (``InventoryError``); a cache that
    cannot be read or written is passed over.
    """
    cache_dir = default_cache_dir() if cache_dir is None else cache_dir
    fingerprint = sources_fingerprint(sources)
    cache = _cache_file(cache_dir, sources)
    if fingerprint is not None:
        cached = _read_cache(cache, fingerprint)
        if cached is not None:
            return cached
    from remoteops.inventory_lines import scan_names

    names = scan_names(sources)  # block-style YAML's names from its lines: no YAML parser
    if names is None:
        from remoteops.inventory_names import read_names

        names = read_names(sources)  # the names alone, from YAML's events: ~10x faster
    if names is None:  # not certain to agree with the loader: the loader decides
        from remoteops.inventory import load_inventory

        inventory = load_inventory(list(sources))
        names = InventoryNames(groups=tuple(inventory.groups), hosts=tuple(inventory.hosts))
    # Checked again after loading: a file that changed meanwhile is not cached as is.
    if fingerprint is not None and fingerprint == sources_fingerprint(sources):
        with contextlib.suppress(OSError):
            _write_cache(cache, fingerprint, names)
    return names


def complete_pattern(
    incomplete: str, candidates: Sequence[str], *, terms: bool = True
) -> list[str]:
    """The ``candidates`` (names) ``incomplete`` starts, and with ``terms`` the completions
    of the pattern's last term: ``web:&e`` -> ``web:&eu``. A term that is a file
    (``@FILE``) or a regular expression (``~RE``) gets nothing."""
    found = dict.fromkeys(name for name in candidates if name.startswith(incomplete))
    cut = max(incomplete.rfind(c) for c in _TERM_SEPARATORS) + 1 if terms else 0
    prefix, term = incomplete[:cut], incomplete[cut:]
    if cut and not term.startswith(("@", "~")):
        found.update(dict.fromkeys(prefix + name for name in candidates if name.startswith(term)))
    return list(found)
