"""The analysis package's pure logic: specs, rules files, parsers, line ranges, the stage."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

import remoteops.analysis as analysis
from remoteops.analysis import AnalysisStage, load_rules, parse_spec
from remoteops.analysis.model import Document, iter_line_blocks
from remoteops.analysis.parsers import PARSERS
from remoteops.analysis.textscan import LineMatcher, leading_timestamp, normalise
from remoteops.errors import UsageError
from remoteops.results import HostResult

DATA = Path(__file__).parent.parent / "data" / "analysis"


def test_public_api_is_pinned() -> None:
    assert analysis.__all__ == [
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
    assert set(analysis.BUILTINS) == {
        "group",
        "grep",
        "count",
        "extract",
        "threshold",
        "drift",
        "logscan",
    }


@pytest.mark.parametrize(
    ("text", "name", "args"),
    [
        ("group", "group", ""),
        ("group:normalize", "group", "normalize"),
        ("grep:a:b", "grep", "a:b"),
        ("threshold:df.use% > 90", "threshold", "df.use% > 90"),
        ("logscan:top=5:ERR", "logscan", "top=5:ERR"),
        ("extract:(?P<x>\\d+)", "extract", "(?P<x>\\d+)"),
        ("plugins:stamp", "plugins:stamp", ""),
        ("plugins:slow:3", "plugins:slow", "3"),
    ],
)
def test_parse_spec(text: str, name: str, args: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(DATA))
    spec = parse_spec(text)
    assert (spec.name, spec.args) == (name, args)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nosuch", "unknown analyzer 'nosuch'"),
        ("grep", "grep needs a regex"),
        ("grep:(", "bad regex"),
        ("extract:\\d+", "named groups"),
        ("threshold:df.use%", "FIELD OP VALUE"),
        ("threshold:nosuch.x > 3", "neither a number nor a field"),
        ("threshold:1 > 2", "at least one field"),
        ("group:sideways", "group:normalize"),
        ("no_such_module_xyz:fn", "unknown analyzer .no_such_module_xyz."),
    ],
)
def test_bad_specs_say_what_to_do(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_spec(text)


def test_a_plugin_without_that_function(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(DATA))
    with pytest.raises(UsageError, match="cannot be loaded: AttributeError"):
        parse_spec("plugins:nosuchfn")


def test_rules_file(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(
        "- threshold: df.use% > 90\n  name: disk nearly full\n- grep: 'Out of memory'\n- group:\n"
    )
    specs = load_rules(rules)
    assert [(s.name, s.args, s.label) for s in specs] == [
        ("threshold", "df.use% > 90", "disk nearly full"),
        ("grep", "Out of memory", None),
        ("group", "", None),
    ]
    assert specs[1].where == f"{rules}:3"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- threshold: df.use% > 90\n- nosuch: x\n", ":2: unknown analyzer 'nosuch'"),
        ("- grep: '('\n", ":1: grep:(: bad regex"),
        ("threshold: x\n", ":1: a rules file is a YAML list"),
        ("- grep: a\n  count: b\n", ":1: rule 1 needs exactly one analyzer key"),
        ("- grep: a\n  grep: b\n", ":2: duplicate key 'grep'"),
        ("- !!python/object:os.system x\n", "Python tags are refused"),
        ("- [unclosed\n", ":2: invalid YAML"),
    ],
)
def test_bad_rules_files_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(text)
    with pytest.raises(UsageError, match=r"rules\.yml" + ".*" + _escape(message)):
        load_rules(rules)


def _escape(text: str) -> str:
    import re

    return re.escape(text)


@pytest.mark.parametrize("case", sorted(p.stem for p in (DATA / "parsers").glob("*.json")))
def test_parsers_on_recorded_outputs(case: str) -> None:
    data = json.loads((DATA / "parsers" / f"{case}.json").read_text())
    assert PARSERS[data["parser"]](data["output"]) == data["expected"]


def test_line_ranges_cover_every_line_once(tmp_path: Path) -> None:
    rng = random.Random(7)
    lines = [b"x" * rng.choice([0, 1, 5, 80, 700]) + str(i).encode() + b"\n" for i in range(200)]
    path = tmp_path / "f.log"
    path.write_bytes(b"".join(lines) + b"tail-without-newline")
    size = path.stat().st_size
    for chunk in (1, 3, 64, 997, 4096, size):
        seen = b""
        for start in range(0, size, chunk):
            doc = Document("h", "f", path=str(path), start=start, end=min(start + chunk, size))
            seen += b"".join(iter_line_blocks(doc, block_size=997))
        assert seen == path.read_bytes(), chunk


def test_keyword_matcher_wants_a_word_start() -> None:
    block = b"ok\nan ERROR here\nterror is fine\nFatal: x\nerror\nlast Panic"
    matcher = LineMatcher(keywords=("error", "fatal", "panic"))
    found = [block[s:e] for s, e in matcher.lines(block)]
    assert found == [b"an ERROR here", b"Fatal: x", b"error", b"last Panic"]
    regex = LineMatcher(pattern=r"e\w+or")
    assert [block[s:e] for s, e in regex.lines(block)] == [b"terror is fine", b"error"]


def test_normalise_masks_what_varies() -> None:
    line = (
        b"2024-05-01T12:00:01.123Z web01 app[4242]: request 0x1f3a id=deadbeef42 "
        b"uuid=123e4567-e89b-12d3-a456-426614174000 from 10.0.0.7 took 12 ms"
    )
    assert normalise(line, host="web01") == (
        b"<time> <host> app[<n>]: request <hex> id=<hex> uuid=<uuid> from <n> took <n> ms"
    )
    # free(1) on two hosts: the same table once the numbers' widths are masked too.
    assert normalise(b"Mem:   8000000   950000  7050000\n") == normalise(
        b"Mem:   8000000  1050000  6950000\n"
    )
    assert leading_timestamp(b"May  1 12:00:00 web01 x") == ("05-01T12:00:00", "May  1 12:00:00")
    assert leading_timestamp(b"no time") is None


def _results() -> list[HostResult]:
    outputs = {
        "web01": b"/dev/vda 100 95 5 95% /\nERROR disk 95\n",
        "web02": b"/dev/vda 100 15 85 15% /\n",
        "web03": b"/dev/vda 100 15 85 15% /\n",
    }
    header = b"Filesystem 1K-blocks Used Available Use% Mounted on\n"
    return [HostResult(h, "127.0.0.1", 22, "ok", 0, header + out) for h, out in outputs.items()]


@pytest.mark.parametrize("workers", [0, 2])
def test_stage_in_process_and_in_a_pool_agree(
    workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("remoteops.analysis.stage._POOL_WORTH", 0.0)  # a pool for any input
    specs = ["group", "grep:ERROR", "threshold:df.use% > 90", "drift", "count:%"]
    with AnalysisStage(specs, workers=workers, inline_max=40) as stage:
        for result in _results():
            stage.submit(result)
        report = stage.finish()
    assert not report.errors
    group, grep, threshold, drift, count = report.to_json()
    assert group["outliers"] == ["web01"]
    assert [f["host"] for f in grep["findings"]] == ["web01"]
    assert threshold["findings"] == [
        {"host": "web01", "document": "stdout", "message": "df.use% > 90: 95 > 90"}
    ]
    assert [f["host"] for f in drift["findings"]] == ["web01"]
    assert "+ERROR disk 95" in drift["rows"][0]["diff"]
    assert count["total"] == 6
    assert {f.host for f in report.findings} == {"web01"}


def test_an_exception_is_an_error_for_its_input_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(DATA))
    with AnalysisStage(["plugins:boom:web02", "grep:ERROR"], workers=0) as stage:
        for result in _results():
            stage.submit(result)
        report = stage.finish()
    plugin, grep = report.sections
    assert [r["host"] for r in plugin.rows] == ["web01", "web03"]
    assert plugin.errors == [
        {"host": "web02", "document": "stdout", "error": "ValueError: cannot read web02"}
    ]
    assert not grep.errors
    assert "error: web02: ValueError" in report.render_text()


def test_a_crashing_worker_costs_only_its_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(DATA))
    results = [
        HostResult(f"h{i:02d}", "127.0.0.1", 22, "ok", 0, f"line {i}\n".encode()) for i in range(12)
    ]
    with AnalysisStage(["plugins:crash:h05", "count:line"], workers=2) as stage:
        for result in results:
            stage.submit(result)
        report = stage.finish()
    plugin, count = report.sections
    assert [e["host"] for e in plugin.errors] == ["h05"]
    assert "worker process died" in plugin.errors[0]["error"]
    assert sorted(r["host"] for r in plugin.rows) == [r.host for r in results if r.host != "h05"]
    assert count.data["total"] == 12  # the other analyzer also ran on h05
    assert not count.errors


def test_an_entry_point_names_a_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from remoteops.analysis import registry

    dist = tmp_path / "mychecks-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mychecks\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[remoteops.analyzers]\nlooked = plugins:boom\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(DATA))
    registry._entry_points.cache_clear()
    try:
        spec = parse_spec("looked:nobody")
        with AnalysisStage([spec], workers=0) as stage:
            stage.submit(HostResult("web01", "127.0.0.1", 22, "ok", 0, b"x\n"))
            report = stage.finish()
    finally:
        registry._entry_points.cache_clear()
    assert (spec.name, spec.args) == ("looked", "nobody")
    assert [(f.analyzer, f.host, f.message) for f in report.findings] == [
        ("looked", "web01", "looked at it")
    ]


def test_workers_log_to_the_same_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from remoteops.logconfig import LogSettings

    monkeypatch.syspath_prepend(str(DATA))
    log = tmp_path / "remoteops.log"
    with AnalysisStage(["plugins:boom:web02"], workers=2, log_settings=LogSettings(log)) as stage:
        for result in _results():
            stage.submit(result)
        report = stage.finish()
    assert len(report.errors) == 1
    lines = [line for line in log.read_text().splitlines() if "analyzer plugins:boom" in line]
    assert len(lines) == 1
    assert "Host 'web02': analyzer plugins:boom failed on stdout: ValueError" in lines[0]
    assert int(lines[0].split()[2]) != os.getpid()  # written by a worker process


def test_threshold_compares_numbers_in_text() -> None:
    release = b'ID=debian\nVERSION_ID="12"\n'
    with AnalysisStage(["threshold:os-release.version_id >= 12"], workers=0) as stage:
        stage.submit(HostResult("h", "127.0.0.1", 22, "ok", 0, release))
        report = stage.finish()
    assert [f.message for f in report.findings] == ["os-release.version_id >= 12: 12 >= 12"]


def test_big_files_split_into_ranges_give_the_same_answer(tmp_path: Path) -> None:
    rng = random.Random(3)
    paths = {}
    for host in ("a", "b"):
        lines = [
            f"2024-05-01T10:{n % 60:02d}:00Z {host} app: "
            + rng.choice(["INFO ok", "ERROR disk full", "fatal: bad 0x1f", "WARN slow"])
            + f" {n}"
            for n in range(20000)
        ]
        paths[host] = tmp_path / f"{host}.log"
        paths[host].write_text("\n".join(lines) + "\n")
    specs = ["logscan:top=5", "grep:fatal", "count:ERROR"]

    def analyse(workers: int, chunk_size: int) -> list[dict[str, object]]:
        with AnalysisStage(specs, workers=workers, chunk_size=chunk_size) as stage:
            for host, path in paths.items():
                stage.submit(HostResult(host, "", 0, "ok"), paths={"/var/log/app": path})
            return stage.finish().to_json()

    whole = analyse(0, 1 << 30)
    split = analyse(2, 10_000)
    assert split == whole
    assert whole[0]["by_host"]["a"] > 9000


def _log_documents(lines: int = 500) -> list[Document]:
    return [
        Document(
            f"web{h:02d}",
            "app.log",
            data=b"".join(
                b"2024-05-01T10:00:%02dZ web%02d app: %s request %d\n"
                % (n % 60, h, b"ERROR" if n % 7 == 0 else b"INFO", n)
                for n in range(lines)
            ),
        )
        for h in range(30)
    ]


def test_this_process_analyses_while_the_workers_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Until the pool's workers are up (a new interpreter importing the analyzers),
    the stage runs built-in analyzers itself, with the same report; plugins only
    ever run in workers, and nothing is left running after close()."""
    from remoteops.analysis.stage import _children

    def analyse(specs: list[str], workers: int) -> tuple[list[dict[str, object]], int]:
        with AnalysisStage(specs, workers=workers) as stage:
            for doc in _log_documents():
                stage.submit_document(doc)
            return stage.finish().to_json(), stage.tasks_run_here

    specs = ["logscan", "count:ERROR", "grep:request 7$"]
    alone, _ = analyse(specs, 0)
    monkeypatch.setattr("remoteops.analysis.stage._POOL_WORTH", 0.0)  # a pool for any input
    pooled, run_here = analyse(specs, 2)
    assert pooled == alone
    assert run_here >= 1
    monkeypatch.syspath_prepend(str(DATA))
    _, run_here = analyse(["plugins:stamp", *specs], 2)
    assert run_here == 0
    # Closed while the workers are starting: the forkserver and workers go too.
    import os

    before = set(_children(os.getpid()))
    stage = AnalysisStage(specs, workers=2)
    for doc in _log_documents():
        stage.submit_document(doc)
    stage.close()
    assert set(_children(os.getpid())) <= before


def test_a_short_input_is_analysed_here_without_starting_workers() -> None:
    """All the input queued, and less work than starting the workers is worth: this
    process does it all, and no worker or forkserver is started; the same report."""

    def children() -> set[str]:  # of every thread of this process (the pool starts in one)
        return {
            child
            for task in Path("/proc/self/task").iterdir()
            for child in (task / "children").read_text().split()
        }

    specs = ["logscan", "count:ERROR", "grep:request 7$"]
    docs = _log_documents(2000)  # 3 MB: a few hundredths of a second here
    with AnalysisStage(specs, workers=0) as stage:
        for doc in docs:
            stage.submit_document(doc)
        alone = stage.finish().to_json()
    before = children()
    with AnalysisStage(specs, workers=2) as stage:
        for doc in docs:
            stage.submit_document(doc)
        report = stage.finish().to_json()
        started = children() - before
    assert report == alone
    assert stage.tasks_run_here == len(docs)
    assert not started
