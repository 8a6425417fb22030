"""``--extra-vars``: the variables given on the command line, which beat every other."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from remoteops.errors import UsageError

__all__ = ["parse_extra_vars"]


def parse_extra_vars(values: Sequence[str]) -> dict[str, Any]:
    """``-e`` values: ``k=v`` pairs (strings), ``@file.yml`` or an inline YAML/JSON mapping."""
    from remoteops.yamlsafe import load_yaml

    merged: dict[str, Any] = {}
    for value in values:
        if value.startswith("@"):
            path = Path(value[1:])
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise UsageError(f"--extra-vars {value}: {exc.strerror}; check the path") from None
            data = _mapping(load_yaml(text, str(path), error=UsageError), f"--extra-vars {value}")
        elif value.lstrip().startswith("{"):
            data = _mapping(load_yaml(value, "--extra-vars", error=UsageError), "--extra-vars")
        else:
            data = {}
            for word in shlex.split(value):
                name, sep, text = word.partition("=")
                if not sep or not name.isidentifier():
                    raise UsageError(
                        f"--extra-vars {word!r}: write NAME=VALUE, @FILE.yml or a YAML mapping"
                    )
                data[name] = text
        merged.update(data)
    return merged


def _mapping(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise UsageError(f"{what}: must hold a mapping of name: value")
    for name in data:
        if not name.isidentifier():
            raise UsageError(f"{what}: {name!r} is not a variable name")
    return dict(data)
