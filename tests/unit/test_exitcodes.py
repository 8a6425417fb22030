"""``ExitCode`` is the table of docs/exit-codes.md, and the package uses no other number.

The table is the contract scripts rely on: the enum is checked against it row by
row (the number and what the row says), so neither can change without the other.
The source of remoteops/ is then scanned for an exit with a bare number, so a new
code cannot bypass the enum.
"""

from __future__ import annotations

import re
from typing import Final

from remoteops import errors, results
from remoteops.exitcodes import ExitCode
from tests.readme import ROOT

# What each member's row of the table says, in a few words (catches swapped numbers).
_SAYS: Final = {
    ExitCode.OK: "every matched host succeeded",
    ExitCode.INTERNAL: "a bug",
    ExitCode.USAGE: "usage, configuration, inventory, playbook or lab error",
    ExitCode.TIMEOUT: "timed out",
    ExitCode.UNREACHABLE: "unreachable",
    ExitCode.FAILED: "exited non-zero",
    ExitCode.LOCKED: "`--lock`",
    ExitCode.SIGINT: "SIGINT",
    ExitCode.BROKEN_PIPE: "closed by its reader",
    ExitCode.SIGTERM: "SIGTERM",
}


def _documented_table() -> dict[int, str]:
    text = (ROOT / "docs" / "exit-codes.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d+) \| (.+) \|$", text, flags=re.M)
    assert rows, "docs/exit-codes.md: no `| code | meaning |` rows found"
    table = {int(code): meaning for code, meaning in rows}
    assert len(table) == len(rows), "docs/exit-codes.md: a code appears twice"
    return table


def test_the_enum_is_the_documented_table() -> None:
    table = _documented_table()
    assert sorted(table) == sorted(ExitCode)
    assert set(_SAYS) == set(ExitCode)
    for member in ExitCode:
        assert _SAYS[member] in table[member], (
            f"docs/exit-codes.md: code {int(member)} should be ExitCode.{member.name}"
        )


def test_errors_and_statuses_exit_with_enum_members() -> None:
    for cls in vars(errors).values():
        if isinstance(cls, type) and issubclass(cls, errors.RemoteOpsError):
            assert isinstance(cls.exit_code, ExitCode), cls.__name__
    for status in results.STATUSES:
        assert isinstance(results.exit_code_for([status]), ExitCode), status
    failed = errors.RunFailedError("x")
    assert isinstance(failed.run_exit_code, ExitCode)


# An exit with a literal number: SystemExit(2), typer.Exit(4), os._exit(130),
# sys.exit(1), or an error class's ``exit_code = 75``.
_BARE_EXIT: Final = re.compile(
    r"(?:\b(?:SystemExit|typer\.Exit|_exit|sys\.exit)\(\s*\d|\bexit_code(?:: [^=]+)? = \d)"
)
# A forked lab child whose exec failed: the shell's 127, not a remoteops exit code.
_ALLOWED: Final = ("os._exit(127)",)


def test_no_exit_code_is_a_bare_number_in_the_package() -> None:
    bare = []
    for path in sorted((ROOT / "remoteops").rglob("*.py")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _BARE_EXIT.search(line) and not any(ok in line for ok in _ALLOWED):
                bare.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not bare, "use remoteops.exitcodes.ExitCode:\n" + "\n".join(bare)
