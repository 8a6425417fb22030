"""docs/ is the contract: checked against the code wherever a check can be mechanical.

Every command and option of the command line (click's tree, as typer builds it)
is in docs/cli.md under its command, and nothing there that the command lacks;
every exit code the code defines is in docs/exit-codes.md, and only those;
every environment variable the code reads is in docs/environment.md; the
manual page is the one the generator prints; every ``Example:`` of ``--help``
names options its command has; the README's blocks are all marked; links
between the documents resolve. The JSON keys are checked against real runs in
tests/integration/test_docs_json.py.
"""

from __future__ import annotations

import functools
import inspect
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main

from remoteops import cli, errors, helptopics, manpage, results
from remoteops.cli import lab as cli_lab
from remoteops.exitcodes import ExitCode
from tests.readme import ROOT, blocks

DOCS = ROOT / "docs"


@functools.cache
def _root() -> Any:
    return typer.main.get_command(cli.app)


def _commands(group: Any = None, prefix: str = "") -> dict[str, Any]:
    """Every command and group by its path (``""`` for remoteops itself, ``"lab up"``)."""
    group = _root() if group is None else group
    found = {prefix: group}
    for name, command in getattr(group, "commands", {}).items():
        found.update(_commands(command, f"{prefix} {name}".strip()))
    return found


def _option_names(command: Any) -> set[str]:
    return {
        name
        for param in command.params
        if param.param_type_name == "option"
        for name in (*param.opts, *param.secondary_opts)
    }


def _sections(text: str) -> dict[str, str]:
    """docs/cli.md's sections by command path: '## `remoteops run`' -> 'run'."""
    parts = re.split(r"^## (.*)$", text, flags=re.M)
    found = {}
    for heading, body in zip(parts[1::2], parts[2::2], strict=True):
        named = re.fullmatch(r"`remoteops ?(.*)`", heading.strip())
        if heading.strip() == "Global options":
            found[""] = body
        elif named:
            found[named.group(1)] = body
    return found


def _documented_options(section: str) -> set[str]:
    """Options a section documents: its tables' first column and its 'Targeting options:' line."""
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`(-{1,2}[\w-]+)", line.split("|")[1]))
        elif line.startswith("Targeting options:"):
            names.update(re.findall(r"`(-{1,2}[\w-]+)`", line))
    return names


def test_every_command_and_option_is_in_the_reference() -> None:
    sections = _sections((DOCS / "cli.md").read_text())
    commands = {p: c for p, c in _commands().items() if not getattr(c, "commands", None) or not p}
    assert sorted(sections) == sorted(commands), (
        "docs/cli.md needs one '## `remoteops COMMAND`' section per command, no more"
    )
    shared = _documented_options(
        (DOCS / "cli.md").read_text().split("## Targeting options", 1)[1].split("\n## ", 1)[0]
    )
    for path, command in commands.items():
        actual = _option_names(command) - {"-h", "--help"}
        documented = _documented_options(sections[path])
        missing, stale = actual - documented, documented - actual
        where = f"docs/cli.md, section `remoteops {path}`".replace(" `", "`", 1 if path else 0)
        assert not missing, f"{where}: document {sorted(missing)}"
        assert not stale, f"{where}: the command has no {sorted(stale)}"
        assert documented <= actual | shared
        if path:  # a synopsis block first: the command, its arguments, [OPTIONS]
            usage = sections[path].split("```\n", 2)[1]
            assert usage.startswith(f"remoteops {path} "), f"{where}: synopsis {usage!r}"


def _defined_exit_codes() -> set[int]:
    """Every exit code the code can end with: the enum, and what errors and statuses map to
    (tests/unit/test_exitcodes.py checks that no other number is used)."""
    codes: set[int] = set(ExitCode)
    for _name, cls in inspect.getmembers(errors, inspect.isclass):
        if issubclass(cls, errors.RemoteOpsError):
            codes.add(cls.exit_code)
    codes |= {results.exit_code_for(s) for s in [*results.STATUSES, "ok"]}
    return codes


def test_every_exit_code_is_documented_and_only_those() -> None:
    text = (DOCS / "exit-codes.md").read_text()
    documented = {int(m) for m in re.findall(r"^\| (\d+) \|", text, flags=re.M)}
    assert documented == _defined_exit_codes()
    assert "Exit(ExitCode.UNREACHABLE)" in inspect.getsource(cli_lab.lab_status_cmd)


def test_every_environment_variable_is_documented() -> None:
    text = (DOCS / "environment.md").read_text()
    source = "\n".join(p.read_text() for p in (ROOT / "remoteops").rglob("*.py"))
    read = set(
        re.findall(r"[\"'](REMOTEOPS_[A-Z_]+|NO_COLOR|XDG_STATE_HOME|SSH_AUTH_SOCK)", source)
    )
    for command in _commands().values():
        read |= {p.envvar for p in command.params if isinstance(getattr(p, "envvar", None), str)}
    missing = {name for name in read if f"`{name}`" not in text}
    assert not missing, f"docs/environment.md: document {sorted(missing)}"
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", text, flags=re.M))
    assert "REMOTEOPS_LAB_PORT" in documented
    assert read <= documented


def help_examples() -> dict[str, str]:
    """Every ``Example:`` line of every ``--help``, by command path."""
    found = {}
    for path, command in _commands().items():
        for line in (command.help or "").splitlines():
            if line.strip().startswith("Example:"):
                found[path] = line.strip().removeprefix("Example:").strip()
    return found


def test_help_examples_name_options_their_commands_have() -> None:
    """Each example parses as the command line would parse it (run: test_readme.py)."""
    examples = help_examples()
    assert len(examples) == len(_commands()), "every command's --help has an Example: line"
    for _path, example in examples.items():
        for part in re.split(r"\s*&&\s*", example):
            words = shlex.split(part)
            assert words[0] == "remoteops", example
            words = [w for w in words[1:] if "$(" not in w]
            command, args = _root(), words
            context = command.make_context("remoteops", list(args), resilient_parsing=False)
            while getattr(command, "commands", None):
                name, *args = [*getattr(context, "_protected_args", []), *context.args]
                command = command.commands[name]
                context = command.make_context(name, list(args), parent=context)


def test_the_manual_page_is_current_and_clean() -> None:
    page = DOCS / "remoteops.1"
    assert page.read_text() == manpage.render(), (
        "docs/remoteops.1 is stale: run `python -m remoteops.manpage > docs/remoteops.1`"
    )
    warnings = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z", str(page)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert warnings.stderr == ""
    text = subprocess.run(
        ["groff", "-man", "-Tascii", "-P-c", "-P-b", "-P-u", str(page)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for heading in ("SYNOPSIS", "COMMANDS", "EXIT STATUS", "ENVIRONMENT", "FILES"):
        assert f"\n{heading}\n" in text
    for path in _commands():
        if path and path not in ("lab", "inventory"):
            assert f"remoteops {path} " in text, path
    assert "REMOTEOPS_LAB_PORT" in text
    assert re.search(r"^ +141 ", text, flags=re.M)


def test_help_topics_print_the_docs() -> None:
    topics = helptopics.topics()
    assert {"patterns", "inventories", "exit-codes", "json"} <= set(topics)
    assert set(topics) == {p.stem for p in DOCS.glob("*.md")} - {"README"}
    for asked, topic in [("exit", "exit-codes"), ("inventory", "inventories"), ("json", "json")]:
        done = subprocess.run(
            [sys.executable, "-m", "remoteops", "--no-log-file", "help", asked],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == (DOCS / f"{topic}.md").read_text()
    done = subprocess.run(
        [sys.executable, "-m", "remoteops", "--no-log-file", "help", "jsno"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == (
        "remoteops: error: no help topic 'jsno'; did you mean json? `remoteops help` lists them\n"
    )


def test_readme_blocks_are_marked_runnable_or_say_why_not() -> None:
    found = blocks()
    for block in found:
        where = f"README.md:{block.line}"
        assert block.marker is not None, f"{where}: mark it <!-- runnable --> or say why not"
        assert block.marker == "runnable" or re.match(r"not runnable\b.*: \S", block.marker), (
            f"{where}: {block.marker!r}"
        )
        if block.lang in ("sh", "python"):
            assert block.runnable or "not runnable" in block.marker
    assert sum(b.runnable for b in found) >= 7
    assert not [b for b in found if b.lang == "sh" and not b.runnable and "remoteops " in b.body]


@pytest.mark.parametrize("path", ["README.md", *sorted(p.name for p in DOCS.glob("*.md"))])
def test_links_resolve_inside_the_repository(path: str) -> None:
    """Relative links of the README and docs/ point at files that exist in a clone."""
    file = ROOT / path if path == "README.md" else DOCS / path
    text = file.read_text()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if re.match(r"\w+://", target):
            continue
        resolved = (file.parent / target).resolve()
        assert resolved.exists(), f"{path}: link to {target}"
        assert resolved.is_relative_to(ROOT), f"{path}: {target} is outside the repository"


def test_nothing_points_outside_the_repository() -> None:
    """No README, docs or code mention of shared/ or the old CONTRACT.md: no clone has them."""
    files = [ROOT / "README.md", *DOCS.glob("*.md"), *(ROOT / "remoteops").rglob("*.py")]
    for file in files:
        text = file.read_text()
        assert "shared/" not in text, file
        assert "CONTRACT.md" not in text, file


def test_an_installed_wheel_has_the_help_topics_and_the_manual_page(tmp_path: Path) -> None:
    """Built as pip builds it, unpacked away from the checkout: `remoteops help` reads the
    documents inside the package, and the page is in the wheel's share/man/man1."""
    import zipfile

    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    built = subprocess.run(
        [*pip, "--no-index", "-q", "-w", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("remoteops-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
        names = archive.namelist()
    # The HTML report's template and stylesheet (remoteops.htmlreport) ship too.
    assert {"remoteops/templates/report.html", "remoteops/templates/report.css"} <= set(names)
    (page,) = [n for n in names if n.endswith(".data/data/share/man/man1/remoteops.1")]
    assert (site / page).read_text() == (DOCS / "remoteops.1").read_text()
    code = (
        "import remoteops, sys; sys.stderr.write(remoteops.__file__)\n"
        "from remoteops.cli import main; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, "--no-log-file", "help", "patterns"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == str(site / "remoteops" / "__init__.py")  # not the checkout
    assert done.stdout == (DOCS / "patterns.md").read_text()
