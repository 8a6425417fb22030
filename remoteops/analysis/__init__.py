"""Local analysis of results: CPU-bound analyzers in a process pool, fed while hosts answer.

Talking to hosts is I/O-bound (threads); analysing what they return is
CPU-bound, so it runs in worker processes that the GIL does not serialise. The
stable API, used by the CLI (``--analyze``, ``remoteops analyze``) and by
playbooks::

    from remoteops.analysis import AnalysisStage, load_rules, parse_spec

    specs = [parse_spec("grep:ERROR"), *load_rules("rules.yml")]
    with AnalysisStage(specs) as stage:           # workers=None: one per CPU
        for result in executor.run_command(spec):
            stage.submit(result)                   # or submit(result, paths={name: file})
        report = stage.finish()
    print(report.render_text())                    # text tables
    lines = report.to_json()                       # [{"v": 1, "type": "analysis", ...}]
    if report.findings: ...                        # [Finding(analyzer, host, message, document)]

Built-in analyzers (``NAME[:ARGS]``): ``group[:normalize]``, ``grep:REGEX``,
``count:REGEX``, ``extract[:PARSER|REGEX]``, ``threshold:RULE``,
``drift[:normalize]``, ``logscan[:top=N][:REGEX]``. Plugins are plain
functions named ``module:function[:ARGS]`` or registered under the entry point
group ``remoteops.analyzers``: ``fn(doc: Document, args: str) -> dict | None``.
"""

from __future__ import annotations

from remoteops.analysis.builtins import BUILTINS
from remoteops.analysis.model import AnalysisReport, AnalyzerSpec, Document, Finding, Section
from remoteops.analysis.registry import ENTRY_POINT_GROUP, load_rules, parse_spec
from remoteops.analysis.stage import AnalysisStage, default_workers

__all__ = [
    "BUILTINS",
    "ENTRY_POINT_GROUP",
    "AnalysisReport",
    "AnalysisStage",
    "AnalyzerSpec",
    "Document",
    "Finding",
    "Section",
    "default_workers",
    "load_rules",
    "parse_spec",
]
