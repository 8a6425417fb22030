"""paramiko's internals that remoteops relies on: all listed, all present, none failing quietly.

``remoteops.fastpaths.PARAMIKO_INTERNALS`` is the one list. These tests fail
loudly, naming the attribute, when the installed paramiko lacks one of them,
when the code uses a private paramiko name the list does not hold, or when
pyproject.toml stops pinning paramiko to the tested range. The switch and the
fallbacks are checked too: a missing fast-path internal turns the fast paths
off with one debug line; a missing needed one stops the import.
"""

from __future__ import annotations

import ast
import functools
import importlib
import inspect
import logging
import pkgutil
import re
import subprocess
import sys
import textwrap
import tomllib
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from remoteops import fastpaths

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh_check() -> Iterator[None]:
    """Forget the cached check before and after a test that changes the list."""
    fastpaths._missing_once.cache_clear()
    fastpaths._lacking_said.cache_clear()
    yield
    fastpaths._missing_once.cache_clear()
    fastpaths._lacking_said.cache_clear()


def test_every_listed_paramiko_internal_exists() -> None:
    lacking = [f"{item} ({item.used_for})" for item in fastpaths.missing()]
    assert not lacking, (
        f"paramiko {paramiko.__version__} lacks {lacking}: adapt remoteops before "
        "widening the paramiko range in pyproject.toml"
    )


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _stored_on_self(cls: type) -> set[str]:
    """The instance attributes a class's own source sets (``self.x = ...``)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return set()
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.ctx, ast.Store)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    }


@functools.cache
def _paramiko_classes() -> tuple[type, ...]:
    return tuple(_classes_in_paramiko())


def _classes_in_paramiko() -> Iterator[type]:
    for info in pkgutil.walk_packages(paramiko.__path__, "paramiko."):
        try:
            module = importlib.import_module(info.name)
        except (ImportError, AttributeError, OSError):
            continue  # Windows-only (paramiko._winapi) or an optional backend (GSS-API)
        for obj in vars(module).values():
            if isinstance(obj, type) and obj.__module__ == info.name:
                yield obj


@functools.cache
def _private_paramiko_names() -> dict[str, set[type]]:
    """Every private (``_x``, not ``__x__``) name of every paramiko class: on the
    class, set by its source on ``self``, or (for the listed classes) on a fresh
    instance; with the classes that have it."""
    samples = fastpaths._samples()
    found: dict[str, set[type]] = {}
    for cls in {*_paramiko_classes(), *fastpaths._CLASSES.values()}:
        names = {*dir(cls), *_stored_on_self(cls)}
        for owner, listed in fastpaths._CLASSES.items():
            if listed is cls and owner in samples:
                names.update(dir(samples[owner]), vars(samples[owner]))
        for name in filter(_is_private, names):
            found.setdefault(name, set()).add(cls)
    return found


_MANGLED = re.compile(r"^_[A-Z]\w*__\w+$")


def _extends_paramiko(module: str, name: str) -> bool:
    cls = getattr(importlib.import_module(module), name, None)
    bases = tuple(fastpaths._CLASSES.values())
    return isinstance(cls, type) and issubclass(cls, bases)


def _other_modules(tree: ast.AST) -> set[str]:
    """Names a file binds to modules other than paramiko (``os`` in ``os._exit``)."""
    bound = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not alias.name.startswith("paramiko"):
                    bound.add(alias.asname or alias.name.split(".")[0])
    return bound


def _names_used(tree: ast.AST, module: str) -> Iterator[tuple[str, int]]:
    """Attributes read (not on self/cls, which are the class's own, unless name-mangled,
    nor on another library's module), names in strings (getattr), and what a subclass
    of a paramiko class overrides."""
    modules = _other_modules(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            base = node.value.id if isinstance(node.value, ast.Name) else None
            own = base in ("self", "cls")
            if (not own or _MANGLED.match(node.attr)) and base not in modules:
                yield node.attr, node.lineno
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.isidentifier():
                yield node.value, node.lineno
        elif isinstance(node, ast.ClassDef) and _extends_paramiko(module, node.name):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    yield item.name, item.lineno
                elif isinstance(item, ast.AnnAssign | ast.Assign):
                    targets = item.targets if isinstance(item, ast.Assign) else [item.target]
                    for target in targets:
                        if isinstance(target, ast.Name):
                            yield target.id, item.lineno


def _names_defined(tree: ast.AST) -> set[str]:
    """What remoteops defines itself: functions, methods, class fields, ``self.x``."""
    defined = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defined.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            defined.add(node.target.id)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
        ):
            defined.add(node.attr)
    return defined


def _sources() -> dict[Path, ast.AST]:
    return {
        path: ast.parse(path.read_text(encoding="utf-8"))
        for path in sorted((ROOT / "remoteops").rglob("*.py"))
        if path.name != "fastpaths.py"  # the list itself
    }


def _mangled_owners(name: str, classes: dict[str, type]) -> set[type]:
    """``_Packetizer__x`` belongs to paramiko's Packetizer even once paramiko renamed it."""
    match = _MANGLED.match(name)
    owner = classes.get(name[1:].split("__")[0]) if match else None
    return {owner} if owner is not None else set()


def test_the_list_holds_every_private_paramiko_name_the_code_uses() -> None:
    """Any ``_name`` the code reads off a paramiko object, names in a string (getattr)
    or overrides in a subclass must be listed, for the class that has it or a base.

    A name remoteops also defines itself (``HostKeyStore._add``) counts as its own
    unless one of the listed classes has it: the list's classes are checked strictly.
    A mangled ``_<paramiko class>__name`` must be listed whether or not it exists.
    """
    private = _private_paramiko_names()
    classes = {cls.__name__: cls for cls in _paramiko_classes()}
    strict = tuple(fastpaths._CLASSES.values())
    listed = {(fastpaths._CLASSES[item.owner], item.name) for item in fastpaths.PARAMIKO_INTERNALS}
    sources = _sources()
    own = set().union(*map(_names_defined, sources.values()))
    unlisted = []
    for path, tree in sources.items():
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for name, line in _names_used(tree, module):
            owners = private.get(name, set()) | _mangled_owners(name, classes)
            if name in own and not any(issubclass(owner, strict) for owner in owners):
                continue
            covered = any((base, name) in listed for owner in owners for base in owner.__mro__)
            if owners and not covered:
                names = ", ".join(sorted(owner.__name__ for owner in owners))
                unlisted.append(f"{path.relative_to(ROOT)}:{line}: {name} ({names})")
    assert not unlisted, "add to fastpaths.PARAMIKO_INTERNALS:\n" + "\n".join(unlisted)


def test_no_paramiko_internal_is_read_with_a_fallback_value() -> None:
    """``getattr(obj, "<internal>", default)`` would hide a renamed internal behind the
    default (the old keepalive check read 0 received bytes and killed long commands):
    the code reads internals plainly, so a missing one raises."""
    internals = {item.name for item in fastpaths.PARAMIKO_INTERNALS}
    private = set(_private_paramiko_names())
    quiet = [
        f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}"
        for path, tree in _sources().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("getattr", "hasattr")
        and len(node.args) >= 2
        and isinstance(node.args[1], ast.Constant)
        and isinstance(node.args[1].value, str)
        and (node.func.id == "hasattr" or len(node.args) == 3)
        and (
            node.args[1].value in internals
            or node.args[1].value in private
            or _MANGLED.match(node.args[1].value)
        )
    ]
    assert not quiet, "read paramiko internals without a fallback:\n" + "\n".join(quiet)


def test_paramiko_still_calls_the_sftp_reply_hook_transfer_provides() -> None:
    """transfer.sftp._Pipe receives replies through ``_async_response``, which paramiko calls."""
    source = inspect.getsource(paramiko.SFTPClient._read_response)
    assert "._async_response(" in source
    from remoteops.transfer.sftp import _Pipe

    assert callable(_Pipe._async_response)


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def test_paramiko_is_pinned_to_the_tested_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pins = [d for d in project["project"]["dependencies"] if d.startswith("paramiko")]
    assert pins == [f"paramiko{fastpaths.SUPPORTED_PARAMIKO}"]
    low, high = re.fullmatch(r">=([\d.]+),<([\d.]+)", fastpaths.SUPPORTED_PARAMIKO).groups()  # type: ignore[union-attr]
    assert _version(low) <= _version(paramiko.__version__) < _version(high)


@pytest.mark.parametrize(
    ("value", "on"),
    [("", True), ("0", True), ("no", True), ("False", True), ("1", False), ("yes", False)],
)
def test_the_switch(monkeypatch: pytest.MonkeyPatch, value: str, on: bool) -> None:
    monkeypatch.setenv(fastpaths.ENV_SWITCH, value)
    assert fastpaths.enabled() is on


def test_a_missing_fast_path_internal_turns_every_fast_path_off_saying_so_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fresh_check: None
) -> None:
    monkeypatch.delenv(fastpaths.ENV_SWITCH, raising=False)
    renamed = fastpaths.Internal("Packetizer", "_Packetizer__renamed", True, "fastio")
    monkeypatch.setattr(fastpaths, "PARAMIKO_INTERNALS", (*fastpaths.PARAMIKO_INTERNALS, renamed))
    with caplog.at_level(logging.DEBUG, logger="remoteops.fastpaths"):
        assert fastpaths.enabled() is False
        assert fastpaths.enabled() is False
        fastpaths.require()  # a fast path's name: nothing needed is missing
    lines = [r.getMessage() for r in caplog.records if r.name == "remoteops.fastpaths"]
    assert len(lines) == 1
    assert "Packetizer._Packetizer__renamed" in lines[0]
    assert "every fast path is off" in lines[0]


def test_a_missing_needed_internal_stops_the_import_naming_it() -> None:
    code = "import paramiko\ndel paramiko.Channel._event_pending\nimport remoteops.session\n"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: paramiko ")
    assert "Channel._event_pending" in last
    assert f"paramiko{fastpaths.SUPPORTED_PARAMIKO}" in last
