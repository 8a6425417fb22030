"""The README and the --help examples, run as written on a fresh lab, as a newcomer would.

The README's runnable blocks (``tests/readme.py``) run in order in one shell, in
a directory laid out like the top of the repository (README.md, playbooks/,
inventories/hosts.yml, .venv), with a fresh HOME: ``remoteops lab up`` starts
the default lab in ``~/.local/state/remoteops/lab``, which the repository's
inventory describes, so the tour's commands find their hosts without ``-i``.
Only the lab's port differs (``REMOTEOPS_LAB_PORT``): 2222 may be taken on a
developer's machine. Then every ``Example:`` line of every ``--help`` runs in
the same place.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from remoteops.lab import lab_down
from tests.conftest import free_port
from tests.readme import ROOT, Command, blocks
from tests.unit.test_docs import help_examples

pytestmark = pytest.mark.integration

LAB_SECTION = "### The lab"

# The history commands' examples need runs in the history: two of `run all` (web02 ok,
# then failed), recorded before the tour, whose own runs come after them.
SEED_HISTORY = """
from remoteops.history import HistoryStore
from remoteops.results import HostResult

store = HistoryStore()
for status, code in (("ok", 0), ("failed", 1)):
    argv = ["remoteops", "run", "all", "--", "uptime"]
    recorder = store.start_run(command="run", argv=argv, pattern="all", inventory=None)
    recorder.host(HostResult("web01", "127.66.0.1", 2222, "ok", 0, b"up 1 day\\n"))
    recorder.host(HostResult("web02", "127.66.0.2", 2222, status, code, b"up 2 days\\n"))
    recorder.finish(code and 5, 1.0)
"""


def _workspace(tmp_path: Path, port: int) -> Path:
    """A directory like the top of the repository, for a user whose HOME is fresh."""
    activate = Path(sys.prefix) / "bin" / "activate"
    if not activate.is_file():
        pytest.fail(f"the tests must run from the project's venv ({activate} is missing)")
    cwd = tmp_path / "remoteops"
    cwd.mkdir()
    (cwd / ".venv").symlink_to(sys.prefix)
    shutil.copy(ROOT / "README.md", cwd / "README.md")
    shutil.copytree(ROOT / "playbooks", cwd / "playbooks")
    (cwd / "inventories").mkdir()
    inventory = (ROOT / "inventories" / "hosts.yml").read_text()
    assert "ansible_port: 2222\n" in inventory
    (cwd / "inventories" / "hosts.yml").write_text(
        inventory.replace("ansible_port: 2222\n", f"ansible_port: {port}\n")
    )
    return cwd


def _script(commands: list[Command], rc_file: Path) -> str:
    """One bash script: each command, then its exit status appended to ``rc_file``."""
    lines = ["set +e"]
    for command in commands:
        lines += [command.line, f'echo "$?" >> {rc_file}']
    return "\n".join(lines) + "\n"


def _run(commands: list[Command], cwd: Path, env: dict[str, str]) -> tuple[list[int], str]:
    rc_file = cwd.parent / "rc"
    rc_file.unlink(missing_ok=True)
    script = cwd.parent / "script.sh"
    script.write_text(_script(commands, rc_file))
    done = subprocess.run(
        ["bash", str(script)],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    codes = [int(x) for x in rc_file.read_text().split()] if rc_file.exists() else []
    return codes, done.stdout + done.stderr


def _report(commands: list[Command], codes: list[int], output: str) -> str:
    rows = [
        f"  {'!!' if got != c.exit_code else 'ok'} {got} (want {c.exit_code}): {c.line}"
        for c, got in zip(commands, codes, strict=False)
    ]
    return "\n".join(rows) + "\n--- output (end) ---\n" + output[-6000:]


def _readme_commands(cwd: Path) -> tuple[list[Command], list[Command]]:
    """The runnable blocks' commands: the tour's, then the lab section's (which stops the lab)."""
    tour: list[Command] = []
    lab: list[Command] = []
    for number, block in enumerate(blocks()):
        if not block.runnable:
            continue
        if block.lang == "python":
            name = f"readme-block-{number}.py"
            (cwd / name).write_text(block.body)
            commands = [Command(f"python {name}", 0)]
        else:
            assert block.lang == "sh", f"README.md:{block.line}: runnable {block.lang!r} block"
            commands = block.commands()
        (lab if block.section.startswith(LAB_SECTION) else tour).extend(commands)
    return tour, lab


def _example_order(item: tuple[str, str]) -> tuple[int, str]:
    """Help examples: one that starts the lab first, the ones that stop or restart it last."""
    path, _ = item
    last = {"lab status": 2, "lab down": 3, "lab up": 4}
    return (0 if path == "lab" else last.get(path, 1), path)


def test_readme_and_help_examples_run_as_written_on_a_fresh_lab(tmp_path: Path) -> None:
    from tests.conftest import _require_sshd

    _require_sshd()
    port = free_port()
    cwd = _workspace(tmp_path, port)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "HOME": str(home),
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
        "LANG": "C.UTF-8",
        "REMOTEOPS_LAB_PORT": str(port),
    }
    lab_dir = home / ".local" / "state" / "remoteops" / "lab"
    tour, lab = _readme_commands(cwd)
    (cwd.parent / "seed-history.py").write_text(SEED_HISTORY)
    examples = sorted(help_examples().items(), key=_example_order)
    example_commands = [Command(line, 0) for _path, line in examples]
    commands = [
        Command(". .venv/bin/activate", 0),  # in case the README's tour no longer does
        Command(f"python {cwd.parent / 'seed-history.py'}", 0),
        *tour,
        *example_commands,
        *lab,
    ]
    try:
        codes, output = _run(commands, cwd, env)
    finally:
        if (lab_dir / "lab.json").exists():
            lab_down(lab_dir)
    assert codes == [c.exit_code for c in commands], _report(commands, codes, output)
    assert "Traceback" not in output, output[-6000:]
    assert "error: internal error" not in output, output[-6000:]
    # What the tour's lines say they do, they did.
    assert (cwd / "failed.txt").read_text() == "web02\n"
    assert re.search(r"^web01 *: root$", output, flags=re.M), output[-6000:]
    assert sorted(p.name for p in (cwd / "facts").iterdir()) == sorted(
        [f"web{i:02d}" for i in range(1, 6)] + [f"db{i:02d}" for i in range(1, 6)]
    )
    assert list((cwd / "fetched" / "db01" / "etc" / "ssh").glob("*.pub"))
    assert (cwd / "fetched" / "db01" / "srv" / "pages" / "index.html").is_file()
    assert "ERROR disk full" in output
    # rolling-config.yml: --check, a run, the same run again (no restart), another app_dir.
    recaps = re.findall(r"^web01 +ok=(\d+) changed=(\d+) failed=0 skipped=(\d+)", output, re.M)
    assert len(recaps) >= 4, output[-6000:]  # and the --help example's --check
    (_, first_changed, first_skipped), (_, again_changed, again_skipped) = recaps[1:3]
    assert (first_skipped, again_skipped) == ("0", "1")  # the restart step, when unchanged
    assert int(again_changed) < int(first_changed)
    assert (cwd / "disk.jsonl").read_text().count('"type": "summary"') == 1
    assert not (lab_dir / "lab.json").exists()  # the README's last line stopped the lab
    assert os.listdir(cwd / "logs")
