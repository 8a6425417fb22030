"""What ``put`` sends: local files, directories and globs scanned and read once.

``SourceSet.scan`` expands globs, walks directories (symlinks inside a tree are
sent only when they point to a file in the same tree) and keeps the files in
memory up to ``DEFAULT_MEMORY_BUDGET`` in total, shared read-only by every host;
larger ones stream from disk for each host (``SourceFile.chunks``).
"""

from __future__ import annotations

import glob
import hashlib
import os
import posixpath
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from remoteops.errors import TransferError, UsageError
from remoteops.transfer.model import _CHUNK, _has_magic, _wire_seconds

DEFAULT_MEMORY_BUDGET = 256 * 1024 * 1024
"""Source files are kept in memory (and shared by all hosts) up to this many bytes in total."""


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One local file to upload: where it goes (relative), its metadata and maybe its bytes."""

    path: Path
    relative: str
    size: int
    mode: int
    mtime: int
    sha256: str | None = None
    data: bytes | None = field(default=None, repr=False)
    atime: int = 0

    def chunks(self, start: int = 0, size: int = _CHUNK) -> Iterator[bytes]:
        """The file's bytes from ``start``, from memory or streamed from disk."""
        if self.data is not None:
            for offset in range(start, self.size, size):
                yield self.data[offset : offset + size]
            return
        sent = start
        with open(self.path, "rb") as fh:
            fh.seek(start)
            while sent < self.size:
                chunk = fh.read(min(size, self.size - sent))
                if not chunk:
                    break
                sent += len(chunk)
                yield chunk
        if sent != self.size:
            raise TransferError("", f"local {self.path}: file shrank while it was being sent")

    def prefix_sha256(self, length: int) -> str:
        """sha256 of the first ``length`` bytes (for ``resume``)."""
        digest = hashlib.sha256()
        for chunk in self.chunks(0, 1024 * 1024):
            digest.update(chunk[: max(0, length)])
            length -= len(chunk)
            if length <= 0:
                break
        return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class SourceSet:
    """What ``put`` sends: local files scanned and read once, shared read-only by all hosts.

    Files are kept in memory while their total stays within the memory budget
    (256 MiB by default); larger ones are streamed from disk for each host.
    """

    files: tuple[SourceFile, ...]
    dirs: tuple[tuple[str, int], ...]
    is_single_file: bool
    warnings: tuple[str, ...] = ()

    @property
    def total_bytes(self) -> int:
        """Bytes of all files."""
        return sum(f.size for f in self.files)

    @classmethod
    def scan(
        cls,
        sources: Sequence[str],
        *,
        mode: int | None = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        need_hash: bool = False,
    ) -> SourceSet:
        """Expand local globs, walk directories and read files; raise UsageError if one is missing.

        A source ``dir`` lands as ``DEST/dir/...``; ``dir/`` (trailing slash)
        sends its contents into ``DEST/``. Symlinks named on the command line
        are followed; inside a directory a symlink to a file inside the same
        source tree is sent as that file, any other symlink (outside the tree,
        to a directory, dangling) and special files are skipped with a warning.
        ``mode`` replaces every file's permission bits.
        """
        picked: list[tuple[Path, str]] = []  # (local path, relative destination)
        dirs: dict[str, int] = {}
        warnings: list[str] = []
        expanded: list[tuple[str, bool]] = []
        for source in sources:
            if _has_magic(source):
                matches = sorted(glob.glob(source))
                if not matches:
                    raise UsageError(f"local {source}: no file matches this pattern")
                expanded += [(m, False) for m in matches]
            else:
                expanded.append((source, True))
        for source, explicit in expanded:
            path = Path(source)
            try:
                info = path.stat()
            except OSError as exc:
                raise UsageError(f"local {source}: {exc.strerror}") from None
            if stat.S_ISREG(info.st_mode):
                picked.append((path, path.name))
            elif stat.S_ISDIR(info.st_mode):
                into_contents = source.endswith("/") and explicit
                base = "" if into_contents else path.resolve().name
                if base:
                    dirs[base] = stat.S_IMODE(info.st_mode)
                _walk_local(path, base, picked, dirs, warnings)
            else:
                raise UsageError(f"local {source}: not a regular file or directory")
        is_single = len(picked) == 1 and not dirs and len(expanded) == 1
        seen: dict[str, Path] = {}
        for local, relative in picked:
            if relative in seen and seen[relative] != local:
                raise UsageError(
                    f"local {local} and {seen[relative]} would both land on {relative!r}"
                )
            seen[relative] = local
        files: list[SourceFile] = []
        budget = memory_budget
        for relative, local in sorted(seen.items()):
            files.append(_read_source(local, relative, mode, need_hash, budget))
            if files[-1].data is not None:
                budget -= files[-1].size
        return cls(
            files=tuple(files),
            dirs=tuple(sorted(dirs.items())),
            is_single_file=is_single,
            warnings=tuple(warnings),
        )


def _read_source(
    local: Path, relative: str, mode: int | None, need_hash: bool, budget: int
) -> SourceFile:
    try:
        with open(local, "rb") as fh:
            info = os.fstat(fh.fileno())
            data: bytes | None = None
            digest: str | None = None
            if info.st_size <= budget:
                data = fh.read()
                if len(data) != info.st_size:
                    raise UsageError(f"local {local}: file changed while it was being read")
                digest = hashlib.sha256(data).hexdigest()
            elif need_hash:
                hasher = hashlib.sha256()
                for block in iter(lambda: fh.read(1024 * 1024), b""):
                    hasher.update(block)
                digest = hasher.hexdigest()
    except OSError as exc:
        raise UsageError(f"local {local}: {exc.strerror}") from None
    return SourceFile(
        path=local,
        relative=relative,
        size=info.st_size,
        mode=mode if mode is not None else stat.S_IMODE(info.st_mode),
        mtime=_wire_seconds(info.st_mtime_ns),
        sha256=digest,
        data=data,
        atime=_wire_seconds(info.st_atime_ns),
    )


def _walk_local(
    top: Path,
    base: str,
    picked: list[tuple[Path, str]],
    dirs: dict[str, int],
    warnings: list[str],
) -> None:
    root_real = top.resolve()
    for current, subdirs, names in os.walk(top, followlinks=False):
        rel_dir = os.path.relpath(current, top)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
        for name in list(subdirs):
            full = Path(current, name)
            relative = posixpath.join(base, rel_dir, name).lstrip("/")
            if full.is_symlink():
                subdirs.remove(name)
                warnings.append(f"local {full}: symlink to a directory skipped (not followed)")
                continue
            dirs[relative] = stat.S_IMODE(full.lstat().st_mode)
        for name in names:
            full = Path(current, name)
            relative = posixpath.join(base, rel_dir, name).lstrip("/")
            info = full.lstat()
            if stat.S_ISLNK(info.st_mode):
                target = full.resolve()
                if target.is_file() and target.is_relative_to(root_real):
                    picked.append((target, relative))
                else:
                    warnings.append(
                        f"local {full}: symlink pointing outside {top} (or not to a file) skipped"
                    )
            elif stat.S_ISREG(info.st_mode):
                picked.append((full, relative))
            else:
                warnings.append(f"local {full}: not a regular file; skipped")
