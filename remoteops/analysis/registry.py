"""Finding analyzers by name: built-ins, the ``remoteops.analyzers`` entry points, and
``module:function``; parsing ``NAME[:ARGS]`` specs and rules files.

A plugin is a plain function ``fn(doc: Document, args: str) -> dict | None`` run
in a worker process for every document: the dict is one row of the plugin's
table, and a ``"finding"`` key (a message) marks the host as a finding.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from remoteops.analysis.builtins import BUILTINS, Analyzer, Partials
from remoteops.analysis.model import AnalyzerSpec, Document, Finding, Section
from remoteops.errors import UsageError
from remoteops.wording import plural

__all__ = ["ENTRY_POINT_GROUP", "PluginAnalyzer", "load_rules", "parse_spec", "resolve"]

ENTRY_POINT_GROUP = "remoteops.analyzers"
_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@cache
def _entry_points() -> dict[str, str]:
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _import_ref(ref: str) -> Callable[..., Any]:
    module_name, _, attr = ref.partition(":")
    module = importlib.import_module(module_name)
    fn = getattr(module, attr)
    if not callable(fn):
        raise TypeError(f"{ref} is not a function")
    return fn  # type: ignore[no-any-return]


class PluginAnalyzer(Analyzer):
    """A plain function run per document; its dicts become rows, ``finding`` keys findings."""

    splittable = False

    def __init__(self, ref: str) -> None:
        self.ref = ref

    def configure(self, spec: AnalyzerSpec) -> str:
        try:
            _import_ref(self.ref)
        except ModuleNotFoundError as exc:
            known = ", ".join([*BUILTINS, *sorted(_entry_points())])
            raise UsageError(
                f"{spec.where}: unknown analyzer {self.ref.partition(':')[0]!r}; use one of "
                f"{known}, or an importable module:function ({exc})"
            ) from None
        except Exception as exc:
            raise UsageError(
                f"{spec.where}: analyzer {spec.name!r} ({self.ref}) cannot be loaded: "
                f"{type(exc).__name__}: {exc}; check the module is importable (PYTHONPATH)"
            ) from None
        return spec.args

    def map(self, config: str, doc: Document) -> Any:
        result = _import_ref(self.ref)(doc, config)
        if result is not None and not isinstance(result, dict):
            raise TypeError(f"{self.ref} returned {type(result).__name__}, not a dict or None")
        return result

    def reduce(self, spec: AnalyzerSpec, config: str, partials: Partials) -> Section:
        rows: list[dict[str, Any]] = []
        findings: list[Finding] = []
        for doc, value in sorted(partials, key=lambda p: (p[0].host, p[0].name, p[0].start)):
            if not value:
                continue
            rows.append({"host": doc.host, "document": doc.name, **value})
            if value.get("finding"):
                findings.append(Finding(spec.name, doc.host, str(value["finding"]), doc.name))
        columns: list[str] = ["host"]
        for row in rows:
            columns.extend(k for k in row if k not in columns and k != "document")
        return Section(
            spec,
            f"{plural(len(rows), 'row')}, {plural(len(findings), 'finding')}",
            tuple(columns),
            rows,
            findings,
        )


def resolve(name: str) -> Analyzer:
    """The analyzer called ``name``: a built-in, an entry point, or ``module:function``."""
    builtin = BUILTINS.get(name)
    if builtin is not None:
        return builtin
    ref = _entry_points().get(name, name)
    return PluginAnalyzer(ref)


def parse_spec(text: str, *, where: str = "--analyze", label: str | None = None) -> AnalyzerSpec:
    """``NAME[:ARGS]`` -> ``AnalyzerSpec``; ``module:function[:ARGS]`` names a plugin.

    Raises ``UsageError`` (exit 2) for an unknown analyzer or bad arguments.
    """
    name, _, args = text.partition(":")
    if name in BUILTINS or name in _entry_points():
        spec = AnalyzerSpec(name, args, label, where)
    else:
        module, _, rest = args.partition(":")
        ref = f"{name}:{module}"
        if not _REF.match(ref):
            known = ", ".join([*BUILTINS, *sorted(_entry_points())])
            raise UsageError(
                f"{where}: unknown analyzer {name!r}; use one of {known}, or module:function"
            )
        spec = AnalyzerSpec(ref, rest, label, where)
    check_spec(spec)
    return spec


def check_spec(spec: AnalyzerSpec) -> Any:
    """Check a spec's arguments in the parent; return the analyzer's config."""
    return resolve(spec.name).configure(spec)


def load_rules(path: str | Path) -> list[AnalyzerSpec]:
    """Read a rules file: a YAML list of ``{ANALYZER: ARGS, name: LABEL}`` mappings.

    ```yaml
    - threshold: df.use% > 90
      name: disk nearly full
    - grep: 'Out of memory'
    - group: normalize
    ```

    Read with the safe YAML loader (``remoteops.yamlsafe``). Raises ``UsageError`` naming
    ``FILE:LINE`` and what to change (exit 2).
    """
    from remoteops.yamlsafe import load_yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--rules {path}: {exc.strerror}; check the path") from None
    except UnicodeDecodeError:
        raise UsageError(f"--rules {path}: not UTF-8 text") from None
    data = load_yaml(text, str(path), error=UsageError)
    if data is None:
        return []
    if not isinstance(data, list):
        raise UsageError(
            f"{path}:1: a rules file is a YAML list of rules, e.g. '- threshold: df.use% > 90'"
        )
    specs: list[AnalyzerSpec] = []
    for index, item in enumerate(data):
        lines = getattr(item, "lines", {})
        first_line = min(lines.values()) if lines else 0
        where = f"{path}:{first_line or index + 1}"
        if not isinstance(item, dict):
            raise UsageError(
                f"{where}: rule {index + 1} is not a mapping; write '- ANALYZER: ARGS'"
            )
        label = item.get("name")
        if label is not None and not isinstance(label, str):
            raise UsageError(f"{path}:{lines.get('name', first_line)}: 'name' must be text")
        keys = [k for k in item if k != "name"]
        if len(keys) != 1:
            raise UsageError(
                f"{where}: rule {index + 1} needs exactly one analyzer key besides 'name' "
                f"(found {', '.join(map(str, keys)) or 'none'})"
            )
        key = keys[0]
        value = item[key]
        key_where = f"{path}:{lines.get(key, first_line)}"
        if value is None:
            value = ""
        if not isinstance(key, str) or not isinstance(value, str | int | float):
            raise UsageError(
                f"{key_where}: key {key!r}: give the analyzer's arguments as text, "
                "e.g. 'threshold: df.use% > 90'"
            )
        specs.append(
            parse_spec(f"{key}:{value}" if value != "" else key, where=key_where, label=label)
        )
    return specs
