"""Saved results to analyse again: a JSON Lines run, an ``--out-dir``, a ``get`` directory.

* a file: JSON Lines as ``--json`` prints them; each ``host`` line is a host
  and its ``stdout`` is the document; a line of ``play --json`` (it has
  ``step``) is the document ``step N 'NAME'`` of its host, so every step is
  analysed apart from the others (a ``group`` row, a ``drift`` majority per
  step); only ``run`` and ``script`` steps have output to analyse, and a host
  a step skipped has none;
* a directory holding ``HOST.out`` / ``HOST.exit`` files (``run --out-dir``):
  each ``.out`` file is its host's stdout, read by path; only the hosts of the
  last run into it, when it lists them (:mod:`remoteops.outdir`), so files
  that are not that run's are never analysed as if they were;
* any other directory (``get``'s LOCAL_DIR): each sub-directory is a host and
  every regular file under it a document named by its remote path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from remoteops.errors import UsageError
from remoteops.outdir import MANIFEST, last_run_hosts
from remoteops.results import STATUSES, HostResult

__all__ = ["SourceItem", "downloaded_files", "host_files", "iter_source", "source_kind"]

# (result, {document name: local path} or None for the result's stdout,
#  the name of the stdout document)
SourceItem = tuple[HostResult, dict[str, Path] | None, str]

_OUTPUT_STEPS = ("run", "script")


def source_kind(path: Path) -> str:
    """``jsonl``, ``out-dir`` or ``get-dir``; ``UsageError`` if ``path`` is none of them."""
    if path.is_file():
        return "jsonl"
    if path.is_dir():
        names = os.listdir(path)
        if MANIFEST in names or any(n.endswith((".exit", ".out")) for n in names):
            return "out-dir"
        return "get-dir"
    if path.exists():
        raise UsageError(f"{path}: not a file or directory; give a JSON Lines file or a directory")
    raise UsageError(f"{path}: no such file or directory")


def iter_source(path: Path) -> Iterator[SourceItem]:
    """Every host of a saved source, in a stable order (``UsageError`` for bad input)."""
    kind = source_kind(path)
    if kind == "jsonl":
        yield from _jsonl(path)
    elif kind == "out-dir":
        yield from _out_dir(path)
    else:
        yield from _get_dir(path)


def _jsonl(path: Path) -> Iterator[SourceItem]:
    try:
        fh = open(path, encoding="utf-8", errors="replace")  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None
    with fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UsageError(
                    f"{path}:{number}: not JSON Lines ({exc.msg}); give the output of --json"
                ) from None
            if not isinstance(obj, dict) or obj.get("type") != "host":
                continue
            document = _step_document(obj)
            if document is None:
                continue
            host = obj.get("host")
            stdout = obj.get("stdout", "")
            if not isinstance(host, str) or not host or not isinstance(stdout, str):
                raise UsageError(
                    f"{path}:{number}: a host line needs text 'host' and 'stdout' keys"
                )
            status = obj.get("status") if obj.get("status") in STATUSES else "ok"
            exit_code = obj.get("exit_code")
            yield (
                HostResult(
                    host=host,
                    address=str(obj.get("address", "")),
                    port=int(obj.get("port") or 0),
                    status=status,  # type: ignore[arg-type]
                    exit_code=exit_code if isinstance(exit_code, int) else None,
                    stdout=stdout.encode("utf-8"),
                ),
                None,
                document,
            )


def _step_document(obj: dict[str, object]) -> str | None:
    """The document name of a host line: ``stdout`` for ``run --json``; for a play step
    ``step N 'NAME'``, or None when the step has no output (``put``, ``assert``, ...)
    or did not run on the host (skipped)."""
    step = obj.get("step")
    if not isinstance(step, int) or isinstance(step, bool):
        return "stdout"
    if obj.get("action") not in _OUTPUT_STEPS or obj.get("status") == "skipped":
        return None
    return f"step {step} {str(obj.get('step_name', ''))!r}"


def _out_dir(path: Path) -> Iterator[SourceItem]:
    hosts = sorted(
        {n.rsplit(".", 1)[0] for n in os.listdir(path) if n.endswith((".out", ".exit"))} - {""}
    )
    last_run = last_run_hosts(path)
    for host in hosts:
        if last_run is not None and host not in last_run:
            continue  # a file the last run did not write
        if host.startswith("."):
            continue  # a .HOST.out.part file of an unfinished run
        exit_code: int | None = None
        status = "ok"
        try:
            text = (path / f"{host}.exit").read_text(encoding="utf-8").strip()
        except OSError:
            text = ""
        if text.lstrip("-").isdigit():
            exit_code = int(text)
            status = "ok" if exit_code == 0 else "failed"
        elif text in STATUSES:
            status = text
        result = HostResult(host, "", 0, status, exit_code)  # type: ignore[arg-type]
        out = path / f"{host}.out"
        yield result, ({"stdout": out} if out.is_file() else {}), "stdout"


def host_files(host_dir: Path) -> dict[str, Path]:
    """Regular files under ``host_dir`` (a ``get`` LOCAL_DIR/<host>), named by remote path.

    Symlinks are never followed and unfinished ``.part`` files are left out.
    """
    files: dict[str, Path] = {}
    for root, dirs, names in os.walk(host_dir):  # never follows symlinks
        dirs.sort()
        for name in sorted(names):
            full = Path(root, name)
            if full.is_file() and not full.is_symlink() and not name.endswith(".part"):
                files["/" + full.relative_to(host_dir).as_posix()] = full
    return files


def downloaded_files(host_dir: Path, result: HostResult) -> dict[str, Path]:
    """The files of ``host_dir`` that a ``get`` run's ``result`` covered.

    Those it downloaded or found unchanged, not what earlier runs left in the
    same directory; named as :func:`host_files` names them.
    """
    files = host_files(host_dir)
    covered = result.extra.get("_covered")
    if covered is None:
        return files
    keep = set(covered)
    return {name: path for name, path in files.items() if name in keep}


def _get_dir(path: Path) -> Iterator[SourceItem]:
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
            yield HostResult(entry.name, "", 0, "ok"), host_files(Path(entry.path)), "stdout"
