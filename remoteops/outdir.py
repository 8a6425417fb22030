"""``--out-dir DIR``: each host's exact output bytes, and only this run's.

Each host's stdout, stderr and exit code go to ``DIR/HOST.out``, ``.err`` and
``.exit``, written under temporary names (``.HOST.out.part``) and renamed when
the command ends, so no half-written file ever has a final name.

DIR holds one run. A nightly cron job reuses the same DIR: before this run
contacts any host, the files the previous run wrote there are removed, so a
host this run does not reach (a smaller ``-l``, an unreachable host) leaves
none of last night's files to be taken for tonight's, by a script or by
``analyze DIR``. Only files remoteops wrote are removed: every run lists in
``DIR/.remoteops-last-run`` each name it writes, as it writes it (one JSON
string a line), and the next run removes exactly those, when they are still
regular files directly in DIR, never following a symlink. Anything else in DIR
(a file of your own, one an older remoteops wrote) is left alone, and
``analyze DIR`` reads only the hosts that list names.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import threading
from pathlib import Path

from remoteops.errors import UsageError

__all__ = [
    "MANIFEST",
    "OutDirSink",
    "continue_run",
    "last_run_hosts",
    "start_run",
    "write_exit",
]

MANIFEST = ".remoteops-last-run"
_HEADER = "# remoteops: files the last run wrote here; the next run here removes them\n"
_SUFFIXES = (".out", ".err", ".exit")
_MANIFEST_MAX = 256 * 1024 * 1024
_lock = threading.Lock()
# The directories whose run another process started (``--procs``: the parent).
_continued: set[str] = set()


def _ours(name: str) -> bool:
    """A name a run writes: ``HOST.out``, ``.err``, ``.exit`` or their ``.part`` files."""
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        return False
    if name.startswith(".") and name.endswith(".part"):
        name = name[1 : -len(".part")]
    return name.endswith(_SUFFIXES) and len(name) > len(".out")


def _listed(out_dir: Path) -> list[str] | None:
    """The names the manifest of ``out_dir`` lists, or None when it has none.

    Only a regular file is read (a symlink in its place is not followed); lines
    that are not a name a run writes are passed over.
    """
    try:
        fd = os.open(out_dir / MANIFEST, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None
        raise _error(out_dir, f"cannot read {MANIFEST}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return None
        data = fh.read(_MANIFEST_MAX)
    names = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        if not line.startswith('"'):
            continue
        with contextlib.suppress(ValueError):
            name = json.loads(line)
            if isinstance(name, str) and _ours(name):
                names.append(name)
    return names


def _error(out_dir: Path, what: str) -> UsageError:
    from remoteops.argcheck import shown

    return UsageError(f"--out-dir {shown(out_dir)}: {what}; no host was contacted")


def start_run(out_dir: Path) -> None:
    """Remove what the previous run wrote into ``out_dir`` and start a new list.

    ``UsageError`` when a file of the previous run cannot be removed: this
    run's results would be mixed with it. In a process that continues a run
    another started (:func:`continue_run`) it does nothing.
    """
    if os.path.abspath(out_dir) in _continued:
        return
    names = _listed(out_dir) or []
    dir_fd = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in dict.fromkeys(names):
            try:
                if not stat.S_ISREG(os.lstat(name, dir_fd=dir_fd).st_mode):
                    continue  # not what a run wrote: a file replaced by something else
                os.unlink(name, dir_fd=dir_fd)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise _error(
                    out_dir, f"cannot remove {name!r}, left by the previous run: {exc.strerror}"
                ) from None
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(MANIFEST, flags, 0o644, dir_fd=dir_fd)
        except OSError as exc:
            raise _error(out_dir, f"cannot write {MANIFEST}: {exc.strerror}") from None
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(_HEADER)
    finally:
        os.close(dir_fd)


def continue_run(out_dir: Path) -> None:
    """This process writes into the run of ``out_dir`` its parent started (a shard of
    ``--procs``): ``start_run`` here must not remove what the other shards write.
    Each name is appended to the list on its own line (``O_APPEND``), so the
    shards' lines never mix."""
    _continued.add(os.path.abspath(out_dir))


def _record(out_dir: Path, name: str) -> None:
    """Add ``name`` to the list of files this run wrote into ``out_dir``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
    line = json.dumps(name) + "\n"
    with _lock:
        fd = os.open(out_dir / MANIFEST, flags, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


def last_run_hosts(out_dir: Path) -> set[str] | None:
    """The hosts the last run wrote files for in ``out_dir``; None when it has no list
    (a directory an older remoteops wrote, or made by hand)."""
    names = _listed(out_dir)
    if names is None:
        return None
    return {name.rsplit(".", 1)[0] for name in names if name.endswith(_SUFFIXES)}


def _write_final(out_dir: Path, name: str) -> tuple[Path, Path]:
    """The final and temporary paths of ``name``, the temporary one listed first."""
    final = out_dir / name
    tmp = out_dir / f".{name}.part"
    _record(out_dir, tmp.name)
    return final, tmp


class OutDirSink:
    """Writes a host's exact output bytes to DIR/<host>.out and .err as they arrive.

    Written under temporary names and renamed when the command ends, so a
    failed run never leaves half-written files under the final names.
    """

    def __init__(self, out_dir: Path, host: str) -> None:
        self._out_dir = out_dir
        self._paths = {
            stream: _write_final(out_dir, f"{host}.{ext}")
            for stream, ext in (("stdout", "out"), ("stderr", "err"))
        }
        self._files = {s: open(tmp, "wb") for s, (_, tmp) in self._paths.items()}  # noqa: SIM115
        self._lock = threading.Lock()

    @property
    def stdout_path(self) -> Path:
        """Where the host's stdout ends up."""
        return self._paths["stdout"][0]

    def write(self, stream: str, data: bytes) -> None:
        """Append ``data`` to the file of ``stream``."""
        with self._lock:
            self._files[stream].write(data)

    def close(self) -> None:
        """Close the files and give them their final names."""
        for stream, fh in self._files.items():
            fh.close()
            final, tmp = self._paths[stream]
            tmp.replace(final)
            _record(self._out_dir, final.name)


def write_exit(out_dir: Path, host: str, exit_code: int | None, status: str) -> None:
    """DIR/<host>.exit: the exit code, or the status when there is none."""
    path, tmp = _write_final(out_dir, f"{host}.exit")
    tmp.write_text(f"{exit_code if exit_code is not None else status}\n", encoding="utf-8")
    tmp.replace(path)
    _record(out_dir, path.name)
